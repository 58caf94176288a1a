"""Recordings of random shapes, for property tests: every table the probes make, with their
columns and dtypes, any of them missing or empty, NA anywhere NA can be, no durations, no
frees, no frames, one event, hostile text (non-UTF-8 bytes, control characters)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from ebpftoolkit import Recording
from ebpftoolkit.metadata import ProbeMeta, RecordingMetadata
from ebpftoolkit.probes.execsnoop.tables import EXEC_COLUMNS
from ebpftoolkit.probes.gpu.catalogue import CATEGORIES
from ebpftoolkit.probes.pmu.config import PmuConfig
from ebpftoolkit.runtime.symbols import SYM_STATUS

T0 = pd.Timestamp("2026-12-01 12:00:00")
TEXT = ["sh", "gl_egl", "a\udcff\udcfeb", "ctl\x1b[2J\x07", "<script>x</script>", "スクリプト", "", "$x^2$", "a\\b"]
EVENTS = ["page-faults", "context-switches", "cpu-clock", "cache-misses", "cache-references", "instructions", "cycles"]


def _text(rng, n, hostile):
    pool = TEXT if hostile else TEXT[:2]
    return pd.Series([pool[i] for i in rng.integers(0, len(pool), n)], dtype=object)


def _ts(rng, n, span_ns):
    return T0 + pd.to_timedelta(np.sort(rng.integers(0, max(span_ns, 1), n)), unit="ns")


def _int_na(rng, values, p_na):
    a = pd.array(values, dtype="Int64")
    a[rng.random(len(a)) < p_na] = pd.NA
    return a


def exec_table(rng, n, span, pids, hostile, p_na):
    pid = rng.choice(pids, n)
    ok = rng.random(n) < 0.8
    ts = _ts(rng, n, span)
    dur = pd.to_timedelta(np.where(rng.random(n) < p_na, np.nan, rng.integers(1, 10**6, n)))
    df = pd.DataFrame({
        "ts": ts, "pid": pid, "tid": pid, "ppid": rng.choice(pids, n), "uid": rng.integers(0, 2, n),
        "comm": _text(rng, n, hostile), "filename": _text(rng, n, hostile),
        "argv": pd.Series([[str(x) for x in _text(rng, int(k), hostile)] for k in rng.integers(0, 4, n)], dtype=object),
        "argc": rng.integers(0, 4, n), "argv_truncated": rng.random(n) < 0.1,
        "retval": np.where(ok, 0, -2), "error": pd.Series([None if o else "ENOENT" for o in ok], dtype=object),
        "exit_code": _int_na(rng, rng.integers(0, 3, n), p_na), "exit_signal": _int_na(rng, np.zeros(n, int), 0.9),
        "core_dumped": pd.array(rng.random(n) < 0.01, dtype="boolean"), "duration": dur, "lifetime": dur,
        "end_ts": ts + dur, "ended_by": pd.Series(np.where(ok, "exit", None), dtype=object),
        "exec_latency": pd.to_timedelta(rng.integers(1, 10**5, n)), "flags": rng.integers(0, 8, n)})
    return df[EXEC_COLUMNS]


def process_table(rng, pids, span, hostile, p_na):
    n = len(pids)
    start = _ts(rng, n, span)
    life = pd.to_timedelta(np.where(rng.random(n) < p_na, np.nan, rng.integers(1, span + 2, n)))
    return pd.DataFrame({
        "pid": np.array(pids, np.int64), "ppid": _int_na(rng, rng.choice(pids, n), p_na),
        "comm": _text(rng, n, hostile), "parent_comm": _text(rng, n, hostile), "uid": _int_na(rng, np.zeros(n), p_na),
        "start_ts": start, "fork_ts": start.where(rng.random(n) > p_na), "exit_ts": start + life, "lifetime": life,
        "exit_code": _int_na(rng, rng.integers(0, 3, n), p_na), "exit_signal": _int_na(rng, np.full(n, 9), 0.8),
        "core_dumped": pd.array(rng.random(n) < 0.1, dtype="boolean")})


def gpu_table(rng, n, span, pids, hostile, p_na, durations, frees, frames):
    cats = list(CATEGORIES) if frames else [c for c in CATEGORIES if c != "frame"]
    if not frees:
        cats = [c for c in cats if c != "free"]
    cat = np.array(cats, dtype=object)[rng.integers(0, len(cats), n)]
    pid = rng.choice(pids, n)
    ts = _ts(rng, n, span)
    direction = np.array(["h2d", "d2h", "d2d", "unknown", None], dtype=object)[rng.integers(0, 5, n)]
    df = pd.DataFrame({
        "ts": ts, "pid": pid, "tid": pid + rng.integers(0, 2, n), "comm": _text(rng, n, hostile),
        "api": pd.Series(np.array(["opengl", "vulkan", "opencl", "cuda", "mine"], dtype=object)[rng.integers(0, 5, n)],
                         dtype=object),
        "call": pd.Series([f"call{int(i)}" for i in rng.integers(0, 6, n)], dtype=object),
        "category": pd.Series(cat, dtype=object),
        "bytes": _int_na(rng, rng.integers(0, 1 << 20, n), p_na), "direction": pd.Series(direction, dtype=object),
        "handle": _int_na(rng, rng.integers(1, 6, n), p_na),
        "duration_ns": _int_na(rng, rng.integers(0, 10**6, n), 1.0 if not durations else p_na),
        "retval": _int_na(rng, rng.integers(-2, 1, n), p_na),
        "frame": pd.array(np.zeros(n, int), dtype="Int64"), "caller": rng.integers(0, 1 << 40, n),
        "library": _text(rng, n, hostile), "mechanism": pd.Series(["exported symbol"] * n, dtype=object)})
    if rng.random() < 0.8:           # recordings before the kernel/stream columns have neither
        launch = (df["category"] == "launch").to_numpy()
        names = _text(rng, n, hostile).to_numpy(object)
        df["kernel"] = pd.Series(np.where(launch, names, None), dtype=object)
        df["stream"] = _int_na(rng, rng.integers(0, 4, n), max(p_na, 0.5))
    is_frame = (df["category"] == "frame").astype(int)
    df["frame"] = pd.array((is_frame.groupby(df["pid"]).cumsum() - is_frame).to_numpy(), dtype="Int64")
    return df


def pmu_table(rng, n, span, pids, hostile, events):
    k = len(events)
    rows = max(n // max(k, 1), 0)
    ts = np.repeat(_ts(rng, rows, span).to_numpy(), k)
    pid = np.repeat(rng.choice(pids, rows), k)
    m = rows * k
    raw = rng.integers(0, 10**6, m)
    return pd.DataFrame({
        "ts": ts, "cpu": rng.integers(0, 2, m), "pid": pid, "tid": pid, "comm": _text(rng, m, hostile),
        "event": pd.Categorical.from_codes(np.tile(np.arange(k), rows), events), "value": raw, "raw_value": raw,
        "enabled_ns": np.full(m, 100), "running_ns": rng.integers(1, 101, m), "scaled": rng.random(m) < 0.1,
        "reason": pd.Categorical.from_codes(rng.integers(0, 4, m), ["switch", "tick", "exit", "exec"])})


def syscall_table(rng, n, span, pids):
    return pd.DataFrame({"ts": _ts(rng, n, span), "pid": rng.choice(pids, n), "tid": rng.choice(pids, n),
                         "syscall": pd.Categorical.from_codes(rng.integers(0, 2, n), ["getpgid", "read"]),
                         "arg0": rng.integers(0, 100, n)})


def sample_table(rng, n, span, pids, hostile):
    sym = _text(rng, n, hostile).where(rng.random(n) > 0.3, None)
    return pd.DataFrame({
        "ts": _ts(rng, n, span), "cpu": rng.integers(0, 2, n), "pid": rng.choice(pids, n), "tid": rng.choice(pids, n),
        "comm": _text(rng, n, hostile), "event": pd.Categorical.from_codes(np.zeros(n, int), ["cpu-clock"]),
        "ip": rng.integers(0, 1 << 40, n), "symbol": sym, "module": _text(rng, n, hostile),
        "sym_status": pd.Categorical.from_codes(rng.integers(0, len(SYM_STATUS), n), SYM_STATUS),
        "in_kernel": rng.random(n) < 0.2,
        "stack": pd.Series([[str(x) for x in _text(rng, int(d), hostile)] for d in rng.integers(0, 4, n)],
                           dtype=object)})


@st.composite
def recordings(draw, max_rows: int = 300):
    """A Recording with any subset of the tables, of any size from 0 (one event included)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    present = draw(st.sets(st.sampled_from(["exec", "processes", "gpu", "pmu", "syscalls", "pmu_samples"])))
    size = {t: draw(st.sampled_from([0, 1, 2, 7, max_rows])) for t in present}
    span = draw(st.sampled_from([0, 1000, 10**6, 10**9, 10**10]))
    hostile, p_na = draw(st.booleans()), draw(st.sampled_from([0.0, 0.3, 1.0]))
    pids = list(rng.integers(100, 100 + draw(st.integers(1, 40)), draw(st.integers(1, 6))))
    events = draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=4, unique=True))
    tables = {}
    if "exec" in present:
        tables["exec"] = exec_table(rng, size["exec"], span, pids, hostile, p_na)
    if "processes" in present:
        tables["processes"] = process_table(rng, sorted(set(pids))[: size["processes"]], span, hostile, p_na)
    if "gpu" in present:
        tables["gpu"] = gpu_table(rng, size["gpu"], span, pids, hostile, p_na, draw(st.booleans()), draw(st.booleans()),
                                  draw(st.booleans()))
    if "pmu" in present:
        tables["pmu"] = pmu_table(rng, size["pmu"], span, pids, hostile, events)
    if "syscalls" in present:
        tables["syscalls"] = syscall_table(rng, size["syscalls"], span, pids)
    if "pmu_samples" in present:
        tables["pmu_samples"] = sample_table(rng, size["pmu_samples"], span, pids, hostile)
    nloss = draw(st.integers(0, 3))
    loss = pd.DataFrame({"start": _ts(rng, nloss, span), "probe": pd.Series(["exec"] * nloss, dtype=object),
                         "stream": pd.Series(["exec_events"] * nloss, dtype=object),
                         "lost": rng.integers(1, 100, nloss)})
    loss.insert(1, "end", loss["start"] + pd.to_timedelta(rng.integers(0, 10**6, nloss), unit="ns"))
    probes = {"pmu": ProbeMeta("PmuCounters", PmuConfig(tuple(events), draw(st.sampled_from([None, 10**6, 10**7]))),
                               {})} if "pmu" in present else {}
    meta = RecordingMetadata(kernel="6.18", host="h\x1bost" if hostile else "host", probes=probes,
                             start=T0, end=T0 + pd.Timedelta(span, "ns"))
    return Recording(tables, meta, {"exec": int(loss["lost"].sum())} if nloss else {}, loss)
