"""Views: charts, the timeline (static and interactive), the HTML report, Chrome-trace export.

Most tests read small sessions recorded for real (tests/data/sessions, made by
tests/data/make_sessions.py); the large-session tests add a synthetic 1M-row GPU
table to a real session's metadata, and one records 1M real syscalls (root).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from support import HtmlTags  # noqa: E402
from ebpftoolkit import Recording  # noqa: E402
from ebpftoolkit.cli import main  # noqa: E402
from ebpftoolkit.metadata import CommandRun  # noqa: E402
from ebpftoolkit.views import (bytes_moved, frame_times, gpu_memory, misses_by_function, miss_rate_over_time,  # noqa
                               mpki, pmu_rates, process_lifetimes, render_html, static_timeline,
                               to_chrome_trace)
from ebpftoolkit.views import TimelineWidget as timeline  # noqa: E402  (the PNG widget; rec.timeline() is Bokeh's)

DATA = Path(__file__).parents[1] / "data" / "sessions"
ROOT = Path(__file__).parents[2]
XSS = "<script>alert(1)</script>"


def load(name: str) -> Recording:
    return Recording.load(DATA / name)


def with_tables(rec: Recording, **tables) -> Recording:
    """The recording with some tables replaced (same metadata and loss accounting)."""
    return Recording({**rec.tables, **tables}, rec.metadata, rec.lost, rec.loss_windows)


def subset(rec: Recording, names) -> Recording:
    """The recording with only some of its tables."""
    return Recording({k: v for k, v in rec.tables.items() if k in names}, rec.metadata, rec.lost, rec.loss_windows)


def big_gpu_session(n: int = 1_000_000, seed: int = 1) -> Recording:
    """A real session (gpu_pmu) whose GPU table is replaced by ``n`` synthetic calls over 10 s."""
    base = load("gpu_pmu")
    rng = np.random.default_rng(seed)
    pid = int(base.tables["gpu"]["pid"].iloc[0])
    calls = {"draw": ("opengl", "glDrawArrays"), "gl_h2d": ("opengl", "glBufferData"),
             "gl_d2h": ("opengl", "glReadPixels"), "frame": ("opengl", "eglSwapBuffers"),
             "alloc": ("opencl", "clCreateBuffer"), "free": ("opencl", "clReleaseMemObject"),
             "sync": ("opencl", "clFinish"), "launch": ("opencl", "clEnqueueNDRangeKernel"),
             "cl_h2d": ("opencl", "clEnqueueWriteBuffer")}
    kind = np.array(["draw"] * 6 + list(calls)[1:])[rng.integers(0, 14, n)]
    c = pd.Series(kind)
    cat = c.replace({"gl_h2d": "copy_h2d", "cl_h2d": "copy_h2d", "gl_d2h": "copy_d2h"}).to_numpy(object)
    sized = np.isin(cat, ["copy_h2d", "copy_d2h", "alloc"])
    handles = np.isin(cat, ["alloc", "free"])
    timed = rng.random(n) < 0.3
    gpu = pd.DataFrame({
        "ts": base.tables["gpu"]["ts"].min() + pd.to_timedelta(np.sort(rng.integers(0, 10**10, n)), unit="ns"),
        "pid": pid, "tid": pid + (rng.random(n) < 0.1), "comm": "gl_egl",
        "api": c.map(lambda k: calls[k][0]).to_numpy(), "call": c.map(lambda k: calls[k][1]).to_numpy(),
        "category": cat, "bytes": pd.array(np.where(sized, 4096, 0), dtype="Int64"),
        "direction": pd.Series(cat).map({"copy_h2d": "h2d", "copy_d2h": "d2h"}).to_numpy(),
        "handle": pd.array(rng.integers(1, 5000, n), dtype="Int64"),
        "duration_ns": pd.array(rng.integers(100, 5000, n), dtype="Int64"),
        "retval": pd.array(np.zeros(n, np.int64), dtype="Int64"),
        "frame": pd.array(np.cumsum(cat == "frame"), dtype="Int64"),
        "caller": 0x401000, "library": "libGL.so.1", "mechanism": "exported symbol"})
    gpu.loc[~sized, "bytes"] = pd.NA
    gpu.loc[~handles, "handle"] = pd.NA
    gpu.loc[~timed, "duration_ns"] = pd.NA
    return with_tables(base, gpu=gpu)


@pytest.fixture(scope="module")
def big():
    return big_gpu_session()


def png_ok(fig: Figure) -> None:
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def drawn(ax) -> int:
    return len(ax.lines) + len(ax.patches) + sum(len(c.get_paths()) for c in ax.collections)


# -- charts -------------------------------------------------------------------------------
def test_gpu_and_process_charts_on_a_real_session():
    s = load("gpu_pmu")
    g = s.tables["gpu"]
    for fig in (frame_times(g), bytes_moved(g), gpu_memory(g), pmu_rates(s.tables["pmu"]),
                process_lifetimes(s.tables["processes"], s.tables["exec"]), process_lifetimes(None, s.tables["exec"])):
        assert isinstance(fig, Figure) and not getattr(fig, "no_data", False)
        assert all(drawn(ax) > 0 for ax in fig.axes), fig.texts
        png_ok(fig)
    ft = frame_times(g)
    frames = g[g["category"] == "frame"]
    assert len(ft.axes[0].lines[0].get_xdata()) == len(frames)          # one point per frame
    assert set(ft.axes[1].lines[0].get_ydata()) == {(g["category"] == "draw").sum() / len(frames)}
    moved = bytes_moved(g).axes[0]
    heights = sum(p.get_height() for p in moved.patches) * 1e6
    assert heights == pytest.approx(g["bytes"].where(g["direction"].notna()).sum(), rel=1e-9)


def test_charts_on_empty_or_missing_inputs_say_so():
    s = load("gpu_pmu")
    empty_gpu = s.tables["gpu"].iloc[:0]
    figs = [frame_times(empty_gpu), bytes_moved(empty_gpu), gpu_memory(empty_gpu), pmu_rates(None),
            process_lifetimes(None, None), miss_rate_over_time(s.tables["pmu"]), mpki(s.tables["pmu"]),
            misses_by_function(pd.DataFrame())]
    for fig in figs:
        assert fig.no_data and fig.axes[0].texts, fig
        png_ok(fig)
    assert "cache-misses" in miss_rate_over_time(s.tables["pmu"]).axes[0].texts[0].get_text()


def _pmu_with_caches() -> pd.DataFrame:
    """A PMU table with hardware cache events (this VM has no hardware PMU), 1 s in 10 ms charges."""
    ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.repeat(np.arange(100) * 10, 3), unit="ms")
    ev = np.tile(["cache-references", "cache-misses", "instructions"], 100)
    val = np.tile([1000, 0, 100_000], 100) + np.where(ev == "cache-misses", np.arange(300) // 3 * 5, 0)
    return pd.DataFrame({"ts": ts, "cpu": 0, "pid": 7, "tid": 7, "comm": "x", "event": pd.Categorical(ev),
                         "value": val.astype(np.int64)})


def test_miss_rate_and_mpki_over_time():
    pmu = _pmu_with_caches()
    fig = miss_rate_over_time(pmu, interval="100ms")
    y = fig.axes[0].lines[0].get_ydata()
    # bin k holds charges 10k..10k+9 with misses 5*i each over 1000 references each
    assert y[:3] == pytest.approx([sum(5 * i for i in range(10)) / 10000, sum(5 * i for i in range(10, 20)) / 10000,
                                   sum(5 * i for i in range(20, 30)) / 10000])
    assert "measured" in fig._suptitle.get_text()
    m = mpki(pmu, interval="100ms").axes[0].lines[0].get_ydata()
    assert m[1] == pytest.approx(sum(5 * i for i in range(10, 20)) * 1000 / 1_000_000)


def test_misses_by_function_labels_simulated_and_measured():
    from ebpftoolkit.probes.pmu import simulate_cache_misses
    cg = simulate_cache_misses(["/bin/true"])
    fig = misses_by_function(cg, top=10)
    assert "simulated" in fig._suptitle.get_text() and "cachegrind" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["D1 misses (L1 data)",
                                                                            "LL misses (last level)"]
    top = (cg["D1mr"] + cg["D1mw"]).groupby(cg["function"]).sum().max()
    assert max(p.get_width() for p in fig.axes[0].patches) == top
    meas = misses_by_function(pd.DataFrame({"function": ["a", "b", "a"], "event": "cache-misses", "value": [1, 5, 2]}))
    assert "measured" in meas._suptitle.get_text()
    assert sorted(p.get_width() for p in meas.axes[0].patches) == [3, 5]
    png_ok(fig)


# -- timeline -----------------------------------------------------------------------------
@pytest.mark.parametrize("names", [c for r in range(5) for c in itertools.combinations(
    ["exec", "processes", "gpu", "pmu"], r)])
def test_static_timeline_with_any_subset_of_tables(names):
    fig = static_timeline(subset(load("gpu_pmu"), names))
    assert len(fig.axes) == 1 + (3 if "pmu" in names else 0)
    png_ok(fig)


def test_static_timeline_draws_lanes_calls_frames_and_execs():
    s = load("gpu_pmu")
    fig = static_timeline(s)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert any("gl_egl" in x for x in labels) and any("cl_vecadd" in x for x in labels)
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    g = s.tables["gpu"]
    n_calls = (g["category"] != "frame").sum()
    assert n_calls in [len(c.get_paths()) for c in polys]                       # one rectangle per call
    frame_lines = [c for c in ax.collections if isinstance(c, LineCollection) and len(c.get_segments()) ==
                   (g["category"] == "frame").sum()]
    assert frame_lines                                                          # one boundary per frame
    ok = (s.tables["exec"]["retval"] == 0).sum()
    assert sum(len(c.get_offsets()) for c in ax.collections if c.get_offsets().shape[0] and
               not isinstance(c, (PolyCollection, LineCollection))) == len(s.tables["exec"])
    assert ok < len(s.tables["exec"])                                         # failed execs (PATH lookup) too
    assert [a.get_ylabel().split("\n")[0] for a in fig.axes[1:]] == ["page-faults", "context-switches", "cpu-clock"]
    assert not fig.timeline_aggregated


def test_timeline_shades_lost_event_windows():
    s = load("lossy")
    assert s.lost["syscalls"] > 0 and len(s.loss_windows)
    fig = static_timeline(s)
    for ax in fig.axes:
        assert any(p.get_hatch() == "//" for p in ax.patches), ax
    t0 = min(s.tables["processes"]["start_ts"].min(), s.tables["exec"]["ts"].min(), s.tables["syscalls"]["ts"].min())
    lost_start = (s.loss_windows["start"].min() - t0).total_seconds()
    shaded = [p for p in fig.axes[0].patches if p.get_hatch() == "//"]
    assert min(p.get_x() if hasattr(p, "get_x") else p.get_xy()[0][0] for p in shaded) == pytest.approx(lost_start,
                                                                                                       abs=1e-3)
    assert "lost events (no data)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"lost events: syscalls {s.lost['syscalls']:,}" in fig.axes[-1].get_xlabel()
    png_ok(fig)


def test_static_timeline_of_a_million_calls_is_aggregated_and_says_so(big):
    t = time.perf_counter()
    fig = static_timeline(big)
    png_ok(fig)
    assert time.perf_counter() - t < 30
    assert fig.timeline_aggregated
    assert "aggregated: 9" in fig.axes[-1].get_xlabel()
    rects = sum(len(c.get_paths()) for c in fig.axes[0].collections if isinstance(c, PolyCollection))
    assert rects < 800 * 14 + 100                                   # bins x categories, not a million
    zoomed = static_timeline(big, start=1.0, end=1.01)
    assert not zoomed.timeline_aggregated


def test_interactive_timeline_updates_the_same_figure():
    s = load("gpu_pmu")
    w = timeline(s)
    assert "application/vnd.jupyter.widget-view+json" in w._repr_mimebundle_()
    fig, n_axes, first_png = w.fig, len(w.fig.axes), w.image.value
    assert first_png[:4] == b"\x89PNG"
    g = s.tables["gpu"]
    t_first = (g["ts"].iloc[0] - s.tables["processes"]["start_ts"].min()).total_seconds()
    w.zoom(t_first - 0.001, t_first + 0.01)
    assert w.fig is fig and len(fig.axes) == n_axes
    assert fig.axes[0].get_xlim() == pytest.approx((t_first - 0.001, t_first + 0.01))
    assert w.image.value != first_png
    gl = int(g.loc[g["comm"] == "gl_egl", "pid"].iloc[0])
    w.select([gl])
    assert [t.get_text().split()[0] for t in fig.axes[0].get_yticklabels()] == [str(gl)]
    w.zoom(0, w.data.duration)
    w.show_categories(["draw"])
    polys = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    colors = {tuple(np.round(fc, 3)) for c in polys for fc in c.get_facecolors()}
    colors.discard(tuple(np.round(matplotlib.colors.to_rgba("#b0b0b0"), 3)))       # lifetime bars
    assert colors == {tuple(np.round(matplotlib.colors.to_rgba("#1f77b4"), 3))}   # only draw calls left
    swap = g[g["call"] == "eglSwapBuffers"].iloc[2]
    w.show_categories(w.data.categories)
    w.cursor.value = (swap["ts"] - s.tables["processes"]["start_ts"].min()).total_seconds()
    assert "eglSwapBuffers" in w.readout.value and f"pid {gl}" in w.readout.value


def test_interactive_timeline_stays_responsive_on_a_million_calls(big):
    w = timeline(big)
    for start, end in [(0, 10), (2, 3), (2.5, 2.51), (0, 10)]:
        t = time.perf_counter()
        w.zoom(start, end)
        assert time.perf_counter() - t < 5, (start, end)
    assert "aggregated" in w.fig.axes[-1].get_xlabel()
    w.zoom(2.5, 2.505)
    assert "aggregated" not in w.fig.axes[-1].get_xlabel()
    t = time.perf_counter()
    w.cursor.value = 2.502
    assert time.perf_counter() - t < 5
    assert "gl_egl" in w.readout.value


def test_readout_escapes_text_from_traced_programs():
    s = load("xss")
    w = timeline(s)
    w.cursor.value = w.data.x_t[-1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in w.readout.value and XSS not in w.readout.value


# -- HTML report --------------------------------------------------------------------------
def parse(doc: str) -> HtmlTags:
    p = HtmlTags()
    p.feed(doc)
    return p


def assert_self_contained(doc: str) -> None:
    """No external resource: scripts only inline (the timeline's BokehJS and its data), no links, frames
    or objects; every src/href is inline data or an in-page anchor; outside the scripts, no URL at all."""
    p = parse(doc)
    names = [t for t, _a in p.tags]
    assert "link" not in names and "iframe" not in names and "object" not in names
    for tag, attrs in p.tags:
        assert tag != "script" or "src" not in attrs, attrs
        for k in ("src", "href", "srcset", "poster", "data", "action"):
            if k in attrs:
                assert attrs[k].startswith(("data:image/", "#")), (tag, k, attrs[k][:80])
    outside = re.sub(r"(?is)<script\b.*?</script>", "", doc)
    assert "http://" not in outside and "https://" not in outside and "url(" not in outside
    assert "@import" not in doc
    assert "<script" not in outside.lower()


def test_report_of_a_small_session(tmp_path):
    s = load("gpu_pmu")
    out = tmp_path / "report.html"
    assert s.to_html(out) == out
    doc = out.read_text(encoding="utf-8")
    assert_self_contained(doc)
    p = parse(doc)
    ids = {a.get("id") for _t, a in p.tags}
    assert {"summary", "environment", "timeline", "processes", "gpu", "pmu", "syscalls"} <= ids
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) >= 6 and all(a["src"].startswith(("data:image/svg+xml;base64,", "data:image/png;base64,"))
                                  for a in imgs)
    text = " ".join(p.text)
    m = s.metadata
    for needle in (m.kernel, m.host, "uprobe", "tracepoint", "perf event", "glDrawArrays", "clEnqueueWriteBuffer",
                   "eglSwapBuffers", "page-faults", "Process tree", "gl_egl --frames 8", "draws/frame"):
        assert needle in text, needle
    assert 'id="lost-alert"' not in doc                      # nothing was lost
    assert "Aggregated:" not in doc
    size = out.stat().st_size
    print(f"\nreport size, small session (gpu_pmu): {size / 1e6:.3f} MB")
    assert size < 2_000_000


@pytest.mark.parametrize("names", [(), ("exec",), ("processes",), ("gpu",), ("pmu",), ("exec", "pmu")])
def test_report_with_any_subset_of_tables(names):
    doc = render_html(subset(load("gpu_pmu"), names))
    assert_self_contained(doc)
    assert ("not recorded (record with --gpu)" in doc) == ("gpu" not in names)
    assert ("not recorded (record with --pmu)" in doc) == ("pmu" not in names)


def test_report_escapes_text_from_a_real_traced_process():
    s = load("xss")
    ex = s.tables["exec"]
    assert XSS in ex["argv"].iloc[-1] and XSS in ex["filename"].iloc[-1]          # recorded for real
    assert "<script>alert(1" in set(s.tables["processes"]["comm"])                # prctl name (15 bytes)
    doc = render_html(s)
    assert_self_contained(doc)
    assert XSS not in doc and "<img src=x" not in doc and "<script>alert(1" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "&lt;img src=x onerror=alert(2)&gt;" in doc
    cells = parse(doc).text                                                       # what a browser shows
    assert any(XSS in c for c in cells) and "<script>alert(1" in cells


def test_report_escapes_every_traced_field():
    s = load("gpu_pmu")
    bad = '<b onmouseover="x">&amp;</b>'
    g = s.tables["gpu"].assign(comm=XSS, call=s.tables["gpu"]["call"] + bad, api="opengl" + bad)
    p = s.tables["pmu"].assign(comm=XSS)
    e = s.tables["exec"].assign(comm=XSS, filename=bad, argv=[[XSS, bad]] * len(s.tables["exec"]))
    meta = dataclasses.replace(s.metadata, host=XSS, commands=[CommandRun([XSS], 1, 0)])
    rec = Recording({**s.tables, "gpu": g, "pmu": p, "exec": e}, meta, {XSS: 3}, s.loss_windows)
    doc = render_html(rec, title=XSS)
    assert_self_contained(doc)
    assert XSS not in doc and bad not in doc and "<b " not in doc
    assert doc.count("&lt;script&gt;alert(1)&lt;/script&gt;") > 5
    assert 'id="lost-alert"' in doc


def test_report_makes_lost_events_prominent():
    s = load("lossy")
    doc = render_html(s)
    assert_self_contained(doc)
    alert = doc[doc.index('id="lost-alert"'):]
    alert = alert[: alert.index("</div>")]
    assert f"{s.lost['syscalls']:,}" in alert and "syscalls" in alert
    assert '<tr class="bad"><td>syscalls</td>' in doc
    assert doc.index('id="lost-alert"') < doc.index('id="summary"')            # before anything else
    assert "When events were lost" in doc


def test_report_of_a_million_calls_is_small_and_says_it_was_aggregated(big, tmp_path):
    out = tmp_path / "big.html"
    t = time.perf_counter()
    render_html(big, out)
    took = time.perf_counter() - t
    size = out.stat().st_size
    print(f"\nreport size, 1M synthetic GPU calls: {size / 1e6:.3f} MB in {took:.1f} s")
    doc = out.read_text()
    assert size <= 5_000_000
    assert "Aggregated:" in doc and "1,000,000 rows" in doc
    assert_self_contained(doc)


def test_report_with_simulated_cache_misses():
    from ebpftoolkit.probes.pmu import simulate_cache_misses
    doc = render_html(load("gpu_pmu"), cachegrind=simulate_cache_misses(["/bin/true"]))
    assert "Simulated cache misses per function (cachegrind)" in doc and "D1mr" in doc
    assert_self_contained(doc)


# -- Chrome trace -------------------------------------------------------------------------
M_NAMES = {"process_name", "process_labels", "process_sort_index", "thread_name", "thread_sort_index"}


def check_trace(obj) -> dict:
    """Check a Trace Event Format object (JSON Object Format) against the spec; returns counts per phase.

    Written from the spec, not from the exporter: required keys and types per phase,
    finite µs timestamps, instant scopes, counter args numeric, metadata names, and
    complete (X) events of each thread properly nested.
    """
    json.loads(json.dumps(obj, allow_nan=False))                       # plain JSON, no NaN/Infinity
    assert isinstance(obj, dict) and isinstance(obj["traceEvents"], list)
    assert obj.get("displayTimeUnit", "ms") in ("ms", "ns")
    counts: dict[str, int] = {}
    spans: dict[tuple, list] = {}
    for e in obj["traceEvents"]:
        assert isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"], e
        ph = e["ph"]
        counts[ph] = counts.get(ph, 0) + 1
        assert ph in ("X", "i", "C", "M"), e
        assert isinstance(e["pid"], int) and not isinstance(e["pid"], bool), e
        assert "cat" not in e or isinstance(e["cat"], str)
        assert "args" not in e or isinstance(e["args"], dict)
        if ph != "M":
            assert isinstance(e["ts"], (int, float)) and math.isfinite(e["ts"]) and e["ts"] >= 0, e
        if ph in ("X", "i", "M"):
            assert isinstance(e["tid"], int), e
        if ph == "X":
            assert isinstance(e["dur"], (int, float)) and math.isfinite(e["dur"]) and e["dur"] >= 0, e
            spans.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
        elif ph == "i":
            assert e.get("s", "t") in ("g", "p", "t"), e
        elif ph == "C":
            assert e["args"] and all(isinstance(v, (int, float)) and math.isfinite(v) for v in e["args"].values()), e
        elif ph == "M":
            assert e["name"] in M_NAMES, e
            key = "name" if e["name"].endswith(("_name", "_labels")) else "sort_index"
            assert key in e["args"], e
    eps = 1e-3                                                         # 1 ns, in µs
    for thread, lst in spans.items():
        stack: list[tuple] = []
        for s, t, name in sorted(lst, key=lambda x: (x[0], -x[1])):
            while stack and stack[-1][1] <= s + eps:
                stack.pop()
            assert not stack or t <= stack[-1][1] + eps, f"{thread}: {name} [{s}, {t}] overlaps {stack[-1]}"
            stack.append((s, t, name))
    named = {e["pid"] for e in obj["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}
    assert {e["pid"] for e in obj["traceEvents"]} <= named, "every process has a name"
    return counts


@pytest.mark.parametrize("name", ["gpu_pmu", "xss", "lossy"])
def test_chrome_trace_is_valid_for_real_sessions(name, tmp_path):
    s = load(name)
    obj = to_chrome_trace(s)
    counts = check_trace(obj)
    out = s.to_chrome_trace(tmp_path / "trace.json")
    assert json.loads(Path(out).read_text()) == json.loads(json.dumps(obj))
    ex = s.tables["exec"]
    inst = [e for e in obj["traceEvents"] if e["ph"] == "i" and e["cat"] == "exec"]
    assert len(inst) == len(ex)
    assert counts["M"] >= 2 * len(s.tables["processes"])


def test_chrome_trace_contents_and_units():
    s = load("gpu_pmu")
    obj = to_chrome_trace(s)
    ev = obj["traceEvents"]
    g = s.tables["gpu"]
    t0 = min(s.tables["processes"]["start_ts"].min(), s.tables["exec"]["ts"].min(), g["ts"].min(),
             s.tables["pmu"]["ts"].min())
    assert pd.Timestamp(obj["otherData"]["start"]) == t0
    gx = [e for e in ev if e["ph"] == "X" and e["cat"].startswith("gpu,")]
    gi = [e for e in ev if e["ph"] == "i" and e["cat"].startswith("gpu,")]
    assert len(gx) == g["duration_ns"].notna().sum() and len(gi) == g["duration_ns"].isna().sum()
    w = g[g["call"] == "clEnqueueWriteBuffer"].iloc[0]
    x = next(e for e in gx if e["name"] == "clEnqueueWriteBuffer")
    assert x["ts"] == pytest.approx((w["ts"] - t0).value / 1e3, abs=1e-3)         # µs
    assert x["dur"] == pytest.approx(w["duration_ns"] / 1e3, abs=1e-3)
    assert x["args"]["bytes"] == w["bytes"] and x["args"]["direction"] == "h2d" and x["tid"] == w["tid"]
    procs = [e for e in ev if e["ph"] == "X" and e["cat"] == "process"]
    assert {e["pid"] for e in procs} == set(s.tables["processes"]["pid"])
    names = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
    assert "gl_egl" in names.values() and "cl_vecadd" in names.values()
    counters = [e for e in ev if e["ph"] == "C"]
    assert {e["name"] for e in counters} == {"page-faults", "context-switches", "cpu-clock"}
    pf = s.tables["pmu"]
    assert sum(e["args"]["page-faults"] for e in counters if e["name"] == "page-faults") == \
        pf.loc[pf["event"] == "page-faults", "value"].sum()


def test_chrome_trace_lost_windows_and_syscall_counters():
    s = load("lossy")
    obj = to_chrome_trace(s)
    check_trace(obj)
    lost = [e for e in obj["traceEvents"] if e["ph"] == "X" and e["cat"] == "lost"]
    assert len(lost) == len(s.loss_windows) and sum(e["args"]["lost"] for e in lost) == s.lost["syscalls"]
    sc = [e for e in obj["traceEvents"] if e["ph"] == "C" and e["cat"] == "syscalls"]
    assert sum(e["args"]["getpgid"] for e in sc) == len(s.tables["syscalls"])


def test_chrome_trace_nests_overlapping_spans():
    s = load("gpu_pmu")
    g = s.tables["gpu"].copy()
    timed = g.index[g["duration_ns"].notna()]
    a, b = timed[0], timed[1]
    g.loc[a, "duration_ns"] = (g.loc[b, "ts"] - g.loc[a, "ts"]).value + 1000      # a ends inside b: not nested
    g.loc[b, "tid"] = g.loc[a, "tid"]
    obj = to_chrome_trace(with_tables(s, gpu=g))
    check_trace(obj)
    assert any(e.get("args", {}).get("clipped") for e in obj["traceEvents"] if e["ph"] == "X")


def test_chrome_trace_of_many_calls_streams_to_a_file(big, tmp_path):
    out = to_chrome_trace(with_tables(big, gpu=big.tables["gpu"].iloc[:50_000]), tmp_path / "t.json")
    counts = check_trace(json.loads(out.read_text()))
    assert counts["X"] + counts["i"] >= 50_000


# -- CLI and Session methods --------------------------------------------------------------
def test_cli_report_and_export(tmp_path, capsys):
    src = DATA / "gpu_pmu"
    assert main(["report", str(src), "-o", str(tmp_path / "r.html")]) == 0
    assert_self_contained((tmp_path / "r.html").read_text())
    assert main(["export", "--format", "chrome", str(src), "-o", str(tmp_path / "t.json")]) == 0
    check_trace(json.loads((tmp_path / "t.json").read_text()))
    out = capsys.readouterr().out
    assert "report written to" in out and "trace written to" in out
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "not a saved recording" in capsys.readouterr().err
    assert main([]) == 0
    assert re.search(r"report .*\n.*export", capsys.readouterr().out)


def test_session_methods_delegate_to_views(tmp_path):
    s = load("xss")
    tl = s.timeline()
    assert tl.pack.n and "application/vnd.jupyter.widget-view+json" in tl._repr_mimebundle_()
    assert s.to_html(tmp_path / "x.html") == tmp_path / "x.html"            # a path in, the path back
    stamp = re.compile(r"generated \S+ by")
    # no path: the text (the interactive timeline's element ids are new in each rendering)
    ids = re.compile(r"ebt[0-9a-f]{10}|p\d{3,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert ids.sub("", stamp.sub("", s.to_html())) == ids.sub("", stamp.sub("", (tmp_path / "x.html").read_text()))
    assert s.to_chrome_trace(tmp_path / "x.json") == tmp_path / "x.json"
