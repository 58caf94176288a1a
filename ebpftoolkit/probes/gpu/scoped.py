"""GpuTrace's uprobes only in the traced processes, not in every process that maps the library.

A uprobe is a breakpoint written into the file's pages of every process that maps the file; a
filter inside the BPF program only decides, after the trap, whether to keep the event.  With
the session's scope set to a command, a pid or the notebook, every other process on the
machine that maps the same libGL or libcudart would pay the trap on every call.  Here each
traced process gets its own set of uprobe_multi links (kernel 6.6+) with the process's pid:
the kernel writes the breakpoints into that process's memory only.  follow.bpf.c holds a
process until it has them (when it first maps or runs a probed file, and as a new process
whose parent has them returns from fork); a link follows its process across exec.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time

from ...runtime.program import Uprobe
from .follow import file_key

__all__ = ["ScopedUprobes"]


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): a pid used again is another process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class ScopedUprobes:
    """The attach points as templates (pid -1); ``link(pid)`` gives a process all of them, ``add``
    gives every linked process new ones (a library found while recording)."""

    def __init__(self, program, linked_map, probed_map):
        self._program, self._linked, self._probed = program, linked_map, probed_map
        self.templates: list[Uprobe] = []
        self._links: dict[int, tuple[int | None, list]] = {}    # pid -> (start time, its links)
        self._lock = threading.RLock()
        self.processes = 0          # processes given links
        self.link_ms: list[float] = []
        self.errors: list[str] = []

    def add(self, uprobes: list[Uprobe]) -> None:
        """New attach points: marked probed in the kernel, attached in every live linked process."""
        with self._lock:
            self.templates += list(uprobes)
            for path in dict.fromkeys(u.path for u in uprobes):
                try:
                    dev, ino = file_key(os.stat(path))
                except OSError:
                    continue
                self._probed.update((ino, dev, 0), 1)
            for pid in list(self._links):
                if self._alive(pid):
                    self._attach(pid, uprobes)

    def link(self, pid: int) -> None:
        """Give ``pid`` every attach point (once; again if the pid now belongs to another process)."""
        with self._lock:
            if pid in self._links and self._alive(pid):
                return
            self._drop(pid)
            start = _start_time(pid)
            if start is None:
                return                        # gone already
            self._links[pid] = (start, [])
            t0 = time.monotonic()
            self._attach(pid, self.templates)
            self._linked.update(pid, 1)
            self.processes += 1
            self.link_ms.append((time.monotonic() - t0) * 1e3)
            self._prune()

    def _attach(self, pid: int, uprobes: list[Uprobe]) -> None:
        if not uprobes:
            return
        try:
            links = self._program.attach_uprobes([dataclasses.replace(u, pid=pid) for u in uprobes])
        except Exception as exc:              # said in the metadata; the process is continued regardless
            self.errors.append(f"pid {pid}: {type(exc).__name__}: {exc}")
            return
        self._links[pid][1].extend(links)

    def _alive(self, pid: int) -> bool:
        entry = self._links.get(pid)
        return entry is not None and entry[0] == _start_time(pid)

    def _drop(self, pid: int) -> None:
        entry = self._links.pop(pid, None)
        for link in entry[1] if entry else ():
            link.close()

    def _prune(self) -> None:
        """Close the links of processes that ended (their uprobes would stay registered until the end)."""
        for pid in [p for p in self._links if not self._alive(p)]:
            self._drop(pid)

    def summary(self) -> dict:
        ms = sorted(self.link_ms)
        return {"processes_linked": self.processes, "attach_points": len(self.templates),
                "link_ms_median": round(ms[len(ms) // 2], 2) if ms else None,
                "link_ms_max": round(ms[-1], 2) if ms else None, **({"errors": self.errors[:10]} if self.errors else {})}
