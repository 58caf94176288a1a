"""A custom probe's records and maps as DataFrames (probes/custom/tables.py), checked against an
independent decoding of the same bytes: random C-like types (integers of every width and sign,
floats, char arrays holding any bytes, nested structs, unions, arrays of any of these) and random
records.  The expected values are read from the raw bytes with int.from_bytes/struct here, never
with numpy's view of the dtype or the functions under test."""
from __future__ import annotations

import math
import struct

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ebpftoolkit.probes.custom.tables import columns, log2_buckets, map_frame, plot_log2, records_frame  # noqa: E402
from ebpftoolkit.runtime.clock import MonotonicClock  # noqa: E402

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: the generators' own checks: the first example found is enough (shrinking it costs seconds)
FIRST = settings(database=None, max_examples=5000, phases=[Phase.generate], deadline=None)

# -- C-like types: ("int", size, signed) ("float", size) ("char", n) ("array", elem, n)
#    ("struct", [(name, type, offset)], size) ("union", [(name, type)], size)

NAMES = ["a", "b", "pid", "x1", "_y", "cnt", "value", "key", "comm", "ts", "lat_ns", "u"]


def size_of(t) -> int:
    kind = t[0]
    if kind in ("int", "float", "char"):
        return t[1]
    if kind == "array":
        return size_of(t[1]) * t[2]
    return t[2]                                 # struct, union: their size


def dtype_of(t) -> np.dtype:
    """The numpy dtype runtime/btf.py would give the type (char arrays: S<n>, others subarrays)."""
    kind = t[0]
    if kind == "int":
        return np.dtype(f"<{'i' if t[2] else 'u'}{t[1]}")
    if kind == "float":
        return np.dtype(f"<f{t[1]}")
    if kind == "char":
        return np.dtype(f"S{t[1]}")
    if kind == "array":
        return np.dtype((dtype_of(t[1]), (t[2],)))
    if kind == "struct":
        return np.dtype({"names": [m[0] for m in t[1]], "formats": [dtype_of(m[1]) for m in t[1]],
                         "offsets": [m[2] for m in t[1]], "itemsize": t[2]})
    return np.dtype({"names": [m[0] for m in t[1]], "formats": [dtype_of(m[1]) for m in t[1]],
                     "offsets": [0] * len(t[1]), "itemsize": t[2]})


scalars = st.one_of(
    st.tuples(st.just("int"), st.sampled_from([1, 2, 4, 8]), st.booleans()),
    st.tuples(st.just("float"), st.sampled_from([2, 4, 8])),
    st.tuples(st.just("char"), st.integers(1, 12)),
)


@st.composite
def c_types(draw, depth: int = 0):
    """Any type a struct member can have; nesting stops at depth 3."""
    if depth >= 3:
        return draw(scalars)
    kind = draw(st.sampled_from(["scalar", "scalar", "scalar", "array", "struct", "union"]))
    if kind == "scalar":
        return draw(scalars)
    if kind == "array":
        return ("array", draw(c_types(depth + 1)), draw(st.integers(1, 3)))
    return draw(aggregates(depth, kind))


@st.composite
def aggregates(draw, depth: int = 0, kind: str = "struct"):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    members = [(n, draw(c_types(depth + 1))) for n in names]
    if kind == "union":
        return ("union", members, max(size_of(m) for _, m in members) + draw(st.integers(0, 3)))
    placed, at = [], 0
    for n, m in members:                       # any padding before a member, and at the end
        at += draw(st.integers(0, 3))
        placed.append((n, m, at))
        at += size_of(m)
    return ("struct", placed, at + draw(st.integers(0, 3)))


def _members(t):
    return [(m[0], m[1], m[2]) for m in t[1]] if t[0] == "struct" else [(m[0], m[1], 0) for m in t[1]]


def leaves(t, raw: bytes, off: int, name: str) -> list[tuple[str, str, object]]:
    """(column name, "int" | "float" | "text", value) of every leaf of ``t`` at ``raw[off:]``."""
    kind = t[0]
    if kind == "int":
        return [(name or "value", "int", int.from_bytes(raw[off:off + t[1]], "little", signed=t[2]))]
    if kind == "float":
        return [(name or "value", "float", raw[off:off + t[1]])]           # the bits, NaNs included
    if kind == "char":
        text = raw[off:off + t[1]].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        return [(name or "value", "text", text)]
    if kind == "array":                         # C's row-major order: int a[2][3] is a[0]..a[5]
        base, count = t, 1
        while base[0] == "array":
            count *= base[2]
            base = base[1]
        step = size_of(base)
        out = []
        for i in range(count):
            out += leaves(base, raw, off + i * step, f"{name or 'value'}[{i}]")
        return out
    out = []
    for m_name, m_type, m_off in _members(t):
        out += leaves(m_type, raw, off + m_off, f"{name}.{m_name}" if name else m_name)
    return out


def leaf_names(t) -> list[str]:
    return [n for n, _, _ in leaves(t, bytes(size_of(t)), 0, "")]


# bytes that make hostile text: NULs inside, valid multi-byte UTF-8, bytes that are never UTF-8
_PIECES = [b"\0", b"a", b"Z", b" ", "é".encode(), "ス".encode(), b"\xff", b"\x80", b"\xc3", b"\x1b[2J", b"\0\0"]


@st.composite
def raw_bytes(draw, n: int) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(min_size=n, max_size=n))
    chunks = b"".join(draw(st.lists(st.sampled_from(_PIECES), max_size=n + 4)))
    return (chunks + draw(st.binary(min_size=n, max_size=n)))[:n]


@st.composite
def records(draw, top=None):
    """(type, raw bytes, numpy records) with 0 to 6 records of a random type."""
    t = top if top is not None else draw(st.one_of(aggregates(), aggregates(), c_types(1)))
    n = draw(st.integers(0, 6))
    raw = draw(raw_bytes(n * size_of(t)))
    arr = np.frombuffer(raw, dtype=dtype_of(t), count=n) if n else np.zeros(0, dtype_of(t))
    return t, raw, arr


@FAST
@given(records())
def test_records_frame_gives_every_leaf_exactly_in_declaration_order(case):
    t, raw, arr = case
    size = size_of(t)
    assert arr.dtype.itemsize * math.prod(arr.shape[1:]) == size      # (the test's own layouts are right)
    df = records_frame(arr, None)
    rows = [leaves(t, raw, i * size, "") for i in range(len(arr))]
    names = leaf_names(t)
    assert list(df.columns) == names
    assert len(df) == len(arr)
    assert list(columns(arr)) == names
    kinds = {n: k for n, k, _ in leaves(t, bytes(size), 0, "")}
    for j, name in enumerate(names):
        want = [r[j][2] for r in rows]
        col = df[name]
        if kinds[name] == "int":
            assert col.dtype.kind in "iu"
            assert [int(v) for v in col.to_numpy()] == want
        elif kinds[name] == "float":
            vals = col.to_numpy()
            assert vals.dtype.kind == "f"
            assert [v.tobytes() for v in vals] == want
        else:
            assert col.dtype == object
            assert all(type(v) is str for v in col)
            assert list(col) == want


@FAST
@given(records())
def test_integer_columns_keep_their_width_and_sign(case):
    t, _raw, arr = case
    df = records_frame(arr, None)
    want = {}

    def walk(t, name):
        if t[0] == "int":
            want[name or "value"] = np.dtype(f"{'i' if t[2] else 'u'}{t[1]}")
        elif t[0] == "float":
            want[name or "value"] = np.dtype(f"f{t[1]}")
        elif t[0] == "array":
            base, count = t, 1
            while base[0] == "array":
                count *= base[2]
                base = base[1]
            for i in range(count):
                walk(base, f"{name or 'value'}[{i}]")
        elif t[0] in ("struct", "union"):
            for m_name, m_type, _ in _members(t):
                walk(m_type, f"{name}.{m_name}" if name else m_name)

    walk(t, "")
    for name, dt in want.items():
        assert df[name].dtype == dt, name


def test_the_generators_make_the_hostile_shapes_they_promise():
    """Unions, arrays of structs, multi-dimensional arrays, text with NULs inside and non-UTF-8 bytes, empty
    record sets: drawn (else the properties above prove less)."""
    from hypothesis import find

    def has(t, pred):
        if pred(t):
            return True
        if t[0] == "array":
            return has(t[1], pred)
        if t[0] in ("struct", "union"):
            return any(has(m[1], pred) for m in t[1])
        return False

    find(records(), lambda c: has(c[0], lambda t: t[0] == "union") and len(c[2]) > 1, settings=FIRST)
    find(records(), lambda c: has(c[0], lambda t: t[0] == "array" and t[1][0] == "struct"), settings=FIRST)
    find(records(), lambda c: has(c[0], lambda t: t[0] == "array" and t[1][0] == "array"), settings=FIRST)
    find(records(), lambda c: len(c[2]) == 0 and has(c[0], lambda t: t[0] == "array"), settings=FIRST)
    find(records(), lambda c: any(k == "text" and "\udcff" in v for i in range(len(c[2]))
                                  for _, k, v in leaves(c[0], c[1], i * size_of(c[0]), "")), settings=FIRST)
    find(records(), lambda c: any(k == "text" and "é" in v for i in range(len(c[2]))
                                  for _, k, v in leaves(c[0], c[1], i * size_of(c[0]), "")), settings=FIRST)


def test_columns_names_nested_structs_unions_and_arrays_as_documented():
    t = ("struct", [("pid", ("int", 4, False), 0),
                    ("in", ("struct", [("a", ("int", 2, True), 0), ("b", ("char", 4), 2)], 6), 4),
                    ("u", ("union", [("x", ("int", 4, False)), ("y", ("float", 4))], 4), 10),
                    ("vals", ("array", ("int", 1, False), 3), 14),
                    ("m", ("array", ("array", ("int", 2, False), 3), 2), 17),
                    ("pts", ("array", ("struct", [("x", ("int", 1, True), 0), ("y", ("int", 1, True), 1)], 2), 2), 29),
                    ("names", ("array", ("char", 3), 2), 33)], 39)
    arr = np.zeros(2, dtype_of(t))
    assert list(columns(arr)) == ["pid", "in.a", "in.b", "u.x", "u.y", "vals[0]", "vals[1]", "vals[2]",
                                  "m[0]", "m[1]", "m[2]", "m[3]", "m[4]", "m[5]",
                                  "pts[0].x", "pts[0].y", "pts[1].x", "pts[1].y", "names[0]", "names[1]"]
    arr["u"]["x"] = 0x3F800000                       # a union's members read the same bytes
    arr["m"][1] = [[1, 2, 3], [4, 5, 6]]
    arr["names"][1] = [b"ab\xff", b"\0zz"]
    df = records_frame(arr, None)
    assert list(df["u.y"]) == [1.0, 1.0] and list(df["u.x"]) == [0x3F800000] * 2
    assert [df[f"m[{i}]"][1] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    assert list(df["names[0]"]) == ["", "ab\udcff"] and list(df["names[1]"]) == ["", ""]


def test_plain_records_are_one_value_column():
    assert list(records_frame(np.array([3, 1], "u8"), None)["value"]) == [3, 1]
    assert list(records_frame(np.array([b"a\0b", b"\xfe"], "S3"), None)["value"]) == ["a", "\udcfe"]
    df = records_frame(np.array([[1, 2], [3, 4]], "i2"), None)       # records that are an array
    assert list(df.columns) == ["value[0]", "value[1]"] and list(df["value[1]"]) == [2, 4]


def test_empty_records_give_an_empty_table_with_every_column():
    """A stream with no records still has its columns (probe.py makes its table from np.empty(0, dtype))."""
    dt = np.dtype([("pid", "u4"), ("comm", "S16"), ("vals", "u2", (3,)), ("in", [("a", "i8")]),
                   ("pts", [("x", "u1")], (2,))])
    df = records_frame(np.empty(0, dt), MonotonicClock(0))
    assert list(df.columns) == ["pid", "comm", "vals[0]", "vals[1]", "vals[2]", "in.a", "pts[0].x", "pts[1].x"]
    assert len(df) == 0 and df["comm"].dtype == object and df["vals[2]"].dtype == np.uint16


@FAST
@given(st.lists(st.integers(0, 2**62), max_size=8), st.integers(-2**60, 2**60))
def test_a_u64_ts_becomes_wall_clock_time(ts, offset):
    dt = np.dtype([("ts", "u8"), ("pid", "u4"), ("in", [("ts", "u8")]), ("t32", "u4")])
    arr = np.zeros(len(ts), dt)
    arr["ts"] = ts
    arr["in"]["ts"] = ts
    df = records_frame(arr, MonotonicClock(offset))
    assert df["ts"].dtype == np.dtype("datetime64[ns]")
    for v, got in zip(ts, df["ts"]):
        if v == 0:                                   # unset: no time
            assert got is pd.NaT
        else:
            assert pd.Timestamp(got).value == v + offset
    assert df["in.ts"].dtype == np.uint64 and list(df["in.ts"]) == ts       # only the top-level field
    assert list(records_frame(arr, None)["ts"]) == ts                      # no clock: left as it is


def test_a_ts_that_is_not_u64_stays_a_number():
    for fmt in ("u4", "i8"):
        arr = np.array([(5,)], [("ts", fmt)])
        df = records_frame(arr, MonotonicClock(10**9))
        assert df["ts"].dtype == np.dtype(fmt) and df["ts"][0] == 5


# -- maps ------------------------------------------------------------------------------------------

int_types = st.tuples(st.just("int"), st.sampled_from([1, 2, 4, 8]), st.booleans())
key_types = st.one_of(
    int_types, st.tuples(st.just("char"), st.integers(1, 6)),
    st.tuples(st.just("array"), int_types, st.integers(1, 3)),          # e.g. u32 key[2] (an IPv6 address...)
    st.builds(lambda ms: ("struct", [(n, m, i * 8) for i, (n, m) in enumerate(ms)], 8 * len(ms)),
              st.lists(st.tuples(st.sampled_from(["pid", "cpu", "comm", "value", "a"]),
                                 st.one_of(int_types, st.tuples(st.just("char"), st.integers(1, 8)))),
                       min_size=1, max_size=3, unique_by=lambda m: m[0])))
value_types = st.one_of(
    int_types, st.tuples(st.just("float"), st.sampled_from([4, 8])),
    st.builds(lambda ms: ("struct", [(n, m, i * 8) for i, (n, m) in enumerate(ms)], 8 * len(ms)),
              st.lists(st.tuples(st.sampled_from(["count", "bytes", "pid", "comm", "a"]),
                                 st.one_of(int_types, st.tuples(st.just("float"), st.sampled_from([4, 8])),
                                           st.tuples(st.just("char"), st.integers(1, 8)))),
                       min_size=1, max_size=3, unique_by=lambda m: m[0])))


def _sort_key(row):
    """Python's order of a key row (what a stable sort on the key columns gives)."""
    return tuple(v for _, _, v in row)


def _map_names(kt, vt):
    if kt[0] == "struct":
        knames = [m[0] for m in kt[1]]
    else:
        knames = leaf_names(kt) if kt[0] == "array" and kt[2] > 1 else ["key"]
        knames = [k.replace("value", "key", 1) for k in knames]
    vnames = ["value"] if vt[0] != "struct" else [m[0] for m in vt[1]]
    return knames, [f"value.{v}" if v in knames else v for v in vnames]


def _tame(raw: bytes) -> bytes:
    """Only ASCII and NULs (see test_a_map_keyed_by_several_fields_with_non_utf8_text)."""
    return bytes(b if 0x20 <= b < 0x7F else 0 for b in raw)


@FAST
@given(key_types, value_types, st.data())
def test_map_frame_gives_keys_then_values_sorted_by_key(kt, vt, data):
    n = data.draw(st.integers(0, 7))
    kraw = data.draw(raw_bytes(n * size_of(kt)))
    if kt[0] == "struct" and len(kt[1]) > 1 and any(m[1][0] == "char" for m in kt[1]):
        kraw = _tame(kraw)
    vraw = data.draw(raw_bytes(n * size_of(vt)))
    keys = np.frombuffer(kraw, dtype_of(kt), count=n) if n else np.zeros(0, dtype_of(kt))
    values = np.frombuffer(vraw, dtype_of(vt), count=n) if n else np.zeros(0, dtype_of(vt))
    df = map_frame(keys, values)
    knames, vnames = _map_names(kt, vt)
    assert list(df.columns) == knames + vnames and len(df) == n
    krows = [leaves(kt, kraw, i * size_of(kt), "") for i in range(n)]
    vrows = [leaves(vt, vraw, i * size_of(vt), "") for i in range(n)]
    order = sorted(range(n), key=lambda i: _sort_key(krows[i]))    # sorted() is stable, as the frame's sort
    for j, name in enumerate(knames):
        assert list(df[name]) == [krows[i][j][2] for i in order], name
    for j, name in enumerate(vnames):
        kind = vrows[0][j][1] if n else None
        got = list(df[name])
        want = [vrows[i][j][2] for i in order]
        if kind == "float":
            assert [v.tobytes() for v in df[name].to_numpy()] == want       # the bits: signalling NaNs too
        else:
            assert [int(g) if kind == "int" else g for g in got] == want, name


def test_map_frame_names_the_value_fields_that_clash_with_key_fields():
    keys = np.array([(2, b"b"), (1, b"a")], [("pid", "u4"), ("comm", "S4")])
    values = np.array([(20, 7), (10, 8)], [("pid", "u8"), ("n", "u8")])
    df = map_frame(keys, values)
    assert list(df.columns) == ["pid", "comm", "value.pid", "n"]
    assert df.to_dict("list") == {"pid": [1, 2], "comm": ["a", "b"], "value.pid": [10, 20], "n": [8, 7]}


def test_an_array_key_keeps_every_element():
    """``u32 key[2]`` (typedef'd, as BTF gives it): one column per element, sorted on all of them."""
    keys = np.array([[1, 5], [1, 2], [0, 9]], "u4")
    df = map_frame(keys, np.array([10, 20, 30], "u8"))
    assert df.to_dict("list") == {"key[0]": [0, 1, 1], "key[1]": [9, 2, 5], "value": [30, 20, 10]}


def test_map_frame_of_an_empty_map():
    df = map_frame(np.zeros(0, "u4"), np.zeros(0, "u8"))
    assert list(df.columns) == ["key", "value"] and len(df) == 0
    df = map_frame(np.zeros(0, [("pid", "u4")]), np.zeros((0, 4), [("n", "u8"), ("c", "S4")]), percpu=True)
    assert list(df.columns) == ["pid", "n", "c"] and len(df) == 0


percpu_fields = st.lists(
    st.tuples(st.sampled_from(["count", "bytes", "max", "comm", "avg"]),
              st.one_of(int_types, st.tuples(st.just("float"), st.sampled_from([2, 4, 8])),
                        st.tuples(st.just("char"), st.integers(1, 8)))),
    min_size=1, max_size=4, unique_by=lambda m: m[0])


def _int_values(size, signed, ncpus):
    """Any value of the type, but a u64/s64 small enough that ncpus of them add up inside int64."""
    bits = 8 * size
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if bits == 64:
        lo, hi = max(lo, -(1 << 59)), min(hi, 1 << 59)
    return st.integers(lo, hi)


@FAST
@given(st.one_of(st.none(), percpu_fields), st.integers(1, 8), st.data())
def test_map_frame_sums_per_cpu_values_exactly(fields, ncpus, data):
    """A per-CPU map's numbers are added over the CPUs (exactly: integers never wrap, u8 included);
    text is the first CPU's."""
    n = data.draw(st.integers(0, 6))
    key = np.array(data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n, unique=True)), "u4")
    if fields is None:                                          # a scalar u64 value
        fields_ = [("value", ("int", 8, False))]
        vdt = np.dtype("u8")
    else:
        fields_ = fields
        vdt = np.dtype([(f, dtype_of(t)) for f, t in fields])
    per = np.zeros((n, ncpus), vdt)
    want = {}
    for f, t in fields_:
        cells = []
        for i in range(n):
            row = []
            for c in range(ncpus):
                if t[0] == "int":
                    v = data.draw(_int_values(t[1], t[2], ncpus))
                elif t[0] == "float":                           # integral floats: every sum is exact
                    v = float(data.draw(st.integers(-200, 200)))
                else:
                    v = data.draw(st.binary(max_size=t[1]))
                row.append(v)
            cells.append(row)
        for i in range(n):
            for c in range(ncpus):
                if fields is None:
                    per[i, c] = cells[i][c]
                else:
                    per[f][i, c] = cells[i][c]
        if t[0] == "char":
            want[f] = [cells[i][0].split(b"\0", 1)[0].decode("utf-8", "surrogateescape") for i in range(n)]
        else:
            want[f] = [sum(cells[i]) for i in range(n)]
    df = map_frame(key, per, percpu=True)
    order = sorted(range(n), key=lambda i: int(key[i]))
    assert list(df.columns) == ["key"] + [f for f, _ in fields_]
    assert [int(k) for k in df["key"]] == [int(key[i]) for i in order]
    for f, t in fields_:
        got = list(df[f])
        assert got == [want[f][i] for i in order], f
        if t[0] == "int":
            assert df[f].dtype.kind in "iu"


def test_per_cpu_u8_counters_do_not_wrap_when_summed():
    per = np.full((1, 4), 200, "u1")
    assert map_frame(np.array([0], "u4"), per, percpu=True)["value"][0] == 800


# -- log2 histograms ----------------------------------------------------------------------------------

def bpf_log2(v: int) -> int:
    """bcc's helpers.h bpf_log2(), on a u32 (floor(log2(v)), 0 for 0)."""
    r = int(v > 0xFFFF) << 4
    v >>= r
    shift = int(v > 0xFF) << 3
    v >>= shift
    r |= shift
    shift = int(v > 0xF) << 2
    v >>= shift
    r |= shift
    shift = int(v > 0x3) << 1
    v >>= shift
    r |= shift
    return r | (v >> 1)


def bpf_log2l(v: int) -> int:
    """bcc's helpers.h bpf_log2l(): the slot BPF_HISTOGRAM programs increment for a u64 ``v``."""
    hi = v >> 32
    return bpf_log2(hi) + 33 if hi else bpf_log2(v & 0xFFFFFFFF) + 1


def test_the_test_s_bpf_log2l_is_bcc_s():
    assert [bpf_log2l(v) for v in (0, 1, 2, 3, 4, 7, 8, 1023, 1024, 2**32 - 1, 2**32, 2**63 - 1)] == \
        [1, 1, 2, 2, 3, 3, 4, 10, 11, 32, 33, 63]


def _hist_frame(counts: dict[int, int], key_dtype="i4") -> pd.DataFrame:
    slots = sorted(counts)
    return map_frame(np.array(slots, key_dtype), np.array([counts[s] for s in slots], "u8"))


@FAST
@given(st.lists(st.integers(1, 2**63 - 1), max_size=60), st.sampled_from([64, 80]), st.sampled_from(["i4", "u4"]))
def test_log2_buckets_hold_the_values_bpf_counted_in_them(values, size, key_dtype):
    """What a BPF program does (``h.increment(bpf_log2l(v))`` over a map of ``size`` slots, all read back, zeros
    included), then buckets: each value lies in its slot's [low, high]; the counts add up; the buckets stop at the
    last slot used."""
    counts = {s: 0 for s in range(size)}
    for v in values:
        counts[bpf_log2l(v)] += 1
    b = log2_buckets(_hist_frame(counts, key_dtype))
    assert list(b.columns) == ["slot", "low", "high", "count"]
    top = max((bpf_log2l(v) for v in values), default=-1)
    assert list(b["slot"]) == list(range(top + 1))
    assert int(b["count"].sum()) == len(values)
    assert list(b["count"]) == [counts[s] for s in range(top + 1)]
    low, high = dict(zip(b["slot"], b["low"])), dict(zip(b["slot"], b["high"]))
    for v in values:
        s = bpf_log2l(v)
        assert low[s] <= v <= high[s]
    for s in range(1, top + 1):          # slot k is [2^(k-1), 2^k - 1], slot 0 is [0, 0] (bcc's print_log2_hist)
        assert (int(low[s]), int(high[s])) == (2 ** (s - 1), 2 ** s - 1)
    if top >= 0:
        assert (int(low[0]), int(high[0])) == (0, 0)
        for s in range(1, top):          # the buckets tile the numbers: no gap, no overlap
            assert int(high[s]) + 1 == int(low[s + 1])


@FAST
@given(st.dictionaries(st.integers(0, 63), st.integers(0, 10**12), max_size=20), st.integers(1, 4))
def test_log2_buckets_of_any_slots_and_counts(counts, ncpus):
    """Sparse maps (hash histograms give only the slots used), zero counts, per-CPU maps (summed first)."""
    slots = sorted(counts)
    per = np.zeros((len(slots), ncpus), "u8")
    for i, s in enumerate(slots):
        per[i, 0] = counts[s] - counts[s] // 2
        per[i, ncpus - 1] += counts[s] // 2
    b = log2_buckets(map_frame(np.array(slots, "i4"), per, percpu=True))
    used = [s for s in slots if counts[s] > 0]
    top = max(used, default=-1)
    assert len(b) == top + 1
    assert list(b["count"]) == [counts.get(s, 0) for s in range(top + 1)]
    assert int(b["count"].sum()) == sum(counts.values())


def test_log2_buckets_of_an_empty_or_all_zero_histogram():
    for df in (pd.DataFrame({"key": np.zeros(0, "i4"), "value": np.zeros(0, "u8")}),
               pd.DataFrame({"key": [0, 1, 2], "value": [0, 0, 0]})):
        b = log2_buckets(df)
        assert list(b.columns) == ["slot", "low", "high", "count"] and len(b) == 0


def test_log2_buckets_example():
    b = log2_buckets(pd.DataFrame({"key": [3, 1, 5], "value": [4, 1, 2]}))
    assert b.to_dict("list") == {"slot": [0, 1, 2, 3, 4, 5], "low": [0, 1, 2, 4, 8, 16],
                                 "high": [0, 1, 3, 7, 15, 31], "count": [0, 1, 0, 4, 0, 2]}


def test_plot_log2_draws_one_labelled_bar_per_bucket():
    import matplotlib.pyplot as plt
    b = log2_buckets(pd.DataFrame({"key": [1, 3], "value": [5, 2]}))
    ax = plot_log2(b, "lat")
    assert [p.get_height() for p in ax.patches] == [0, 5, 0, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2-3", "4-7"]
    assert ax.get_title() == "lat"
    plt.close(ax.figure)
    ax = plot_log2(log2_buckets(pd.DataFrame({"key": [], "value": []})))
    assert len(ax.patches) == 0 and ax.get_title() == "log2 histogram"
    assert any("empty" in t.get_text() for t in ax.texts)
    plt.close(ax.figure)


def test_non_finite_floats_survive():
    arr = np.array([(math.nan, math.inf, -0.0)], [("a", "f8"), ("b", "f4"), ("c", "f2")])
    df = records_frame(arr, None)
    assert math.isnan(df["a"][0]) and df["b"][0] == math.inf and math.copysign(1, df["c"][0]) == -1
    assert struct.pack("<d", df["a"][0]) == struct.pack("<d", arr["a"][0])


# -- bugs found by these tests, fixed: text keys with non-UTF-8 bytes, u64 per-CPU sums, log2 slot 64 ----------

def test_a_map_keyed_by_several_fields_with_non_utf8_text():
    # struct key { u32 pid; char comm[16]; } with a comm the kernel cut inside a UTF-8 character
    keys = np.array([(7, "ab".encode() + "ス".encode()[:2]), (3, b"sh")], [("pid", "u4"), ("comm", "S16")])
    df = map_frame(keys, np.array([1, 2], "u8"))
    assert df.to_dict("list") == {"pid": [3, 7], "comm": ["sh", "ab\udce3\udc82"], "value": [2, 1]}


def test_per_cpu_u64_values_above_int64_are_summed_exactly():
    per = np.array([[2**63, 0, 5]], "u8")
    assert int(map_frame(np.array([0], "u4"), per, percpu=True)["value"][0]) == 2**63 + 5


def test_log2_slot_64_holds_the_values_from_2_63():
    assert bpf_log2l(2**63) == 64 and bpf_log2l(2**64 - 1) == 64
    b = log2_buckets(pd.DataFrame({"key": [64], "value": [1]}))
    assert (int(b["low"][64]), int(b["high"][64])) == (2**63, 2**64 - 1)


def test_an_array_value_is_columns_and_a_per_cpu_value_is_summed():
    """The same n x 4 array: a u64[4] value (four columns) or one u64 on each of four CPUs (one sum)."""
    vals = np.array([[1, 2, 3, 4]], "u8")
    assert map_frame(np.array([1], "u4"), vals).to_dict("list") == \
        {"key": [1], "value[0]": [1], "value[1]": [2], "value[2]": [3], "value[3]": [4]}
    assert map_frame(np.array([1], "u4"), vals, percpu=True).to_dict("list") == {"key": [1], "value": [10]}
