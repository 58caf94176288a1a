"""Just enough ELF64 reading to place uprobes: function symbols and address maps.

The file is parsed with pyelftools (:class:`elftools.elf.elffile.ELFFile`):
ELF header, program headers (segments), section headers, string tables,
symbol-version tables and the code bytes :meth:`ElfFile.read` returns
(address arithmetic over the PT_LOAD headers pyelftools parsed is done here).  Only
the bulk decoding of the symbol tables themselves is done here, with numpy
(see :func:`_decode_function_symbols` for the measured reason).

Function symbols come from both ``.dynsym`` (exported) and ``.symtab`` (local
symbols, e.g. the CUDA runtime linked statically into an executable); version
suffixes such as ``clCreateBuffer@@OPENCL_1.0`` are stripped.  When one name
has several versions (glibc's ``pthread_cond_signal@@GLIBC_2.3.2`` and its
compat ``pthread_cond_signal@GLIBC_2.2.5``), the default version -- the one
the dynamic linker binds new references to, ``@@`` in ``readelf -Ws`` -- is
the address :attr:`ElfFile.functions` gives.  Addresses are ELF virtual
addresses, which is what BCC's ``attach_uprobe(addr=...)`` takes.

The whole file is read into memory once, so an :class:`ElfFile` is a snapshot:
a library rewritten in place later cannot change (or crash) what it returns.
Anything that is not a readable 64-bit little-endian ELF file raises
:class:`~ebpftoolkit.errors.ProbeConfigError`.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
from elftools.common.exceptions import ELFError, ELFParseError
from elftools.elf import enums as _enums
from elftools.elf.elffile import ELFFile as _ELFFile

from ..errors import ProbeConfigError

__all__ = ["ElfFile", "elf_file", "Segment", "Section", "ElfIdentity", "elf_identity"]

_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_VERSYM_HIDDEN = 0x8000          # a non-default version: ``name@VER``, not ``name@@VER``
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])   # Elf64_Sym, 24 bytes


def _enum_values(prefix: str) -> dict[str, int]:
    """pyelftools names -> numbers for every ``enums.<prefix>*`` table (the names are unique across them)."""
    return {k: v for table in dir(_enums) if table.startswith(prefix)
            for k, v in getattr(_enums, table).items() if not k.startswith("_")}


_SH_TYPES = _enum_values("ENUM_SH_TYPE")
_E_TYPES = _enum_values("ENUM_E_TYPE")


def _raw(value, names: dict[str, int]) -> int:
    """The number behind a pyelftools enum field (it passes unknown numbers through as ints)."""
    return value if isinstance(value, int) else names[value]


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD program header."""
    vaddr: int
    offset: int
    filesz: int


class Section(NamedTuple):
    """A section header, as the numbers Elf64_Shdr holds."""
    sh_name: int
    sh_type: int
    sh_flags: int
    sh_addr: int
    sh_offset: int
    sh_size: int
    sh_link: int
    sh_info: int
    sh_addralign: int
    sh_entsize: int


def _decode_function_symbols(symtab: bytes, strtab: bytes, versym: bytes | None = None
                             ) -> Iterator[tuple[str, int, int, bool]]:
    """(name, address, size, non-default version) of each defined function in an Elf64_Sym table.

    The one hand-written decoder left in this module, kept because it is
    measured to matter: pyelftools builds a Python object per symbol
    (``SymbolTableSection.iter_symbols``), 20-50x slower than decoding the
    table in bulk with numpy, and symbolizing PMU samples reads the symbol
    tables of every module a sampled process maps -- libLLVM-15 among them
    for any process drawing with Mesa's llvmpipe (swrast_dri.so links it).
    Time to list the function symbols of a file (both tables), best of 3-5
    runs on this project's 2-core test machine, Debian 12 x86-64,
    pyelftools 0.33; file read and header parsing excluded, same output both
    ways, the numpy time includes pyelftools reading the section data:

    ==================================  =======  ==========  =======
    file                                symbols  pyelftools  numpy
    ==================================  =======  ==========  =======
    libc.so.6                             3,044     0.044 s   0.9 ms
    libpython3.11.so.1.0                  2,199     0.028 s   0.7 ms
    libcudart.so.13 (CUDA 13)               584     0.008 s   0.1 ms
    dri/swrast_dri.so                       814     0.010 s  0.03 ms
    libLLVM-15.so.1                      46,325      0.93 s    38 ms
    libasan.so.8.0.0 (.symtab+.dynsym)    6,697     0.118 s   3.4 ms
    /usr/bin/node (.symtab+.dynsym)     184,833      3.19 s   178 ms
    ==================================  =======  ==========  =======

    ``symtab``, ``strtab`` and ``versym`` are the contents of a SHT_SYMTAB or
    SHT_DYNSYM section, of its linked string table and of the SHT_GNU_versym
    section that goes with it (``.dynsym`` only), all located and read by
    pyelftools.  Kept: STT_FUNC and STT_GNU_IFUNC symbols that are defined
    (section index not SHN_UNDEF) and have a non-zero address.
    """
    syms = np.frombuffer(symtab, _SYM, count=len(symtab) // _SYM.itemsize)
    kind = syms["info"] & 0xF
    keep = np.flatnonzero((syms["shndx"] != 0) & (syms["value"] != 0) & ((kind == _STT_FUNC) | (kind == _STT_GNU_IFUNC)))
    hidden = np.zeros(len(keep), bool)
    if versym is not None:
        versions = np.frombuffer(versym, "<u2", count=min(len(versym) // 2, len(syms)))
        inside = keep < len(versions)
        hidden[inside] = (versions[keep[inside]] & _VERSYM_HIDDEN) != 0
    for name_off, value, size, hid in zip(syms["name"][keep].tolist(), syms["value"][keep].tolist(),
                                          syms["size"][keep].tolist(), hidden.tolist()):
        end = strtab.find(b"\0", name_off)
        name = strtab[name_off:end if end >= 0 else len(strtab)].decode(errors="replace")
        yield name.split("@", 1)[0], value, size, hid or ("@" in name and "@@" not in name)


class ElfFile:
    """A 64-bit little-endian ELF file, read through pyelftools."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            self._data = f.read()
        self._lock = threading.Lock()   # pyelftools seeks and reads one shared stream
        with self._as_probe_error():
            self._elf = _ELFFile(io.BytesIO(self._data))
            if self._elf.elfclass != 64 or not self._elf.little_endian:
                raise ProbeConfigError(f"{path} is not a 64-bit little-endian ELF file: it is {self._elf.elfclass}-bit "
                                       f"{'little' if self._elf.little_endian else 'big'}-endian")
            self.type = _raw(self._elf["e_type"], _E_TYPES)
            self._check_header_tables()
            self.segments = [Segment(s["p_vaddr"], s["p_offset"], s["p_filesz"])
                             for s in self._elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            self._sections = list(self._elf.iter_sections())
            self.sections = [Section(s["sh_name"], _raw(s["sh_type"], _SH_TYPES), s["sh_flags"], s["sh_addr"],
                                     s["sh_offset"], s["sh_size"], s["sh_link"], s["sh_info"], s["sh_addralign"],
                                     s["sh_entsize"]) for s in self._sections]

    def _check_header_tables(self) -> None:
        """Refuse header tables that do not fit in the file before pyelftools walks them.

        pyelftools takes the counts from the ELF header (or from section 0 for
        extended numbering), so a corrupt count could make it parse the same
        few bytes billions of times.
        """
        e, structs = self._elf, self._elf.structs
        for what, count, offset, entsize, least in (
                ("program", e.num_segments(), e["e_phoff"], e["e_phentsize"], structs.Elf_Phdr.sizeof()),
                ("section", e.num_sections(), e["e_shoff"], e["e_shentsize"], structs.Elf_Shdr.sizeof())):
            if count and offset + count * max(entsize, least) > len(self._data):
                raise ProbeConfigError(f"{self.path} is not a 64-bit little-endian ELF file: truncated or corrupt "
                                       f"({count} {what} headers at offset {offset:#x} run past the end of the file)")

    @contextlib.contextmanager
    def _as_probe_error(self):
        """Any failure while pyelftools decodes the file means the file is not usable ELF: say so."""
        try:
            yield
        except ProbeConfigError:
            raise
        except Exception as e:   # ELFError/ELFParseError, and Index/Value/Key/struct errors on corrupt headers
            if isinstance(e, ELFError) and not isinstance(e, ELFParseError):
                why = str(e)   # e.g. "Magic number does not match"
            else:
                why = f"truncated or corrupt ({type(e).__name__}: {e})"
            raise ProbeConfigError(f"{self.path} is not a 64-bit little-endian ELF file: {why}") from e

    def _function_symbols(self) -> list[tuple[str, int, int, int]]:
        """(name, address, size, rank) of every function symbol: .symtab's, then .dynsym's.

        rank orders the entries of one name: 3 exported default version,
        2 exported other version, 1 local default/unversioned, 0 local other version.
        """
        tables = []
        with self._lock, self._as_probe_error():
            for exported, kind in ((0, "SHT_SYMTAB"), (2, "SHT_DYNSYM")):
                for index, sec in enumerate(self._sections):
                    if sec["sh_type"] != kind:
                        continue
                    versym = next((v.data() for v in self._sections
                                   if v["sh_type"] == "SHT_GNU_versym" and v["sh_link"] == index), None)
                    tables.append((exported, sec.data(), sec.stringtable.data(), versym))
        with self._as_probe_error():
            return [(name, value, size, exported + (not hidden)) for exported, symtab, strtab, versym in tables
                    for name, value, size, hidden in _decode_function_symbols(symtab, strtab, versym)]

    @functools.cached_property
    def functions(self) -> dict[str, int]:
        """Function name -> ELF virtual address.

        Exported names (``.dynsym``) win over local ones (``.symtab``), then a
        name's default version over its other versions; among equals, the
        last in the table.
        """
        best: dict[str, tuple[int, int]] = {}   # name -> (rank, address)
        for name, value, _size, rank in self._function_symbols():
            if name not in best or rank >= best[name][0]:
                best[name] = (rank, value)
        return {name: value for name, (_rank, value) in best.items()}

    @functools.cached_property
    def function_ranges(self) -> list[tuple[int, int, str]]:
        """(address, size, name) of every function, sorted by address (size 0: unknown, e.g. assembly)."""
        return sorted({(value, size, name) for name, value, size, _rank in self._function_symbols()})

    @property
    def has_symtab(self) -> bool:
        return any(s["sh_type"] == "SHT_SYMTAB" for s in self._sections)

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
        """Up to ``n`` bytes of the file from virtual address ``vaddr`` on (code, for instruction decoding)."""
        offset = self.vaddr_to_offset(vaddr)
        with self._lock, self._as_probe_error():
            self._elf.stream.seek(offset)
            return self._elf.stream.read(n)


@functools.lru_cache(maxsize=64)
def _cached(path: str, _mtime: float, _size: int) -> ElfFile:
    return ElfFile(path)


def elf_file(path: str) -> ElfFile:
    st = os.stat(path)
    return _cached(os.path.realpath(path), st.st_mtime, st.st_size)


@dataclass(frozen=True)
class ElfIdentity:
    """What a file says it is, read from its headers and dynamic section only (cheap on a
    1 GB library): ``soname`` (None for a program), ``executable`` (a program: ET_EXEC, or
    a position-independent one with an interpreter and no soname)."""

    soname: str | None
    executable: bool


def elf_identity(path: str) -> ElfIdentity | None:
    """The :class:`ElfIdentity` of ``path``, or None when it is not a 64-bit ELF file."""
    try:
        with open(path, "rb") as f:
            if f.read(5) != b"\x7fELF\x02":
                return None
            f.seek(0)
            elf = _ELFFile(f)
            soname, interp = None, False
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = True
                elif seg["p_type"] == "PT_DYNAMIC":
                    for tag in seg.iter_tags():
                        if tag.entry.d_tag == "DT_SONAME":
                            soname = tag.soname
            kind = elf["e_type"]
            return ElfIdentity(soname, kind == "ET_EXEC" or (kind == "ET_DYN" and interp and soname is None))
    except (OSError, ELFError, ValueError, KeyError, IndexError, AttributeError):
        return None
