"""Read a BPF perf event array (``BPF_PERF_OUTPUT``, ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``) with libbpf.

libbpf's perf_buffer (libbpf 1.1, ``libbpf.so.1``) opens one perf event per CPU, maps its
ring, stores the event fds in the map (the program's ``bpf_perf_event_output`` writes to the
current CPU's) and walks the rings: ``perf_buffer__consume`` hands every sample to a callback
(a wrapped-around sample already copied whole) and every ``PERF_RECORD_LOST`` to another.
Perf rings have no bulk read, so the callback runs once per record; it only appends the
record's bytes, and ``drain()`` turns everything collected into one structured array.

A raw sample's size is padded (``u32 size`` + data, 8-byte aligned), so it is at least the
record's size: the first ``dtype.itemsize`` bytes are the record.  A shorter sample is
counted as malformed and skipped, never misread.  ``lost`` is the kernel's count of samples
that did not fit (a full ring) plus the malformed ones.

libbpf 1.1 errors: ``perf_buffer__new`` returns NULL and sets errno (libbpf.py's
``_call_ptr`` turns that into LibbpfError with libbpf's warnings); ``perf_buffer__consume``
returns ``-errno``.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import functools
import threading
from ctypes import c_int, c_size_t, c_uint32, c_uint64, c_void_p

import numpy as np

from ..errors import ProbeConfigError, ProbeStateError
from .libbpf import LibbpfError, _call_ptr, _lib, strerror
from .maps import map_info

__all__ = ["PerfBufferReader"]

_PERF_EVENT_ARRAY = 4
# void (*perf_buffer_sample_fn)(void *ctx, int cpu, void *data, __u32 size)
_SAMPLE_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_uint32)
# void (*perf_buffer_lost_fn)(void *ctx, int cpu, __u64 cnt)
_LOST_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_uint64)


@functools.lru_cache(maxsize=1)
def _plib() -> ctypes.CDLL:
    """libbpf with the perf_buffer API's signatures declared."""
    lib = _lib()
    sigs = {
        "perf_buffer__new": (c_void_p, [c_int, c_size_t, _SAMPLE_FN, _LOST_FN, c_void_p, c_void_p]),
        "perf_buffer__consume": (c_int, [c_void_p]),
        "perf_buffer__free": (None, [c_void_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class _Sink:
    """What the callbacks write to (not the reader: no reference cycle through the callbacks)."""
    __slots__ = ("itemsize", "buf", "kernel_lost", "malformed")

    def __init__(self, itemsize: int):
        self.itemsize, self.buf, self.kernel_lost, self.malformed = itemsize, bytearray(), 0, 0


class PerfBufferReader:
    """Reader of one perf event array whose records all have ``dtype``'s size, ``pages`` pages per CPU.

    ``drain()`` returns every record available now as one structured array (a copy); ``lost``
    counts what the kernel dropped and what was too short to be a record; ``close()`` frees the
    buffer (idempotent).
    """

    def __init__(self, fd: int, pages: int, dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self.pages = int(pages)
        if self.pages <= 0 or self.pages & (self.pages - 1):
            raise ProbeConfigError(f"perf buffer size {pages} pages: give a power of two number of pages "
                                   "per CPU, such as 64")
        if self.dtype.itemsize == 0:
            raise ProbeConfigError(f"perf buffer record dtype {self.dtype} has no size: give the record struct")
        try:
            info = map_info(fd)
        except (OSError, ctypes.ArgumentError, TypeError) as exc:
            raise ProbeConfigError(f"fd {fd!r} is not a BPF map ({exc}): pass the fd of the "
                                   "BPF_PERF_OUTPUT / BPF_MAP_TYPE_PERF_EVENT_ARRAY map") from None
        if info.type != _PERF_EVENT_ARRAY:
            raise ProbeConfigError(f"map {info.name.decode(errors='replace')!r} (fd {fd}) is of type {info.type}, "
                                   f"not a perf event array ({_PERF_EVENT_ARRAY}): read a ring buffer with "
                                   "RingBufferReader, other maps with BpfMap")
        self._lock, self._pb = threading.Lock(), 0
        self._sink = sink = _Sink(self.dtype.itemsize)

        def on_sample(_ctx, _cpu, data, size):
            if size < sink.itemsize:
                sink.malformed += 1
            else:
                sink.buf += ctypes.string_at(data, sink.itemsize)

        def on_lost(_ctx, _cpu, cnt):
            sink.kernel_lost += cnt

        # libbpf calls these for as long as the buffer lives: the ctypes objects must outlive it
        self._callbacks = (_SAMPLE_FN(on_sample), _LOST_FN(on_lost))
        lib = _plib()
        try:
            self._pb = _call_ptr(f"perf_buffer__new(map fd {fd}, {self.pages} pages)", lib.perf_buffer__new,
                                 fd, self.pages, *self._callbacks, None, None)
        except LibbpfError as exc:
            hint = ("fewer pages need less locked memory (ulimit -l, /proc/sys/kernel/perf_event_mlock_kb)"
                    if exc.errno in (_errno.ENOMEM, _errno.EPERM) else "pass the fd of a BPF_PERF_OUTPUT map")
            raise ProbeConfigError(f"cannot open a perf buffer on map fd {fd}: {exc}: {hint}") from None

    def drain(self) -> np.ndarray:
        """All records available now, in one array (per CPU in order; CPUs one after the other)."""
        with self._lock:
            if not self._pb:
                raise ProbeStateError("this perf buffer is closed: open a new PerfBufferReader")
            rc = _plib().perf_buffer__consume(self._pb)
            sink = self._sink
            buf, sink.buf = sink.buf, bytearray()
        if rc < 0:
            raise ProbeStateError(f"perf_buffer__consume: {strerror(rc)}")
        if not buf:
            return np.empty(0, self.dtype)
        return np.frombuffer(buf, self.dtype)     # owns the bytearray: writable, no further copy

    @property
    def lost(self) -> int:
        """Samples the kernel could not write (the ring was full) plus samples too short for a record."""
        return self._sink.kernel_lost + self._sink.malformed

    @property
    def malformed(self) -> int:
        return self._sink.malformed

    def close(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:             # __init__ failed before the buffer existed
            return
        with lock:
            pb, self._pb = self._pb, 0
            if pb:
                _plib().perf_buffer__free(pb)

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown may have torn ctypes down already
            pass

    def __enter__(self) -> "PerfBufferReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
