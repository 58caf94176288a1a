"""compare() on two real recordings of one program at two sizes, and `ebpftoolkit report --baseline`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import bpf
from ebpftoolkit import GpuTrace, Recording, Session
from ebpftoolkit.analysis import compare, compare_frames

ROOT = Path(__file__).resolve().parents[2]
GL_EGL = ROOT / "workloads" / "gpu" / "build" / "gl_egl"


def _record(frames: int, out: Path) -> tuple[Recording, dict]:
    import json
    with Session(GpuTrace(["opengl"]), descendants_of="command") as s:
        res = s.run([str(GL_EGL), "--frames", str(frames)], capture_output=True, check=True)
    s.save(out)
    return Recording.load(out), json.loads(res.stdout.decode().splitlines()[-1])


@bpf
def test_twice_the_frames_is_twice_every_per_frame_call(tmp_path):
    subprocess.run(["make", "-C", str(GL_EGL.parent.parent)], check=True, capture_output=True, timeout=600)
    a, own_a = _record(6, tmp_path / "a")
    b, own_b = _record(12, tmp_path / "b")
    df = compare(a, b).set_index("call")
    for call, n in own_b["calls"].items():               # the program's own counts, both runs
        assert df.loc[call, "count_b"] == n and df.loc[call, "count_a"] == own_a["calls"][call], call
        assert df.loc[call, "count_ratio"] == n / own_a["calls"][call], call
    assert df.loc["glBufferData", "bytes_ratio"] == 2.0 and df.loc["glReadPixels", "bytes_b"] == own_b["bytes"]["glReadPixels"]
    f = compare_frames(a, b).set_index("statistic")
    assert (f.loc["frames", "a"], f.loc["frames", "b"]) == (5, 11)      # frame times between consecutive swaps
    out = tmp_path / "report.html"
    res = subprocess.run([sys.executable, "-m", "ebpftoolkit", "report", str(tmp_path / "b"), "--baseline",
                          str(tmp_path / "a"), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    assert "Compared with a baseline" in html and "glDrawArrays" in html.split('id="comparison"')[1][:20000]
