"""What GPU API tracing costs a GL application.

    sudo .venv/bin/python benchmarks/gpu_overhead.py [--repeat 6] [--frames 3000]

Two workloads, each in three configurations run interleaved --repeat times:
  untraced;
  naive: uprobes on the exported libGL/libGLX/libOpenGL/libEGL symbols of the same
         calls (a counter only, the cheapest possible BPF program);
  ebpftoolkit: GpuTrace(["opengl"]) recording every call into its table.

1. glxgears on Xvfb (llvmpipe, one rendering thread): glxgears pinned to CPU 1,
   Xvfb to CPU 0, FPS from glxgears' own "N frames in 5.0 seconds" line.
2. gl_egl (workloads/gpu, surfaceless EGL) pinned to one CPU: a stress case with a
   traced call every ~20 us of frame time (8 draws, 3 uploads, a readback, a swap).
   From it, the cost of one traced call: the extra time per frame / calls per frame.

0. First, the cost of one traced call, in a tight loop (benchmarks/src/call_loop.c calling
   a function whose probe sits on an emulated push): untraced, a counter-only uprobe
   (the kernel's trap alone), and GpuTrace recording it (add_call).  With the calls per
   frame, it predicts each workload's cost.

FPS on this VM varies between identical runs by 10-40 %, and not smoothly: a vCPU
sometimes runs ~35 % faster for a whole run (two untraced copies started together
on the two CPUs differ like that, so pairing runs does not cancel it).  Each ratio is
therefore the ratio of medians over many interleaved runs; the IQR columns show the
spread.

3. A process outside the session's scope that maps the same library: the tight loop of 0.,
   run untraced, while a session traces another copy by pid (breakpoints in the traced
   process only: scoped links), and while the same session attaches the way ebpftoolkit did
   before (every process that maps the file gets the breakpoint; the BPF filter drops its
   calls after the trap).

4. glmark2 (Debian's glmark2-x11, off-screen on Xvfb; a benchmark nobody here wrote): its own
   score, untraced / GpuTrace(["opengl"]) with defaults / with returns="none", interleaved.
5. vkcube (vulkan-tools, lavapipe on Xvfb) drawing a fixed number of frames: frames per second
   of wall time, the same three ways with GpuTrace(["vulkan"]).
   For each traced run: the probes' own cost (each call times its attach point's measured
   cost, ``tracing_cost_ms``) and the recorder's CPU time, as shares of the run.

6. Return probes by default (issue 17): GL programs untraced, with returns="none", with the
   defaults before issue 17 (returns on swaps, maps and glClientWaitSync only: OLD_RETURNS) and with
   today's (copies, readbacks, maps, syncs, frames, allocations), interleaved: gl_egl (a readback and
   three uploads every frame) and glmark2's buffer (glBufferSubData / glMapBufferRange every frame)
   and texture scenes.  Per traced run also the probes' own cost (tracing_cost_ms: each call times
   its attach point's calibrated cost), which varies far less than the frame rates.
   ``--only returns`` runs just this part.

The last line is GpuTrace's FPS as a fraction of the untraced FPS on glxgears.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ebpftoolkit import Session  # noqa: E402
from ebpftoolkit.probes.gpu import GpuTrace  # noqa: E402
from ebpftoolkit.probes.gpu.catalogue import CATALOGUE, calls_for, with_returns  # noqa: E402
from ebpftoolkit.probes.gpu.resolve import find_libraries  # noqa: E402
from ebpftoolkit.runtime.elf import elf_file  # noqa: E402
from ebpftoolkit.runtime.compile import import_bcc  # noqa: E402

NAIVE_C = b"BPF_PERCPU_ARRAY(hits, u64, 1);\nint hit(void *ctx) { u32 z = 0; u64 *n = hits.lookup(&z); if (n) (*n)++; return 0; }\n"
EXE = ROOT / "workloads" / "gpu" / "build" / "gl_egl"
ENV = dict(os.environ, LP_NUM_THREADS="0", vblank_mode="0")


class Naive:
    """Counter-only uprobes on every exported GL symbol of the catalogue's calls."""

    def __enter__(self):
        bcc = import_bcc()
        self.b = bcc.BPF(text=NAIVE_C)
        self.n = 0
        for soname in ("libOpenGL.so.0", "libGL.so.1", "libGLX.so.0", "libEGL.so.1"):
            for lib in find_libraries(soname):
                funcs = elf_file(lib).functions
                for c in calls_for(["opengl"]):
                    if c.name in funcs:
                        self.b.attach_uprobe(name=lib.encode(), addr=funcs[c.name], fn_name=b"hit")
                        self.n += 1
        return self

    def __exit__(self, *exc):
        self.hits = sum(self.b[b"hits"][0])
        self.b.cleanup()


def glxgears_fps(display: str, session=None) -> float:
    argv = ["timeout", "-s", "INT", "6", "taskset", "-c", "1", "glxgears"]
    env = dict(ENV, DISPLAY=display)
    run = session.run if session is not None else subprocess.run
    out = run(argv, env=env, capture_output=True).stdout.decode()
    m = re.search(r"(\d+) frames in ([\d.]+) seconds", out)
    if not m:
        raise RuntimeError(f"glxgears printed no frame count: {out[-300:]!r}")
    return int(m.group(1)) / float(m.group(2))


def gl_egl_fps(frames: int, session=None) -> float:
    argv = ["taskset", "-c", "1", str(EXE), "--frames", str(frames)]
    run = session.run if session is not None else subprocess.run
    out = run(argv, env=ENV, check=True, capture_output=True).stdout
    return frames / json.loads(out.decode().strip().splitlines()[-1])["frame_seconds"]   # its own frame-loop clock


def build_call_loop() -> tuple[Path, Path]:
    out = ROOT / "benchmarks" / ".build"
    out.mkdir(exist_ok=True)
    lib, exe = out / "libmovedargs.so", out / "call_loop"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(ROOT / "tests" / "progs" / "moved_args_lib.S")],
                   check=True)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "benchmarks" / "src" / "call_loop.c"), f"-L{out}",
                    "-lmovedargs", f"-Wl,-rpath,{out}"], check=True)
    return lib, exe


def per_call_cost(repeat: int) -> tuple[float, float]:
    """(trap alone, GpuTrace) in us per call, medians of interleaved tight-loop runs."""
    from ebpftoolkit.probes.gpu import CATALOGUE, add_call
    lib, exe = build_call_loop()
    spec = add_call("bench", "upload_moved", library=str(lib), category="copy_h2d", size="arg1")
    argv = ["taskset", "-c", "1", str(exe), "100000"]
    ns = {"untraced": [], "trap": [], "gputrace": []}
    try:
        g = GpuTrace(["bench"])
        site = g.points[0].vaddr + g.points[0].site.offset
        for _ in range(repeat):
            ns["untraced"].append(float(subprocess.run(argv, capture_output=True, text=True).stdout.split()[0]))
            b = import_bcc().BPF(text=NAIVE_C)
            b.attach_uprobe(name=str(lib).encode(), addr=site, fn_name=b"hit")
            ns["trap"].append(float(subprocess.run(argv, capture_output=True, text=True).stdout.split()[0]))
            b.cleanup()
            s = Session(GpuTrace(["bench"]), descendants_of="command")
            with s:
                ns["gputrace"].append(float(s.run(argv, capture_output=True, text=True).stdout.split()[0]))
    finally:
        CATALOGUE.remove(spec)
    u = statistics.median(ns["untraced"])
    return (statistics.median(ns["trap"]) - u) / 1e3, (statistics.median(ns["gputrace"]) - u) / 1e3


def out_of_scope(repeat: int) -> dict:
    """ns per call of a process outside the scope: untraced, beside a scoped session, beside a global one."""
    import ebpftoolkit.probes.gpu.probe as gpu_probe
    from ebpftoolkit.probes.gpu import CATALOGUE, add_call
    lib, exe = build_call_loop()
    spec = add_call("bench", "upload_moved", library=str(lib), category="copy_h2d", size="arg1")
    argv = ["taskset", "-c", "1", str(exe), "100000"]
    ns = {"untraced": [], "scoped": [], "global": []}
    multi = gpu_probe.multi_supported
    try:
        for _ in range(repeat):
            ns["untraced"].append(float(subprocess.run(argv, capture_output=True, text=True).stdout.split()[0]))
            for mode in ("scoped", "global"):
                traced = subprocess.Popen(["taskset", "-c", "0", str(exe), "1000000000"], stdout=subprocess.DEVNULL)
                gpu_probe.multi_supported = multi if mode == "scoped" else (lambda: False)
                try:
                    time.sleep(0.2)
                    with Session(GpuTrace(["bench"]), descendants_of=traced.pid):
                        ns[mode].append(float(subprocess.run(argv, capture_output=True, text=True).stdout.split()[0]))
                finally:
                    gpu_probe.multi_supported = multi
                    traced.kill()
                    traced.wait()
    finally:
        CATALOGUE.remove(spec)
    return ns


def real_programs(display: str, repeat: int, api: str, run_once) -> dict:
    """untraced / defaults / no returns, interleaved: scores, and per traced run the probes' cost and
    the recorder's CPU as shares of the run's wall time."""
    out = {"untraced": [], "defaults": [], "no returns": [], "probes %": [], "recorder CPU %": [], "calls/s": [],
           "held %": []}
    for _ in range(repeat):
        out["untraced"].append(run_once(None)[0])
        for name, returns in (("defaults", "default"), ("no returns", "none")):
            g = GpuTrace([api], returns=returns)
            with Session(g, descendants_of="command") as s:
                c0 = os.times()
                score, wall = run_once(s)          # the recorder's CPU while the program runs, not its start
                c1 = os.times()
            if name == "defaults":
                d = s.recording.metadata.probes["gpu"].details
                held = sum(g._follower.held_ms) / 1e3 + sum(g._scoped.link_ms if g._scoped else ()) / 1e3
                out["probes %"].append(100 * d["tracing_cost_ms"] / 1e3 / wall)
                out["recorder CPU %"].append(100 * ((c1.user + c1.system) - (c0.user + c0.system)) / wall)
                out["held %"].append(100 * held / wall)
                out["calls/s"].append(len(s.tables["gpu"]) / wall)
            out[name].append(score)
    return out


GLMARK2_SCENES = ("build:duration=3", "texture:duration=3", "shading:duration=3", "bump:duration=3")
# the scenes that upload, map and read back (what return probes time): part 6
GLMARK2_RETURN_SCENES = ("buffer:update-method=subdata:duration=3", "buffer:update-method=map:duration=3",
                         "texture:duration=3")


def glmark2_score(display: str, session=None, scenes=GLMARK2_SCENES) -> tuple[float, float]:
    argv = ["glmark2", "--off-screen", *(a for sc in scenes for a in ("-b", sc))]
    run = session.run if session is not None else subprocess.run
    t = time.monotonic()
    out = run(argv, env=dict(ENV, DISPLAY=display), capture_output=True, timeout=120).stdout.decode()
    m = re.search(r"glmark2 Score: (\d+)", out)
    if not m:
        raise RuntimeError(f"glmark2 printed no score: {out[-300:]!r}")
    return float(m.group(1)), time.monotonic() - t


def vkcube_fps(display: str, session=None, frames: int = 1500) -> tuple[float, float]:
    run = session.run if session is not None else subprocess.run
    t = time.monotonic()
    res = run(["vkcube", "--c", str(frames)], env=dict(ENV, DISPLAY=display), capture_output=True, timeout=120)
    wall = time.monotonic() - t
    if res.returncode != 0:
        raise RuntimeError(f"vkcube failed: {res.stderr[-300:]!r}")
    return frames / wall, wall


def real_table(title: str, r: dict) -> None:
    base = statistics.median(r["untraced"])
    print(f"\n{title}, {len(r['untraced'])} interleaved runs each")
    print(f"{'run':40} {'median':>9} {'IQR':>15} {'min-max':>15} {'median/untraced':>16}")
    for name in ("untraced", "defaults", "no returns"):
        v = r[name]
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
        print(f"{name:40} {statistics.median(v):>9.1f} {q[0]:>7.0f}-{q[2]:<7.0f} {min(v):>7.0f}-{max(v):<7.0f} "
              f"{statistics.median(v) / base:>16.3f}")
    print(f"traced with defaults: {statistics.median(r['calls/s']):.0f} calls/s; the probes' own cost "
          f"{statistics.median(r['probes %']):.2f} % of the run, the program held for new libraries "
          f"{statistics.median(r['held %']):.2f} %, the recorder's CPU {statistics.median(r['recorder CPU %']):.2f} % "
          "of one CPU")


def three_ways(measure, repeat: int) -> dict:
    """FPS per configuration, interleaved; with the traced runs' call counts."""
    out = {"untraced": [], "naive": [], "ebpftoolkit": [], "naive_hits": 0, "naive_probes": 0, "calls": 0}
    for _ in range(repeat):
        out["untraced"].append(measure(None))
        with Naive() as nv:
            out["naive"].append(measure(None))
        out["naive_hits"], out["naive_probes"] = nv.hits, nv.n
        g = GpuTrace(["opengl"])
        s = Session(g, descendants_of="command")
        with s:
            out["ebpftoolkit"].append(measure(s))
        out["calls"], out["gpu"], out["trace"] = len(s.tables["gpu"]), s.tables["gpu"], g
    return out


def table(title: str, r: dict, calls_per_frame: float, cost_us: float) -> float:
    base = r["untraced"]
    frame_us = 1e6 / statistics.median(base)
    print(f"\n{title}, {len(base)} interleaved runs each")
    print(f"{calls_per_frame:.1f} traced calls per frame of {frame_us:.0f} us: predicted ratio "
          f"{frame_us / (frame_us + calls_per_frame * cost_us):.3f} at {cost_us:.2f} us per call")
    print(f"{'run':40} {'median FPS':>11} {'FPS IQR':>13} {'min-max FPS':>13} {'median/untraced':>16}")
    ratio = 1.0
    for name in ("untraced", "naive", "ebpftoolkit"):
        v = r[name]
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
        ratio = statistics.median(v) / statistics.median(base)
        print(f"{name:40} {statistics.median(v):>11.1f} {q[0]:>6.0f}-{q[2]:<6.0f} {min(v):>6.0f}-{max(v):<6.0f} "
              f"{ratio:>16.3f}")
    return ratio


def start_xvfb(num: int = 93):
    sock, lock = Path(f"/tmp/.X11-unix/X{num}"), Path(f"/tmp/.X{num}-lock")
    try:                         # a server killed before it could clean up leaves both: not a server to wait for
        os.kill(int(lock.read_text().strip()), 0)
    except (OSError, ValueError):
        sock.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)
    x = subprocess.Popen(["taskset", "-c", "0", "Xvfb", f":{num}", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not sock.exists():
        if x.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.05)
    return x, f":{num}"


# the GL and Vulkan calls with a return probe by default before issue 17 (item 2)
OLD_RETURNS = {"glMapBuffer", "glMapBufferRange", "glClientWaitSync", "glXSwapBuffers", "eglSwapBuffers",
               "vkQueueSubmit", "vkQueueSubmit2", "vkQueuePresentKHR", "vkAllocateMemory", "vkFreeMemory",
               "vkMapMemory", "vkQueueWaitIdle", "vkDeviceWaitIdle", "vkWaitForFences", "vkAcquireNextImageKHR",
               "vkCreateBuffer", "vkCreateImage", "vkBindBufferMemory", "vkBindImageMemory"}
RETURN_CONFIGS = ("untraced", "returns none", "old defaults", "defaults")


class old_defaults:
    """The catalogue's GL and Vulkan return probes as they were before issue 17, while in the block."""

    def __enter__(self):
        self.saved = list(CATALOGUE)
        CATALOGUE[:] = [with_returns(c, c.name in OLD_RETURNS) if c.api in ("opengl", "vulkan") else c
                        for c in CATALOGUE]

    def __exit__(self, *exc):
        CATALOGUE[:] = self.saved


def returns_compared(repeat: int, run_once) -> dict:
    """RETURN_CONFIGS interleaved: the program's own figure, and per traced run the probes' cost in ms
    and the share of calls with a duration."""
    out = {k: [] for k in RETURN_CONFIGS} | {f"{k} cost ms": [] for k in RETURN_CONFIGS[1:]} | \
        {f"{k} timed": [] for k in RETURN_CONFIGS[1:]}
    for _ in range(repeat):
        out["untraced"].append(run_once(None)[0])
        for name in RETURN_CONFIGS[1:]:
            ctx = old_defaults() if name == "old defaults" else contextlib.nullcontext()
            with ctx:
                g = GpuTrace(["opengl"], returns="none" if name == "returns none" else "default")
                with Session(g, descendants_of="command") as s:
                    score, _ = run_once(s)
            out[name].append(score)
            out[f"{name} cost ms"].append(s.recording.metadata.probes["gpu"].details["tracing_cost_ms"])
            gpu = s.tables["gpu"]
            out[f"{name} timed"].append(gpu["duration_ns"].notna().mean() if len(gpu) else 0.0)
    return out


def returns_table(title: str, r: dict, unit: str) -> None:
    med = {k: statistics.median(r[k]) for k in RETURN_CONFIGS}
    print(f"\n{title}, {len(r['untraced'])} interleaved runs each")
    print(f"{'run':16} {'median ' + unit:>14} {'IQR':>15} {'/untraced':>10} {'probes ms':>10} {'calls timed':>12}")
    for k in RETURN_CONFIGS:
        v = r[k]
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
        extra = "" if k == "untraced" else \
            f" {statistics.median(r[f'{k} cost ms']):>10.1f} {100 * statistics.median(r[f'{k} timed']):>11.1f}%"
        print(f"{k:16} {med[k]:>14.1f} {q[0]:>7.0f}-{q[2]:<7.0f} {med[k] / med['untraced']:>10.3f}{extra}")
    cost = {k: statistics.median(r[f"{k} cost ms"]) for k in RETURN_CONFIGS[1:]}
    print(f"defaults / returns none: {med['defaults'] / med['returns none']:.3f}, defaults / old defaults: "
          f"{med['defaults'] / med['old defaults']:.3f}; the probes' own cost, defaults / none "
          f"{cost['defaults'] / max(cost['returns none'], 1e-9):.2f}x, defaults / old "
          f"{cost['defaults'] / max(cost['old defaults'], 1e-9):.2f}x")


def returns_part(repeat: int, frames: int) -> None:
    egl = returns_compared(repeat, lambda s: (gl_egl_fps(frames, s), None))
    xvfb, display = start_xvfb()
    try:
        glmark = returns_compared(repeat, lambda s: glmark2_score(display, s, GLMARK2_RETURN_SCENES))
    finally:
        xvfb.terminate()
        xvfb.wait()
    returns_table(f"6a. return probes, gl_egl --frames {frames} (a readback, three uploads per frame)", egl, "FPS")
    returns_table("6b. return probes, glmark2 --off-screen buffer (subdata, map), texture", glmark, "score")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--frames", type=int, default=3000, help="gl_egl frames per run")
    ap.add_argument("--only", choices=["returns"], help="run only part 6 (return probes by default)")
    args = ap.parse_args()
    subprocess.run(["make", "-C", str(EXE.parent.parent)], check=True, capture_output=True)
    if args.only == "returns":
        returns_part(args.repeat, args.frames)
        return
    trap_us, call_us = per_call_cost(max(3, args.repeat // 2))
    print(f"0. one traced call (tight loop, emulated probe): the uprobe trap alone {trap_us:.2f} us, "
          f"GpuTrace recording it {call_us:.2f} us")
    xvfb, display = start_xvfb()
    try:
        gears = three_ways(lambda s: glxgears_fps(display, s), args.repeat)
        glmark = real_programs(display, args.repeat, "opengl", lambda s: glmark2_score(display, s))
        cube = real_programs(display, args.repeat, "vulkan", lambda s: vkcube_fps(display, s))
    finally:
        xvfb.terminate()
        xvfb.wait()
    egl = three_ways(lambda s: gl_egl_fps(args.frames, s), args.repeat)

    df = gears["gpu"]
    gears_calls = df[df["comm"] == "glxgears"].groupby("call").size()
    frames = int(gears_calls.get("glXSwapBuffers", 0)) or 1
    print("\nglxgears: traced calls per frame: " +
          ", ".join(f"{c} {n / frames:.1f}" for c, n in gears_calls.items()))
    g_ratio = table("1. glxgears on Xvfb (llvmpipe)", gears, gears_calls.sum() / frames, call_us)
    table(f"2. gl_egl --frames {args.frames} (surfaceless EGL, llvmpipe, one CPU): stress case", egl,
          egl["calls"] / args.frames, call_us)
    print(f"naive probes see {egl['naive_hits'] / args.frames:.1f} of the {egl['calls'] / args.frames:.0f} "
          "calls per frame (GetProcAddress pointers and the dispatch skip the exported symbols)")

    o = egl["trace"].overhead()
    hot = o[o["call"].isin(["glDrawArrays", "glDrawElements", "glBufferData", "glTexImage2D", "glTexSubImage2D",
                           "glReadPixels", "glClear", "eglSwapBuffers", "glCallList", "glXSwapBuffers"])]
    print("\nattach points of the calls these workloads make:")
    print(hot[["call", "probe_offset", "instruction", "emulated", "arguments_moved", "returns"]].to_string(index=False))
    oos = out_of_scope(max(3, args.repeat // 2))
    u = statistics.median(oos["untraced"])
    print(f"\n3. a process outside the scope calling the probed library, {len(oos['untraced'])} interleaved runs")
    print(f"{'beside':40} {'median ns/call':>15} {'/untraced':>10}")
    for name, label in (("untraced", "no session"), ("scoped", "a session scoped to another pid (now)"),
                        ("global", "the same session, global breakpoints (before)")):
        m = statistics.median(oos[name])
        print(f"{label:40} {m:>15.1f} {m / u:>10.2f}")
    real_table("4. glmark2 --off-screen (build, texture, shading, bump; score)", glmark)
    real_table("5. vkcube --c 1500 (lavapipe; frames per second of wall time)", cube)
    returns_part(args.repeat, args.frames)
    print(f"\nGpuTrace FPS / untraced FPS (glxgears): {g_ratio:.3f}")


if __name__ == "__main__":
    main()
