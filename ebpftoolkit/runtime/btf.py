"""Read struct member offsets from the running kernel's BTF.

BCC compiles against whatever kernel headers are installed, and on this kind of
machine those belong to an older kernel (6.1 headers on a 6.18 kernel), so
``struct task_struct`` as the compiler sees it does not match the kernel's.  BPF
programs that read kernel structures therefore never rely on header layouts:
they read at byte offsets taken here from ``/sys/kernel/btf/vmlinux`` and handed
to the compiler as ``-D`` macros.
"""
from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

from ..errors import BTFError

__all__ = ["member_offset", "member_offsets", "VMLINUX_BTF"]

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F
# kind -> (bytes of extra data fixed, bytes per vlen item)
_EXTRA = {
    1: (4, 0),    # INT
    2: (0, 0),    # PTR
    3: (12, 0),   # ARRAY
    4: (0, 12),   # STRUCT
    5: (0, 12),   # UNION
    6: (0, 8),    # ENUM
    7: (0, 0),    # FWD
    8: (0, 0),    # TYPEDEF
    9: (0, 0),    # VOLATILE
    10: (0, 0),   # CONST
    11: (0, 0),   # RESTRICT
    12: (0, 0),   # FUNC
    13: (0, 8),   # FUNC_PROTO
    14: (4, 0),   # VAR
    15: (0, 12),  # DATASEC
    16: (0, 0),   # FLOAT
    17: (4, 0),   # DECL_TAG
    18: (0, 0),   # TYPE_TAG
    19: (0, 12),  # ENUM64
}
_STRUCT, _UNION = 4, 5


class _Btf:
    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF data is truncated")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BTFError("not a BTF file (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._types_start = hdr_len + type_off
        self._strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._data = data
        # type id -> (kind, name_off, vlen, kind_flag, offset of member array)
        self._types: list[tuple[int, int, int, int, int] | None] = [None]
        self._structs_by_name: dict[str, int] = {}
        pos, end = self._types_start, self._types_start + type_len
        unpack = struct.Struct("<III").unpack_from
        while pos < end:
            name_off, info, _size = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = info >> 31
            try:
                fixed, per = _EXTRA[kind]
            except KeyError:
                raise BTFError(f"unknown BTF kind {kind}: this BTF is newer than ebpftoolkit understands") from None
            self._types.append((kind, name_off, vlen, kflag, pos + 12))
            if kind == _STRUCT and name_off:
                self._structs_by_name.setdefault(self._name(name_off), len(self._types) - 1)
            pos += 12 + fixed + per * vlen

    def _name(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def find_member(self, type_id: int, member: str) -> int | None:
        """Byte offset of ``member`` in struct/union ``type_id``, searching anonymous members."""
        kind, _name_off, vlen, kflag, moff = self._types[type_id]
        for i in range(vlen):
            name_off, mtype, offset = struct.unpack_from("<III", self._data, moff + 12 * i)
            bit_off = offset & 0xFFFFFF if kflag else offset
            if name_off and self._name(name_off) == member:
                if bit_off % 8:
                    raise BTFError(f"member {member} is a bit field; it cannot be read at a byte offset")
                return bit_off // 8
            if not name_off:
                inner = self._resolve(mtype)
                if inner is not None:
                    found = self.find_member(inner, member)
                    if found is not None:
                        return bit_off // 8 + found
        return None

    def _resolve(self, type_id: int) -> int | None:
        """Follow typedef/const/volatile to a struct or union id (None for anything else)."""
        while type_id:
            kind = self._types[type_id][0]
            if kind in (_STRUCT, _UNION):
                return type_id
            if kind not in (8, 9, 10, 11, 18):
                return None
            _n, _i, type_id = struct.unpack_from("<III", self._data, self._types[type_id][4] - 12)
        return None

    def struct_id(self, name: str) -> int:
        try:
            return self._structs_by_name[name]
        except KeyError:
            raise BTFError(f"struct {name} is not in the kernel's BTF") from None


@functools.lru_cache(maxsize=2)
def _load(path: str) -> _Btf:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise BTFError(f"{p} does not exist: this kernel was built without CONFIG_DEBUG_INFO_BTF") from None
    except PermissionError:
        raise BTFError(f"{p} is not readable: run as root") from None
    return _Btf(data)


def member_offset(struct_name: str, member: str, path: str | Path = VMLINUX_BTF) -> int:
    """Byte offset of ``struct_name.member`` in the running kernel (anonymous unions included)."""
    btf = _load(str(path))
    off = btf.find_member(btf.struct_id(struct_name), member)
    if off is None:
        raise BTFError(f"struct {struct_name} has no member {member} in this kernel's BTF")
    return off


def member_offsets(spec: dict[str, tuple[str, str]], path: str | Path = VMLINUX_BTF) -> dict[str, int]:
    """``{"MACRO": ("struct", "member")}`` -> ``{"MACRO": offset}`` (cached per kernel build)."""
    from .cache import cached
    uname = os.uname()
    key = [uname.release, uname.version, str(path), sorted(spec.items())]
    return cached("btf", key, lambda: {macro: member_offset(s, m, path) for macro, (s, m) in spec.items()},
                  lambda _value: [path])
