"""Probes: one folder per probe family, each with its BPF C (``*.bpf.c``) beside its Python,
a frozen configuration dataclass (``config.py``) and the probe class (``probe.py``).

Importing this package (or a family's ``config``) is cheap: the probe classes, which
need the runtime, are imported when first asked for.
"""
__all__ = ["ExecSnoop", "SyscallTrace", "GpuTrace", "PmuCounters", "PmuSampler", "CustomProbe", "Probe"]

def __getattr__(name):
    if name == "ExecSnoop":
        from .execsnoop import ExecSnoop as value
    elif name == "SyscallTrace":
        from .syscalls import SyscallTrace as value
    elif name == "GpuTrace":
        from .gpu import GpuTrace as value
    elif name in ("PmuCounters", "PmuSampler"):
        from . import pmu
        value = getattr(pmu, name)
    elif name == "CustomProbe":
        from .custom import CustomProbe as value
    elif name == "Probe":
        from .base import Probe as value
    else:
        raise AttributeError(name)
    return value
