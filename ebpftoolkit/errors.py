"""One exception hierarchy.  Every message says what is wrong *and* how to fix it."""
from __future__ import annotations

__all__ = [
    "EbpfToolkitError",
    "NotRootError",
    "KernelHeadersError",
    "BTFError",
    "TracefsError",
    "BccMissingError",
    "ProbeNotSupportedError",
    "ProbeCompileError",
    "ProbeAttachError",
    "ProbeStateError",
    "ProbeConfigError",
    "SessionLoadError",
    "OutputError",
    "TargetError",
    "PmuUnsupportedError",
    "ValgrindMissingError",
]


class EbpfToolkitError(Exception):
    """Base class of every error ebpftoolkit raises on purpose."""


class NotRootError(EbpfToolkitError, PermissionError):
    """Loading BPF programs needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN)."""


class KernelHeadersError(EbpfToolkitError):
    """BCC could not find kernel headers for the running kernel."""


class BTFError(EbpfToolkitError):
    """The kernel's BTF type information is missing or lacks something we need."""


class TracefsError(EbpfToolkitError):
    """tracefs is not mounted and could not be mounted."""


class BccMissingError(EbpfToolkitError, ImportError):
    """The ``bcc`` Python bindings cannot be imported."""


class ProbeNotSupportedError(EbpfToolkitError):
    """A probe needs a kernel feature this machine does not have."""


class ProbeCompileError(EbpfToolkitError):
    """The BPF C did not compile or the verifier rejected it."""


class ProbeAttachError(EbpfToolkitError):
    """A compiled program could not be attached to its tracepoint/uprobe."""


class ProbeStateError(EbpfToolkitError, RuntimeError):
    """A probe or session was used in the wrong state (e.g. started twice)."""


class ProbeConfigError(EbpfToolkitError, ValueError):
    """A probe or session was given an invalid option."""


class SessionLoadError(EbpfToolkitError):
    """A saved session folder is missing or damaged."""


class OutputError(EbpfToolkitError, OSError):
    """A recording (or report) cannot be written where it was asked to go (``errno`` says why)."""

    def __str__(self) -> str:
        return str(self.strerror if self.strerror else super().__str__())


class TargetError(EbpfToolkitError):
    """The command to trace could not be started."""


class PmuUnsupportedError(ProbeNotSupportedError):
    """Perf events (usually hardware PMU counters) that this machine cannot count.

    ``events`` lists the event names; the message gives the cause and the alternatives.
    """

    def __init__(self, message: str, events=()):
        super().__init__(message)
        self.events = list(events)


class ValgrindMissingError(EbpfToolkitError, FileNotFoundError):
    """valgrind (needed for simulated cache misses) is not installed."""
