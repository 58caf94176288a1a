"""ebpftoolkit: exploratory eBPF profiling from notebooks.

Probes (ExecSnoop, GpuTrace, PmuCounters, PmuSampler, SyscallTrace, and CustomProbe for your own
BPF programs) record into a
Session; stopping it gives a Recording (tables as pandas DataFrames, loss counts,
typed metadata) that saves, loads and renders.  ``doctor()`` says what this machine
can trace.  ``mark(name)`` and ``with frame(name):`` put markers (and frames) into a GpuTrace
recording from the traced program itself.  Importing the package is cheap: everything else loads when first used.
"""
from .version import __version__  # noqa: E402
from .doctor import doctor  # noqa: E402  (ctypes only; the function shadows the module name, as before)
from .errors import EbpfToolkitError  # noqa: E402

__all__ = ["ExecSnoop", "SyscallTrace", "GpuTrace", "PmuCounters", "PmuSampler", "CustomProbe", "Session", "Recording",
           "doctor", "EbpfToolkitError", "LostEventsWarning", "mark", "frame", "__version__"]

def __getattr__(name):
    """The public classes, imported when first used (``import ebpftoolkit`` stays light)."""
    if name == "ExecSnoop":
        from .probes.execsnoop import ExecSnoop as value
    elif name == "SyscallTrace":
        from .probes.syscalls import SyscallTrace as value
    elif name == "GpuTrace":
        from .probes.gpu import GpuTrace as value
    elif name == "PmuCounters":
        from .probes.pmu import PmuCounters as value
    elif name == "PmuSampler":
        from .probes.pmu import PmuSampler as value
    elif name == "CustomProbe":
        from .probes.custom import CustomProbe as value
    elif name in ("Session", "LostEventsWarning"):
        from . import session
        value = getattr(session, name)
    elif name == "Recording":
        from .recording import Recording as value
    elif name in ("mark", "frame"):        # markers the GPU probes see: ctypes only, no runtime
        from .probes.gpu import marker
        value = getattr(marker, name)
    else:
        raise AttributeError(f"module 'ebpftoolkit' has no attribute {name!r}")
    globals()[name] = value
    return value


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
