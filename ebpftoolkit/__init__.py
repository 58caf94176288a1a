"""ebpftoolkit: exploratory eBPF profiling from notebooks.

Probes capture (ExecSnoop), a Session groups them and holds the results as
pandas DataFrames, ``doctor()`` says what this machine can trace.
"""
__version__ = "0.1.0"

from .doctor import doctor  # noqa: E402  (the function; doctor.py imports no bcc)
from .errors import EbpfToolkitError  # noqa: E402
from .probes.execsnoop import ExecSnoop  # noqa: E402
from .probes.gpu import GpuTrace  # noqa: E402
from .probes.pmu import PmuCounters  # noqa: E402
from .probes.syscalls import SyscallTrace  # noqa: E402
from .session import LostEventsWarning, Session  # noqa: E402


def load_ipython_extension(ipython):
    """``%load_ext ebpftoolkit``: the %%ebpf, %ebpf and %execsnoop magics (see ebpftoolkit.magics)."""
    from .magics import load_ipython_extension as _load
    _load(ipython)


def unload_ipython_extension(ipython):
    """``%unload_ext ebpftoolkit``: stop every session the magics started, remove the magics."""
    from .magics import unload_ipython_extension as _unload
    _unload(ipython)


__all__ = ["ExecSnoop", "SyscallTrace", "GpuTrace", "PmuCounters", "Session", "doctor", "EbpfToolkitError",
           "LostEventsWarning", "__version__"]
