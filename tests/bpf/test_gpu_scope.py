"""Tracing one process must not slow the others (issue 16): with the session's scope set to a
command, GpuTrace's breakpoints are in the traced processes' memory only.

A uprobe is an int3 byte the kernel writes into a process's copy of the probed code; reading
each attach point's byte through /proc/PID/mem says, without timing anything, which processes
pay the trap.  Checked on glxgears (Mesa, a program nobody here wrote): the traced copy has the
breakpoints and its frames are recorded; a copy outside the scope, running the same library at
the same time, has none and is not recorded.  A traced process's fork child gets its own
breakpoints before its first instruction: its calls are exact."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from support import bpf, leftover_attachments
from test_gpu import display  # noqa: F401  (the Xvfb fixture)
from ebpftoolkit import GpuTrace, Session
from ebpftoolkit.runtime.elf import elf_file

ROOT = Path(__file__).resolve().parents[2]
WHEEL_CUDART = ROOT / "tests" / ".wheels" / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12"
INT3 = 0xCC


def _code_bytes(pid: int, points) -> dict[tuple[str, int], int]:
    """The byte at each attach point (file, probe address) as process ``pid`` has it in memory."""
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip().startswith("/") and os.path.exists(parts[5].strip()):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                maps.append((parts[5].strip(), lo, hi, int(parts[2], 16)))
    out = {}
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for path, vaddr in points:
            off = elf_file(path).vaddr_to_offset(vaddr)
            for mpath, lo, hi, moff in maps:
                if os.path.samefile(mpath, path) and moff <= off < moff + (hi - lo):
                    mem.seek(lo + off - moff)
                    out[(path, vaddr)] = mem.read(1)[0]
                    break
    return out


def _wait_mapped(pid: int, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if name in Path(f"/proc/{pid}/maps").read_text():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} did not map {name} within {timeout} s")


def _points(g) -> set[tuple[str, int]]:
    return {(p.path, p.entry(g._wants_return(p.spec))[0]) for p in g.points}


@bpf
def test_breakpoints_only_in_the_traced_glxgears_not_in_another_one(display):  # noqa: F811
    """Two glxgears on one display, one traced by pid: while the session runs, every attach point
    the traced one maps is an int3 in its memory and the original byte in the other's; only the
    traced one has rows."""
    env = dict(os.environ, DISPLAY=display, vblank_mode="0")
    run = lambda: subprocess.Popen(["glxgears"], env=env, stdout=subprocess.DEVNULL,  # noqa: E731
                                   stderr=subprocess.DEVNULL)
    outside, inside = run(), run()
    try:
        for p in (outside, inside):
            _wait_mapped(p.pid, "libGLX_mesa")
        g = GpuTrace(["opengl"])
        with Session(g, descendants_of=inside.pid) as s:
            time.sleep(1.0)
            traced, other = _code_bytes(inside.pid, _points(g)), _code_bytes(outside.pid, _points(g))
            time.sleep(1.0)
        assert g.details()["uprobes_in"] == "the traced processes only"
        assert len(traced) >= 10 and set(traced) == set(other)        # both map the same attach points
        assert set(traced.values()) == {INT3}
        assert INT3 not in set(other.values())
        gpu = s.tables["gpu"]
        assert set(gpu["pid"]) == {inside.pid} and (gpu["call"] == "glXSwapBuffers").sum() > 20
    finally:
        for p in (outside, inside):
            p.kill()
            p.wait()
    assert not leftover_attachments()


@bpf
def test_a_command_scope_records_the_command_not_the_program_running_beside_it(display):  # noqa: F811
    """descendants_of="command": glxgears started by the session through timeout(1) (held at its
    exec until it has its breakpoints) is recorded from its first frame; the same program started
    outside, running meanwhile, is not recorded and has no breakpoint afterwards either."""
    env = dict(os.environ, DISPLAY=display, vblank_mode="0")
    outside = subprocess.Popen(["glxgears"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_mapped(outside.pid, "libGLX_mesa")
        g = GpuTrace(["opengl"])
        with Session(g, descendants_of="command") as s:
            out = s.run(["timeout", "-s", "INT", "6.5", "glxgears"], env=env, capture_output=True, timeout=60)
        first = int(out.stdout.decode().split(" frames in")[0].split()[-1])
        gpu = s.tables["gpu"]
        gears = gpu[gpu["comm"] == "glxgears"]
        assert outside.pid not in set(gpu["pid"]) and gears["pid"].nunique() == 1
        assert (gears["call"] == "glXSwapBuffers").sum() >= first > 100        # every frame it reported
        assert INT3 not in set(_code_bytes(outside.pid, _points(g)).values())
        assert g.details()["scoped"]["processes_linked"] >= 1
    finally:
        outside.kill()
        outside.wait()


FORKER = r"""
import ctypes, json, os, sys
rt = ctypes.CDLL(sys.argv[1])
ptr = ctypes.c_void_p()
def calls(n):
    for _ in range(n):
        rt.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(4096))
calls(5)
child = os.fork()
if child == 0:                     # the child calls at once: its first call must be recorded
    calls(7)
    grandchild = os.fork()
    if grandchild == 0:
        calls(3)
        os._exit(0)
    os.waitpid(grandchild, 0)
    print(json.dumps({"child": os.getpid(), "grandchild": grandchild}), flush=True)
    os._exit(0)
os.waitpid(child, 0)
print(json.dumps({"parent": os.getpid()}), flush=True)
"""


@bpf
def test_fork_children_of_a_traced_process_get_breakpoints_before_they_run():
    """A Python program loads the CUDA runtime from a pip wheel, calls it, then forks: the child (and
    its own child) call it right after fork, before any exec or mmap; every call is recorded, per
    process, and the processes were linked one by one."""
    assert WHEEL_CUDART.is_file(), "scripts/setup.sh installs the nvidia-cuda-runtime-cu12 wheel"
    g = GpuTrace(["cuda"])
    with Session(g, descendants_of="command") as s:
        res = s.run([sys.executable, "-c", FORKER, str(WHEEL_CUDART)], capture_output=True, text=True, timeout=120)
    ids = {}
    for line in res.stdout.splitlines():
        ids.update(json.loads(line))
    gpu = s.tables["gpu"]
    mallocs = gpu[gpu["call"] == "cudaMalloc"].groupby("pid").size().to_dict()
    assert mallocs == {ids["parent"]: 5, ids["child"]: 7, ids["grandchild"]: 3}, (mallocs, ids)
    assert g.details()["scoped"]["processes_linked"] == 3
    assert not leftover_attachments()
