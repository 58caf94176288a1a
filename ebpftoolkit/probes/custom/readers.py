"""Readers of a custom probe's record streams, in the shape the session's collector drains
(``drain()``, ``lost``, ``close()``), and the map types that become tables."""
from __future__ import annotations

import numpy as np

from ...runtime.ringbuf import RingBufferReader

__all__ = ["RingReader", "PerfReader", "TABLE_MAP_TYPES", "MAP_TYPE_NAMES"]

MAP_TYPE_NAMES = {1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash",
                  6: "percpu_array", 7: "stack_trace", 8: "cgroup_array", 9: "lru_hash", 10: "lru_percpu_hash",
                  12: "array_of_maps", 13: "hash_of_maps", 22: "queue", 23: "stack", 27: "ringbuf",
                  30: "task_storage"}
#: maps read into a table at stop: hash, array, per-CPU hash/array, LRU hashes
TABLE_MAP_TYPES = {1, 2, 5, 6, 9, 10}


class RingReader:
    """A ring buffer read in bulk; records of another size are counted in ``lost`` (never misread)."""

    def __init__(self, fd: int, size_bytes: int, dtype: np.dtype):
        self._r = RingBufferReader(fd, size_bytes, dtype)

    def drain(self) -> np.ndarray:
        return self._r.drain()

    @property
    def lost(self) -> int:
        return self._r.malformed

    def close(self) -> None:
        self._r.close()


class PerfReader:
    """A perf event array read through libbpf's perf_buffer (one copy per record: perf buffers have no
    bulk read); the kernel's lost-sample reports are counted in ``lost``."""

    def __init__(self, fd: int, dtype: np.dtype, pages: int = 64):
        from ...runtime.bpfobject import PerfBufferReader
        self._r = PerfBufferReader(fd, pages, dtype)

    def drain(self) -> np.ndarray:
        return self._r.drain()

    @property
    def lost(self) -> int:
        return self._r.lost

    def close(self) -> None:
        self._r.close()
