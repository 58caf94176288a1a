"""Frames for any workload (issue 17, item 3): frame boundaries other than swaps and presents
(GpuTrace(frames=["clFinish"]), frames(gpu, boundary=...)), and markers the program itself makes
(ebpftoolkit.mark, with ebpftoolkit.frame) seen by the probes in order with the GPU calls, from a
traced child and from the tracing process itself.

Oracle: the programs' own account of the calls each step made (tests/progs/cl_frames.py: pyopencl
on PoCL, offscreen compute work)."""
from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

import ebpftoolkit
from support import bpf
from ebpftoolkit import Session
from ebpftoolkit.analysis.gpu import frames
from ebpftoolkit.errors import ProbeConfigError
from ebpftoolkit.probes.gpu import GpuTrace
from ebpftoolkit.views import TraceModel

PROG = Path(__file__).resolve().parents[1] / "progs" / "cl_frames.py"
WAIT = "clWaitForEvents"      # pyopencl waits on a blocking copy's event itself: not a call the program lists


def _trace(probe, *args):
    pytest.importorskip("pyopencl", reason="pyopencl is a dev dependency: pip install -e '.[dev]'")
    s = Session(probe, descendants_of="command")
    with s:
        res = s.run([sys.executable, str(PROG), *map(str, args)], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert s.lost["gpu"] == 0
    return s, s.tables["gpu"], json.loads(res.stdout.decode().strip().splitlines()[-1])


def _calls(df, frame):
    rows = df[(df["frame"] == frame) & (df["call"] != WAIT)].sort_values("ts", kind="stable")
    return list(rows["call"])


@bpf
def test_offscreen_compute_frames_end_at_clfinish():
    s, df, own = _trace(GpuTrace(["opencl"], frames=["clFinish"]), "--steps", 6)
    assert s.recording.metadata.config("gpu").frames == ("clFinish",)
    fr = frames(df)
    ended = fr[fr["ended_by"].notna()]
    assert len(ended) == own["steps"] == 6 and set(ended["ended_by"]) == {"clFinish"}
    for k, made in enumerate(own["calls"]):
        got = _calls(df, k)
        assert got[-len(made):] == made, (k, got, made)
        assert got[:-len(made)] == (["clCreateBuffer"] * 2 if k == 0 else []), got     # the setup is in frame 0
    assert _calls(df, 6) == ["clReleaseMemObject"] * 2                                 # after the last boundary
    assert fr["ended_by"].iloc[-1] is None
    fin = df[df["call"] == "clFinish"].sort_values("ts")
    assert list(ended["end"]) == list(fin["ts"] + pd.to_timedelta(fin["duration_ns"].astype("int64"), unit="ns"))
    assert ended["frame_time"].iloc[1:].gt(pd.Timedelta(0)).all()
    # the same frames again from the table alone, its frame column forgotten (a recording made with the default)
    again = frames(df.assign(frame=pd.array([0] * len(df), dtype="Int64")), boundary=["clFinish"])
    pd.testing.assert_frame_equal(again, fr)


@bpf
def test_marked_frames_in_a_traced_child_hold_the_calls_made_inside_them():
    s, df, own = _trace(GpuTrace(["opencl"], frames="marker"), "--steps", 5, "--markers")
    k = own["steps"]
    fr = frames(df)
    assert len(fr) == k and (fr["ended_by"] == "ebpftoolkit_frame_end").all() and list(fr["frame"]) == list(range(k))
    for i, made in enumerate(own["calls"]):
        assert _calls(df, i) == made, (i, _calls(df, i), made)
        f = df[df["frame"] == i].sort_values("ts", kind="stable")
        begin, end = f["ts"].iloc[0], f["ts"].iloc[-1]
        assert f["call"].iloc[0] == "ebpftoolkit_frame_begin" and f["call"].iloc[-1] == "ebpftoolkit_frame_end"
        assert ((f["ts"] >= begin) & (f["ts"] <= end)).all()
        assert fr.loc[i, "start"] == begin and fr.loc[i, "end"] == end      # a marker has no duration: its ts
        mark = f[f["call"] == "ebpftoolkit_mark"]
        assert list(mark["label"]) == [f"x{i}"]
        t = dict(zip(f["call"], f["ts"]))
        assert t["clEnqueueNDRangeKernel"] < mark["ts"].iloc[0] < t["clEnqueueReadBuffer"]
        assert list(f.loc[f["call"].str.startswith("ebpftoolkit_frame"), "label"]) == ["step", "step"]
    outside = df[df["frame"].isna()]
    assert sorted(outside["call"]) == ["clCreateBuffer"] * 2 + ["clReleaseMemObject"] * 2
    assert df.loc[df["api"] != "marker", "label"].isna().all()
    # the model the timelines draw: one span per block, named as the program named it; the marks as instants
    m = TraceModel.from_recording(s.recording)
    spans = m.spans[(m.spans["kind"] == "call") & (m.spans["cat"] == "marker")]
    assert list(spans["name"]) == ["step"] * k
    assert list(spans["end_ns"] - spans["start_ns"]) == list((fr["end"] - fr["start"]).astype("int64"))
    marks = m.instants[(m.instants["kind"] == "call") & (m.instants["cat"] == "marker")]
    assert list(marks["name"]) == [f"x{i}" for i in range(k)]


@pytest.mark.parametrize("cookies", [True, False])
@bpf
def test_markers_in_the_tracing_process_itself(cookies):
    """The notebook case: the program is the tracing process; marks end frames outside frame blocks."""
    lib = ctypes.CDLL("libOpenCL.so.1")            # loaded before the session, as `import pyopencl` would
    assert lib.clFinish(None) != 0                 # no queue: an error, but a real call of the probed loader
    s = Session(GpuTrace(["opencl"], frames="marker", cookies=cookies), descendants_of="self")
    long_name = "n" * 100
    with s:
        for k in range(4):
            for _ in range(k + 1):
                lib.clFinish(None)
            ebpftoolkit.mark(f"m{k}")
        with ebpftoolkit.frame(long_name):
            lib.clFlush(None)
            ebpftoolkit.mark(b"\xff-not-utf8")
    df = s.tables["gpu"]
    df = df[df["pid"] == os.getpid()].sort_values("ts", kind="stable")
    assert list(df["call"]) == ["clFinish", "ebpftoolkit_mark", "clFinish", "clFinish", "ebpftoolkit_mark",
                                "clFinish", "clFinish", "clFinish", "ebpftoolkit_mark"] + \
        ["clFinish"] * 4 + ["ebpftoolkit_mark", "ebpftoolkit_frame_begin", "clFlush", "ebpftoolkit_mark",
                            "ebpftoolkit_frame_end"]
    fr = frames(df)
    assert list(fr["calls"]) == [2, 3, 4, 5, 4]
    assert list(fr["ended_by"]) == ["ebpftoolkit_mark"] * 4 + ["ebpftoolkit_frame_end"]
    labels = df.loc[df["api"] == "marker", "label"].tolist()
    assert labels == ["m0", "m1", "m2", "m3", "n" * 63, "\udcff-not-utf8", "n" * 63]     # 63 bytes and the NUL


def test_frame_boundaries_must_be_probed_calls():
    with pytest.raises(ProbeConfigError, match="'glFinishh' is not a catalogued call"):
        GpuTrace(frames=["glFinishh"])
    with pytest.raises(ProbeConfigError, match="clFinish is a call of opencl, which apis=\\['opengl'\\]"):
        GpuTrace(["opengl"], frames=["clFinish"])
    with pytest.raises(ProbeConfigError, match="frames takes 'swap/present'"):
        GpuTrace(frames=3)
    with pytest.raises(ProbeConfigError, match="frames takes 'swap/present'"):
        GpuTrace(frames=[])
    assert GpuTrace(["opengl"], frames="glFinish,glReadPixels").config.frames == ("glFinish", "glReadPixels")
    assert GpuTrace(frames="marker").config.frames == "marker"
