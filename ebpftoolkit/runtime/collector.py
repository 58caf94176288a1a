"""Background thread that moves records from the kernel into numpy chunks.

Per wake-up it drains every stream in bulk, keeps the arrays (never one Python
object per event), samples the loss counters and remembers in which time
window any loss happened, so views can shade the gaps.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Callable

import numpy as np

from .program import BpfProgram

__all__ = ["Collector"]

Listener = Callable[[str, np.ndarray], None]


class Collector:
    def __init__(self, program: BpfProgram, interval_s: float = 0.05):
        self.program = program
        self.interval_s = interval_s
        self._chunks: dict[str, list[np.ndarray]] = {n: [] for n in program.streams}
        self._counts = dict.fromkeys(program.streams, 0)
        self._lost_seen = dict.fromkeys(program.streams, 0)
        self.loss_windows: list[tuple[int, int, str, int]] = []  # (start_mono_ns, end_mono_ns, stream, lost)
        self._last_collect = time.monotonic_ns()
        self._listeners: list[Listener] = []
        self.listener_errors: list[tuple[str, BaseException]] = []   # (listener, first error): it keeps running
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def add_listener(self, fn: Listener) -> None:
        """``fn(stream, records)`` is called in the collector thread for each new batch."""
        self._listeners.append(fn)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ebpftoolkit-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Ctrl-C and SIGTERM must reach the main thread (a signal the kernel hands to this thread
        # would not interrupt the main thread's wait for the traced command)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            while not self._stop.is_set():
                self.program.wait(self.interval_s)
                self.collect()
        except BaseException as exc:  # surfaced by stop(); the data so far is kept
            self.error = exc

    def collect(self) -> None:
        with self._lock:
            now = time.monotonic_ns()
            for name in self._chunks:
                arr = self.program.drain(name)
                if len(arr):
                    self._chunks[name].append(arr)
                    self._counts[name] += len(arr)
                    for fn in self._listeners:
                        self._call(fn, name, arr)
                lost = self.program.lost(name)
                if lost > self._lost_seen[name]:
                    self.loss_windows.append((self._last_collect, now, name, lost - self._lost_seen[name]))
                    self._lost_seen[name] = lost
            self._last_collect = now

    def _call(self, fn: Listener, name: str, arr: np.ndarray) -> None:
        """A listener that raises must not stop the collection (the records are kept either way)."""
        try:
            fn(name, arr)
        except Exception as exc:
            label = getattr(fn, "__qualname__", repr(fn))
            if not any(lbl == label for lbl, _e in self.listener_errors):
                self.listener_errors.append((label, exc))

    def stop(self) -> None:
        """Detach the programs, stop the thread, and take everything still in the buffers.

        Detaching first means nothing is produced after the last drain, so
        captured + lost is exactly what the programs saw.
        """
        if self.program.loaded:
            self.program.detach()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.program.loaded:
            if self.program.transport == "perf":
                self.program.wait(0)
            self.collect()

    def records(self, name: str) -> np.ndarray:
        """All records of a stream so far, as one array (chunks are merged in place)."""
        with self._lock:
            chunks = self._chunks[name]
            if not chunks:
                return np.empty(0, self.program.streams[name].dtype)
            if len(chunks) > 1:
                chunks[:] = [np.concatenate(chunks)]
            return chunks[0]

    def count(self, name: str) -> int:
        return self._counts[name]

    def lost(self, name: str) -> int:
        return self._lost_seen[name]
