"""How records leave the kernel: BPF ring buffers read in bulk (the default), or perf
buffers through BCC (kernels before 5.8).  Both hand out raw numpy records per stream."""
from __future__ import annotations

import ctypes
import mmap
import select

import numpy as np

from .ringbuf import RingBufferReader
from .streams import StreamSpec

__all__ = ["Transport", "RingbufTransport", "PerfTransport", "TRANSPORTS"]


class Transport:
    name = ""

    def open(self, module, streams: dict[str, StreamSpec], map_fd) -> None:
        """Start reading every stream; ``map_fd(name)`` gives a stream map's fd."""
        raise NotImplementedError

    def wait(self, timeout_s: float) -> None:
        raise NotImplementedError

    def drain(self, name: str) -> np.ndarray:
        """The stream's records (its wire dtype) that arrived since the last drain."""
        raise NotImplementedError

    def lost(self, name: str) -> int:
        """Records of ``name`` lost on the user side (the kernel side counts its own)."""
        return 0

    def close(self) -> None:
        pass


class RingbufTransport(Transport):
    """Ring buffers mapped into this process and read with numpy (see :mod:`.ringbuf`)."""

    name = "ringbuf"

    def __init__(self):
        self._readers: dict[str, RingBufferReader] = {}
        self._epoll = None
        self._dtypes: dict[str, np.dtype] = {}

    def open(self, module, streams, map_fd) -> None:
        self._epoll = select.epoll()
        for name, spec in streams.items():
            fd = map_fd(name)
            self._readers[name] = RingBufferReader(fd, spec.pages * mmap.PAGESIZE, spec.wire_dtype)
            self._dtypes[name] = spec.wire_dtype
            self._epoll.register(fd, select.EPOLLIN)

    def wait(self, timeout_s: float) -> None:
        if self._epoll is not None:
            try:
                self._epoll.poll(timeout_s)
            except (OSError, ValueError):
                pass

    def drain(self, name: str) -> np.ndarray:
        reader = self._readers.get(name)
        return reader.drain() if reader else np.empty(0, self._dtypes.get(name, np.uint8))

    def lost(self, name: str) -> int:
        reader = self._readers.get(name)
        return reader.malformed if reader else 0

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None


class PerfTransport(Transport):
    """Perf buffers (one per CPU) read through BCC's callbacks: a copy of each record per event."""

    name = "perf"

    def __init__(self):
        self._module = None
        self._chunks: dict[str, list[bytes]] = {}
        self._lost: dict[str, int] = {}
        self._dtypes: dict[str, np.dtype] = {}

    def open(self, module, streams, map_fd) -> None:
        self._module = module
        for name, spec in streams.items():
            chunks = self._chunks.setdefault(name, [])
            self._lost[name] = 0
            self._dtypes[name] = spec.dtype
            size = spec.dtype.itemsize

            def on_event(_cpu, data, _size, chunks=chunks, size=size):
                chunks.append(ctypes.string_at(data, size))

            def on_lost(count, name=name):
                self._lost[name] += count

            module[name.encode()].open_perf_buffer(on_event, page_cnt=spec.pages, lost_cb=on_lost)

    def wait(self, timeout_s: float) -> None:
        if self._module is not None:
            self._module.perf_buffer_poll(timeout=int(timeout_s * 1000))

    def drain(self, name: str) -> np.ndarray:
        chunks = self._chunks.get(name, [])
        if not chunks:
            return np.empty(0, self._dtypes[name])
        taken = len(chunks)
        raw = b"".join(chunks[:taken])
        del chunks[:taken]
        return np.frombuffer(raw, dtype=self._dtypes[name]).copy()

    def lost(self, name: str) -> int:
        return self._lost.get(name, 0)

    def close(self) -> None:
        self._module = None


TRANSPORTS = {"ringbuf": RingbufTransport, "perf": PerfTransport}
