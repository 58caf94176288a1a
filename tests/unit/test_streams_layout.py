"""Record streams (runtime/streams.py) and record layouts (runtime/layout.py).

The layout tests are an independent check of the C side: every Layout of the project's
probes (and random ones) is written out as its ``c_decl()`` with a global of that type,
compiled by clang for the BPF target with BTF (``-g``), and the numpy dtype's member
offsets and size are compared with what the compiler laid out, read two ways: through
libbpf (``Btf.from_file`` + ``struct_dtype``) and from ``bpftool btf dump file X.o``'s
text.  A Layout's multi-dimensional ``char`` array is one flat array in C (layout.py's
docstring), so for ``char`` members only offsets and byte sizes are compared, not the
numpy shape.  No root needed: clang and bpftool only read and write files.
"""
from __future__ import annotations

import math
import mmap
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ebpftoolkit.runtime.btf import struct_dtype
from ebpftoolkit.runtime.layout import C_TYPES, Layout, c_defines
from ebpftoolkit.runtime.libbpf import Btf
from ebpftoolkit.runtime.streams import BATCH_WAKEUP, StreamSpec, batch_wakeup, stream_declaration, unbatch

PAGE = mmap.PAGESIZE
TYPEDEFS = ("typedef unsigned long long u64; typedef unsigned int u32; typedef unsigned short u16; "
            "typedef unsigned char u8; typedef long long s64; typedef int s32; typedef short s16; "
            "typedef signed char s8;\n")
C_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "s8": 1, "s16": 2, "s32": 4, "s64": 8, "char": 1}


# == unbatch ======================================================================
REC = np.dtype([("ts", "<u8"), ("v", "<u4"), ("tag", "S4")])


def spec_of(kernel_batch: int, dtype=REC, **kw) -> StreamSpec:
    return StreamSpec("ev", dtype, kernel_batch=kernel_batch, **kw)


def make_batches(spec: StreamSpec, ns: list[int]) -> np.ndarray:
    """Batches whose slot j of batch i holds ts = 1000*i + j (garbage-free, all slots filled)."""
    b = np.zeros(len(ns), spec.wire_dtype)
    b["n"] = ns
    b["_pad"] = 0xDEADBEEF
    for i in range(len(ns)):
        for j in range(spec.kernel_batch):
            b["recs"][i, j] = (1000 * i + j, i * 7 + j, b"b%dr%d" % (i % 10, j % 10))
    return b


def reference_unbatch(batches: np.ndarray, spec: StreamSpec) -> list[tuple]:
    out = []
    for b in batches:
        for j in range(min(int(b["n"]), spec.kernel_batch)):
            out.append(b["recs"][j].item())
    return out


def test_wire_dtype_is_a_header_and_kernel_batch_records():
    spec = spec_of(5)
    w = spec.wire_dtype
    assert w.names == ("n", "_pad", "recs")
    assert w.fields["recs"][1] == 8 and w["recs"].shape == (5,) and w["recs"].base == REC
    assert w.itemsize == 8 + 5 * REC.itemsize
    assert spec_of(0).wire_dtype == REC


def test_unbatch_full_batches_in_order():
    spec = spec_of(4)
    b = make_batches(spec, [4, 4, 4])
    got = unbatch(b, spec)
    assert got.dtype == REC
    assert list(got["ts"]) == [1000 * i + j for i in range(3) for j in range(4)]
    got["ts"][0] = 99                                   # a copy, not a view of the batches
    assert b["recs"][0, 0]["ts"] == 0


def test_unbatch_partial_batches_take_n_records_each():
    spec = spec_of(4)
    b = make_batches(spec, [1, 3, 0, 4, 2])
    got = unbatch(b, spec, partial=True)
    assert list(got["ts"]) == [0, 1000, 1001, 1002, 3000, 3001, 3002, 3003, 4000, 4001]
    assert got.tolist() == reference_unbatch(b, spec)
    # partial=False does the same when some batch is not full (it never returns unfilled slots)
    assert unbatch(b, spec).tolist() == got.tolist()


def test_unbatch_n_zero_gives_nothing_and_n_too_large_is_clipped():
    spec = spec_of(3)
    assert len(unbatch(make_batches(spec, [0, 0]), spec, partial=True)) == 0
    assert len(unbatch(make_batches(spec, [0, 0]), spec)) == 0
    b = make_batches(spec, [7, 2**32 - 1, 3])
    got = unbatch(b, spec, partial=True)
    assert list(got["ts"]) == [0, 1, 2, 1000, 1001, 1002, 2000, 2001, 2002]
    assert unbatch(b, spec).tolist() == got.tolist()


def test_unbatch_empty_input():
    spec = spec_of(8)
    for partial in (False, True):
        got = unbatch(np.empty(0, spec.wire_dtype), spec, partial=partial)
        assert got.dtype == REC and got.shape == (0,)


@settings(max_examples=200, deadline=None)
@given(kb=st.integers(1, 9), ns=st.lists(st.integers(0, 12), max_size=12), partial=st.booleans(),
       data=st.data())
def test_property_unbatch_matches_a_plain_python_reference(kb, ns, partial, data):
    spec = spec_of(kb)
    b = np.zeros(len(ns), spec.wire_dtype)
    b["n"] = ns
    raw = data.draw(st.binary(min_size=b["recs"].nbytes, max_size=b["recs"].nbytes))
    b["recs"] = np.frombuffer(raw, REC).reshape(len(ns), kb)
    got = unbatch(b, spec, partial=partial)
    assert got.dtype == REC
    assert got.tobytes() == b"".join(r.tobytes() for r in
                                     [b["recs"][i, j] for i in range(len(ns)) for j in range(min(ns[i], kb))])


# == batch_wakeup ==================================================================
def expected_wakeup(spec: StreamSpec) -> int:
    """The largest power of two <= a quarter of the ring's capacity in records, at most BATCH_WAKEUP, >= 1."""
    stride = (8 + spec.wire_dtype.itemsize + 7) // 8 * 8        # kernel: round_up(len + BPF_RINGBUF_HDR_SZ, 8)
    capacity = spec.pages * PAGE // stride
    quarter = capacity // 4
    if quarter < 1:
        return 1
    return min(BATCH_WAKEUP, 1 << (quarter.bit_length() - 1))


def test_batch_wakeup_examples():
    assert BATCH_WAKEUP & (BATCH_WAKEUP - 1) == 0
    big = StreamSpec("s", np.dtype("V16"), pages=65536, wakeup="batch")
    assert batch_wakeup(big) == BATCH_WAKEUP
    # 1 page of 24-byte records (stride 32): 128 fit, a quarter is 32
    assert batch_wakeup(StreamSpec("s", np.dtype("V24"), pages=1)) == 32
    # 1 page of 1000-byte records: 4 fit, wake up every one
    assert batch_wakeup(StreamSpec("s", np.dtype("V1000"), pages=1)) == 1
    # a record larger than a quarter of the ring: still 1, never 0
    assert batch_wakeup(StreamSpec("s", np.dtype("V3000"), pages=1)) == 1


def test_batch_wakeup_of_the_syscall_probe():
    from ebpftoolkit.probes.syscalls.probe import SyscallTrace
    for probe in (SyscallTrace(["getpid", "read"], nargs=3), SyscallTrace("getpid", nargs=0, ring_pages=8)):
        (spec,) = probe.streams()
        every = batch_wakeup(spec)
        assert every == expected_wakeup(spec)
        assert f"& ({every} - 1)" in stream_declaration(spec)


@settings(max_examples=300, deadline=None)
@given(pages_log=st.integers(0, 16), itemsize=st.integers(1, 5000), kb=st.integers(0, 64))
def test_property_batch_wakeup_is_a_power_of_two_at_most_a_quarter_of_capacity(pages_log, itemsize, kb):
    spec = StreamSpec("s", np.dtype(f"V{itemsize}"), pages=1 << pages_log, wakeup="batch", kernel_batch=kb)
    every = batch_wakeup(spec)
    assert every >= 1 and every & (every - 1) == 0 and every <= BATCH_WAKEUP
    capacity = spec.pages * PAGE // ((8 + spec.wire_dtype.itemsize + 7) & ~7)
    assert every <= max(1, capacity // 4)
    assert every == expected_wakeup(spec)


# == stream_declaration ============================================================
def test_stream_declaration_ringbuf_each():
    spec = StreamSpec("exec_events", REC, pages=32)
    text = stream_declaration(spec)
    assert "BPF_RINGBUF_OUTPUT(exec_events, 32);" in text
    assert "BPF_PERCPU_ARRAY(exec_events_lost, u64, 1);" in text
    assert "static __always_inline u64 exec_events_wakeup_flags(void) { return 0; }" in text
    assert "exec_events.ringbuf_output(data, size, exec_events_wakeup_flags())" in text
    assert "static __always_inline int exec_events_emit(void *ctx, void *data, u64 size)" in text   # 0: handed over
    assert "return -1;" in text and "return 0;" in text
    assert "_seq" not in text and "perf_submit" not in text
    assert text.count("{") == text.count("}") and "{n}" not in text and "{lost_decl}" not in text


def test_stream_declaration_ringbuf_batch_wakeup():
    spec = StreamSpec("s", REC, pages=4, wakeup="batch")
    text = stream_declaration(spec)
    every = batch_wakeup(spec)
    assert every == expected_wakeup(spec) == 128     # 4 pages / 24-byte stride = 682 records, a quarter 170
    assert "BPF_PERCPU_ARRAY(s_seq, u64, 1);" in text
    assert f"& ({every} - 1)) == 0" in text
    assert "return 2;" in text and "return 1;" in text       # BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP


def test_stream_declaration_perf_ignores_batch_wakeup_and_kernel_batch():
    spec = StreamSpec("s", REC, pages=8, wakeup="batch", kernel_batch=16)
    text = stream_declaration(spec, transport="perf")
    assert "BPF_PERF_OUTPUT(s);" in text and "s.perf_submit(ctx, data, size)" in text
    assert "RINGBUF" not in text and "_batch" not in text and "_seq" not in text
    assert "s_wakeup_flags(void) { return 0; }" in text


def test_stream_declaration_kernel_batch():
    spec = StreamSpec("sys_events", REC, pages=16, wakeup="batch", kernel_batch=8)
    text = stream_declaration(spec)
    assert "struct sys_events_batch_t {" in text
    assert f"char recs[8 * {REC.itemsize}];" in text
    assert "BPF_PERCPU_ARRAY(sys_events_batch, struct sys_events_batch_t, 1);" in text
    assert f"__builtin_memcpy(&b->recs[i * {REC.itemsize}], data, {REC.itemsize});" in text
    assert "sys_events.ringbuf_output(b, sizeof(*b), sys_events_wakeup_flags())" in text
    assert "*lost += 8;" in text


# == compiling C and reading its BTF ===================================================
def clang() -> str:
    path = shutil.which("clang")
    if not path:
        pytest.skip("clang is not installed (apt-get install -y clang)")
    return path


def bpftool() -> str | None:
    return shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")


def compile_bpf(tmp: Path, body: str, globals_: list[str]) -> Path:
    src = tmp / "layout.c"
    src.write_text(TYPEDEFS + body + "".join(f"struct {n} g_{n};\n" for n in globals_))
    obj = tmp / "layout.o"
    res = subprocess.run([clang(), "-O2", "-g", "-target", "bpf", "-c", str(src), "-o", str(obj)],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"clang failed on:\n{src.read_text()}\n{res.stderr}"
    return obj


def bpftool_structs(obj: Path) -> tuple[dict, dict]:
    """From ``bpftool btf dump file OBJ``: ({struct: (size, [(member, byte offset, byte size)])}, {var: size})."""
    out = subprocess.run([bpftool(), "btf", "dump", "file", str(obj)], check=True, capture_output=True,
                         text=True).stdout
    types: dict[int, dict] = {}
    cur = None
    var_sizes = {}
    for line in out.splitlines():
        if m := re.match(r"\[(\d+)\] (\w+) '([^']*)'(.*)", line):
            attrs = dict(re.findall(r"(\w+)=(\w+)", m[4]))
            cur = types[int(m[1])] = {"kind": m[2], "name": m[3], "attrs": attrs, "members": []}
        elif m := re.match(r"\t'([^']*)' type_id=(\d+) bits_offset=(\d+)$", line):
            cur["members"].append((m[1], int(m[2]), int(m[3])))
        elif m := re.match(r"\ttype_id=\d+ offset=\d+ size=(\d+) \(VAR '([^']*)'\)", line):
            var_sizes[m[2]] = int(m[1])

    def size_of(tid: int) -> int:
        t = types[tid]
        if t["kind"] in ("INT", "STRUCT", "UNION", "ENUM"):
            return int(t["attrs"]["size"])
        if t["kind"] in ("TYPEDEF", "CONST", "VOLATILE"):
            return size_of(int(t["attrs"]["type_id"]))
        if t["kind"] == "ARRAY":
            return int(t["attrs"]["nr_elems"]) * size_of(int(t["attrs"]["type_id"]))
        raise AssertionError(f"unexpected BTF kind {t['kind']}")

    structs = {}
    for t in types.values():
        if t["kind"] == "STRUCT":
            for _, _, bits in t["members"]:
                assert bits % 8 == 0
            structs[t["name"]] = (int(t["attrs"]["size"]),
                                  [(n, bits // 8, size_of(tid)) for n, tid, bits in t["members"]])
    return structs, var_sizes


def flat(dt: np.dtype) -> tuple[np.dtype, tuple]:
    """(scalar base, full shape) of a possibly nested subarray dtype."""
    shape = ()
    while dt.subdtype is not None:
        dt, sub = dt.subdtype
        shape += sub
    return dt, shape


def check_layout_against_btf(layout: Layout, obj: Path) -> None:
    dt = layout.dtype
    ctypes_of = {name: ctype for name, ctype, _ in layout.fields}
    # oracle 1: libbpf's parse of the object's BTF
    with Btf.from_file(obj) as btf:
        got = struct_dtype(btf, layout.c_name)
    assert got.itemsize == dt.itemsize, (layout.c_decl(), got, dt)
    assert got.names == dt.names
    for name in dt.names:
        want_t, want_off = dt.fields[name][:2]
        got_t, got_off = got.fields[name][:2]
        assert got_off == want_off, (name, layout.c_decl())
        assert got_t.itemsize == want_t.itemsize, (name, got_t, want_t)
        if ctypes_of[name] != "char":
            assert flat(got_t) == flat(want_t), (name, got_t, want_t)
    # oracle 2: bpftool's text
    if bpftool() is not None:
        structs, var_sizes = bpftool_structs(obj)
        size, members = structs[layout.c_name]
        assert size == dt.itemsize
        assert var_sizes[f"g_{layout.c_name}"] == dt.itemsize
        assert [(n, off, sz) for n, off, sz in members] == \
            [(n, dt.fields[n][1], dt.fields[n][0].itemsize) for n in dt.names]


def real_layouts() -> list[Layout]:
    from ebpftoolkit.probes.execsnoop.config import ExecConfig
    from ebpftoolkit.probes.execsnoop.probe import TASK_EVENT, exec_layout
    from ebpftoolkit.probes.gpu.probe import EVENT, POINT
    from ebpftoolkit.probes.pmu.counters import record_layout
    from ebpftoolkit.probes.pmu.sampler import sample_layout
    from ebpftoolkit.probes.syscalls.probe import SYS_KEY, SyscallTrace
    return [exec_layout(ExecConfig()), exec_layout(ExecConfig(max_args=3, max_arg_len=9, filename_len=17)),
            TASK_EVENT, EVENT, POINT, SYS_KEY, SyscallTrace(["getpid", "read"], nargs=3).event_layout,
            SyscallTrace("getpid", nargs=0).event_layout, record_layout(3), record_layout(1), sample_layout(8),
            sample_layout(1)]


_REAL = real_layouts()


@pytest.mark.parametrize("layout", _REAL, ids=[f"{lay.c_name}-{lay.dtype.itemsize}" for lay in _REAL])
def test_real_layouts_match_the_compiled_c(layout, tmp_path):
    obj = compile_bpf(tmp_path, layout.c_decl(), [layout.c_name])
    check_layout_against_btf(layout, obj)


def test_all_real_layouts_in_one_object_like_a_probe_would(tmp_path):
    names = {lay.c_name: lay for lay in _REAL}          # one of each struct name
    body = "".join(lay.c_decl() for lay in names.values())
    obj = compile_bpf(tmp_path, body, list(names))
    for lay in names.values():
        check_layout_against_btf(lay, obj)


def test_multidimensional_char_array_is_flat_in_c_and_strings_in_numpy(tmp_path):
    lay = Layout("ev", [("pid", "u32"), ("args", "char", (3, 5)), ("x", "u16")])
    assert "char args[15];" in lay.c_decl()
    assert lay.dtype["args"].shape == (3,) and lay.dtype["args"].base == np.dtype("S5")
    assert lay.dtype.fields["x"][1] == 20 and lay.dtype.itemsize == 24
    obj = compile_bpf(tmp_path, lay.c_decl(), ["ev"])
    check_layout_against_btf(lay, obj)
    rec = np.zeros(1, lay.dtype)
    rec["args"][0] = [b"ab", b"cdefg", b"h"]
    raw = rec.tobytes()[4:19]                       # what the BPF code writes by hand at args[k * 5]
    assert raw == b"ab\0\0\0cdefgh\0\0\0\0"


def test_layout_knows_the_c_types_this_test_covers():
    assert set(C_SIZES) == set(C_TYPES) | {"char"}
    for ctype, fmt in C_TYPES.items():
        assert np.dtype(fmt).itemsize == C_SIZES[ctype]
        assert np.dtype(fmt).kind == ("i" if ctype.startswith("s") else "u")


def test_layout_rejects_unknown_types():
    with pytest.raises(ValueError, match="unknown C type 'float'"):
        Layout("bad", [("x", "float")])
    with pytest.raises(ValueError, match="unknown C type 'int'"):
        Layout("bad", [("x", "u8"), ("y", "int", 3)])


def test_layout_alignment_examples():
    lay = Layout("a", [("a", "u8"), ("b", "u64"), ("c", "u16"), ("d", "u8", 3), ("e", "s32")])
    assert [lay.dtype.fields[n][1] for n in "abcde"] == [0, 8, 16, 18, 24]
    assert lay.dtype.itemsize == 32
    assert Layout("b", [("c", "char", 5)]).dtype.itemsize == 5
    assert Layout("c", [("c", "char", 5), ("x", "u16")]).dtype.itemsize == 8


_IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)     # the struct is s_<this>
_FIELD = st.tuples(st.sampled_from(sorted(C_SIZES)),
                   st.one_of(st.just(()), st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_IDENT, fields=st.lists(_FIELD, min_size=1, max_size=12))
def test_property_random_layouts_match_the_compiled_c(name, fields, tmp_path):
    lay = Layout(f"s_{name}", [(f"f{i}", t, d) for i, (t, d) in enumerate(fields)])
    for i, (t, d) in enumerate(fields):
        assert lay.dtype.fields[f"f{i}"][0].itemsize == C_SIZES[t] * math.prod(d)
    obj = compile_bpf(tmp_path, lay.c_decl(), [lay.c_name])
    check_layout_against_btf(lay, obj)


# == the kernel batch struct's size against its wire dtype ============================
def _batch_struct(text: str, name: str) -> str:
    m = re.search(rf"struct {name}_batch_t \{{.*?\}};\n", text, re.S)
    assert m, text
    return m[0]


def _compiled_batch_size(tmp_path: Path, spec: StreamSpec) -> tuple[int, int]:
    obj = compile_bpf(tmp_path, _batch_struct(stream_declaration(spec), spec.name), [f"{spec.name}_batch_t"])
    with Btf.from_file(obj) as btf:
        dt = struct_dtype(btf, f"{spec.name}_batch_t")
    return dt.itemsize, dt.fields["recs"][1]


def test_kernel_batch_struct_matches_wire_dtype_for_the_syscall_probe(tmp_path):
    from ebpftoolkit.probes.syscalls.probe import SyscallTrace
    for i, probe in enumerate([SyscallTrace(["getpid", "read"], nargs=3), SyscallTrace("getpid", nargs=0,
                                                                                         kernel_batch=7)]):
        (spec,) = probe.streams()
        d = tmp_path / str(i)
        d.mkdir()
        assert _compiled_batch_size(d, spec) == (spec.wire_dtype.itemsize, 8)


def test_kernel_batch_struct_matches_wire_dtype_for_odd_record_sizes(tmp_path):
    spec = StreamSpec("odd", Layout("odd_rec", [("c", "char", 5)]).dtype, kernel_batch=3)
    assert _compiled_batch_size(tmp_path, spec) == (spec.wire_dtype.itemsize, 8)


# == c_defines ========================================================================
def test_c_defines_are_what_the_preprocessor_sees(tmp_path):
    values = {"A": 1, "B_C": -7, "BIG": 2**40, "ZERO": 0}
    text = c_defines(values, "EXEC_F_")
    assert text == ("#define EXEC_F_A 1\n#define EXEC_F_B_C -7\n#define EXEC_F_BIG 1099511627776\n"
                    "#define EXEC_F_ZERO 0\n")
    assert c_defines({}) == ""
    src = tmp_path / "d.c"
    src.write_text(text + "".join(f"_Static_assert(EXEC_F_{k} == {v}LL, \"{k}\");\n" for k, v in values.items()))
    res = subprocess.run([clang(), "-target", "bpf", "-fsyntax-only", str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
