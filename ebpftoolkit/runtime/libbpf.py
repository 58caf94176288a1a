"""A thin ctypes layer over libbpf's BTF API (``libbpf.so.1``, Debian's ``libbpf1``).

libbpf does the work: it reads raw BTF (``/sys/kernel/btf/vmlinux``) or the
``.BTF`` section of an ELF object (``clang -target bpf -g`` output), validates
it, indexes the types and finds them by name and kind.  This layer loads the
library, declares the C signatures it uses, turns libbpf's errors into
exceptions, and copies the records ``btf__type_by_id`` points to (``struct
btf_type`` then ``btf_member``/``btf_array``/int data, the stable ABI of uapi
``linux/btf.h``; ``btf_members()`` is a static inline, not callable) into
dataclasses.

libbpf 1.1 errors: pointer functions return NULL and set errno (btf.h still
describes pre-1.0 error-encoded pointers; ``libbpf_get_error()`` just reads
errno back), int functions return ``-errno``.  errno may be one of libbpf's own
4000+ codes (LIBBPF_ERRNO__FORMAT: neither BTF nor ELF), hence
``libbpf_strerror()``; an ELF without ``.BTF`` gives ENOENT, like a missing
file.  libbpf's warnings go into the exception message, not to stderr.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
import threading
from ctypes import c_char_p, c_int, c_int32, c_size_t, c_uint32, c_void_p
from dataclasses import dataclass

from ..errors import BTFError

__all__ = ["Btf", "BtfType", "BtfMember", "LibbpfError", "LibbpfMissingError", "KIND", "KIND_NAMES",
           "INT_SIGNED", "INT_CHAR", "INT_BOOL"]

# uapi linux/btf.h
KIND_NAMES = ("UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF", "VOLATILE",
              "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT", "DECL_TAG",
              "TYPE_TAG", "ENUM64")
KIND = {name: i for i, name in enumerate(KIND_NAMES)}
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
_SIZED = {KIND[k] for k in ("INT", "STRUCT", "UNION", "ENUM", "ENUM64", "FLOAT", "DATASEC")}
_QUALIFIERS = {KIND[k] for k in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG")}


def _u32_record(name: str, *fields: str) -> type[ctypes.Structure]:
    return type(name, (ctypes.Structure,), {"_fields_": [(f, c_uint32) for f in fields]})


_Type = _u32_record("btf_type", "name_off", "info", "size_or_type")   # size/type: a union in C
_Member = _u32_record("btf_member", "name_off", "type", "offset")
_Array = _u32_record("btf_array", "type", "index_type", "nelems")


class LibbpfMissingError(BTFError):
    """libbpf.so.1 cannot be loaded."""


class LibbpfError(BTFError):
    """A libbpf call failed; ``errno`` is its error code (positive)."""

    def __init__(self, message: str, errno: int = 0):
        super().__init__(message)
        self.errno = errno


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as e:
        raise LibbpfMissingError(f"libbpf is not installed ({e}): apt-get install libbpf1") from None
    sigs = {
        "btf__parse": (c_void_p, [c_char_p, c_void_p]),
        "btf__load_vmlinux_btf": (c_void_p, []),
        "btf__load_from_kernel_by_id": (c_void_p, [c_uint32]),
        "btf__free": (None, [c_void_p]),
        "btf__find_by_name_kind": (c_int32, [c_void_p, c_char_p, c_uint32]),
        "btf__type_by_id": (c_void_p, [c_void_p, c_uint32]),
        "btf__type_cnt": (c_uint32, [c_void_p]),
        "btf__name_by_offset": (c_char_p, [c_void_p, c_uint32]),
        "libbpf_strerror": (c_int, [c_int, c_char_p, c_size_t]),
        "libbpf_set_print": (c_void_p, [c_void_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def strerror(err: int) -> str:
    buf = ctypes.create_string_buffer(256)
    _lib().libbpf_strerror(abs(err), buf, len(buf))
    return buf.value.decode(errors="replace")


# libbpf_print_fn_t: int (*)(enum libbpf_print_level, const char *fmt, va_list ap); va_list is passed by
# reference on x86-64 and arm64, so it goes on to vsnprintf as a plain pointer.
_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_libc = ctypes.CDLL(None)
_libc.vsnprintf.restype, _libc.vsnprintf.argtypes = c_int, [c_char_p, c_size_t, c_char_p, c_void_p]
_print_lock = threading.Lock()
_messages: list[str] = []


@_PRINT_FN
def _on_print(level, fmt, ap):
    if level <= 1:   # LIBBPF_WARN, LIBBPF_INFO: what libbpf's default printer shows
        buf = ctypes.create_string_buffer(1024)
        _libc.vsnprintf(buf, len(buf), fmt, ap)
        _messages.append(buf.value.decode(errors="replace").strip().removeprefix("libbpf: "))
    return 0


def _call_ptr(what: str, fn, *args) -> int:
    """Call a pointer-returning libbpf function; NULL -> LibbpfError with errno and libbpf's warnings."""
    lib = _lib()
    with _print_lock:
        _messages.clear()
        old = lib.libbpf_set_print(ctypes.cast(_on_print, c_void_p))
        try:
            ctypes.set_errno(0)
            ptr = fn(*args)
            err = ctypes.get_errno()
        finally:
            lib.libbpf_set_print(old)
        said = "; ".join(_messages)
    if not ptr:
        err = err or _errno.EINVAL
        raise LibbpfError(f"{what}: {strerror(err)}" + (f" (libbpf: {said})" if said else ""), err)
    return ptr


@dataclass(frozen=True)
class BtfMember:
    name: str            # "" for an anonymous struct/union member
    type: int
    bit_offset: int
    bitfield_size: int   # 0 unless the struct's kflag is set and the member is a bit field


@dataclass(frozen=True)
class BtfType:
    id: int
    kind: int
    name: str
    size: int            # INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC; else 0
    ref: int             # the type PTR, TYPEDEF, qualifiers, FUNC, VAR... refer to; else 0
    vlen: int
    kflag: bool
    members: tuple[BtfMember, ...] = ()   # STRUCT, UNION
    array: tuple[int, int, int] | None = None   # ARRAY: (element type, index type, nelems)
    int_encoding: int = 0  # INT: INT_SIGNED | INT_CHAR | INT_BOOL
    int_offset: int = 0
    int_bits: int = 0

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind] if self.kind < len(KIND_NAMES) else f"kind {self.kind}"


class Btf:
    """One libbpf ``struct btf``: ``Btf.vmlinux()``, ``Btf.from_file(path)``; close() or use ``with``."""

    def __init__(self, ptr: int, source: str):
        self._ptr, self.source = ptr, source
        self._types: dict[int, BtfType] = {}   # type() copies, kept: a parsed BTF does not change

    @classmethod
    def vmlinux(cls) -> "Btf":
        """The running kernel's BTF (libbpf tries /sys/kernel/btf/vmlinux, then vmlinux images)."""
        return cls(_call_ptr("btf__load_vmlinux_btf", _lib().btf__load_vmlinux_btf), "vmlinux")

    @classmethod
    def from_kernel_id(cls, btf_id: int) -> "Btf":
        """A BTF object the kernel holds (a loaded program's or map's ``btf_id``; BCC loads one per module)."""
        return cls(_call_ptr(f"btf__load_from_kernel_by_id({btf_id})", _lib().btf__load_from_kernel_by_id,
                             int(btf_id)), f"kernel BTF id {btf_id}")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Btf":
        """Raw BTF or an ELF object's .BTF section (btf__parse tries ELF first, then raw)."""
        path = os.fspath(path)
        try:
            return cls(_call_ptr(f"btf__parse({path})", _lib().btf__parse, os.fsencode(path), None), path)
        except LibbpfError as e:
            if e.errno == _errno.ENOENT and os.path.exists(path):
                raise LibbpfError(f"{path} has no BTF: an ELF object without a .BTF section "
                                  "(compile it with clang -g)", e.errno) from None
            if e.errno == _errno.ENOENT:
                raise LibbpfError(f"{path} does not exist", e.errno) from None
            raise

    @property
    def ptr(self) -> int:
        if not self._ptr:
            raise BTFError(f"BTF of {self.source} is closed")
        return self._ptr

    @property
    def type_count(self) -> int:
        """Number of type ids, void (id 0) included: ids run from 0 to type_count - 1."""
        return _lib().btf__type_cnt(self.ptr)

    def find(self, name: str, kind: int | str) -> int:
        """Id of the first type called ``name`` of ``kind`` (KIND["STRUCT"] or "struct")."""
        kind = KIND[kind.upper()] if isinstance(kind, str) else kind
        rc = _lib().btf__find_by_name_kind(self.ptr, name.encode(), kind)
        if rc < 0:   # -ENOENT: no such type
            what = KIND_NAMES[kind].lower() if 0 <= kind < len(KIND_NAMES) else f"kind {kind}"
            raise LibbpfError(f"no {what} named {name!r} in the BTF of {self.source}", -rc)
        return rc

    def name_by_offset(self, offset: int) -> str:
        s = _lib().btf__name_by_offset(self.ptr, offset)
        if s is None:
            raise LibbpfError(f"string offset {offset} is outside the BTF of {self.source}", ctypes.get_errno())
        return s.decode()

    def type(self, type_id: int) -> BtfType:
        """Copy of the ``struct btf_type`` record of ``type_id`` and the member/array/int data after it."""
        if type_id in self._types:
            return self._types[type_id]
        addr = _lib().btf__type_by_id(self.ptr, type_id)
        if not addr:
            raise LibbpfError(f"type id {type_id} is not in the BTF of {self.source}", _errno.EINVAL)
        t = _Type.from_address(addr)
        kind, vlen, kflag = (t.info >> 24) & 0x1F, t.info & 0xFFFF, bool(t.info >> 31)
        extra = addr + ctypes.sizeof(_Type)
        fields: dict = {}
        if kind in (KIND["STRUCT"], KIND["UNION"]):
            raw = (_Member * vlen).from_address(extra)
            fields["members"] = tuple(
                BtfMember(self.name_by_offset(m.name_off), m.type,
                          m.offset & 0xFFFFFF if kflag else m.offset, m.offset >> 24 if kflag else 0)
                for m in raw)
        elif kind == KIND["ARRAY"]:
            a = _Array.from_address(extra)
            fields["array"] = (a.type, a.index_type, a.nelems)
        elif kind == KIND["INT"]:
            v = c_uint32.from_address(extra).value
            fields.update(int_encoding=(v >> 24) & 0x0F, int_offset=(v >> 16) & 0xFF, int_bits=v & 0xFF)
        sized = kind in _SIZED
        self._types[type_id] = BtfType(type_id, kind, self.name_by_offset(t.name_off),
                                       t.size_or_type if sized else 0, 0 if sized else t.size_or_type,
                                       vlen, kflag, **fields)
        return self._types[type_id]

    def resolve(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the type underneath (0: void)."""
        for _ in range(64):
            t = self.type(type_id)
            if t.kind not in _QUALIFIERS:
                return type_id
            type_id = t.ref
        raise LibbpfError(f"type id {type_id}: typedef/qualifier chain too long in {self.source}", _errno.ELOOP)

    def close(self) -> None:
        ptr, self._ptr = self._ptr, 0
        self._types.clear()
        if ptr:
            _lib().btf__free(ptr)

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown may have torn ctypes down already
            pass

    def __enter__(self) -> "Btf":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Btf {self.source}{'' if self._ptr else ' closed'}>"
