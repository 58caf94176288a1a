"""Typed access to BPF maps through bpf(2): keys and values are numpy records.

A :class:`BpfMap` is made from a map fd and the numpy dtypes of its key and
value; the sizes are checked against what the kernel says about the map (so a
layout that disagrees with the compiled C is refused, never misread).  Per-CPU
maps return one value per possible CPU.  Probes use these through
``BpfProgram.map(...)`` and never touch BCC's table objects.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..errors import ProbeCompileError
from .abi import (BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM,
                  BPF_OBJ_GET_INFO_BY_FD, bpf)
from .perf import possible_cpus

__all__ = ["BpfMap", "MapInfo", "map_info"]

_PERCPU_TYPES = {5, 6, 10, 21}     # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
_ENOENT = 2


class _ElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class MapInfo(ctypes.Structure):
    """The head of ``struct bpf_map_info`` (uapi linux/bpf.h), up to the BTF type ids of key and value."""
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32),
                ("btf_vmlinux_value_type_id", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
                ("netns_ino", ctypes.c_uint64), ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32)]


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    attr = _InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info


class BpfMap:
    """One BPF map with numpy ``key`` and ``value`` dtypes."""

    def __init__(self, fd: int, name: str, key, value):
        self.fd, self.name = fd, name
        self.key_dtype, self.value_dtype = np.dtype(key), np.dtype(value)
        info = map_info(fd)
        self.type, self.max_entries = info.type, info.max_entries
        if info.key_size != self.key_dtype.itemsize or info.value_size != self.value_dtype.itemsize:
            raise ProbeCompileError(
                f"BPF map {name}: the compiled program has {info.key_size}-byte keys and {info.value_size}-byte "
                f"values, the Python side expects {self.key_dtype.itemsize} and {self.value_dtype.itemsize}: "
                "the record layout in C and in Python disagree (fix the probe's layout)")
        self.percpu = info.type in _PERCPU_TYPES
        self.ncpus = len(possible_cpus()) if self.percpu else 1
        self._stride = (info.value_size + 7) & ~7 if self.percpu else info.value_size

    # -- raw buffers -------------------------------------------------------
    def _key(self, key) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(key, dtype=self.key_dtype).reshape(1))

    def _call(self, cmd: int, key: np.ndarray, value: np.ndarray | ctypes.Array | None, flags: int = 0) -> bool:
        vaddr = 0 if value is None else (value.ctypes.data if isinstance(value, np.ndarray) else ctypes.addressof(value))
        attr = _ElemAttr(self.fd, 0, key.ctypes.data, vaddr, flags)
        try:
            bpf(cmd, attr)
        except OSError as exc:
            if exc.errno == _ENOENT:
                return False
            raise
        return True

    def _values(self, buf: np.ndarray) -> np.ndarray:
        if not self.percpu:
            return buf.view(self.value_dtype)[0].copy()
        return np.ndarray((self.ncpus,), self.value_dtype, buffer=buf, strides=(self._stride,)).copy()

    # -- element operations --------------------------------------------------
    def lookup(self, key):
        """The value (per-CPU maps: an array of one value per CPU), or None when the key is absent."""
        buf = np.zeros(self._stride * self.ncpus, np.uint8)
        if not self._call(BPF_MAP_LOOKUP_ELEM, self._key(key), buf):
            return None
        return self._values(buf)

    def update(self, key, value, flags: int = 0) -> None:
        """Set ``key`` to ``value`` (a record of the value dtype, or anything numpy converts to it; per-CPU
        maps: one value for every CPU, or an array of ``ncpus`` values)."""
        vals = np.asarray(value, dtype=self.value_dtype)
        if self.percpu:
            buf = np.zeros(self._stride * self.ncpus, np.uint8)
            view = np.ndarray((self.ncpus,), self.value_dtype, buffer=buf, strides=(self._stride,))
            view[...] = vals
        else:
            buf = np.ascontiguousarray(vals.reshape(1)).view(np.uint8)
        self._call(BPF_MAP_UPDATE_ELEM, self._key(key), buf, flags)

    def delete(self, key) -> bool:
        return self._call(BPF_MAP_DELETE_ELEM, self._key(key), None)

    def keys(self) -> np.ndarray:
        out, nxt = [], np.zeros(1, self.key_dtype)
        attr = _ElemAttr(self.fd, 0, 0, nxt.ctypes.data, 0)
        while True:
            try:
                bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except OSError as exc:
                if exc.errno == _ENOENT:
                    break
                raise
            out.append(nxt.copy())
            prev = out[-1]
            attr.key = prev.ctypes.data
        return np.concatenate(out) if out else np.zeros(0, self.key_dtype)

    def items(self) -> list[tuple]:
        """(key record, value) for every present key."""
        out = []
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                out.append((k, v))
        return out

    def sum(self, key=0) -> int:
        """A per-CPU integer counter at ``key``, summed over the CPUs (0 when absent)."""
        v = self.lookup(key)
        return 0 if v is None else int(np.asarray(v).astype(np.int64).sum())

    def __repr__(self) -> str:
        return f"<BpfMap {self.name} fd={self.fd} key={self.key_dtype} value={self.value_dtype}>"
