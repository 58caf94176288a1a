"""Consume a BPF ring buffer by reading its shared memory directly.

The usual BCC pattern calls a Python function for every record, which caps
throughput at a few hundred thousand records per second and makes the traced
program wait.  Here user space maps the ring buffer (consumer page read-write,
producer page and the twice-mapped data area read-only), looks at every record
header with numpy in one go, copies the committed records out as one
structured array and moves the consumer position once per batch.  No Python
code runs per record.

Layout (kernel/bpf/ringbuf.c): page 0 holds ``consumer_pos``, page 1
``producer_pos``, then the data pages, mapped twice so that a record that wraps
around the end is still contiguous.  Each record starts with an 8-byte header:
``u32 len`` (bit 31: still being written, bit 30: discarded) and ``u32 pg_off``,
and records are padded to 8 bytes.
"""
from __future__ import annotations

import mmap
import struct
import threading

import numpy as np

from ..errors import ProbeConfigError

__all__ = ["RingBufferReader"]

_BUSY = 1 << 31
_DISCARD = 1 << 30
_LEN_MASK = _DISCARD - 1
_HDR = 8
_PAGE = mmap.PAGESIZE
_U64 = struct.Struct("<Q")


class RingBufferReader:
    """Bulk reader for one BPF ring buffer whose records all have ``dtype``'s size.

    ``drain()`` returns the committed records as a structured numpy array (a
    copy) and frees their space in the ring.  It stops at the first record
    still being written, so it never returns half-written data.  Records of a
    different length are counted in ``malformed`` and skipped, never decoded
    as something they are not.
    """

    def __init__(self, map_fd: int, size_bytes: int, dtype: np.dtype):
        if size_bytes <= 0 or size_bytes & (size_bytes - 1) or size_bytes % _PAGE:
            raise ProbeConfigError(f"ring buffer size {size_bytes} must be a power of two multiple of the page size")
        self.dtype = np.dtype(dtype)
        self.size = size_bytes
        self.stride = (_HDR + self.dtype.itemsize + 7) & ~7
        self.malformed = 0
        self.discarded = 0
        self._lock = threading.Lock()
        self._cons_map = mmap.mmap(map_fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod_map = mmap.mmap(map_fd, _PAGE + 2 * size_bytes, mmap.MAP_SHARED, mmap.PROT_READ, offset=_PAGE)
        self._data = np.frombuffer(self._prod_map, dtype=np.uint8, offset=_PAGE)

    # -- positions -------------------------------------------------------
    def _producer(self) -> int:
        return _U64.unpack_from(self._prod_map, 0)[0]

    def _consumer(self) -> int:
        return _U64.unpack_from(self._cons_map, 0)[0]

    def pending_bytes(self) -> int:
        return self._producer() - self._consumer()

    # -- reading ---------------------------------------------------------
    def drain(self, max_records: int | None = None) -> np.ndarray:
        """The committed records (at most ``max_records``), in order; stops at one still being written."""
        with self._lock:
            if self._cons_map.closed:
                return np.empty(0, self.dtype)
            parts, left = [], np.inf if max_records is None else max(int(max_records), 0)
            # only what was committed when drain() was called: chasing a busy producer record by
            # record would hand the collector many tiny batches (measured: losses under a storm)
            end = self._producer()
            while left > 0:
                got = self._drain_once(int(min(left, 1 << 62)), end)
                if got is None:
                    break
                taken, recs = got
                left -= taken
                if len(recs):
                    parts.append(recs)
            if not parts:
                return np.empty(0, self.dtype)
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _drain_once(self, limit: int, end: int):
        """One run of records from the consumer position: (records consumed of our length, the ones kept),
        or None when nothing committed is pending.  A record of another length is skipped and
        counted (``malformed``); a record still being written ends the run."""
        cons, prod = self._consumer(), end
        if prod - cons < _HDR:
            return None
        start = cons & (self.size - 1)
        first = int(np.ndarray((1,), "<u4", self._data, start)[0])
        if first & _BUSY:
            return None
        if first & _LEN_MASK != self.dtype.itemsize:
            self.malformed += 1
            self._set_consumer(cons + ((_HDR + (first & _LEN_MASK) + 7) & ~7))
            return 0, np.empty(0, self.dtype)
        n = min((prod - cons) // self.stride, limit)
        if n == 0:           # our length, but the producer has not moved past it: not committed whole yet
            return None
        headers = np.ndarray((n,), dtype="<u4", buffer=self._data, offset=start, strides=(self.stride,))
        good = (headers & (_LEN_MASK | _BUSY)) == self.dtype.itemsize
        take = n if good.all() else int(np.argmin(good))
        recs = np.ndarray((take,), dtype=self.dtype, buffer=self._data, offset=start + _HDR,
                          strides=(self.stride,)).copy()
        discard = (headers[:take] & _DISCARD) != 0
        if discard.any():
            self.discarded += int(discard.sum())
            recs = recs[~discard]
        self._set_consumer(cons + take * self.stride)
        return take, recs

    def _set_consumer(self, pos: int) -> None:
        _U64.pack_into(self._cons_map, 0, pos)

    def close(self) -> None:
        with self._lock:
            if not self._cons_map.closed:
                # numpy views keep the producer mapping's buffer exported: drop them first.
                del self._data
                self._prod_map.close()
                self._cons_map.close()
