"""Readers of a custom probe's record streams, in the shape the session's collector drains
(``drain()``, ``lost``, ``close()``), and the map types that become tables."""
from __future__ import annotations

import numpy as np

from ...runtime import btf as btfmod
from ...runtime.maps import BpfMap
from ...runtime.ringbuf import RingBufferReader

__all__ = ["RingReader", "PerfReader", "TABLE_MAP_TYPES", "MAP_TYPE_NAMES", "RINGBUF", "PERF_ARRAY", "table_map"]

MAP_TYPE_NAMES = {1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash",
                  6: "percpu_array", 7: "stack_trace", 8: "cgroup_array", 9: "lru_hash", 10: "lru_percpu_hash",
                  12: "array_of_maps", 13: "hash_of_maps", 22: "queue", 23: "stack", 27: "ringbuf",
                  30: "task_storage"}
#: maps read into a table at stop: hash, array, per-CPU hash/array, LRU hashes
TABLE_MAP_TYPES = {1, 2, 5, 6, 9, 10}
RINGBUF, PERF_ARRAY = 27, 4


def table_map(name: str, fd: int, map_type: int, key_size: int, btf, key_id: int, value_id: int):
    """(the map read as a table at stop, None) or (None, why it has no table): keys and values typed
    from the program's BTF."""
    if map_type not in TABLE_MAP_TYPES:
        return None, f"a {MAP_TYPE_NAMES.get(map_type, f'type {map_type}')} map (no rows to read)"
    if btf is None or not value_id:
        return None, "no BTF type for its key or value"
    kdt = btfmod.type_dtype(btf, key_id, f"{name}'s key") if key_id \
        else np.dtype(f"u{key_size}") if key_size in (1, 2, 4, 8) else np.dtype(f"V{key_size}")
    return BpfMap(fd, name, kdt, btfmod.type_dtype(btf, value_id, f"{name}'s value")), ""


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
    bulk read).  ``lost``: records too short for the type, and, with ``kernel_lost``, the kernel's
    lost-sample reports (which miss what is lost after the last sample that got through: where
    the program's own calls are counted, pass False and count those)."""

    def __init__(self, fd: int, dtype: np.dtype, pages: int = 64, kernel_lost: bool = True):
        from ...runtime.perfbuffer import PerfBufferReader
        self._r = PerfBufferReader(fd, pages, dtype)
        self._kernel = kernel_lost

    def drain(self) -> np.ndarray:
        return self._r.drain()

    @property
    def lost(self) -> int:
        return self._r.lost if self._kernel else self._r.malformed

    def close(self) -> None:
        self._r.close()
