"""Record the small saved sessions the view tests use (run as root from the repo root):

    .venv/bin/python tests/data/make_sessions.py [NAME...]

- ``gpu_pmu``: exec + GPU (OpenGL, OpenCL) + software PMU counters, on the EGL
  workload (8 frames) then the OpenCL vector add (4 iterations);
- ``xss``: exec + PMU on a process whose name, argv and file name hold HTML
  (``<script>alert(1)</script>``: comm set with prctl, argv[0] given to execve, a
  program copied to a path with that text in it), to test escaping for real;
- ``lossy``: exec + syscalls (getpgid) with a one-page ring buffer under a
  syscall storm, so that events are really lost and ``loss_windows`` is filled.
"""
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

from ebpftoolkit import ExecSnoop, PmuCounters, Session, SyscallTrace
from ebpftoolkit.probes.gpu import GpuTrace

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
OUT = HERE / "sessions"
GPU = ROOT / "workloads" / "gpu" / "build"
XSS = "<script>alert(1)</script>"

# sets its comm (15 bytes kept: "<script>alert(1"), forks a child that exits without exec,
# then execs a copy of echo found at .../<script>alert(1)</script> with argv[0] = the same text
XSS_CHILD = r"""
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, sys.argv[2].encode(), 0, 0, 0)
pid = os.fork()
if pid == 0:
    os._exit(3)
os.waitpid(pid, 0)
os.execv(sys.argv[1], [sys.argv[2], "<img src=x onerror=alert(2)>", "a&b \"q\" 'q'", "$x$"])
"""


def _save(s: Session, name: str) -> None:
    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    s.save(out)
    print(name, {k: len(v) for k, v in s.tables.items()}, "lost", s.lost)


def gpu_pmu() -> None:
    subprocess.run(["make", "-C", str(GPU.parent)], check=True, capture_output=True)
    s = Session(ExecSnoop(), GpuTrace(["opengl", "opencl"]),
                PmuCounters(["page-faults", "context-switches", "cpu-clock"]), descendants_of="command")
    cmd = f"{GPU / 'gl_egl'} --frames 8; {GPU / 'cl_vecadd'} --iters 4"
    s.run(["sh", "-c", cmd], capture_output=True, check=True)
    _save(s, "gpu_pmu")


def xss() -> None:
    with tempfile.TemporaryDirectory(prefix="ebt-xss-") as tmp:
        d = Path(tmp) / XSS.split("/")[0]      # a folder "<script>alert(1)<" holding "script>"
        d.mkdir()
        prog = d / XSS.split("/")[1]
        shutil.copy("/bin/echo", prog)
        s = Session(ExecSnoop(), PmuCounters(["context-switches", "page-faults"]), descendants_of="command")
        s.run([sys.executable, "-c", XSS_CHILD, str(prog), XSS], capture_output=True, check=True)
    _save(s, "xss")


def lossy() -> None:
    with tempfile.TemporaryDirectory(prefix="ebt-storm-") as tmp:
        storm = Path(tmp) / "storm"
        subprocess.run(["gcc", "-O2", "-pthread", "-o", str(storm), str(ROOT / "benchmarks" / "src" / "storm.c")],
                       check=True)
        s = Session(ExecSnoop(), SyscallTrace(["getpgid"], ring_pages=1), descendants_of="command")
        s.run([str(storm), "20000"], input=b"go\n", capture_output=True, check=True)
    _save(s, "lossy")


if __name__ == "__main__":
    import warnings
    warnings.simplefilter("ignore")
    todo = sys.argv[1:] or ["gpu_pmu", "xss", "lossy"]
    for name in todo:
        globals()[name]()
