"""Markers as the views see them: TraceModel names a marker by its label and draws a frame block as
one span (nested blocks too, a block cut by the recording's end as its instants); the Chrome trace,
the static timeline and the frame chart take them; a recording keeps its labels through save/load."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ebpftoolkit import Recording  # noqa: E402
from ebpftoolkit.analysis.gpu import assign_frames, frames  # noqa: E402
from ebpftoolkit.views import TraceModel, frame_times, static_timeline, to_chrome_trace  # noqa: E402

B, E, M = "ebpftoolkit_frame_begin", "ebpftoolkit_frame_end", "ebpftoolkit_mark"


def table(seq):
    """seq: (call, label, tid) in time order, 1 us apart; calls of OpenCL take 0.5 us."""
    n = len(seq)
    t0 = pd.Timestamp("2024-01-01")
    call = [c for c, _, _ in seq]
    marker = np.array([c.startswith("ebpftoolkit") for c in call])
    return pd.DataFrame({
        "ts": [t0 + pd.Timedelta(microseconds=i) for i in range(n)], "pid": np.full(n, 7, np.int64),
        "tid": np.array([t for _, _, t in seq], np.int64), "comm": pd.Series(["prog"] * n, dtype=object),
        "api": pd.Series(np.where(marker, "marker", "opencl"), dtype=object), "call": pd.Series(call, dtype=object),
        "category": pd.Series(np.where(marker, "marker", np.where(np.array(call) == "clFinish", "sync", "launch")),
                              dtype=object),
        "bytes": pd.array([pd.NA] * n, dtype="Int64"), "direction": pd.Series([None] * n, dtype=object),
        "handle": pd.array([pd.NA] * n, dtype="Int64"),
        "duration_ns": pd.array([pd.NA if m else 500 for m in marker], dtype="Int64"),
        "retval": pd.array([pd.NA] * n, dtype="Int64"), "frame": pd.array([0] * n, dtype="Int64"),
        "caller": np.zeros(n, np.int64), "library": pd.Series(["lib"] * n, dtype=object),
        "mechanism": pd.Series(["exported symbol"] * n, dtype=object), "kernel": pd.Series([None] * n, dtype=object),
        "stream": pd.array([pd.NA] * n, dtype="Int64"), "label": pd.Series([lb for _, lb, _ in seq], dtype=object)})


SEQ = [(B, "step", 7), ("clEnqueueNDRangeKernel", None, 7), (M, "x0", 7), (B, "inner", 7), ("clFinish", None, 7),
       (E, "inner", 7), (E, "step", 7), ("clFinish", None, 8), (B, "step", 7), (M, "\udcff-raw", 7),
       (E, "step", 7), (B, "cut", 7), ("clFinish", None, 7)]


def test_marker_rows_are_named_and_blocks_are_spans(tmp_path):
    g = table(SEQ)
    g["frame"] = assign_frames(g, "marker")
    rec = Recording({"gpu": g})
    m = TraceModel.from_recording(rec)
    calls = m.spans[m.spans["kind"] == "call"]
    blocks = calls[calls["cat"] == "marker"]
    assert list(blocks["name"]) == ["step", "inner", "step"]
    assert list(blocks["row"]) == [0, 3, 8]
    ts = (g["ts"] - g["ts"].iloc[0]).dt.total_seconds() * 1e6
    assert list(blocks["end_ns"] - blocks["start_ns"]) == [int((ts[6] - ts[0]) * 1e3), int((ts[5] - ts[3]) * 1e3),
                                                           int((ts[10] - ts[8]) * 1e3)]
    inst = m.instants[m.instants["kind"] == "call"]
    assert list(inst["name"]) == ["x0", "\udcff-raw", "cut"]          # the unclosed block's begin stays an instant
    assert set(calls.loc[calls["cat"] != "marker", "name"]) == {"clEnqueueNDRangeKernel", "clFinish"}
    # the frames: the two closed outer blocks (the inner block and the marks inside the first), and the cut one;
    # tid 8's call between blocks is in none
    fr = frames(g)
    assert list(fr["calls"]) == [7, 3, 2] and list(fr["ended_by"]) == [E, E, None]
    assert g["frame"].isna().sum() == 1 and pd.isna(g["frame"].iloc[7])
    trace = to_chrome_trace(rec)
    names = {e["name"] for e in trace["traceEvents"] if e.get("ph") in ("X", "i", "I")}
    assert {"step", "inner", "x0", "cut"} <= names
    static_timeline(rec).canvas.draw()
    back = Recording.load(rec.save(tmp_path / "r"))
    assert list(back.tables["gpu"]["label"].fillna("-")) == list(g["label"].fillna("-"))


def test_the_frame_chart_draws_frames_ended_by_any_boundary():
    g = table([("clEnqueueNDRangeKernel", None, 7), ("clFinish", None, 7)] * 4)
    fig = frame_times(g.assign(frame=pd.array([0] * len(g), dtype="Int64")))
    assert "no frames recorded" in " ".join(t.get_text() for a in fig.axes for t in a.texts)
    fig = frame_times(g.assign(frame=assign_frames(g, ["clFinish"])))
    assert not any("no frames recorded" in t.get_text() for a in fig.axes for t in a.texts)
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[0].lines[0].get_xdata()) == 4
