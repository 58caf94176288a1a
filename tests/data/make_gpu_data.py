"""Record the small GPU tables the analysis tests use (run as root from the repo root):

    .venv/bin/python tests/data/make_gpu_data.py
"""
from pathlib import Path
import subprocess

from ebpftoolkit import Session
from ebpftoolkit.probes.gpu import GpuTrace

HERE = Path(__file__).parent
B = HERE.parents[1] / "workloads" / "gpu" / "build"


def record(argv, apis, out):
    s = Session(GpuTrace(apis), descendants_of="command")
    with s:
        s.run([str(a) for a in argv], capture_output=True, check=True)
    df = s.tables["gpu"]
    df.to_parquet(HERE / out, index=False)
    print(out, len(df), "rows")


if __name__ == "__main__":
    subprocess.run(["make", "-C", str(B.parent)], check=True, capture_output=True)
    record([B / "gl_egl", "--frames", "6"], ["opengl"], "gpu_egl.parquet")
    record([B / "cl_vecadd", "--iters", "10"], ["opencl"], "gpu_cl.parquet")
