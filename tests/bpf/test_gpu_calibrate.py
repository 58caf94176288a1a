"""What a traced call costs is measured on the machine (issue 16): ebpftoolkit calibrate, cached per
kernel and CPU, read by GpuTrace.overhead() and written into the recording with the tracing's cost."""
from __future__ import annotations

import subprocess
import sys

from support import bpf
from ebpftoolkit import GpuTrace, Session
from ebpftoolkit import calibration
from ebpftoolkit.probes.gpu import costs as cal

CLI = [sys.executable, "-m", "ebpftoolkit"]


@bpf
def test_calibration_measures_the_kinds_of_attach_point_and_overhead_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cal.costs()["source"].startswith("estimated")          # nothing measured in this fresh cache
    res = subprocess.run([*CLI, "calibrate", "--repeat", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    c = cal.costs()
    assert c["source"].startswith("measured on this machine")
    # a trap the kernel emulates costs about a microsecond here; single-stepping costs several times that
    assert 0.1 < c["emulated_us"] < c["single_stepped_us"] and c["return_us"] > 0
    assert f"{c['emulated_us']:.2f} us per call" in res.stdout
    assert calibration.calibrate() == c                                     # cached: not measured again
    g = GpuTrace(["opengl"])
    o = g.overhead()
    assert set(o["cost_source"]) == {"measured"}
    emulated = o[o["emulated"] & ~o["returns"]]
    assert len(emulated) and (emulated["cost_per_call_us"] == round(c["emulated_us"], 3)).all()
    with_ret = o[o["emulated"] & o["returns"]]
    assert (with_ret["cost_per_call_us"] == round(c["emulated_us"] + c["return_us"], 3)).all()


@bpf
def test_a_recording_says_what_the_tracing_cost(tmp_path, monkeypatch):
    """The gl_egl workload's calls times each attach point's cost, in the metadata."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from pathlib import Path
    exe = Path(__file__).resolve().parents[2] / "workloads" / "gpu" / "build" / "gl_egl"
    subprocess.run(["make", "-C", str(exe.parent.parent)], check=True, capture_output=True, timeout=600)
    g = GpuTrace(["opengl"])
    with Session(g, descendants_of="command") as s:
        s.run([str(exe), "--frames", "5"], capture_output=True, check=True)
    d = s.recording.metadata.probes["gpu"].details
    rows = {(r["call"]): r["cost_per_call_us"] for r in d["attach_points"]}
    gpu = s.tables["gpu"]
    want = sum(rows[c] * n for c, n in gpu.groupby("call").size().items()) / 1e3
    assert d["tracing_cost_ms"] > 0 and abs(d["tracing_cost_ms"] - want) < 1e-3 + 1e-6 * want
    assert d["calibration"]["source"].startswith(("measured", "estimated"))
