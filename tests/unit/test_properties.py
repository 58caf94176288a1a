"""Every analysis, view and export works on every recording (tests/unit/recordings.py draws them:
any subset of tables, empty ones, one event, all-NA columns, no durations, no frees, no frames,
hostile text), and saving and loading any of them gives it back."""
from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from recordings import recordings  # noqa: E402
from ebpftoolkit import Recording  # noqa: E402
from ebpftoolkit.analysis import gpu as ga  # noqa: E402
from ebpftoolkit.analysis import pmu as pa  # noqa: E402
from ebpftoolkit.analysis import process_tree, render_process_tree  # noqa: E402
from ebpftoolkit.errors import ProbeConfigError  # noqa: E402
from ebpftoolkit.views import (TraceModel, bytes_moved, frame_times, gpu_memory, miss_rate_over_time, mpki,  # noqa
                               pmu_rates, process_lifetimes, render_html, static_timeline, to_chrome_trace)

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(recordings())
def test_every_analysis_works_on_every_recording(rec):
    t = rec.tables
    if "exec" in t:
        tree = process_tree(t["exec"], t.get("processes"))
        render_process_tree(tree)
        assert set(tree["pid"]) >= set(t["exec"].loc[t["exec"]["retval"] == 0, "pid"])
    if "gpu" in t:
        g = t["gpu"]
        fr = ga.frames(g)
        assert fr["draws"].sum() == (g["category"] == "draw").sum() if len(g) else fr.empty
        ga.data_movement(g)
        bw = ga.bandwidth(g)
        assert (bw["duration_ns"] > 0).all()
        mem = ga.memory_timeline(g)
        assert mem["outstanding"].dtype.kind == "f" or mem.empty
        lk = ga.leaks(g)
        assert len(lk) <= (g["category"] == "alloc").sum()
        lat = ga.latency(g)
        assert lat["count"].sum() == len(g)
    if "pmu" in t:
        p = t["pmu"]
        tot = pa.pmu_totals(p)
        for ev in map(str, p["event"].unique()):
            assert tot[ev].sum() == p.loc[p["event"] == ev, "value"].sum()
        ts = pa.pmu_timeseries(p, "10ms")
        assert ts["value"].sum() == p["value"].sum()
        for fn in (pa.ipc, pa.miss_rate, pa.mpki):
            try:
                fn(p)
            except ProbeConfigError as exc:          # the events it needs were not counted: said so
                assert "needs the events" in str(exc)
    if "pmu_samples" in t:
        top = pa.top_functions(t["pmu_samples"])
        assert top["samples"].sum() == min(len(t["pmu_samples"]), top["samples"].sum()) and (top["share"] <= 1).all()
        pa.top_functions(t["pmu_samples"], inclusive=True)


@FAST
@given(recordings())
def test_every_chart_and_the_model_work_on_every_recording(rec):
    t = rec.tables
    m = TraceModel.from_recording(rec)
    assert m.t0_ns <= m.end_ns
    figs = [process_lifetimes(t.get("processes"), t.get("exec"))]
    if "gpu" in t:
        figs += [frame_times(t["gpu"]), bytes_moved(t["gpu"]), gpu_memory(t["gpu"])]
    if "pmu" in t:
        figs += [pmu_rates(t["pmu"]), miss_rate_over_time(t["pmu"]), mpki(t["pmu"])]
    for f in figs:
        f.canvas.draw() if f.canvas is not None else None


@SLOW
@given(recordings(max_rows=60))
def test_the_report_the_timeline_and_the_trace_work_on_every_recording(rec):
    fig = static_timeline(rec)
    fig.savefig(__import__("io").BytesIO(), format="png", dpi=30)
    doc = render_html(rec)
    assert doc.lstrip().lower().startswith("<!doctype html") and "\x1b" not in doc and "\udcff" not in doc
    assert "could not be drawn" not in doc, doc[doc.find("could not be drawn"):][:600]
    trace = to_chrome_trace(rec)
    json.dumps(trace, allow_nan=False)                        # no NaN or infinity anywhere
    for e in trace["traceEvents"]:
        if e["ph"] != "M":
            assert math.isfinite(e["ts"]) and e["ts"] >= 0
    # what a trace viewer reads is UTF-8: no lone surrogate (a non-UTF-8 byte) may be left in it
    json.dumps(trace, allow_nan=False, ensure_ascii=False).encode("utf-8")


@SLOW
@given(rec=recordings(max_rows=60))
def test_save_and_load_give_the_recording_back(tmp_path_factory, rec):
    out = rec.save(tmp_path_factory.mktemp("rec") / "r")
    back = Recording.load(out)
    assert set(back.tables) == set(rec.tables) and back.lost == rec.lost
    for name, df in rec.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], df, check_dtype=True)
    pd.testing.assert_frame_equal(back.loss_windows, rec.loss_windows, check_dtype=False)
    assert back.metadata.probes.keys() == rec.metadata.probes.keys()


def test_the_generator_makes_the_shapes_it_promises():
    """The strategy really produces empty tables, all-NA durations, hostile text (else the tests above prove less)."""
    from hypothesis import find
    find(recordings(), lambda r: "gpu" in r.tables and len(r.tables["gpu"]) > 5
         and r.tables["gpu"]["duration_ns"].isna().all())
    find(recordings(), lambda r: "exec" in r.tables and r.tables["exec"].empty)
    find(recordings(), lambda r: "exec" in r.tables and r.tables["exec"]["comm"].str.contains("\udcff").any())
    find(recordings(), lambda r: len(r.tables) == 0)


def test_a_section_that_cannot_be_drawn_says_why_and_the_rest_stands(monkeypatch):
    from ebpftoolkit.views import report
    rec = Recording.load(__import__("support").DATA / "sessions" / "gpu_pmu")

    def broken(*_a, **_k):
        raise ValueError("a bug in the GPU section")

    monkeypatch.setattr(report, "_gpu", broken)
    doc = render_html(rec)
    gpu = doc[doc.index('id="gpu"'):doc.index('id="pmu"')]
    assert "This section could not be drawn (ValueError: a bug in the GPU section)" in gpu
    assert "Totals per process" in doc and "Process tree" in doc            # the others are all there
