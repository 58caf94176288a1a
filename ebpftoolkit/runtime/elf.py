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

__all__ = ["ElfFile", "elf_file", "first_instruction"]

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


def first_instruction(code: bytes) -> tuple[str, bool]:
    """A name for the first instruction and whether the kernel emulates it in a uprobe.

    Emulated instructions (push, jcc, jmp/call rel, nop) cost about 1 us per
    hit; anything else is single-stepped out of line (about 14 us measured here).
    """
    b = code
    if b[:4] == b"\xf3\x0f\x1e\xfa":
        return "endbr64", False
    if b[:1] and 0x50 <= b[0] <= 0x57 or (b[:1] == b"\x41" and len(b) > 1 and 0x50 <= b[1] <= 0x57):
        return "push", True
    if b[:1] and 0x70 <= b[0] <= 0x7F or b[:2] and b[0] == 0x0F and 0x80 <= b[1] <= 0x8F:
        return "jcc", True
    if b[:1] in (b"\xe8", b"\xe9", b"\xeb"):
        return "call/jmp rel", True
    if b[:1] == b"\x90" or b[:2] == b"\x0f\x1f" or b[:3] == b"\x66\x0f\x1f":
        return "nop", True
    if b[:1] in (b"\x48", b"\x4c") and len(b) > 2 and b[1] in (0x8B, 0x8D) and (b[2] & 0xC7) == 0x05:
        return "mov/lea rip-relative", False
    if b[:1] in (b"\x48", b"\x4d", b"\x4c", b"\x49") and len(b) > 1 and b[1] == 0x85:
        return "test", False
    return f"other ({b[:4].hex()})", False


_ARG_REGS = {7, 6, 2, 1, 8, 9}   # rdi, rsi, rdx, rcx, r8, r9 (ModRM register numbers, REX.R/B extended)
_RSP = 4


def _skippable(b: bytes) -> tuple[int, int] | None:
    """(length, stack adjustment) of an instruction that may run before the probe without
    changing what the probe reads (argument registers, the return address), else None."""
    if b[:4] == b"\xf3\x0f\x1e\xfa":                                   # endbr64
        return 4, 0
    rex = b[0] if b and 0x40 <= b[0] <= 0x4F else 0
    i = 1 if rex else 0
    if len(b) < i + 2:
        return None
    op, modrm = b[i], b[i + 1]
    mod, reg, rm = modrm >> 6, ((modrm >> 3) & 7) | ((rex & 4) << 1), modrm & 7
    if rex & 8 and op == 0x83 and modrm == 0xEC and len(b) > i + 2:    # sub $imm8, %rsp
        return i + 3, b[i + 2]
    if op == 0x85 and mod == 3:                                        # test reg, reg: flags only
        return i + 2, 0
    if op in (0x8B, 0x8D) and mod != 3 and reg not in _ARG_REGS and reg != _RSP:   # mov/lea mem -> scratch reg
        n = i + 2
        if rm == 4:                                                    # SIB byte
            n += 1
        if mod == 0 and rm == 5:
            n += 4                                                     # rip-relative disp32
        elif mod == 1:
            n += 1
        elif mod == 2:
            n += 4
        return n, 0
    return None


def probe_site(code: bytes, max_skip: int = 3) -> tuple[int, int, str, bool]:
    """Where to put an entry uprobe in a function starting with ``code``.

    Returns (offset from the function start, stack adjustment at that point,
    first instruction there, whether the kernel emulates it).  Instructions that
    touch neither the argument registers nor the return address's position
    (beyond a known ``sub $n, %rsp``) are stepped over when that lands the probe
    on an emulated instruction: about 1 us per call instead of 14 us.  Only for
    entry probes: a return probe must sit on the function's first instruction.
    """
    insn, emulated = first_instruction(code)
    if emulated:
        return 0, 0, insn, True
    off = adj = 0
    for _ in range(max_skip):
        step = _skippable(code[off:])
        if step is None:
            break
        off, adj = off + step[0], adj + step[1]
        nxt, emu = first_instruction(code[off:])
        if emu:
            return off, adj, nxt, True
    return 0, 0, insn, False
