"""Ctrl-C held back for the moment a BPF object is detached or freed.

BCC detaches in steps (close the perf event, then forget it); a ``KeyboardInterrupt`` between
the two leaves it holding a closed file descriptor, and the next cleanup fails on it ("Failed
to detach BPF from tracepoint") instead of detaching the rest.  Those steps take milliseconds:
a signal that comes during them is acted on right after, with the handler it would have met.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

__all__ = ["interrupts_deferred"]

_HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_deferred():
    """Run the block with SIGINT and SIGTERM noted, not acted on; then act on the first one noted."""
    if threading.current_thread() is not threading.main_thread():
        yield                           # handlers can be set only from the main thread
        return
    got: list = []
    old = {}
    for sig in _HELD:
        try:
            old[sig] = signal.signal(sig, lambda n, f: got.append((n, f)))
        except (ValueError, OSError, TypeError):
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if got:
            n, frame = got[0]
            handler = old.get(n)
            if callable(handler):
                handler(n, frame)       # raises KeyboardInterrupt (or what the caller installed)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), n)  # the default action, now that the handler is back
