"""What GPU API tracing costs a GL application.

    sudo .venv/bin/python benchmarks/gpu_overhead.py [--frames 3000] [--repeat 5]

Workload: workloads/gpu/build/gl_egl (surfaceless EGL on llvmpipe, 8 draws, three
uploads and a readback per frame), pinned to one CPU with llvmpipe rendering in
its own thread (LP_NUM_THREADS=0) so that runs are repeatable; glxgears on Xvfb
varied by +-30% between identical runs here.  Three configurations, interleaved
--repeat times, median FPS reported:
  untraced;
  naive: uprobes on the exported libGL/libOpenGL/libEGL symbols of the same calls
         (a counter only, the cheapest possible BPF program);
  ebpftoolkit: GpuTrace(["opengl"]) recording every call into its table.
The last line is GpuTrace's FPS as a fraction of the untraced FPS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ebpftoolkit import Session  # noqa: E402
from ebpftoolkit.probes.gpu import GpuTrace  # noqa: E402
from ebpftoolkit.probes.gpu.catalogue import calls_for  # noqa: E402
from ebpftoolkit.probes.gpu.resolve import find_libraries  # noqa: E402
from ebpftoolkit.runtime.elf import elf_file  # noqa: E402
from ebpftoolkit.runtime.program import import_bcc  # noqa: E402

NAIVE_C = b"BPF_PERCPU_ARRAY(hits, u64, 1);\nint hit(void *ctx) { u32 z = 0; u64 *n = hits.lookup(&z); if (n) (*n)++; return 0; }\n"
EXE = ROOT / "workloads" / "gpu" / "build" / "gl_egl"


def run_workload(frames: int, session=None) -> float:
    argv = ["taskset", "-c", "1", str(EXE), "--frames", str(frames)]
    env = dict(os.environ, LP_NUM_THREADS="0")
    t0 = time.perf_counter()
    if session is None:
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    else:
        session.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return frames / (time.perf_counter() - t0)


def naive(frames):
    bcc = import_bcc()
    b = bcc.BPF(text=NAIVE_C)
    n = 0
    for soname in ("libOpenGL.so.0", "libGL.so.1", "libEGL.so.1"):
        for lib in find_libraries(soname):
            funcs = elf_file(lib).functions
            for c in calls_for(["opengl"]):
                if c.name in funcs:
                    b.attach_uprobe(name=lib.encode(), addr=funcs[c.name], fn_name=b"hit")
                    n += 1
    try:
        fps = run_workload(frames)
        hits = sum(b[b"hits"][0])
    finally:
        b.cleanup()
    return fps, hits, n


def traced(frames):
    g = GpuTrace(["opengl"])
    s = Session(g, descendants_of="command")
    with s:
        fps = run_workload(frames, s)
    return fps, len(s.tables["gpu"]), len(g.points), g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    subprocess.run(["make", "-C", str(EXE.parent.parent)], check=True, capture_output=True)
    base, nv, eb = [], [], []
    for _ in range(args.repeat):
        base.append(run_workload(args.frames))
        nv.append(naive(args.frames))
        eb.append(traced(args.frames))
    b = statistics.median(base)
    nfps = statistics.median(x[0] for x in nv)
    efps = statistics.median(x[0] for x in eb)
    g = eb[-1][3]
    per_frame = eb[-1][1] / args.frames
    print(f"gl_egl --frames {args.frames} (llvmpipe, one CPU), median of {args.repeat} interleaved runs\n")
    print(f"{'run':44} {'FPS':>9} {'vs untraced':>12} {'probes':>7} {'calls seen':>11}")
    print(f"{'untraced':44} {b:>9.1f} {1.0:>12.3f} {0:>7} {'-':>11}")
    print(f"{'naive: exported symbols, counter only':44} {nfps:>9.1f} {nfps / b:>12.3f} {nv[-1][2]:>7} {nv[-1][1]:>11,}")
    print(f"{'ebpftoolkit GpuTrace, full records':44} {efps:>9.1f} {efps / b:>12.3f} {eb[-1][2]:>7} {eb[-1][1]:>11,}")
    print(f"\nspread (min-max FPS): untraced {min(base):.0f}-{max(base):.0f}, naive {min(x[0] for x in nv):.0f}-"
          f"{max(x[0] for x in nv):.0f}, ebpftoolkit {min(x[0] for x in eb):.0f}-{max(x[0] for x in eb):.0f}")
    print(f"GpuTrace saw {per_frame:.1f} calls per frame; naive probes see only the direct half of the draws "
          f"({nv[-1][1] / args.frames:.1f} hits per frame)")
    o = g.overhead()
    hot = o[o["call"].isin(["glDrawArrays", "glDrawElements", "glBufferData", "glTexImage2D", "glTexSubImage2D",
                           "glReadPixels", "glClear", "eglSwapBuffers"])]
    print(hot[["call", "probe_offset", "instruction", "emulated", "returns"]].to_string(index=False))
    print(f"GpuTrace FPS / untraced FPS: {efps / b:.3f}")


if __name__ == "__main__":
    main()
