"""Just enough ELF64 reading to place uprobes: function symbols and address maps.

Reads both ``.dynsym`` (exported) and ``.symtab`` (local symbols, e.g. the
CUDA runtime linked statically into an executable); version suffixes such as
``clCreateBuffer@@OPENCL_1.0`` are stripped.  Addresses are ELF virtual
addresses, which is what BCC's ``attach_uprobe(addr=...)`` takes.
"""
from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ProbeConfigError

__all__ = ["ElfFile", "elf_file"]

_SHT_SYMTAB, _SHT_DYNSYM = 2, 11
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_PT_LOAD = 1
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])   # Elf64_Sym, 24 bytes


@dataclass(frozen=True)
class Segment:
    vaddr: int
    offset: int
    filesz: int


class ElfFile:
    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ProbeConfigError(f"{path} is not a 64-bit little-endian ELF file")
        self._data = data
        (self.type, _m, _v, _e, phoff, shoff, _fl, _eh, phentsize, phnum, shentsize, shnum,
         _shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        self.segments = []
        for i in range(phnum):
            p_type, _flags, off, vaddr, _pa, filesz, _memsz, _al = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
            if p_type == _PT_LOAD:
                self.segments.append(Segment(vaddr, off, filesz))
        self.sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def _function_symbols(self):
        """(name, address, size) of every function symbol: .symtab's, then .dynsym's."""
        for kind in (_SHT_SYMTAB, _SHT_DYNSYM):
            for sec in self.sections:
                if sec[1] != kind:
                    continue
                _n, _t, _f, _a, off, size, link, _i, _al, _entsize = sec
                stroff = self.sections[link][4]
                syms = np.frombuffer(self._data, _SYM, count=size // 24, offset=off)
                kind_ = syms["info"] & 0xF
                keep = (syms["shndx"] != 0) & (syms["value"] != 0) & ((kind_ == _STT_FUNC) | (kind_ == _STT_GNU_IFUNC))
                for name_off, value, sym_size in zip(syms["name"][keep].tolist(), syms["value"][keep].tolist(),
                                                     syms["size"][keep].tolist()):
                    end = self._data.index(b"\0", stroff + name_off)
                    yield self._data[stroff + name_off:end].decode(errors="replace").split("@", 1)[0], value, sym_size

    @functools.cached_property
    def functions(self) -> dict[str, int]:
        """Function name -> ELF virtual address (exported names win over local ones)."""
        return {name: value for name, value, _size in self._function_symbols()}   # dynsym last: it overrides

    @functools.cached_property
    def function_ranges(self) -> list[tuple[int, int, str]]:
        """(address, size, name) of every function, sorted by address (size 0: unknown, e.g. assembly)."""
        return sorted({(value, size, name) for name, value, size in self._function_symbols()})

    @property
    def has_symtab(self) -> bool:
        return any(s[1] == _SHT_SYMTAB for s in self.sections)

    def vaddr_to_offset(self, vaddr: int) -> int:
        for s in self.segments:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return vaddr - s.vaddr + s.offset
        raise ProbeConfigError(f"address {vaddr:#x} is outside {self.path}'s loaded segments")

    def offset_to_vaddr(self, offset: int) -> int:
        for s in self.segments:
            if s.offset <= offset < s.offset + s.filesz:
                return offset - s.offset + s.vaddr
        raise ProbeConfigError(f"file offset {offset:#x} is outside {self.path}'s loaded segments")

    def read(self, vaddr: int, n: int) -> bytes:
        off = self.vaddr_to_offset(vaddr)
        return self._data[off:off + n]


@functools.lru_cache(maxsize=64)
def _cached(path: str, _mtime: float, _size: int) -> ElfFile:
    return ElfFile(path)


def elf_file(path: str) -> ElfFile:
    st = os.stat(path)
    return _cached(os.path.realpath(path), st.st_mtime, st.st_size)
