"""Export benchmark: a Perfetto protobuf trace (views/perfetto_trace.py) of 1M and 10M synthetic
GPU calls, next to the Chrome Trace Event JSON export of the same 1M, in one run.

    .venv/bin/python benchmarks/perfetto_export.py [--sizes 1000000,10000000] [--chrome 1000000] [--dir /tmp]

The recording: one process, four threads, ``n`` calls over 10 s (OpenGL and OpenCL, 30% with a
duration, a frame every 14 calls on average), so a trace of ``n`` GPU events plus the frames.
Seconds are wall time of the whole export (the TraceModel included); MB the file's size; RSS
before: the process's resident memory with the recording built, before the export; peak RSS the
process's peak after it (it only grows: sizes run smallest first).  The files are removed
afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ebpftoolkit import Recording  # noqa: E402
from ebpftoolkit.metadata import RecordingMetadata  # noqa: E402
from ebpftoolkit.views import to_chrome_trace, to_perfetto  # noqa: E402

T0 = pd.Timestamp("2026-12-01 12:00:00")
CALLS = {"draw": ("opengl", "glDrawArrays"), "copy_h2d": ("opengl", "glBufferData"),
         "copy_d2h": ("opengl", "glReadPixels"), "frame": ("opengl", "eglSwapBuffers"),
         "alloc": ("opencl", "clCreateBuffer"), "free": ("opencl", "clReleaseMemObject"),
         "sync": ("opencl", "clFinish"), "launch": ("opencl", "clEnqueueNDRangeKernel")}


def synthetic(n: int, seed: int = 1) -> Recording:
    """``n`` GPU calls of one process (pid 4242, threads 4242..4245) over 10 s."""
    rng = np.random.default_rng(seed)
    cats = np.array(["draw"] * 7 + list(CALLS)[1:], dtype=object)
    cat = cats[rng.integers(0, len(cats), n)]
    api = pd.Series(cat).map({k: v[0] for k, v in CALLS.items()}).to_numpy(object)
    call = pd.Series(cat).map({k: v[1] for k, v in CALLS.items()}).to_numpy(object)
    sized = np.isin(cat, ["copy_h2d", "copy_d2h", "alloc"])
    direction = pd.Series(cat).map({"copy_h2d": "h2d", "copy_d2h": "d2h"}).to_numpy(object)
    pid = 4242
    gpu = pd.DataFrame({
        "ts": T0 + pd.to_timedelta(np.sort(rng.integers(0, 10**10, n)), unit="ns"),
        "pid": np.full(n, pid), "tid": pid + rng.integers(0, 4, n), "comm": np.full(n, "gl_egl", dtype=object),
        "api": api, "call": call, "category": cat,
        "bytes": pd.array(np.where(sized, 4096, 0), dtype="Int64"), "direction": direction,
        "handle": pd.array(rng.integers(1, 5000, n), dtype="Int64"),
        "duration_ns": pd.array(rng.integers(100, 5000, n), dtype="Int64"),
        "retval": pd.array(np.zeros(n, np.int64), dtype="Int64"),
        "frame": pd.array(np.cumsum(cat == "frame") - (cat == "frame"), dtype="Int64"),
        "caller": np.full(n, 0x401000), "library": np.full(n, "libGL.so.1", dtype=object),
        "mechanism": np.full(n, "exported symbol", dtype=object)})
    gpu.loc[~sized, "bytes"] = pd.NA
    gpu.loc[~np.isin(cat, ["alloc", "free"]), "handle"] = pd.NA
    gpu.loc[rng.random(n) >= 0.3, "duration_ns"] = pd.NA
    meta = RecordingMetadata(kernel="bench", host="bench", start=T0, end=T0 + pd.Timedelta(10, "s"))
    return Recording({"gpu": gpu}, meta)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def run(label: str, fn, rec: Recording, path: Path, n: int) -> dict:
    before = rss_now_mb()
    t = time.perf_counter()
    fn(rec, path)
    dt = time.perf_counter() - t
    mb = path.stat().st_size / 1e6
    return {"format": label, "events": n, "seconds": dt, "MB": mb, "events/s": n / dt, "RSS before MB": before,
            "peak RSS MB": rss_mb()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000", help="numbers of GPU calls for the Perfetto export")
    ap.add_argument("--chrome", type=int, default=1_000_000,
                    help="number of calls for the Chrome JSON export (0: none)")
    ap.add_argument("--dir", default="/tmp", help="where the trace files go")
    ap.add_argument("--keep", action="store_true", help="keep the trace files")
    args = ap.parse_args()
    out = Path(args.dir)
    rows, files = [], []
    sizes = sorted({int(s) for s in args.sizes.split(",") if s} | ({args.chrome} if args.chrome else set()))
    for n in sizes:
        rec = synthetic(n)
        if n in {int(s) for s in args.sizes.split(",") if s}:
            files.append(out / f"bench_{n}.pftrace")
            rows.append(run("perfetto", to_perfetto, rec, files[-1], n))
            print(rows[-1], flush=True)
        if n == args.chrome:
            files.append(out / f"bench_{n}.json")
            rows.append(run("chrome json", to_chrome_trace, rec, files[-1], n))
            print(rows[-1], flush=True)
        del rec
    table = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:,.2f}".format, "display.width", 120):
        print(table.to_string(index=False))
    p = table[(table["format"] == "perfetto") & (table["events"] == args.chrome)]
    c = table[(table["format"] == "chrome json") & (table["events"] == args.chrome)]
    if len(p) and len(c):
        time_ratio, size_ratio = p["seconds"].iloc[0] / c["seconds"].iloc[0], p["MB"].iloc[0] / c["MB"].iloc[0]
        print(f"at {args.chrome:,} calls, perfetto / chrome json: time {time_ratio:.2f}x, size {size_ratio:.2f}x")
    if not args.keep:
        for f in files:
            f.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
