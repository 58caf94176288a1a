"""Ordinary GPU recordings, made for real, analysed and reported: the README's flow without
--exec, every return probe on, none on, and OpenCL buffers never released.  (A notebook user's
first GPU report used to fail on each of these.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, bpf
from ebpftoolkit import Recording
from ebpftoolkit.analysis import gpu as ga

W = ROOT / "workloads" / "gpu"
CLI = [sys.executable, "-m", "ebpftoolkit"]

LEAKY_CL = r"""
import os, numpy as np, pyopencl as cl
ctx = cl.Context([cl.get_platforms()[0].get_devices()[0]])
q = cl.CommandQueue(ctx)
bufs = [cl.Buffer(ctx, cl.mem_flags.READ_WRITE, size=4096 * (i + 1)) for i in range(3)]
for b in bufs:
    cl.enqueue_copy(q, b, np.zeros(b.size // 4, np.float32))
q.finish()
os._exit(0)                  # the buffers are never released
"""


@pytest.fixture(scope="module")
def build():
    res = subprocess.run(["make", "-C", str(W)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return W / "build"


def record(tmp_path: Path, name: str, *args) -> Recording:
    out = tmp_path / name
    res = subprocess.run([*CLI, "record", *args[:-1], "-o", str(out), "--", *args[-1]], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = subprocess.run([*CLI, "report", str(out), "-o", str(tmp_path / f"{name}.html")], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    doc = (tmp_path / f"{name}.html").read_text()
    assert "could not be drawn" not in doc and "GPU API calls were not recorded" not in doc
    return Recording.load(out)


@bpf
@pytest.mark.parametrize("returns", ["default", "all", "none"])
def test_gl_recordings_without_exec_report_with_any_return_probes(build, tmp_path, returns):
    rec = record(tmp_path, returns, "--gpu", "opengl", "--gpu-returns", returns, [str(build / "gl_egl"), "--frames", "40"])
    g = rec.tables["gpu"]
    assert set(rec.tables) == {"gpu"} and (g["call"] == "eglSwapBuffers").sum() == 40
    lat = ga.latency(g)
    timed = lat.dropna(subset=["p50_ns"])
    if returns == "none":
        assert timed.empty and g["duration_ns"].isna().all()
    else:
        assert "eglSwapBuffers" in set(timed["call"])
        assert (returns == "all") == (len(timed) == len(lat))
    assert ga.leaks(g).empty or ga.leaks(g)["call"].isin(["glBufferData", "glTexImage2D"]).all()
    assert len(ga.frames(g)) >= 40


@bpf
def test_opencl_buffers_never_released(tmp_path):
    pytest.importorskip("pyopencl", reason="pyopencl is a dev dependency: pip install -e '.[dev]'")
    script = tmp_path / "leaky_cl.py"
    script.write_text(LEAKY_CL)
    rec = record(tmp_path, "leak", "--gpu", "opencl", [sys.executable, str(script)])
    g = rec.tables["gpu"]
    assert (g["call"] == "clCreateBuffer").sum() == 3 and (g["call"] == "clReleaseMemObject").sum() == 0
    lk = ga.leaks(g)
    assert len(lk) == 3 and sorted(lk["bytes"].astype(int)) == [4096, 8192, 12288]
    mem = ga.memory_timeline(g)
    assert mem["outstanding"].iloc[-1] == 4096 + 8192 + 12288
    doc = (tmp_path / "leak.html").read_text()
    assert "3 allocations never freed (24,576 bytes)" in doc
