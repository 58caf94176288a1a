"""Sharing a session's maps with BPF objects compiled apart from it, through the BPF filesystem.

A user's own BCC program is its own module (its names, its line numbers, its tracepoints
cannot clash with the shipped probes'), yet its ``EBPF_TRACED()`` must read the session's
set of traced processes.  BCC opens an existing map only by path
(``BPF_TABLE_PINNED``), so the session's maps are pinned in a private folder of the BPF
filesystem while the user's module loads, and unpinned right after: the module keeps its
own reference to each map, and nothing is left behind in /sys/fs/bpf.  (libbpf objects
need none of this: ``bpf_map__reuse_fd`` takes the fd.)
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import ProbeNotSupportedError
from .abi import bpf

__all__ = ["BPFFS", "ensure_bpffs", "pinned_maps"]

BPFFS = Path("/sys/fs/bpf")
BPF_OBJ_PIN = 6
_BPF_FS_MAGIC = 0xCAFE4A11
_seq = itertools.count()


class _PinAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


def _is_bpffs(path: Path) -> bool:
    try:
        return os.path.ismount(path) and _fs_type(path) == _BPF_FS_MAGIC
    except OSError:
        return False


def _fs_type(path: Path) -> int:
    class _StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_long * 15)]
    buf = _StatFs()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return buf.f_type & 0xFFFFFFFF


def ensure_bpffs() -> Path:
    """/sys/fs/bpf, mounted here when it is not (as ``mount -t bpf bpf /sys/fs/bpf`` would)."""
    if _is_bpffs(BPFFS):
        return BPFFS
    res = subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], capture_output=True, text=True)
    if res.returncode != 0 or not _is_bpffs(BPFFS):
        raise ProbeNotSupportedError(
            f"the BPF filesystem is not mounted at {BPFFS} and mounting it failed ({res.stderr.strip() or 'unknown'}): "
            f"run `sudo mount -t bpf bpf {BPFFS}`; a custom BCC probe needs it to share the session's process filter")
    return BPFFS


@contextlib.contextmanager
def pinned_maps(fds: dict[str, int]):
    """Pin each ``{name: fd}`` at ``<folder>/<name>`` for the duration of the block; yields the folder.
    The pins (and the folder) are removed on the way out, whatever happens."""
    folder = ensure_bpffs() / f"ebpftoolkit-{os.getpid()}-{next(_seq)}"
    folder.mkdir(mode=0o700)
    try:
        for name, fd in fds.items():
            path = os.fsencode(folder / name)
            buf = ctypes.create_string_buffer(path)
            bpf(BPF_OBJ_PIN, _PinAttr(ctypes.addressof(buf), fd, 0))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
