"""SyscallTrace: entries of chosen system calls, as events or in-kernel counts."""
from .config import SyscallConfig

__all__ = ["SyscallTrace", "SyscallConfig"]


def __getattr__(name):          # the probe imports the runtime: only when asked for
    if name == "SyscallTrace":
        from .probe import SyscallTrace
        return SyscallTrace
    raise AttributeError(name)
