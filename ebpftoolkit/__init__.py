"""ebpftoolkit: exploratory eBPF profiling from notebooks.

Probes (ExecSnoop, GpuTrace, PmuCounters, PmuSampler, SyscallTrace) record into a
Session; stopping it gives a Recording (tables as pandas DataFrames, loss counts,
typed metadata) that saves, loads and renders.  ``doctor()`` says what this machine
can trace.  Importing the package is cheap: everything else loads when first used.
"""
__version__ = "0.2.0"

from .doctor import doctor  # noqa: E402  (ctypes only; the function shadows the module name, as before)
from .errors import EbpfToolkitError  # noqa: E402

__all__ = ["ExecSnoop", "SyscallTrace", "GpuTrace", "PmuCounters", "PmuSampler", "Session", "Recording",
           "doctor", "EbpfToolkitError", "LostEventsWarning", "__version__"]

_LAZY = {"ExecSnoop": ".probes.execsnoop", "SyscallTrace": ".probes.syscalls", "GpuTrace": ".probes.gpu",
         "PmuCounters": ".probes.pmu", "PmuSampler": ".probes.pmu", "Session": ".session",
         "LostEventsWarning": ".session", "Recording": ".recording"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ebpftoolkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython):
    """``%load_ext ebpftoolkit``: the %%ebpf, %ebpf and %execsnoop magics (see ebpftoolkit.notebook)."""
    from .notebook import load_ipython_extension as _load
    _load(ipython)


def unload_ipython_extension(ipython):
    """``%unload_ext ebpftoolkit``: stop every session the magics started, remove the magics."""
    from .notebook import unload_ipython_extension as _unload
    _unload(ipython)
