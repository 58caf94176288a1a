#!/usr/bin/env python3
"""cl_frames.py: offscreen compute work in steps, for frames= and markers (tests/bpf/test_gpu_frames.py).

Usage: python cl_frames.py --steps N [--markers]
Sets up 2 buffers and a kernel (pyopencl: PoCL runs it on the CPU), then N steps of: a blocking
write, a kernel, a blocking read, clFinish.  With --markers each step is a
``with ebpftoolkit.frame("step"):`` block with ``ebpftoolkit.mark("x<i>")`` after its kernel.
Buffers are released after the last step.  Prints one JSON line: the steps made and, per step,
the catalogued calls it made in order (its markers included).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PYOPENCL_NO_CACHE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np  # noqa: E402
import pyopencl as cl  # noqa: E402

import ebpftoolkit  # noqa: E402

SRC = "__kernel void twice(__global float *a) { size_t i = get_global_id(0); a[i] = 2.0f * a[i]; }"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--markers", action="store_true")
    args = ap.parse_args()
    ctx = cl.Context([cl.get_platforms()[0].get_devices()[0]])
    q = cl.CommandQueue(ctx)
    knl = cl.Program(ctx, SRC).build().twice
    host = np.arange(4096, dtype=np.float32)
    buf = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, size=host.nbytes)
    other = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, size=host.nbytes)
    knl.set_args(buf)
    steps = []

    def step(i):
        made = []
        cl.enqueue_copy(q, buf, host, is_blocking=True)
        made.append("clEnqueueWriteBuffer")
        cl.enqueue_nd_range_kernel(q, knl, host.shape, None)
        made.append("clEnqueueNDRangeKernel")
        if args.markers:
            ebpftoolkit.mark(f"x{i}")
            made.append("ebpftoolkit_mark")
        cl.enqueue_copy(q, host, buf, is_blocking=True)
        made.append("clEnqueueReadBuffer")
        q.finish()
        made.append("clFinish")
        return made

    for i in range(args.steps):
        if args.markers:
            with ebpftoolkit.frame("step"):
                steps.append(["ebpftoolkit_frame_begin"] + step(i) + ["ebpftoolkit_frame_end"])
        else:
            steps.append(step(i))
    buf.release()
    other.release()
    print(json.dumps({"steps": len(steps), "calls": steps, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
