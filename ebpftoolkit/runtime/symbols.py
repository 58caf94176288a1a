"""User-space addresses -> (module, function), without needing the process alive at decode time.

While recording, :class:`ProcessMaps` remembers the executable mappings of
``/proc/PID/maps`` of every process that produced a sample, the first time it
shows up (and again when a sampled address falls outside what was read, e.g.
after a ``dlopen``).  Each snapshot is tied to the process's generation (the
execs, and the exit, BPF saw it do): a process that exec'd, or ended, before
its map was read cannot be symbolized, and its addresses are marked so, never
guessed.  Functions come from the ELF symbol tables (``.symtab`` and
``.dynsym``, see :mod:`.elf`): the function with the greatest start address
at or below the address, if its symbol's size reaches the address.
"""
from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass

import numpy as np

from .elf import elf_file

__all__ = ["MapSnapshot", "read_exec_maps", "ElfSymbols", "elf_symbols", "resolve", "ProcessMaps", "SYM_STATUS"]

#: sym_status values: resolved; the module has no function symbol holding the address; the address is in
#: memory with no file behind it ([vdso], JIT code, a deleted or unreadable file); the address is in
#: no executable mapping that was read; no memory map (the process ended or exec'd before it was
#: read); no user context (a kernel thread, or a user stack that could not be read)
SYM_STATUS = ["ok", "no symbol", "no file", "unmapped", "no maps", "no user ip"]
_MAX_REREADS = 32   # per process: re-reads of a map when a sampled IP falls outside it


@dataclass(frozen=True)
class MapSnapshot:
    """Executable mappings of one process, sorted by start address."""

    starts: np.ndarray   # uint64
    ends: np.ndarray
    offsets: np.ndarray
    paths: tuple          # str: a file, or "[vdso]", "[anon]"...

    def find(self, ip: int) -> int:
        """Index of the mapping holding ``ip``, or -1."""
        i = int(np.searchsorted(self.starts, np.uint64(ip), side="right")) - 1
        return i if i >= 0 and ip < int(self.ends[i]) else -1

    def covers(self, ips: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.starts, ips, side="right") - 1
        ok = i >= 0
        return ok & (ips < self.ends[np.maximum(i, 0)])


def read_exec_maps(pid: int) -> MapSnapshot | None:
    """The executable mappings of ``pid`` now, or None when it is gone (or a zombie: no memory left)."""
    rows = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 5 or "x" not in parts[1]:
                    continue
                lo, _, hi = parts[0].partition("-")
                path = parts[5].strip() if len(parts) > 5 else ""
                rows.append((int(lo, 16), int(hi, 16), int(parts[2], 16), path or "[anon]"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not rows:
        return None
    rows.sort()
    return MapSnapshot(np.array([r[0] for r in rows], np.uint64), np.array([r[1] for r in rows], np.uint64),
                       np.array([r[2] for r in rows], np.uint64), tuple(r[3] for r in rows))


class ElfSymbols:
    """Function lookup in one ELF file: sorted start addresses, sizes and names."""

    def __init__(self, path: str):
        elf = elf_file(path)
        self.offset_to_vaddr = elf.offset_to_vaddr   # keeps the ElfFile (elf.py caches it anyway)
        best: dict[int, tuple[int, str]] = {}     # address -> (size, name); aliases: the plainest name wins
        for addr, size, name in elf.function_ranges:
            old = best.get(addr)
            if old is None or _plainness(name) < _plainness(old[1]):
                best[addr] = (max(size, old[0]) if old else size, name)
        order = sorted(best)
        self.addrs = np.array(order, np.uint64)
        self.sizes = np.array([best[a][0] for a in order], np.uint64)
        self.names = [best[a][1] for a in order]

    def function_at(self, vaddr: int) -> str | None:
        """The function holding ELF virtual address ``vaddr``: the one with the greatest start <= vaddr,
        unless its symbol's size says it ends before (then None: a local function of a stripped
        file, a PLT stub...)."""
        i = int(np.searchsorted(self.addrs, np.uint64(vaddr), side="right")) - 1
        if i < 0 or (self.sizes[i] and vaddr >= int(self.addrs[i]) + int(self.sizes[i])):
            return None
        return self.names[i]


def _plainness(name: str) -> tuple:
    return len(name) - len(name.lstrip("_")), len(name), name


@functools.lru_cache(maxsize=64)
def _elf_symbols(path: str, _mtime: float, _size: int) -> ElfSymbols:
    return ElfSymbols(path)


def elf_symbols(path: str) -> ElfSymbols:
    """:class:`ElfSymbols` of ``path`` (cached while the file is unchanged); OSError or
    ProbeConfigError when it cannot be read as ELF."""
    st = os.stat(path)
    return _elf_symbols(os.path.realpath(path), st.st_mtime, st.st_size)


def resolve(snap: MapSnapshot | None, ip: int, files: dict | None = None) -> tuple[str | None, str | None, str]:
    """(module, function, sym_status) of user address ``ip`` in the process whose map is ``snap``.

    ``files``: a cache path -> ElfSymbols (or None: unreadable) kept by the caller, so that a
    file is looked at once per recording, not once per address."""
    if ip <= 0 or ip >= 1 << 63:       # no address, or a kernel one
        return None, None, "no user ip"
    if snap is None:
        return None, None, "no maps"
    i = snap.find(ip)
    if i < 0:
        return None, None, "unmapped"
    path = snap.paths[i]
    if not path.startswith("/") or path.endswith(" (deleted)"):
        return path, None, "no file"
    files = {} if files is None else files
    if path not in files:
        try:
            files[path] = elf_symbols(path)
        except Exception:      # gone, unreadable, not ELF
            files[path] = None
    syms = files[path]
    if syms is None:
        return path, None, "no file"
    try:
        vaddr = syms.offset_to_vaddr(ip - int(snap.starts[i]) + int(snap.offsets[i]))
    except Exception:          # outside the file's loaded segments
        return path, None, "no file"
    name = syms.function_at(vaddr)
    return (path, name, "ok") if name else (path, None, "no symbol")


class ProcessMaps:
    """Memory maps of sampled processes, per (pid, generation), read while they run.

    ``current_gen(pid)`` says the process's generation now (from the BPF side); a snapshot counts for generation ``gen`` only when it was read
    with the process in that generation before and after the read.
    """

    def __init__(self, current_gen):
        self._current_gen = current_gen
        self._snaps: dict[tuple[int, int], list[MapSnapshot]] = {}
        self._missed: set[tuple[int, int]] = set()   # gone, or past this generation, when first looked at
        self._rereads: dict[tuple[int, int], int] = {}
        self._files: dict = {}     # path -> ElfSymbols or None, for this recording
        self._lock = threading.Lock()

    def remember(self, pid: int, gen: int, ips: np.ndarray | None = None) -> None:
        """Read ``pid``'s map if it was never read for ``gen``, or if some of ``ips`` lie outside it."""
        key = (pid, gen)
        with self._lock:
            snaps = self._snaps.get(key)
            if key in self._missed:
                return
            if snaps is not None:
                ips = ips[ips != 0] if ips is not None else ips
                if ips is None or not len(ips) or self._rereads.get(key, 0) >= _MAX_REREADS:
                    return
                if np.logical_or.reduce([s.covers(ips) for s in snaps]).all():
                    return
                self._rereads[key] = self._rereads.get(key, 0) + 1
            snap = self._read(pid, gen)
            if snap is not None:
                self._snaps.setdefault(key, []).insert(0, snap)   # newest first
            elif snaps is None:
                self._missed.add(key)

    def _read(self, pid: int, gen: int) -> MapSnapshot | None:
        try:
            if self._current_gen(pid) != gen:
                return None
            snap = read_exec_maps(pid)
            return snap if snap is not None and self._current_gen(pid) == gen else None
        except Exception:   # the BPF map is gone (session over): nothing can be read any more
            return None

    def known(self, pid: int, gen: int) -> bool:
        return (pid, gen) in self._snaps or (pid, gen) in self._missed

    def resolve(self, pid: int, gen: int, ip: int) -> tuple[str | None, str | None, str]:
        with self._lock:
            snaps = self._snaps.get((pid, gen))
        if not snaps:
            return resolve(None, ip)
        best = None
        for s in snaps:      # newest first; an older snapshot still holds what was unmapped since
            r = resolve(s, ip, self._files)
            if r[2] != "unmapped":
                return r
            best = best or r
        return best
