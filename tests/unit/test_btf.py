"""BTF through libbpf (runtime/libbpf.py, runtime/btf.py), checked against bpftool's raw dumps.

No root needed, except to read /sys/kernel/btf/vmlinux where it is not world-readable: those
tests skip only then.  The BPF object tests compile a small C file with clang -target bpf -g.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest

from ebpftoolkit.errors import BTFError
from ebpftoolkit.runtime import btf, libbpf
from ebpftoolkit.runtime.libbpf import KIND, Btf, LibbpfError, LibbpfMissingError

VMLINUX = btf.VMLINUX_BTF
needs_vmlinux = pytest.mark.skipif(not os.access(VMLINUX, os.R_OK), reason=f"{VMLINUX} is not readable here")
QUALIFIERS = {"TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"}


def bpftool() -> str:
    path = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
    if not path:
        pytest.skip("bpftool is not installed: apt-get install -y bpftool")
    return path


def bpftool_raw(path) -> "RawBtf":
    """``bpftool btf dump file PATH format raw`` as {id: {kind, name, size, ref, members}}."""
    out = subprocess.run([bpftool(), "btf", "dump", "file", str(path), "format", "raw"],
                         check=True, capture_output=True, text=True).stdout
    types, cur = RawBtf(), None
    for line in out.splitlines():
        if m := re.match(r"\[(\d+)\] (\w+) '([^']*)'(.*)", line):
            size, ref = re.search(r"\bsize=(\d+)", m[4]), re.search(r"\btype_id=(\d+)", m[4])
            cur = types[int(m[1])] = {"kind": m[2], "name": "" if m[3] == "(anon)" else m[3],
                                      "size": int(size[1]) if size else None,
                                      "ref": int(ref[1]) if ref else None, "members": []}
        elif m := re.match(r"\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?$", line):
            if cur["kind"] in ("STRUCT", "UNION"):
                cur["members"].append(("" if m[1] == "(anon)" else m[1], int(m[2]), int(m[3]), int(m[4] or 0)))
    return types


class RawBtf(dict):
    """{id: {kind, name, size, ref, members}} from bpftool."""

    @functools.cached_property
    def _first_structs(self) -> dict[str, int]:
        firsts: dict[str, int] = {}
        for i, t in sorted(self.items()):
            if t["kind"] == "STRUCT":
                firsts.setdefault(t["name"], i)
        return firsts

    def first_struct(self, name) -> int:
        """Id of the first STRUCT called ``name`` (what btf__find_by_name_kind returns)."""
        return self._first_structs[name]


def resolve(types, type_id) -> int:
    while type_id and types[type_id]["kind"] in QUALIFIERS:
        type_id = types[type_id]["ref"]
    return type_id


def flat_members(types, type_id, base=0):
    """(name, byte offset or None for a bit field) of a struct's members, anonymous members merged in."""
    for name, ref, bits, bitfield in types[type_id]["members"]:
        inner = resolve(types, ref)
        if not name and types.get(inner, {}).get("kind") in ("STRUCT", "UNION"):
            yield from flat_members(types, inner, base + bits // 8)
        elif name:
            yield name, None if bitfield or bits % 8 else base + bits // 8


# ---- (a) the kernel's BTF ------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel_raw():
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} is not readable here")
    return bpftool_raw(VMLINUX)


@pytest.fixture(scope="module")
def vmlinux():
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} is not readable here")
    with Btf.from_file(VMLINUX) as b:
        yield b


def test_task_struct_members_match_bpftool(vmlinux, kernel_raw):
    tid = kernel_raw.first_struct("task_struct")
    assert vmlinux.find("task_struct", "struct") == tid
    t = vmlinux.type(tid)
    assert (t.kind_name, t.name, t.size, t.vlen) == ("STRUCT", "task_struct", kernel_raw[tid]["size"],
                                                     len(kernel_raw[tid]["members"]))
    assert [(m.name, m.type, m.bit_offset, m.bitfield_size) for m in t.members] == kernel_raw[tid]["members"]
    for name, off in flat_members(kernel_raw, tid):
        if off is not None:
            assert btf.member_offset("task_struct", name) == off, name


def test_project_members_match_bpftool(kernel_raw, monkeypatch):
    monkeypatch.setenv("EBPFTOOLKIT_NO_CACHE", "1")
    from ebpftoolkit.probes.execsnoop import ExecSnoop
    spec = {"TASK_TGID": ("task_struct", "tgid"), **ExecSnoop().btf_members()}
    expected = {}
    for macro, (s, member) in spec.items():
        expected[macro] = dict(flat_members(kernel_raw, kernel_raw.first_struct(s)))[member]
    assert btf.member_offsets(spec) == expected


def test_anonymous_members_match_bpftool(kernel_raw):
    """Members reached through anonymous structs/unions, in the first 40 structs that have some."""
    checked = 0
    for tid, t in sorted(kernel_raw.items()):
        if t["kind"] != "STRUCT" or not t["name"] or kernel_raw.first_struct(t["name"]) != tid:
            continue
        direct = {m[0] for m in t["members"]}
        nested = [(n, off) for n, off in flat_members(kernel_raw, tid) if n not in direct and off is not None]
        for name, off in nested:
            assert btf.member_offset(t["name"], name) == off, (t["name"], name)
        checked += bool(nested)
        if checked == 40:
            break
    assert checked


def test_bitfield_member_is_refused(vmlinux, kernel_raw):
    tid = kernel_raw.first_struct("task_struct")
    bitfields = [m for m in kernel_raw[tid]["members"] if m[3]]
    if not bitfields:
        pytest.skip("this kernel's task_struct has no bit fields")
    # byte-aligned ones too (sched_reset_on_fork often is): a byte offset would still be wrong to read
    for name, *_ in bitfields:
        with pytest.raises(BTFError, match="bit field"):
            btf.member_offset("task_struct", name)


def test_vmlinux_loader_and_kernel_struct_dtype(vmlinux):
    with Btf.vmlinux() as v:
        assert v.type_count == vmlinux.type_count > 1000
        assert v.find("task_struct", KIND["STRUCT"]) == vmlinux.find("task_struct", KIND["STRUCT"])
    with pytest.raises(BTFError, match="closed"):
        v.find("task_struct", "struct")
    d = btf.struct_dtype(vmlinux, "list_head")
    assert (d.names, d.itemsize, d["next"], d.fields["prev"][1]) == (("next", "prev"), 16, np.dtype("u8"), 8)
    with pytest.raises(BTFError, match="union|bit field"):
        btf.struct_dtype(vmlinux, "task_struct")


# ---- (b) a BPF object compiled here ---------------------------------------------------------

PROG_C = r"""
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
struct inner { u16 a; u64 b; };
enum color { RED, GREEN };
struct rec {
	u32 pid;
	u64 ts;
	char comm[16];
	struct inner in;
	u16 vals[3];
	signed char sc;
	const volatile int *ptr;
	enum color col;
	struct { u32 x; u32 y; };
	char names[2][4];
	_Bool flag;
	long long delta;
};
struct with_union { u32 a; union { u32 i; float f; } u; };
struct with_bits { u32 a:3; u32 b:5; u64 c; };
union just_union { u32 i; u64 l; };
struct rec rec_global;
struct with_union wu_global;
struct with_bits wb_global;
union just_union ju_global;
"""

# (name, offset, dtype) of struct rec as the C ABI lays it out
REC_LAYOUT = [("pid", 0, "u4"), ("ts", 8, "u8"), ("comm", 16, "S16"), ("in", 32, None), ("vals", 48, ("u2", (3,))),
              ("sc", 54, "i1"), ("ptr", 56, "u8"), ("col", 64, None), ("x", 68, "u4"), ("y", 72, "u4"),
              ("names", 76, ("S4", (2,))), ("flag", 84, "?"), ("delta", 88, "i8")]


@pytest.fixture(scope="module")
def prog_o(tmp_path_factory):
    clang = shutil.which("clang") or next(
        (shutil.which(f"clang-{v}") for v in range(30, 10, -1) if shutil.which(f"clang-{v}")), None)
    if not clang:
        pytest.skip("clang is not installed: apt-get install -y clang")
    d = tmp_path_factory.mktemp("bpfobj")
    (d / "prog.c").write_text(PROG_C)
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-c", str(d / "prog.c"), "-o", str(d / "prog.o")],
                   check=True, capture_output=True)
    return d / "prog.o"


def test_bpf_object_struct_dtype(prog_o):
    with Btf.from_file(prog_o) as b:
        d = btf.struct_dtype(b, "rec")
        inner = btf.struct_dtype(b, "inner")
        rec = b.type(b.find("rec", "struct"))
        ptr = b.type(b.resolve(next(m.type for m in rec.members if m.name == "ptr")))
        assert ptr.kind_name == "PTR" and b.type(b.resolve(ptr.ref)).name == "int"   # through const volatile
    assert d.itemsize == 96 and inner.itemsize == 16
    assert list(d.names) == [n for n, _, _ in REC_LAYOUT]
    for name, off, dt in REC_LAYOUT:
        assert d.fields[name][1] == off, name
        if dt is not None:
            assert d.fields[name][0] == np.dtype(dt), name
    assert d["in"] == inner and inner.fields["a"] == (np.dtype("u2"), 0) and inner.fields["b"] == (np.dtype("u8"), 8)
    assert d["col"].kind in "iu" and d["col"].itemsize == 4

    # a record written by hand at C offsets decodes
    buf = bytearray(96)
    struct.pack_into("<I", buf, 0, 4242)
    struct.pack_into("<Q", buf, 8, 1 << 40)
    buf[16:20] = b"bash"
    struct.pack_into("<HQ", buf, 32, 7, 0)
    struct.pack_into("<Q", buf, 40, 9)
    struct.pack_into("<3Hb", buf, 48, 1, 2, 3, -5)
    struct.pack_into("<II", buf, 68, 10, 20)
    buf[76:85] = b"ab\0\0cd\0\0\1"
    struct.pack_into("<q", buf, 88, -3)
    r = np.frombuffer(bytes(buf), d)[0]
    assert (r["pid"], r["ts"], r["comm"], r["in"]["a"], r["in"]["b"]) == (4242, 1 << 40, b"bash", 7, 9)
    assert (list(r["vals"]), r["sc"], r["x"], r["y"], list(r["names"]), r["flag"], r["delta"]) == \
        ([1, 2, 3], -5, 10, 20, [b"ab", b"cd"], True, -3)


def test_bpf_object_matches_bpftool(prog_o):
    raw = bpftool_raw(prog_o)
    with Btf.from_file(prog_o) as b:
        assert b.type_count == max(raw) + 1
        for name in ("rec", "inner"):
            tid = raw.first_struct(name)
            assert b.find(name, "struct") == tid
            d = btf.struct_dtype(b, name)
            assert d.itemsize == raw[tid]["size"]
            assert {n: d.fields[n][1] for n in d.names} == dict(flat_members(raw, tid))
            assert [(m.name, m.type, m.bit_offset, m.bitfield_size) for m in b.type(tid).members] == \
                raw[tid]["members"]
        for tid, t in raw.items():
            bt = b.type(tid)
            assert (bt.kind_name, bt.name) == (t["kind"], t["name"])
            if t["kind"] == "ARRAY":
                assert bt.array[0] == t["ref"]
    assert btf.member_offset("rec", "x", prog_o) == 68       # through the anonymous struct
    assert btf.member_offset("with_union", "u", prog_o) == 4


# ---- (c) errors ----------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(LibbpfError, match="does not exist") as e:
        Btf.from_file(tmp_path / "nope")
    assert e.value.errno == 2
    with pytest.raises(BTFError, match="CONFIG_DEBUG_INFO_BTF"):
        btf.member_offset("task_struct", "tgid", tmp_path / "nope")


@pytest.mark.parametrize("content", [os.urandom(4096), b"", b"\x9f\xeb\x01\x00" + b"\xff" * 60])
def test_garbage_file(tmp_path, capfd, content):
    f = tmp_path / "garbage"
    f.write_bytes(content)
    with pytest.raises(LibbpfError, match=str(f)):
        Btf.from_file(f)
    with pytest.raises(BTFError, match=f"cannot read BTF from {f}"):
        btf.member_offset("task_struct", "tgid", f)
    assert "libbpf" not in capfd.readouterr().err      # libbpf's warnings go into the exception


def test_elf_without_btf(tmp_path):
    with pytest.raises(LibbpfError, match="no BTF.*clang -g"):
        Btf.from_file("/bin/sh" if os.path.exists("/bin/sh") else shutil.which("python3"))


def test_unreadable_file(prog_o, tmp_path):
    f = tmp_path / "secret.o"
    f.write_bytes(prog_o.read_bytes())
    f.chmod(0)
    euid = os.geteuid()
    if euid == 0:
        os.seteuid(65534)     # root reads anything: be nobody for the call
    try:
        with pytest.raises(BTFError, match="not readable: run as root"):
            btf.member_offset("rec", "pid", f)
    finally:
        if euid == 0:
            os.seteuid(0)


def test_missing_struct_and_member(prog_o):
    with pytest.raises(BTFError, match="struct no_such_struct is not in the BTF of"):
        btf.member_offset("no_such_struct", "x", prog_o)
    with pytest.raises(BTFError, match="struct rec has no member no_such_member"):
        btf.member_offset("rec", "no_such_member", prog_o)
    with Btf.from_file(prog_o) as b:
        with pytest.raises(LibbpfError, match="no struct named 'no_such_struct'") as e:
            b.find("no_such_struct", "struct")
        assert e.value.errno == 2
        with pytest.raises(LibbpfError, match="type id 100000 is not"):
            b.type(100000)
        with pytest.raises(BTFError, match="struct no_such_struct is not in"):
            btf.struct_dtype(b, "no_such_struct")


@needs_vmlinux
def test_missing_kernel_member():
    with pytest.raises(BTFError, match="struct task_struct has no member no_such_member in the kernel's BTF"):
        btf.member_offset("task_struct", "no_such_member")
    with pytest.raises(BTFError, match="struct no_such_struct is not in the kernel's BTF"):
        btf.member_offset("no_such_struct", "x")


def test_bitfields_refused_unions_overlap(prog_o):
    for member in ("a", "b"):
        with pytest.raises(BTFError, match=f"with_bits.{member} is a bit field"):
            btf.member_offset("with_bits", member, prog_o)
    assert btf.member_offset("with_bits", "c", prog_o) == 8
    with Btf.from_file(prog_o) as b:
        with pytest.raises(BTFError, match=r"with_bits\.a is a bit field"):
            btf.struct_dtype(b, "with_bits")
        # unions decode as C lays them out: every member a field, all at the union's offset
        wu = btf.struct_dtype(b, "with_union")
        assert (wu.names, wu["u"].names, wu.fields["u"][1], wu.itemsize) == (("a", "u"), ("i", "f"), 4, 8)
        assert wu["u"].fields["i"][1] == wu["u"].fields["f"][1] == 0
        rec = np.zeros(1, wu)
        rec["u"]["f"] = 1.5
        assert rec["u"]["i"][0] == np.array([1.5], "f4").view("u4")[0]
        ju = btf.struct_dtype(b, "just_union")
        assert (ju.names, ju.itemsize, ju["l"], ju.fields["i"][1]) == (("i", "l"), 8, np.dtype("u8"), 0)


def test_libbpf_missing(monkeypatch):
    real = libbpf.ctypes.CDLL

    def fake(name, *a, **kw):
        if name == "libbpf.so.1":
            raise OSError("libbpf.so.1: cannot open shared object file")
        return real(name, *a, **kw)
    libbpf._lib.cache_clear()
    monkeypatch.setattr(libbpf.ctypes, "CDLL", fake)
    try:
        with pytest.raises(LibbpfMissingError, match="apt-get install libbpf1"):
            Btf.from_file(VMLINUX)
        assert issubclass(LibbpfMissingError, BTFError)
    finally:
        monkeypatch.undo()
        libbpf._lib.cache_clear()
