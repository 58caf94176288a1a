"""The interactive timeline's packed events: every event of a recording of any shape is there once,
on the row of its process, thread and category, and comes back from the blob as the browser reads it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordings import recordings

from ebpftoolkit.views.model import NAT, TraceModel, to_ns
from ebpftoolkit.views.timeline_codec import DUR_STEPS, QUANTUM_ABOVE, decode, encode
from ebpftoolkit.views.timeline_pack import KINDS, pack_timeline, unpack

K = {k: i for i, k in enumerate(KINDS)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recordings())
def test_every_event_is_packed_once_on_its_row(rec):
    p = pack_timeline(rec)
    e = unpack(p)
    assert len(e["start"]) == p.n
    assert np.all(np.diff(e["start"]) >= 0)                       # sorted by start
    assert e["row"].min(initial=0) >= 0 and e["row"].max(initial=-1) < len(p.rows)
    gpu = rec.tables.get("gpu")
    calls = e["kind"] == K["call"]
    assert calls.sum() == (0 if gpu is None else len(gpu))
    if gpu is not None and len(gpu):
        assert sorted(e["src"][calls]) == list(range(len(gpu)))  # each row of the gpu table once
        order = np.argsort(e["src"][calls])
        rows = [p.rows[r] for r in e["row"][calls][order]]
        assert [r["pid"] for r in rows] == gpu["pid"].tolist()
        assert [r["tid"] for r in rows] == gpu["tid"].tolist()
        assert [r["what"] for r in rows] == [str(c) for c in gpu["category"]]
        ts = to_ns(gpu["ts"]) - p.t0_ns
        assert (e["start"][calls][order] == ts).all()             # below QUANTUM_ABOVE: exact ns
        dur = gpu["duration_ns"].astype("Float64").to_numpy(float, na_value=-1).astype(np.int64)
        assert (e["dur"][calls][order] == dur).all()
        nbytes = gpu["bytes"].astype("Float64").to_numpy(float, na_value=np.nan)
        assert np.array_equal(e["bytes"][calls][order], nbytes, equal_nan=True)
    sc = rec.tables.get("syscalls")
    assert (e["kind"] == K["syscall"]).sum() == (0 if sc is None else len(sc))
    smp = rec.tables.get("pmu_samples")
    assert (e["kind"] == K["sample"]).sum() == (0 if smp is None else len(smp))
    m = TraceModel.from_recording(rec)
    procs = m.spans[m.spans["kind"] == "process"]
    assert (e["kind"] == K["process"]).sum() == len(procs)
    # a process's rows are together, its header first
    seen = []
    for r in p.rows:
        if not seen or seen[-1] != r["pid"]:
            assert r["pid"] not in seen and r["what"] == "process", [x["label"] for x in p.rows]
            seen.append(r["pid"])


def _events(rng, n):
    start = np.sort(rng.integers(0, 10**10, n))
    return {"start": start, "dur": np.where(rng.random(n) < 0.2, -1, rng.integers(0, 10**9, n)),
            "row": rng.integers(0, 30, n), "cat": rng.integers(0, 12, n), "name": rng.integers(0, 40, n),
            "kind": rng.integers(0, 6, n).astype(np.uint8), "thread": rng.integers(0, 5, n),
            "src": rng.permutation(n), "bytes": np.where(rng.random(n) < 0.5, np.nan, rng.integers(0, 2**40, n)),
            "frame": np.where(rng.random(n) < 0.3, -1, rng.integers(0, 10**6, n))}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 5, 1000, 70_000]))
def test_codec_round_trip_is_exact_below_the_quantum_threshold(seed, n):
    ev = _events(np.random.default_rng(seed), n)
    blob, layout, header = encode(ev)
    back = decode(blob, layout, header)
    for k, v in ev.items():
        assert np.array_equal(back[k], v, equal_nan=True), k


def test_codec_above_the_threshold_keeps_64ns_starts_and_durations_within_0_3_percent():
    n = QUANTUM_ABOVE + 1
    ev = _events(np.random.default_rng(7), n)
    blob, layout, header = encode(ev)
    back = decode(blob, layout, header)
    assert header["quantum_ns"] == 64 and header["log_dur"]
    assert (np.abs(back["start"] - ev["start"]) < 64).all()
    timed = ev["dur"] >= 0
    assert (back["dur"][~timed] == -1).all()
    err = np.abs(back["dur"][timed] - ev["dur"][timed]) / np.maximum(ev["dur"][timed], 1)
    assert err.max() <= 2 ** (0.5 / DUR_STEPS) - 1 + 1e-9 or (np.abs(back["dur"][timed] - ev["dur"][timed]) <= 1).all()
    for k in ("row", "cat", "name", "kind", "thread", "src", "frame"):
        assert np.array_equal(back[k], ev[k]), k
    assert np.array_equal(back["bytes"], ev["bytes"], equal_nan=True)


def test_a_process_that_never_ended_spans_to_the_end_of_the_recording():
    import dataclasses
    from recordings import T0, process_table
    rng = np.random.default_rng(3)
    procs = process_table(rng, [100, 101], 10**9, False, 0.0)
    procs["exit_ts"] = pd.NaT
    from ebpftoolkit import Recording
    from ebpftoolkit.metadata import RecordingMetadata
    rec = Recording({"processes": procs}, RecordingMetadata(start=T0, end=T0 + pd.Timedelta(2, "s")), {},
                    pd.DataFrame(columns=["start", "end", "probe", "stream", "lost"]))
    p = pack_timeline(rec)
    e = unpack(p)
    m = TraceModel.from_recording(rec)
    assert (e["start"] + e["dur"] == m.end_ns - p.t0_ns).all()
    assert dataclasses.is_dataclass(p) and p.n == 2
