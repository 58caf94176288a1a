"""ebpftoolkit.runtime.elf against binutils' readelf on real files of this machine (no root needed)."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ebpftoolkit.errors import ProbeConfigError
from ebpftoolkit.runtime.elf import ElfFile, elf_file


def _mapped(soname: str) -> str:
    """The real path of a library this Python process maps (so the test finds it on any distribution)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if os.path.basename(path) == soname:
            return os.path.realpath(path)
    raise AssertionError(f"{soname} is not mapped by this process")


LIBC = _mapped("libc.so.6")


@pytest.fixture(scope="module")
def versioned_lib(tmp_path_factory) -> str:
    """An unstripped shared library (.symtab and .dynsym) with two versions of foo and a static function."""
    d = tmp_path_factory.mktemp("elf")
    (d / "v.c").write_text(
        '__asm__(".symver foo_old, foo@VERS_1");\n'
        '__asm__(".symver foo_new, foo@@VERS_2");\n'
        "int foo_old(void) { return 1; }\n"
        "int foo_new(void) { return 2; }\n"
        "int bar(void) { return 3; }\n"
        "static int local_fn(int x) { return x * 7; }\n"
        "int (*keep)(int) = local_fn;\n")
    (d / "v.map").write_text("VERS_1 { global: foo; bar; local: *; };\nVERS_2 { global: foo; } VERS_1;\n")
    lib = d / "libv.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-Wl,--version-script={d / 'v.map'}", "-o", str(lib),
                    str(d / "v.c")], check=True)
    return str(lib)


def _readelf_functions(path: str):
    """(table, name as printed, address, size) of each defined FUNC/IFUNC symbol with a non-zero address."""
    out = subprocess.run(["readelf", "-Ws", "--wide", path], capture_output=True, text=True, check=True).stdout
    table = None
    for line in out.splitlines():
        m = re.match(r"Symbol table '(\S+)'", line)
        if m:
            table = m.group(1)
            continue
        f = line.split()
        if len(f) >= 8 and f[0].endswith(":") and f[3] in ("FUNC", "IFUNC") and f[6] != "UND":
            value, size = int(f[1], 16), int(f[2], 0)
            if value:
                yield table, f[7], value, size


def _expected(path: str):
    """What .functions and .function_ranges should be, from readelf: .dynsym over .symtab, @@ or none over @."""
    best, ranges = {}, set()
    rows = sorted(_readelf_functions(path), key=lambda r: r[0] == ".dynsym")   # stable: .symtab rows first
    for table, printed, value, size in rows:
        name = printed.split("@", 1)[0]
        rank = 2 * (table == ".dynsym") + ("@" not in printed or "@@" in printed)
        if name not in best or rank >= best[name][0]:
            best[name] = (rank, value)
        ranges.add((value, size, name))
    return {n: v for n, (_r, v) in best.items()}, sorted(ranges)


def _readelf_loads(path: str):
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    return [(int(f[2], 16), int(f[1], 16), int(f[4], 16))          # (vaddr, offset, filesz)
            for f in (l.split() for l in out.splitlines()) if f and f[0] == "LOAD"]


@pytest.fixture(params=["libc", "versioned_lib"])
def real_elf(request) -> str:
    return LIBC if request.param == "libc" else request.getfixturevalue("versioned_lib")


def test_functions_match_readelf(real_elf):
    functions, ranges = _expected(real_elf)
    elf = ElfFile(real_elf)
    assert len(functions) > 5
    assert elf.functions == functions
    assert elf.function_ranges == ranges


def test_libc_default_versions_win():
    """glibc keeps compat versions of e.g. pthread_cond_signal: .functions gives the @@ one, as dlsym does."""
    at = {printed: value for _t, printed, value, _s in _readelf_functions(LIBC)}
    elf = ElfFile(LIBC)
    for printed, value in at.items():
        if "@@" in printed:
            assert elf.functions[printed.split("@")[0]] == value, printed


def test_versioned_lib(versioned_lib):
    elf = ElfFile(versioned_lib)
    assert elf.has_symtab
    assert elf.functions["foo"] == elf.functions["foo_new"] != elf.functions["foo_old"]
    assert "local_fn" in elf.functions and "bar" in elf.functions
    assert {n for _a, _s, n in elf.function_ranges} >= {"foo", "foo_new", "foo_old", "bar", "local_fn"}


def test_segments_match_readelf(real_elf):
    assert [(s.vaddr, s.offset, s.filesz) for s in ElfFile(real_elf).segments] == _readelf_loads(real_elf)


def test_address_round_trips(real_elf):
    elf = ElfFile(real_elf)
    raw = Path(real_elf).read_bytes()
    for vaddr in elf.functions.values():
        off = elf.vaddr_to_offset(vaddr)
        assert elf.offset_to_vaddr(off) == vaddr
        assert elf.read(vaddr, 16) == raw[off:off + 16]
    for s in elf.segments:
        if s.filesz:
            for off in (s.offset, s.offset + s.filesz - 1):
                assert elf.vaddr_to_offset(elf.offset_to_vaddr(off)) == off
    end = max(s.vaddr + s.filesz for s in elf.segments)
    with pytest.raises(ProbeConfigError, match="outside"):
        elf.vaddr_to_offset(end + 0x10000000)
    with pytest.raises(ProbeConfigError, match="outside"):
        elf.offset_to_vaddr(len(raw) + 1)


def test_elf_file_is_cached():
    assert elf_file(LIBC) is elf_file(LIBC)


def _write(tmp_path, data: bytes) -> str:
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize("data, why", [
    (b"#!/bin/sh\necho not an ELF file\n", "not a 64-bit little-endian ELF"),
    (b"", "not a 64-bit little-endian ELF"),
    (b"\x7fELF\x01\x01\x01" + bytes(60), "32-bit"),
    (b"\x7fELF\x02\x02\x01" + bytes(60), "big-endian"),
])
def test_not_elf64le(tmp_path, data, why):
    with pytest.raises(ProbeConfigError, match=why):
        ElfFile(_write(tmp_path, data))


def test_truncated_libc(tmp_path):
    with pytest.raises(ProbeConfigError, match="truncated or corrupt"):
        ElfFile(_write(tmp_path, Path(LIBC).read_bytes()[:100]))


def _only_probe_config_errors(data: bytes) -> None:
    """Open data as ELF and use everything: nothing but ProbeConfigError may come out."""
    fd, path = tempfile.mkstemp()
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            elf = ElfFile(path)
            elf.functions, elf.function_ranges, elf.has_symtab, elf.sections
            for addr in (0, 0x40, 0x1000, 2**63):
                for call in (lambda: elf.read(addr, 16), lambda: elf.vaddr_to_offset(addr),
                             lambda: elf.offset_to_vaddr(addr)):
                    try:
                        call()
                    except ProbeConfigError:
                        pass
        except ProbeConfigError:
            pass
    finally:
        os.unlink(path)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    _only_probe_config_errors(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=2048))
def test_random_bytes_after_elf64le_ident(data):
    _only_probe_config_errors(b"\x7fELF\x02\x01\x01" + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_real_library(versioned_lib, data):
    """Random bytes written over a real library, mostly over its headers, or the library cut short."""
    b = bytearray(Path(versioned_lib).read_bytes())
    shoff = int.from_bytes(b[40:48], "little")
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.sampled_from([(0, 64 + 56 * 12), (shoff, len(b)), (0, len(b))]))
        b[data.draw(st.integers(where[0], where[1] - 1))] = data.draw(st.integers(0, 255))
    _only_probe_config_errors(bytes(b[:data.draw(st.integers(0, len(b)))]))
