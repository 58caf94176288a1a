"""ExecSnoop: every process started, with argv, return code, exit code and lifetime (tracepoints only)."""
from .config import ExecConfig

__all__ = ["ExecSnoop", "ExecConfig", "EXEC_COLUMNS"]


def __getattr__(name):          # the probe imports the runtime: only when asked for
    if name in ("ExecSnoop", "EXEC_COLUMNS"):
        from . import probe
        return getattr(probe, name)
    raise AttributeError(name)
