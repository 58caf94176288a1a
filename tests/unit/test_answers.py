"""The answers a GPU recording opens with (analysis/answers.py): the slowest calls, the most bytes
moved, the slowest frames; checked against plain pandas over random GPU tables (any size, NA
anywhere, no durations, no frames), on a hand-made table whose answers are known, and in
Recording.summary(), and in the report's answers section (linked to the timeline)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings, strategies as st

from ebpftoolkit import Recording
from ebpftoolkit.analysis.answers import most_bytes, slowest_calls, slowest_frames, summary_lines, why_empty
from ebpftoolkit.analysis.gpu import frames
from ebpftoolkit.metadata import ProbeMeta, RecordingMetadata
from ebpftoolkit.probes.gpu.config import GpuConfig
from ebpftoolkit.views import render_html
from ebpftoolkit.views.model import span_ns, to_ns
from recordings import T0, gpu_table
from support import HtmlTags

DATA = Path(__file__).parents[1] / "data"

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def gpu_tables(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.sampled_from([0, 1, 2, 7, 60, 300]))
    span = draw(st.sampled_from([0, 1000, 10**6, 10**9]))
    pids = list(rng.integers(100, 110, draw(st.integers(1, 4))))
    return gpu_table(rng, n, span, pids, draw(st.booleans()), draw(st.sampled_from([0.0, 0.3, 1.0])),
                     draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))


@SETTINGS
@given(gpu_tables(), st.integers(1, 20))
def test_slowest_calls_are_the_longest_durations_longest_first(gpu, n):
    top = slowest_calls(gpu, n)
    timed = gpu[gpu["duration_ns"].notna()]
    d = top["duration_ns"].to_numpy(np.int64)
    assert len(top) == min(n, len(timed))
    assert (np.diff(d) <= 0).all()
    if len(timed):
        assert d[0] == timed["duration_ns"].max()
        assert (timed["duration_ns"] > d[-1]).sum() <= len(top)      # nothing left out is longer than the last
    assert ((top["end"] - top["start"]).dt.total_seconds().mul(1e9).round().to_numpy() == d).all()
    for r in top.itertuples():        # every row is a call of the table, with its own duration
        same = gpu[(gpu["ts"] == r.start) & (gpu["pid"] == r.pid) & (gpu["call"] == r.call)]
        assert (same["duration_ns"] == r.duration_ns).any()


@SETTINGS
@given(gpu_tables())
def test_most_bytes_agrees_with_a_groupby_of_the_moved_calls(gpu):
    top = most_bytes(gpu, 10**6)
    moved = gpu[gpu["direction"].notna() & gpu["bytes"].notna()]
    assert top["bytes"].sum() == moved["bytes"].astype("int64").sum()
    assert top["calls"].sum() == len(moved)
    assert (np.diff(top["bytes"].to_numpy(np.int64)) <= 0).all()
    want = moved.assign(b=moved["bytes"].astype("int64")).groupby(["pid", "api", "call", "direction"])["b"] \
        .agg(["sum", "size", "max"])
    assert len(want) == len(top)
    for r in top.itertuples():
        assert tuple(want.loc[(r.pid, r.api, r.call, r.direction)]) == (r.bytes, r.calls, r.largest)
        assert r.start <= r.end
    assert most_bytes(gpu, 3).equals(top.head(3))


@SETTINGS
@given(gpu_tables(), st.integers(1, 20))
def test_slowest_frames_are_frames_of_the_table_longest_first(gpu, n):
    top = slowest_frames(gpu, n)
    ft = top["frame_time"]
    assert len(top) <= n and (ft.diff().dropna() <= pd.Timedelta(0)).all()
    assert (top["start"] + ft == top["end"]).all()
    fr = frames(gpu).set_index(["pid", "frame"])
    for r in top.itertuples():
        assert fr.loc[(r.pid, r.frame), "frame_time"] == r.frame_time and fr.loc[(r.pid, r.frame), "end"] == r.end
    if len(top) < n:                  # all the timed frames were taken: none is longer than the first
        assert not len(top) or ft.iloc[0] == ft.max()


@SETTINGS
@given(gpu_tables())
def test_summary_lines_name_the_answers_or_say_why_there_are_none(gpu):
    lines = summary_lines(gpu, T0)
    assert [line.split(":")[0] for line in lines] == ["slowest calls", "most bytes moved", "slowest frames"]
    for line, (key, df) in zip(lines, [("slowest_calls", slowest_calls(gpu, 3)), ("most_bytes", most_bytes(gpu, 3)),
                                       ("slowest_frames", slowest_frames(gpu, 3))]):
        if df.empty:
            assert line.endswith("none; " + why_empty(key, gpu))
        else:
            assert line.count("; ") == len(df) - 1


def _known():
    """pid 1 swaps at 0, 10, 30 and 35 ms (frames of 10, 20 and 5 ms); a 4 ms glReadPixels of 1 MB at 12 ms, two
    glTexImage2D of 64 kB; pid 2 has no swap and a 7 ms clFinish."""
    ms = lambda v: T0 + pd.Timedelta(v, "ms")      # noqa: E731
    rows = [(0, 1, "eglSwapBuffers", "frame", None, None, 50_000), (2, 1, "glTexImage2D", "copy_h2d", 65536, "h2d", None),
            (10, 1, "eglSwapBuffers", "frame", None, None, 40_000),
            (12, 1, "glReadPixels", "copy_d2h", 1 << 20, "d2h", 4_000_000),
            (20, 1, "glTexImage2D", "copy_h2d", 65536, "h2d", None), (30, 1, "eglSwapBuffers", "frame", None, None, None),
            (35, 1, "eglSwapBuffers", "frame", None, None, 30_000), (5, 2, "clFinish", "sync", None, None, 7_000_000)]
    df = pd.DataFrame(rows, columns=["t", "pid", "call", "category", "bytes", "direction", "duration_ns"])
    df = df.sort_values("t", kind="stable").reset_index(drop=True)
    is_frame = df["category"].eq("frame").astype(int)
    return pd.DataFrame({
        "ts": df["t"].map(ms), "pid": df["pid"], "tid": df["pid"], "comm": df["pid"].map({1: "gl", 2: "cl"}),
        "api": df["pid"].map({1: "opengl", 2: "opencl"}), "call": df["call"], "category": df["category"],
        "bytes": pd.array(df["bytes"], dtype="Int64"), "direction": df["direction"].astype(object),
        "handle": pd.array([None] * len(df), dtype="Int64"), "duration_ns": pd.array(df["duration_ns"], dtype="Int64"),
        "retval": pd.array([None] * len(df), dtype="Int64"),
        "frame": pd.array((is_frame.groupby(df["pid"]).cumsum() - is_frame).to_numpy(), dtype="Int64"),
        "caller": 0, "library": "lib", "mechanism": "m"})


def test_the_answers_of_a_table_whose_answers_are_known():
    gpu = _known()
    calls = slowest_calls(gpu, 2)
    assert list(calls["call"]) == ["clFinish", "glReadPixels"] and list(calls["duration_ns"]) == [7_000_000, 4_000_000]
    assert calls.loc[1, "start"] == T0 + pd.Timedelta(12, "ms") and calls.loc[1, "end"] == T0 + pd.Timedelta(16, "ms")
    moved = most_bytes(gpu)
    assert list(zip(moved["call"], moved["bytes"], moved["calls"])) == [("glReadPixels", 1 << 20, 1),
                                                                       ("glTexImage2D", 131072, 2)]
    assert moved.loc[1, "start"] == T0 + pd.Timedelta(2, "ms") and moved.loc[1, "end"] == T0 + pd.Timedelta(20, "ms")
    fr = slowest_frames(gpu)           # pid 2 made no swap: no frame of it is timed
    assert list(fr["frame"]) == [2, 1, 3] and set(fr["pid"]) == {1} and set(fr["comm"]) == {"gl"}
    top = fr.iloc[0]                   # from the swap at 10 ms (or its end, 10.04 ms) to the one at 30 ms
    assert top["start"] in (T0 + pd.Timedelta(10, "ms"), T0 + pd.Timedelta(10.04, "ms"))
    assert top["end"] == T0 + pd.Timedelta(30, "ms")


def test_the_summary_opens_with_the_answers_and_says_why_one_is_missing():
    gpu = _known()
    meta = RecordingMetadata(start=T0)
    text = Recording({"gpu": gpu}, meta).summary().split("\n")
    assert text[0].startswith("gpu: 8 rows")
    assert text[1].startswith("slowest calls: clFinish 7 ms (cl 2, at 0.005 s); glReadPixels 4 ms (gl 1, at 0.012 s)")
    assert text[2].startswith("most bytes moved: glReadPixels d2h 1.05 MB in 1 call (gl 1); glTexImage2D h2d 131 kB "
                              "in 2 calls (gl 1)")
    assert text[3].startswith("slowest frames: frame 2 ")
    untimed = Recording({"gpu": gpu.assign(duration_ns=pd.array([None] * len(gpu), dtype="Int64"))}, meta)
    assert "slowest calls: none; no call has a duration" in untimed.summary()
    no_swaps = gpu[gpu["category"] != "frame"].assign(frame=pd.array([0] * 4, dtype="Int64"))
    assert "slowest frames: none; no frame boundaries" in Recording({"gpu": no_swaps}, meta).summary()
    assert "slowest" not in Recording({"exec": pd.DataFrame({"ts": [T0]})}, meta).summary()


# -- in the report ---------------------------------------------------------------------------------
ZOOM = re.compile(r'<a class="tl-zoom" href="#timeline" data-start-ns="(\d+)" data-end-ns="(\d+)">')


def _section(doc: str) -> str:
    i = doc.index('<section id="answers">')
    return doc[i:doc.index("</section>", i)]


def test_the_report_opens_with_the_answers_linked_to_the_timeline():
    rec = Recording.load(DATA / "sessions" / "gpu_pmu")
    gpu = rec.tables["gpu"]
    doc = render_html(rec)
    assert doc.index('id="summary"') < doc.index('<section id="answers">') < doc.index('id="environment"') \
        < doc.index('id="timeline"')
    sec = _section(doc)
    tags = HtmlTags()
    tags.feed(sec)
    tables = [a["id"] for t, a in tags.tags if t == "table"]
    assert tables == ["answer-slowest-calls", "answer-most-bytes", "answer-slowest-frames"]
    links = [(int(a), int(b)) for a, b in ZOOM.findall(sec)]
    zooms = [a for t, a in tags.tags if t == "a" and "tl-zoom" in a.get("class", "")]
    want = [slowest_calls(gpu, 10), most_bytes(gpu, 10), slowest_frames(gpu, 10)]
    assert len(links) == len(zooms) == sum(map(len, want)) and all(len(w) for w in want)
    first, last = span_ns(rec)                                 # the first and last event recorded
    last = max(last, to_ns(pd.concat([w["end"] for w in want])).max())      # or the end of a call
    for (a, b), row in zip(links, pd.concat([w[["start", "end"]] for w in want]).itertuples()):
        assert first <= a <= b <= last                       # within the recording, ns since the epoch
        assert a <= row.start.value and row.end.value <= b    # around the call, group or frame
        assert a < row.start.value or a == first              # padded, unless the recording starts there
    top = want[0].iloc[0]
    assert f"{top['api']} {top['call']}" in sec and "2.63 ms" in sec


def test_the_report_says_why_an_answer_is_missing():
    rec = Recording.load(DATA / "sessions" / "gpu_pmu")
    gpu = rec.tables["gpu"]
    untimed = gpu.assign(duration_ns=pd.array([None] * len(gpu), dtype="Int64"))
    meta = RecordingMetadata(start=rec.metadata.start, end=rec.metadata.end,
                             probes={"gpu": ProbeMeta("GpuTrace", GpuConfig(returns="none"), {})})
    no_swaps = untimed[untimed["category"] != "frame"]
    no_swaps = no_swaps.assign(frame=pd.array([0] * len(no_swaps), dtype="Int64"))
    sec = _section(render_html(Recording({"gpu": no_swaps}, meta)))
    assert "none: no call has a duration (recorded with returns=&#39;none&#39;)" in sec
    assert "none: no frame boundaries" in sec and 'id="answer-most-bytes"' in sec and ZOOM.search(sec)
    sec = _section(render_html(Recording({"exec": rec.tables["exec"]}, rec.metadata)))
    assert "GPU API calls were not recorded" in sec and not ZOOM.search(sec)
