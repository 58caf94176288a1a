"""What following the traced processes' libraries costs (GpuTrace(follow=True), issue 12).

    sudo .venv/bin/python benchmarks/gpu_follow.py [--repeat 5] [--libs 50]

1. Start-up: Session.start() + stop() of GpuTrace(["cuda"]) with follow off and on
   (discovery at start, the extra BPF programs, the running targets' maps): median seconds.
2. A program that dlopens N small libraries nobody probes (benchmarks/.build/dlopen_many, built
   here with gcc), then exits: untraced; traced without following; traced and followed (each new
   library holds the process once until user space has looked at it; a library seen once is
   never looked at again, so the second run of the same libraries shows the steady state).
   Wall time per run, median of --repeat interleaved runs, and the ratio to untraced.
3. The same program when its N libraries hold a catalogued CUDA function (each is probed).

Absolute times depend on the machine; the ratios, measured in this one run, are the result.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ebpftoolkit import Session  # noqa: E402
from ebpftoolkit.probes.gpu import GpuTrace  # noqa: E402

BUILD = ROOT / "benchmarks" / ".build"
MAIN = r"""
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!dlopen(argv[i], RTLD_NOW | RTLD_LOCAL)) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    return 0;
}
"""


def build(n: int, with_cuda_name: bool) -> list[str]:
    BUILD.mkdir(parents=True, exist_ok=True)
    exe = BUILD / "dlopen_many"
    if not exe.exists():
        (BUILD / "dlopen_many.c").write_text(MAIN)
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(BUILD / "dlopen_many.c"), "-ldl"], check=True)
    tag = "cuda" if with_cuda_name else "plain"
    libs = []
    for i in range(n):
        so = BUILD / f"lib{tag}{i}.so.1"
        if not so.exists():
            src = BUILD / f"lib{tag}{i}.c"
            body = "int cudaMalloc(void **p, unsigned long n) { return 35; }\n" if with_cuda_name else ""
            src.write_text(body + f"int f{i}(int x) {{ return x + {i}; }}\n")
            # soname of the CUDA runtime's family: matched by content, like a wheel's copy
            soname = f"libcudart.so.{90 + i}" if with_cuda_name else so.name
            subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(so), str(src)], check=True)
        libs.append(str(so))
    return [str(exe)] + libs


def timed(argv, session=None) -> float:
    t = time.perf_counter()
    if session is None:
        subprocess.run(argv, check=True)
    else:
        assert session.run(argv).returncode == 0
    return time.perf_counter() - t


def start_stop(follow: bool) -> float:
    t = time.perf_counter()
    s = Session(GpuTrace(["cuda"], follow=follow), descendants_of="command")
    s.start()
    s.stop()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--libs", type=int, default=50)
    a = ap.parse_args()
    warnings.simplefilter("ignore")          # "0 calls recorded" notes: nothing here calls the API

    print("1. start-up of a session with GpuTrace(['cuda'])")
    for follow in (False, True):
        xs = [start_stop(follow) for _ in range(a.repeat)]
        print(f"   follow={str(follow):5}  median {statistics.median(xs):.3f} s  (min {min(xs):.3f})")

    for title, cuda in ((f"2. a program dlopening {a.libs} libraries nobody probes", False),
                        (f"3. a program dlopening {a.libs} libraries that each hold cudaMalloc", True)):
        argv = build(a.libs, cuda)
        rows: dict[str, list[float]] = {"untraced": [], "traced, not followed": [], "followed, first run": [],
                                        "followed, libraries seen": []}
        for _ in range(a.repeat):
            rows["untraced"].append(timed(argv))
            with Session(GpuTrace(["cuda"], follow=False), descendants_of="command") as s:
                rows["traced, not followed"].append(timed(argv, s))
            with Session(GpuTrace(["cuda"]), descendants_of="command") as s:
                rows["followed, first run"].append(timed(argv, s))
                rows["followed, libraries seen"].append(timed(argv, s))
                held = s.probes[0]._follower.held_ms
        base = statistics.median(rows["untraced"])
        print(title)
        print(f"   {'configuration':28} {'median s':>9} {'x untraced':>11}")
        for k, v in rows.items():
            m = statistics.median(v)
            print(f"   {k:28} {m:9.4f} {m / base:11.2f}")
        if held:
            print(f"   a process was held {len(held)} times in the last session: median "
                  f"{statistics.median(held):.2f} ms, max {max(held):.2f} ms")


if __name__ == "__main__":
    main()
