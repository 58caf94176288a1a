"""``ebpftoolkit.mark(name)`` and ``with ebpftoolkit.frame(name):``: markers the GPU probes see in
order with the API calls, from any process (a traced child, the notebook's own).

A marker is a real call into a tiny library (marker_lib.S: three do-nothing functions), built at
first use with the system's C compiler into the cache directory (one copy per source version,
``~/.cache/ebpftoolkit/marker/``) and loaded with ctypes.  GpuTrace probes its functions as API
``"marker"`` (at start when the library is built, or when a traced process maps it: it is matched
by its soname like any API library) and records the name given (the ``label`` column), so a
marker is ordered with the calls by the same clock.  Untraced, a marker is one ctypes call into a
function that returns at once (about half a microsecond); no root is needed.  Where the cache
cannot be written, the process builds its own copy in a private temporary directory; without a
C compiler, markers do nothing (said once in a warning).
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from contextlib import ContextDecorator
from pathlib import Path

from ...runtime.cache import cache_dir
from .catalogue import FRAME_BEGIN, FRAME_END, MARK, MARKER_SONAME

__all__ = ["mark", "frame", "load", "library_path", "library", "MarkerWarning"]

SOURCE = Path(__file__).with_name("marker_lib.S")


class MarkerWarning(UserWarning):
    """Markers cannot work here (no C compiler to build their library): they do nothing."""


class _NoCompiler(OSError):
    pass


def library_path() -> Path:
    """Where this version of the marker library is (or will be) built."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return cache_dir() / "marker" / digest / MARKER_SONAME


def _build(path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise _NoCompiler("no C compiler (cc, gcc or clang) to build the marker library: apt-get install gcc")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        res = subprocess.run([cc, "-shared", "-nostdlib", f"-Wl,-soname,{MARKER_SONAME}", "-o", str(tmp),
                              str(SOURCE)], capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise OSError(f"{cc} could not build the marker library: {res.stderr.strip()[-500:]}")
        os.replace(tmp, path)                # whole or not at all: another process may build it too
    finally:
        tmp.unlink(missing_ok=True)


def library(build: bool = True) -> str | None:
    """The marker library's path: built now if ``build`` and it is not yet; None if it is not there
    (and could not be built)."""
    path = library_path()
    if not path.is_file() and build:
        try:
            _build(path)
        except (OSError, subprocess.SubprocessError):
            return None
    return str(path) if path.is_file() else None


_lock = threading.Lock()
_functions: tuple | None = None            # (mark, frame_begin, frame_end) once loaded, () when impossible


def _load() -> tuple:
    global _functions
    with _lock:
        if _functions is None:
            try:
                path = library_path()
                if not path.is_file():
                    try:
                        _build(path)
                    except _NoCompiler:
                        raise
                    except OSError:   # a read-only home: a private temporary directory of its own (found by soname)
                        path = Path(tempfile.mkdtemp(prefix="ebpftoolkit-marker-")) / path.name
                        atexit.register(shutil.rmtree, path.parent, True)
                        _build(path)
                lib = ctypes.CDLL(str(path))
                fns = []
                for name in (MARK, FRAME_BEGIN, FRAME_END):
                    fn = getattr(lib, name)
                    fn.argtypes, fn.restype = [ctypes.c_char_p], None
                    fns.append(fn)
                _functions = tuple(fns)
            except (OSError, subprocess.SubprocessError) as exc:
                warnings.warn(f"ebpftoolkit markers do nothing in this process: {exc}", MarkerWarning, stacklevel=3)
                _functions = ()
    return _functions


def load() -> bool:
    """Load the marker library into this process now (building it if need be); whether markers work."""
    return bool(_functions if _functions is not None else _load())


def _name(name) -> bytes:
    if isinstance(name, bytes):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a marker's name is a str, got {type(name).__name__}")
    return name.encode("utf-8", "surrogateescape")


def mark(name: str) -> None:
    """A named instant the GPU probes record (``label``) in order with the calls.  With
    ``GpuTrace(frames="marker")``, outside a :func:`frame` block it ends a frame (as a swap does)."""
    name = _name(name)
    fns = _functions if _functions is not None else _load()
    if fns:
        fns[0](name)


class frame(ContextDecorator):
    """``with ebpftoolkit.frame("step"):`` (or as a decorator): a begin and an end marker, named
    ``name``, around the block; with ``GpuTrace(frames="marker")`` the block is a frame."""

    def __init__(self, name: str = "frame"):
        self.name = _name(name)

    def __enter__(self):
        fns = _functions if _functions is not None else _load()
        if fns:
            fns[1](self.name)
        return self

    def __exit__(self, *exc):
        fns = _functions if _functions is not None else _load()
        if fns:
            fns[2](self.name)
        return False
