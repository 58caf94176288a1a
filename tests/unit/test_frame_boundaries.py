"""Frames from any boundary (analysis.gpu.assign_frames / frames(gpu, boundary=...)) against a
plain sequential model of the rules, over random tables (hypothesis): several processes, calls out
of time order, equal timestamps, swaps, other boundary calls, marker blocks (nested, unclosed, an
end whose begin was before the recording) and marks inside and outside blocks."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpftoolkit.analysis.gpu import assign_frames, frames

B, E, M = "ebpftoolkit_frame_begin", "ebpftoolkit_frame_end", "ebpftoolkit_mark"
CALLS = ["glDrawArrays", "clFinish", "glFinish", "eglSwapBuffers", B, E, M, "cudaMemcpy"]
CATEGORY = {"glDrawArrays": "draw", "clFinish": "sync", "glFinish": "sync", "eglSwapBuffers": "frame", B: "marker",
            E: "marker", M: "marker", "cudaMemcpy": "copy_h2d"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw):
    n = draw(st.integers(0, 60))
    rows = draw(st.lists(st.tuples(st.sampled_from([10, 20, 30]), st.sampled_from(CALLS), st.integers(0, 40),
                                   st.one_of(st.none(), st.integers(0, 5000))), min_size=n, max_size=n))
    t0 = pd.Timestamp("2024-01-01")
    return pd.DataFrame({
        "ts": pd.to_datetime([t0 + pd.Timedelta(microseconds=r[2]) for r in rows] or [], utc=False),
        "pid": np.array([r[0] for r in rows], np.int64), "tid": np.array([r[0] for r in rows], np.int64),
        "api": pd.Series(["marker" if r[1].startswith("ebpftoolkit") else "x" for r in rows], dtype=object),
        "call": pd.Series([r[1] for r in rows], dtype=object),
        "category": pd.Series([CATEGORY[r[1]] for r in rows], dtype=object),
        "bytes": pd.array([64] * n, dtype="Int64"), "direction": pd.Series(["h2d"] * n, dtype=object),
        "duration_ns": pd.array([r[3] for r in rows], dtype="Int64"),
        "frame": pd.array([0] * n, dtype="Int64")})


def model(df: pd.DataFrame, boundary) -> tuple[list, list]:
    """The rules, one call at a time per process: (frame of each row, whether it ended a frame)."""
    out, ended = [None] * len(df), [False] * len(df)
    names = None if boundary in ("swap/present", "marker") else \
        {boundary} if isinstance(boundary, str) else set(boundary)
    order = sorted(range(len(df)), key=lambda i: (df["ts"].iat[i], i))
    for pid in set(df["pid"]):
        frame, depth, pending, blocks = 0, 0, [], False
        for i in (i for i in order if df["pid"].iat[i] == pid):
            call = df["call"].iat[i]
            if boundary == "marker":
                if call == B:
                    if depth == 0:
                        pending, blocks = [], True          # the calls before a block: in no frame
                    depth += 1
                    out[i] = frame
                elif call == E or (call == M and depth == 0):
                    depth = max(depth - 1, 0) if call == E else 0
                    out[i] = frame
                    if depth == 0:
                        for p in pending:
                            out[p] = frame
                        pending, ended[i] = [], True
                        frame += 1
                elif depth > 0:
                    out[i] = frame
                else:
                    pending.append(i)
            else:
                is_end = df["category"].iat[i] == "frame" if names is None else call in names
                pending.append(i)
                if is_end:
                    for p in pending:
                        out[p] = frame
                    pending, ended[i] = [], True
                    frame += 1
        for p in pending:                                   # after the last boundary
            out[p] = None if blocks else frame
    return out, ended


BOUNDARIES = st.sampled_from(["swap/present", "marker", ["clFinish"], ["glFinish", "clFinish"], "glFinish",
                              ["nothing"]])


@SETTINGS
@given(tables(), BOUNDARIES)
def test_frames_follow_the_rules(df, boundary):
    want, ended = model(df, boundary)
    got = assign_frames(df, boundary)
    assert list(got.index) == list(df.index) and str(got.dtype) == "Int64"
    assert [None if pd.isna(v) else int(v) for v in got] == want
    fr = frames(df, boundary=boundary)
    have = df.assign(frame=got)
    have = have[have["frame"].notna()]
    assert len(fr) == len(have.groupby(["pid", "frame"]))
    assert fr["calls"].sum() == len(have) and fr["draws"].sum() == (have["category"] == "draw").sum()
    # every frame that was ended, was ended by its last call, and ends when that call returned
    enders = df[np.array(ended, bool)]
    assert fr["ended_by"].notna().sum() == len(enders)
    for _, e in enders.iterrows():
        row = fr[(fr["pid"] == e["pid"]) & (fr["frame"] == got[e.name])].iloc[0]
        assert row["ended_by"] == e["call"]
        assert row["end"] == e["ts"] + pd.Timedelta(0 if pd.isna(e["duration_ns"]) else int(e["duration_ns"]), "ns")
    assert (fr["end"] >= fr["start"]).all()
    # the table's own frame column, as GpuTrace records it, gives the same frames
    recorded = frames(df.assign(frame=got).sort_values("ts", kind="stable"))
    for c in ("pid", "frame", "start", "calls", "draws"):
        assert list(recorded[c]) == list(fr[c]), c


@SETTINGS
@given(tables())
def test_the_default_is_the_frame_column_as_before(df):
    """Swap/present frames, as GpuTrace numbered them before boundaries were configurable: the number of
    frame calls the process made before (in time order), and frames(gpu) still takes the column as it is."""
    df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    is_frame = (df["category"] == "frame").astype(np.int64)
    before = pd.array((is_frame.groupby(df["pid"]).cumsum() - is_frame).to_numpy(), dtype="Int64")
    assert list(assign_frames(df)) == list(before)
    marked = df.assign(frame=before)
    fr = frames(marked)
    assert len(fr) == len(marked.groupby(["pid", "frame"])) if len(df) else fr.empty
    swaps = marked[marked["category"] == "frame"]
    assert set(fr.loc[fr["ended_by"].notna(), "ended_by"]) <= {"eglSwapBuffers"}
    assert fr["ended_by"].notna().sum() == len(swaps)


def test_bad_boundaries_are_refused():
    df = pd.DataFrame({"ts": pd.to_datetime([0]), "pid": [1], "call": ["x"], "category": ["other"]})
    for bad in (3, [1, 2], None):
        try:
            assign_frames(df, bad)
        except ValueError as exc:
            assert "boundary is 'swap/present', 'marker' or call names" in str(exc)
        else:
            raise AssertionError(bad)


def test_the_command_line_and_the_magics_take_frames():
    import pytest

    from ebpftoolkit.errors import ProbeConfigError
    from ebpftoolkit.options import probes_from_options, record_parser
    args = record_parser().parse_args(["--gpu", "opencl", "--gpu-frames", "clFinish,clFlush", "--", "true"])
    (gpu,) = probes_from_options(args)
    assert gpu.config.frames == ("clFinish", "clFlush") and gpu._points is None     # nothing resolved yet
    (gpu,) = probes_from_options(record_parser().parse_args(["--gpu", "--", "true"]))
    assert gpu.config.frames == "swap/present"
    with pytest.raises(ProbeConfigError, match="'clFinishh' is not a catalogued call"):
        probes_from_options(record_parser().parse_args(["--gpu", "--gpu-frames", "clFinishh", "--", "true"]))
