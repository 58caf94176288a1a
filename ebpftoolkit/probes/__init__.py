"""Probes: one folder per probe family, each with its BPF C (``*.bpf.c``) beside its Python,
a frozen configuration dataclass (``config.py``) and the probe class (``probe.py``).

Importing this package (or a family's ``config``) is cheap: the probe classes, which
need the runtime, are imported when first asked for.
"""
__all__ = ["ExecSnoop", "SyscallTrace", "GpuTrace", "PmuCounters", "PmuSampler", "Probe"]

_LAZY = {"ExecSnoop": "execsnoop", "SyscallTrace": "syscalls", "GpuTrace": "gpu", "PmuCounters": "pmu",
         "PmuSampler": "pmu", "Probe": "base"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
