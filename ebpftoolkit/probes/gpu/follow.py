"""Follow the process, not the linker cache: find the API libraries the traced processes
really map (pip wheels, conda, RPATH, dlopen at any time, containers) and the programs they
run (statically linked runtimes), and probe them before they run (follow.bpf.c holds the
process until then).

A file is matched by content, never by its path: its soname belongs to the API's family
(``libcudart.so.12`` and ``.13`` alike, ``libcuda.so.1``, ``libOpenCL.so.1``), or it is a
program, and it defines the catalogued function.  Calls resolved through the API's driver
(OpenGL, Vulkan) are found at start by the driver lookup and are not matched here.
"""
from __future__ import annotations

import mmap
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

from ...runtime.elf import elf_file, elf_identity
from ...runtime.layout import Layout

__all__ = ["MAPPED", "FILE_KEY", "MAPPED_KINDS", "BTF_MEMBERS", "Found", "Follower", "file_key", "mapped_files",
           "matching_specs"]

MAPPED_KINDS = {"MMAP": 1, "EXEC": 2, "FORK": 3}      # gpu_mapped.kind (FORK: a new process to link)
MAPPED = Layout("gpu_mapped", [
    ("ts", "u64"), ("ino", "u64"), ("addr", "u64"),
    ("dev", "u32"),                        # the kernel's dev_t (major << 20 | minor)
    ("pid", "u32"), ("tid", "u32"), ("fd", "s32"), ("kind", "u32"),
    ("stopped", "u32")])                   # the process was stopped until we continue it
FILE_KEY = Layout("gpu_file", [("ino", "u64"), ("dev", "u32"), ("_pad", "u32")])
BTF_MEMBERS = {"TASK_FILES": ("task_struct", "files"), "FILES_FDT": ("files_struct", "fdt"),
               "FDTABLE_FD": ("fdtable", "fd"), "FDTABLE_MAX_FDS": ("fdtable", "max_fds"),
               "FILE_F_INODE": ("file", "f_inode"), "INODE_I_INO": ("inode", "i_ino"),
               "INODE_I_SB": ("inode", "i_sb"), "SB_S_DEV": ("super_block", "s_dev"),
               "BPRM_FILE": ("linux_binprm", "file")}
_STANDARD = ("opengl", "vulkan", "opencl", "cuda")


def file_key(st: os.stat_result) -> tuple[int, int]:
    """(kernel dev_t, inode) of a stat result, as the BPF program sees the file."""
    return (os.major(st.st_dev) << 20 | os.minor(st.st_dev), st.st_ino)


def _in_family(soname: str, libraries) -> bool:
    for lib in libraries:
        if os.sep in lib:
            continue
        if soname == lib or (lib.endswith(".so") and soname.startswith(lib + ".")):
            return True
        if re.sub(r"\.so(\.\d+)*$", "", soname) == re.sub(r"\.so(\.\d+)*$", "", lib):   # libOpenCL.so.1 / .so
            return True
    return False


def matching_specs(path: str, specs) -> list:
    """The catalogue entries ``path`` holds: its soname is of the entry's library family (or the
    entry names this very file), or it is a program and the entry may be linked into programs
    (CUDA, calls of add_call); and it defines the function."""
    ident = elf_identity(path)
    if ident is None:
        return []
    try:
        st = os.stat(path)
    except OSError:
        return []
    cands = []
    for s in specs:
        same_file = any(os.sep in lib and _same(lib, st) for lib in s.libraries)   # add_call(library=path)
        if same_file or (ident.soname and _in_family(ident.soname, s.libraries)) or \
                (ident.executable and (s.api == "cuda" or s.api not in _STANDARD)):
            cands.append(s)
    if not cands:
        return []
    try:                                         # cheap first: is any of the names in the file at all?
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            cands = [s for s in cands if mm.find(b"\0" + s.name.encode() + b"\0") >= 0]
    except (OSError, ValueError):
        return []
    if not cands:
        return []
    try:
        functions = elf_file(path).functions
    except Exception:       # not usable ELF after all: not ours to probe
        return []
    return [s for s in cands if functions.get(s.name)]


def _stem(name: str) -> str:
    """``libcudart`` of ``/usr/lib/libcudart.so.12``, ``libcudart-9a3f.so.12`` (a wheel's copy) and ``libcudart.so``."""
    base = os.path.basename(name)
    return re.sub(r"(-[0-9a-f]{6,})?\.so(\.\d+)*$", "", base)


def _same(path: str, st: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), st)
    except OSError:
        return False


def mapped_files(pid: int) -> list[str]:
    """Files mapped executable in ``pid`` (its libraries and its program), as paths this process can
    open (inside the process's own root: containers)."""
    out = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and "x" in parts[1] and parts[5].startswith("/"):
            out.append(parts[5])
    root = _root_of(pid)
    return [p for p in dict.fromkeys(_openable(pid, p, root) for p in dict.fromkeys(out)) if p]


def _root_of(pid: int) -> str | None:
    """The empty string when ``pid`` sees our root, else the prefix that reaches its files; None if gone."""
    root = f"/proc/{pid}/root"
    try:
        return "" if os.path.samefile(root, "/") else root
    except OSError:
        return None


def _openable(pid: int, path: str, root: str | None = None) -> str | None:
    """``path`` as the process ``pid`` sees it, as a path this process can open (None: gone, deleted)."""
    root = _root_of(pid) if root is None else root
    if root is None or path.endswith(" (deleted)"):
        return None
    inside = root + path
    return inside if os.path.exists(inside) else None


@dataclass
class Found:
    """A file the traced processes map that holds calls of an API, and what was done with it."""
    path: str
    apis: list[str]
    calls: int                       # attach points made in it
    how: str                         # "at start (linker cache)", "mapped by pid N", "exec'd by pid N"
    pids: list[int] = field(default_factory=list)
    error: str = ""

    def row(self) -> dict:
        return {"path": self.path, "apis": self.apis, "calls": self.calls, "how": self.how, "pids": self.pids,
                **({"error": self.error} if self.error else {})}


class Follower:
    """Handles gpu_mapped records (in the collector thread): looks at each new file once, asks
    ``attach(path, specs)`` to probe it when it holds calls, marks it known in the kernel, and
    continues the stopped processes."""

    def __init__(self, specs, attach, known_map, on_process=None, link=None):
        self.specs, self._attach, self._known = list(specs), attach, known_map
        self._on_process = on_process          # on_process(pid): called while the process is held
        self._link = link                      # link(pid): give a process its uprobes (scoped: scoped.py)
        self.seen: dict[tuple[int, int], Found | None] = {}
        self.found: list[Found] = []
        self.files_looked_at = 0
        self.held_ms: list[float] = []
        self._lock = threading.Lock()

    def mark_known(self, key: tuple[int, int], value: int = 1) -> None:
        self._known.update((key[1], key[0], 0), value)

    def add_start_file(self, path: str, apis, calls: int, how: str) -> None:
        """A file probed (or passed over) when the session started.  It is not marked known in the
        kernel yet: the first traced process that maps it is reported once, so that the recording
        says which processes loaded it."""
        try:
            key = file_key(os.stat(path))
        except OSError:
            return
        f = Found(path, sorted(set(apis)), calls, how) if calls else None
        with self._lock:
            if key not in self.seen:
                self.seen[key] = f
                if f:
                    self.found.append(f)

    def pass_over(self, paths, families) -> int:
        """Mark known, before anything is traced, the libraries of ``paths`` (the linker cache's) whose
        names are of none of ``families`` (the catalogue's library stems, libcudart, libOpenCL...):
        a traced process that maps one (libX11, libstdc++, LLVM) is then not held for it.  Returns how many."""
        stems = {_stem(f) for f in families}
        n = 0
        with self._lock:
            for path in paths:
                if _stem(path) in stems:
                    continue
                try:
                    key = file_key(os.stat(path))
                except OSError:
                    continue
                if key not in self.seen:
                    self.seen[key] = None
                    self.mark_known(key)
                    n += 1
        return n

    def look_at(self, path: str, how: str, pid: int | None = None) -> Found | None:
        """Look at ``path`` (mapped by a traced process, or found in its maps at start); what it holds."""
        try:
            key = file_key(os.stat(path))
        except OSError:
            return None
        with self._lock:
            if key in self.seen:
                f = self.seen[key]
                if f is not None and pid is not None and pid not in f.pids:
                    f.pids.append(pid)
                self.mark_known(key)
                return f
            self.files_looked_at += 1
            specs = matching_specs(path, self.specs)
            f = None
            if specs:
                f = Found(path, sorted({s.api for s in specs}), 0, how, [pid] if pid is not None else [])
                try:
                    f.calls = self._attach(path, specs)
                except Exception as exc:          # said in metadata; the process is continued regardless
                    f.error = f"{type(exc).__name__}: {exc}"
                self.found.append(f)
            self.seen[key] = f
            self.mark_known(key)
            return f

    def on_records(self, recs) -> None:
        """A batch of gpu_mapped records: look at every file, then continue every stopped process."""
        stopped: dict[int, float] = {}
        try:
            for r in recs:
                pid, kind = int(r["pid"]), int(r["kind"])
                if r["stopped"]:
                    stopped.setdefault(pid, time.monotonic())
                try:
                    if kind == MAPPED_KINDS["FORK"]:      # a new process whose parent has probes
                        if self._link is not None:
                            self._link(pid)
                        continue
                    if kind == MAPPED_KINDS["EXEC"]:
                        path = _openable(pid, os.readlink(f"/proc/{pid}/exe"))
                        how = f"exec'd by pid {pid}"
                    else:
                        path = _path_of(pid, int(r["fd"]), (int(r["dev"]), int(r["ino"])))
                        how = f"mapped by pid {pid}"
                    found = self.look_at(path, how, pid) if path else None
                    if found is not None and self._link is not None:    # it maps or runs a probed file
                        self._link(pid)
                    # while it is held, or when it runs a program that holds calls (a static runtime):
                    # bounded by the files seen, not by the number of execs
                    if self._on_process is not None and (r["stopped"] or found is not None):
                        self._on_process(pid)
                except OSError:
                    pass                               # the process is gone
        finally:                                       # whatever happened, nobody stays stopped
            for pid, t0 in stopped.items():
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
                self.held_ms.append((time.monotonic() - t0) * 1e3)


def _path_of(pid: int, fd: int, key: tuple[int, int]) -> str | None:
    """The file behind a traced process's fd (or, if it was closed already, its mapping of that inode)."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        path = _openable(pid, target)
        if path and file_key(os.stat(path)) == key:
            return path
    except OSError:
        pass
    for path in mapped_files(pid):
        try:
            if file_key(os.stat(path)) == key:
                return path
        except OSError:
            continue
    return None
