#!/usr/bin/env python3
"""cl_vecadd.py: the cl_vecadd.c workload through pyopencl.

Usage: python cl_vecadd.py [--iters N] [--n ELEMS]
Same fixed call sequence as cl_vecadd.c: 3 buffers, 2 blocking writes,
N x enqueue_nd_range_kernel (c = a + b, args set once), 1 blocking read,
3 x release, 1 x finish.  Prints one JSON line; "loader" is the libOpenCL
mapped into this process (PyPI wheels bundle their own ocl-icd copy under
site-packages/pyopencl/.libs/, NOT /usr/lib/.../libOpenCL.so.1), "icds" the
vendor libraries the loader dlopen()ed.
PYOPENCL_NO_CACHE=1 is set (unless given) so every run really builds the
program instead of loading a cached binary.
"""
import argparse
import json
import os

os.environ.setdefault("PYOPENCL_NO_CACHE", "1")
import numpy as np  # noqa: E402
import pyopencl as cl  # noqa: E402

SRC = """
__kernel void vecadd(__global const float *a, __global const float *b,
                     __global float *c, const unsigned n) {
    size_t i = get_global_id(0); if (i < n) c[i] = a[i] + b[i];
}
"""


def mapped_libs(*needles):
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and any(n in os.path.basename(parts[5]) for n in needles):
                if parts[5] not in out:
                    out.append(parts[5])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--n", type=int, default=1 << 18)
    args = ap.parse_args()
    n, iters = args.n, args.iters
    calls = dict.fromkeys(["clCreateBuffer", "clEnqueueWriteBuffer", "clEnqueueNDRangeKernel",
                           "clEnqueueReadBuffer", "clReleaseMemObject", "clFinish",
                           "clSetKernelArg", "clBuildProgram"], 0)
    nbytes = {"clCreateBuffer": 0, "clEnqueueWriteBuffer": 0, "clEnqueueReadBuffer": 0}

    plat = cl.get_platforms()[0]
    dev = plat.get_devices()[0]
    ctx = cl.Context([dev])
    q = cl.CommandQueue(ctx, dev)
    prg = cl.Program(ctx, SRC).build()
    calls["clBuildProgram"] += 1
    knl = prg.vecadd

    a = np.arange(n, dtype=np.float32)
    b = 2.0 * a
    c = np.full(n, -1.0, dtype=np.float32)
    S = a.nbytes
    mf = cl.mem_flags
    bufs = []
    for fl in (mf.READ_ONLY, mf.READ_ONLY, mf.WRITE_ONLY):
        bufs.append(cl.Buffer(ctx, fl, size=S))
        calls["clCreateBuffer"] += 1
        nbytes["clCreateBuffer"] += S
    for buf, host in ((bufs[0], a), (bufs[1], b)):
        cl.enqueue_copy(q, buf, host, is_blocking=True)
        calls["clEnqueueWriteBuffer"] += 1
        nbytes["clEnqueueWriteBuffer"] += S
    knl.set_args(bufs[0], bufs[1], bufs[2], np.uint32(n))
    calls["clSetKernelArg"] += 4
    for _ in range(iters):
        cl.enqueue_nd_range_kernel(q, knl, (n,), None)
        calls["clEnqueueNDRangeKernel"] += 1
    cl.enqueue_copy(q, c, bufs[2], is_blocking=True)
    calls["clEnqueueReadBuffer"] += 1
    nbytes["clEnqueueReadBuffer"] += S
    for buf in bufs:
        buf.release()
        calls["clReleaseMemObject"] += 1
    q.finish()
    calls["clFinish"] += 1

    expect = 3.0 * a if iters else np.full(n, -1.0, dtype=np.float32)
    loaders = mapped_libs("libOpenCL")
    print(json.dumps({
        "api": "opencl", "binding": "pyopencl", "pyopencl_version": cl.VERSION_TEXT,
        "iters": iters, "n": n, "buffer_bytes": S, "global_work_size": n,
        "calls": calls, "bytes": nbytes,
        "verify_mismatches": int(np.count_nonzero(c != expect)),
        "platform": plat.name, "device": dev.name.strip(),
        "loader": loaders[0] if loaders else None, "loaders": loaders,
        "icds": mapped_libs("libpocl", "libnvidia-opencl", "libamdocl", "libintelocl", "libigdrcl"),
        "pid": os.getpid(),
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
