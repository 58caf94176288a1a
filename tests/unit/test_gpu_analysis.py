"""Pure analysis functions on a GPU table recorded from a real run (tests/data/gpu_egl.parquet)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ebpftoolkit.analysis.gpu import bandwidth, data_movement, frames, latency, leaks, memory_timeline

DATA = Path(__file__).parents[1] / "data"


def load(name):
    return pd.read_parquet(DATA / name)


def test_frames_from_a_recorded_gl_run():
    gpu = load("gpu_egl.parquet")          # gl_egl --frames 6: 8 draws, 1 upload of each kind per frame
    f = frames(gpu)
    full = f[f["frame"] < 6]
    assert list(full["draws"]) == [8] * 6
    assert (full["bytes_up"] == 65536 + 16384 + 4096).all() and (full["bytes_down"] == 4096).all()
    assert full["frame_time"].iloc[1:].gt(pd.Timedelta(0)).all()


def test_data_movement_and_bandwidth():
    gpu = load("gpu_egl.parquet")
    moved = data_movement(gpu, "1s")
    assert moved["h2d"].sum() == gpu.loc[gpu["direction"] == "h2d", "bytes"].sum()
    assert moved["d2h"].sum() == 6 * 4096
    bw = bandwidth(load("gpu_cl.parquet"))
    assert set(bw["direction"]) == {"h2d", "d2h"} and (bw["call_time_bandwidth_gbs"] > 0).all()


def test_memory_outstanding_and_leaks_with_a_synthetic_leak():
    gpu = load("gpu_cl.parquet")          # cl_vecadd: 3 buffers created and released
    mem = memory_timeline(gpu)
    assert mem["outstanding"].max() == 3 * 1048576 and mem["outstanding"].iloc[-1] == 0
    assert leaks(gpu).empty
    leaked = gpu[~((gpu["call"] == "clReleaseMemObject") & (gpu["handle"] == gpu["handle"].dropna().iloc[0]))]
    lk = leaks(leaked)
    assert len(lk) == 1 and lk["bytes"].iloc[0] == 1048576 and (lk["age"] > pd.Timedelta(0)).all()


def test_latency_percentiles():
    lat = latency(load("gpu_cl.parquet")).set_index("call")
    assert lat.loc["clEnqueueNDRangeKernel", "count"] == 10
    assert lat.loc["clFinish", "p50_ns"] > 0
