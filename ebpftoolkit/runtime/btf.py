"""Read struct member offsets and struct layouts from BTF, through libbpf.

BCC compiles against whatever kernel headers are installed, and on this kind of
machine those belong to an older kernel (6.1 headers on a 6.18 kernel), so
``struct task_struct`` as the compiler sees it does not match the kernel's.  BPF
programs that read kernel structures therefore never rely on header layouts:
they read at byte offsets taken here from ``/sys/kernel/btf/vmlinux`` and handed
to the compiler as ``-D`` macros.  ``struct_dtype`` turns a struct of any BTF
(the kernel's, or a BPF object's built with ``clang -g``) into a numpy dtype.

libbpf parses the BTF (``runtime/libbpf.py``); this module only walks members.
member_offsets() for the five task_struct members the probes use, disk cache off
(EBPFTOOLKIT_NO_CACHE=1), first call in a fresh process on kernel 6.18 (126,623
types), median of 15: 93 ms with the former hand-written Python parser, 13 ms
with libbpf 1.1.2.
"""
from __future__ import annotations

import errno
import functools
import os
from pathlib import Path

import numpy as np

from ..errors import BTFError
from .libbpf import INT_BOOL, INT_SIGNED, KIND, Btf, BtfMember, LibbpfError

__all__ = ["member_offset", "member_offsets", "struct_dtype", "type_dtype", "find_struct_with_members", "VMLINUX_BTF"]

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
_STRUCT, _UNION, _INT = KIND["STRUCT"], KIND["UNION"], KIND["INT"]


@functools.lru_cache(maxsize=2)
def _load(path: str) -> Btf:
    p = Path(path)
    try:
        return Btf.from_file(p)
    except LibbpfError as e:
        if e.errno == errno.ENOENT and not p.exists():
            raise BTFError(f"{p} does not exist: this kernel was built without CONFIG_DEBUG_INFO_BTF") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise BTFError(f"{p} is not readable: run as root") from None
        raise BTFError(f"cannot read BTF from {p}: {e}") from None


def _bitfield(btf: Btf, m: BtfMember) -> bool:
    if m.bitfield_size or m.bit_offset % 8:
        return True
    t = btf.type(btf.resolve(m.type))   # BTF without kflag encodes bit fields in the member's INT type
    return t.kind == _INT and (t.int_offset != 0 or t.int_bits != 8 * t.size)


def _find_member(btf: Btf, type_id: int, struct_name: str, member: str) -> int | None:
    """Byte offset of ``member`` in struct/union ``type_id``, searching anonymous members."""
    for m in btf.type(type_id).members:
        if m.name == member:
            if _bitfield(btf, m):
                raise BTFError(f"{struct_name}.{member} is a bit field: it has no byte offset to read it at "
                               "(read the word that holds it and mask it instead)")
            return m.bit_offset // 8
        if not m.name:
            inner = btf.resolve(m.type)
            if btf.type(inner).kind in (_STRUCT, _UNION):
                found = _find_member(btf, inner, struct_name, member)
                if found is not None:
                    return m.bit_offset // 8 + found
    return None


def _struct_id(btf: Btf, name: str, where: str) -> int:
    try:
        return btf.find(name, _STRUCT)
    except LibbpfError:
        raise BTFError(f"struct {name} is not in {where}") from None


def member_offset(struct_name: str, member: str, path: str | Path = VMLINUX_BTF) -> int:
    """Byte offset of ``struct_name.member`` in the running kernel (anonymous unions included)."""
    btf = _load(str(path))
    where = "the kernel's BTF" if Path(path) == VMLINUX_BTF else f"the BTF of {path}"
    off = _find_member(btf, _struct_id(btf, struct_name, where), struct_name, member)
    if off is None:
        raise BTFError(f"struct {struct_name} has no member {member} in {where}")
    return off


def member_offsets(spec: dict[str, tuple[str, str]], path: str | Path = VMLINUX_BTF) -> dict[str, int]:
    """``{"MACRO": ("struct", "member")}`` -> ``{"MACRO": offset}`` (cached per kernel build)."""
    from .cache import cached
    uname = os.uname()
    key = [uname.release, uname.version, str(path), sorted(spec.items())]
    return cached("btf", key, lambda: {macro: member_offset(s, m, path) for macro, (s, m) in spec.items()},
                  lambda _value: [path])


def struct_dtype(btf: Btf, name: str) -> np.dtype:
    """numpy structured dtype of ``struct name`` (or ``union name``), with BTF's field offsets and size.

    Integers (1/2/4/8 bytes), enums (their size; signed if BTF says so), floats, pointers (u8), ``char``
    arrays (``S<n>``), other arrays (subarrays), nested structs (nested dtypes; anonymous ones have
    their fields merged in, as C does) and unions (their members overlap at the union's offset, as
    in C: each member is a field).  Bit fields raise BTFError.
    """
    try:
        type_id = btf.find(name, _STRUCT)
        what = "struct"
    except LibbpfError:
        try:
            type_id, what = btf.find(name, _UNION), "union"
        except LibbpfError:
            raise BTFError(f"struct {name} is not in the BTF of {btf.source}") from None
    return _dtype(btf, type_id, f"{what} {name}")


def type_dtype(btf: Btf, type_id: int, where: str = "") -> np.dtype:
    """numpy dtype of BTF type ``type_id`` (as :func:`struct_dtype`; also plain integers, arrays...)."""
    return _dtype(btf, type_id, where or f"type {type_id} of {btf.source}")


def find_struct_with_members(btf: Btf, names: list[str]) -> int | None:
    """Id of the struct whose members are exactly ``names`` in order (the last such, as a program's
    own types come after the headers'), or None."""
    want, found = list(names), None
    for type_id in range(1, btf.type_count):
        t = btf.type(type_id)
        if t.kind == _STRUCT and len(t.members) == len(want) and [m.name for m in t.members] == want:
            found = type_id
    return found


def _dtype(btf: Btf, type_id: int, where: str) -> np.dtype:
    t = btf.type(btf.resolve(type_id))
    kind = t.kind_name
    if kind == "INT":
        if t.int_offset or t.int_bits != 8 * t.size:
            raise BTFError(f"{where} is a bit field: struct_dtype cannot decode bit fields")
        if t.int_encoding & INT_BOOL and t.size == 1:
            return np.dtype("?")
        return _int(t.size, bool(t.int_encoding & INT_SIGNED), where, t.name)
    if kind in ("ENUM", "ENUM64"):
        return _int(t.size, t.kflag, where, f"enum {t.name}")
    if kind == "FLOAT" and t.size in (2, 4, 8):
        return np.dtype(f"f{t.size}")
    if kind == "PTR":
        return np.dtype("u8")
    if kind == "ARRAY":
        elem, _index, n = t.array
        e = btf.type(btf.resolve(elem))
        if e.kind == _INT and e.size == 1 and e.name == "char":
            return np.dtype(f"S{n}")
        return np.dtype((_dtype(btf, elem, f"{where}[]"), (n,)))
    if kind in ("STRUCT", "UNION"):
        names, formats, offsets = [], [], []
        _fields(btf, t, 0, where, names, formats, offsets)
        if not names:
            raise BTFError(f"{where} has no members: it has no numpy dtype")
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": t.size})
    raise BTFError(f"{where} has type {kind} {t.name!r}, which has no numpy dtype")


def _fields(btf: Btf, t, base: int, where: str, names: list, formats: list, offsets: list) -> None:
    for m in t.members:
        at = f"{where}.{m.name or '(anonymous)'}"
        if _bitfield(btf, m):
            raise BTFError(f"{at} is a bit field: struct_dtype cannot decode bit fields")
        inner = btf.type(btf.resolve(m.type))
        if not m.name and inner.kind in (_STRUCT, _UNION):
            _fields(btf, inner, base + m.bit_offset // 8, where, names, formats, offsets)
            continue
        names.append(m.name)
        formats.append(_dtype(btf, m.type, at))
        offsets.append(base + m.bit_offset // 8)


def _int(size: int, signed: bool, where: str, what: str) -> np.dtype:
    if size not in (1, 2, 4, 8):
        raise BTFError(f"{where}: {what} is {size} bytes wide; numpy has no such integer")
    return np.dtype(f"{'i' if signed else 'u'}{size}")
