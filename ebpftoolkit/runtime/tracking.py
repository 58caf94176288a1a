"""Maintain the set of traced processes (the ``ebt_tracked`` BPF map)."""
from __future__ import annotations

import ctypes
import os
from collections import defaultdict

import numpy as np

from .abi import BPF_MAP_UPDATE_ELEM, libc, syscall_nr
from .records import decode_str

__all__ = ["descendants", "seed_tracked", "register_self_preexec", "main_thread_names"]


def descendants(root: int) -> set[int]:
    """``root`` and every process below it, from /proc (a snapshot)."""
    children = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children[ppid].append(int(entry))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def seed_tracked(tracked, root: int) -> int:
    """Put ``root`` and its current descendants into the tracked map (a ``BpfMap`` u32 -> u8)."""
    pids = descendants(root)
    for pid in pids:
        tracked.update(pid, 1)
    return len(pids)


class _MapUpdateAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def register_self_preexec(map_fd: int):
    """A ``preexec_fn`` with which a child adds its own pid to the tracked map before exec.

    Everything is prepared in the parent; the child only stores its pid and
    makes one bpf() system call, so it is traced from the exec on.
    """
    lib = libc()
    key = ctypes.c_uint32(0)
    value = ctypes.c_uint8(1)
    attr = _MapUpdateAttr(map_fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0)
    syscall, nr, getpid = lib.syscall, ctypes.c_long(syscall_nr("bpf")), os.getpid

    def preexec():
        key.value = getpid()
        if syscall(nr, BPF_MAP_UPDATE_ELEM, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
            raise OSError(ctypes.get_errno(), "could not register the child in the tracked-process map")

    return preexec


def main_thread_names(pid_columns, limit: int = 10_000) -> dict[int, str]:
    """pid -> /proc/PID/comm (the name of its main thread) of the pids in ``pid_columns`` still running."""
    pids: set[int] = set()
    for col in pid_columns:
        try:                                  # a user's own table may call anything "pid"
            pids.update(int(p) for p in np.unique(np.asarray(col, dtype=np.int64)) if 0 < p < 1 << 22)
        except (TypeError, ValueError, OverflowError):
            continue
    out = {}
    for pid in sorted(pids)[:limit]:
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                out[pid] = decode_str(f.read().rstrip(b"\n"))
        except (OSError, ValueError):
            continue
    return out
