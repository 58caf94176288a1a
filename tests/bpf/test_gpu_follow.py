"""GPU tracing follows what the traced processes really load (issue 12): a pip wheel's CUDA
runtime dlopen'ed by a grandchild at any time, two CUDA runtime versions at once, a static
CUDA build started by a script, a library already loaded in a running process or in the
tracing process itself, add_call on a program; and an API that nothing loaded says so.

Oracles: the programs' own counts, and bpftrace uprobes on the same files in the same run."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import Bpftrace, bpf
from ebpftoolkit import Session
from ebpftoolkit.probes.gpu import GpuTrace, add_call
from ebpftoolkit.probes.gpu.catalogue import CATALOGUE
from ebpftoolkit.session import DecodeWarning

ROOT = Path(__file__).resolve().parents[2]
WHEEL_CUDART = ROOT / "tests" / ".wheels" / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12"
SYSTEM_CUDART = Path("/usr/local/cuda/lib64/libcudart.so.13")
PROG = ROOT / "tests" / "progs" / "cudart_wheel.py"
W = ROOT / "workloads" / "gpu"


@pytest.fixture(scope="module")
def wheel():
    if not WHEEL_CUDART.is_file():
        pytest.fail(f"{WHEEL_CUDART} is missing: scripts/setup.sh installs the nvidia-cuda-runtime-cu12 wheel there")
    return str(WHEEL_CUDART)


def _run(s, argv, **kw):
    res = s.run([str(a) for a in argv], capture_output=True, timeout=300, **kw)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    return json.loads(res.stdout.decode().strip().splitlines()[-1])


def _libraries(s):
    return {Path(f["path"]).name: f for f in s.recording.metadata.probes["gpu"].details["libraries"]}


@bpf
def test_a_wheels_runtime_dlopened_late_by_a_grandchild_is_exact_from_the_first_call(wheel):
    oracle = Bpftrace({"malloc": f"{wheel}:cudaMalloc", "free": f"{wheel}:cudaFree"})
    s = Session(GpuTrace(["cuda"]), descendants_of="command")
    with s:        # sh -> python: the library is loaded 0.5 s in, by a process that did not exist at start
        own = _run(s, ["/bin/sh", "-c", f"exec {sys.executable} {PROG} {wheel} --delay 0.5 --mallocs 7; true"])
    bt = oracle.counts()
    df = s.tables["gpu"]
    mine = df[df["library"] == os.path.realpath(wheel)].groupby("call").size().to_dict()
    assert mine.get("cudaMalloc", 0) == own["calls"]["cudaMalloc"] == bt["malloc"] == 7, (mine, own, bt)
    assert mine.get("cudaFree", 0) == own["calls"]["cudaFree"] == bt["free"] == 7
    assert int(df.loc[df["call"] == "cudaMalloc", "bytes"].sum()) == own["bytes"]
    assert (df.loc[df["call"] == "cudaMalloc", "retval"] == own["malloc_rc"][0]).all()   # 35: no driver here
    found = _libraries(s)["libcudart.so.12"]
    assert found["how"].startswith("mapped by pid") and found["calls"] > 0
    assert set(df["pid"]) <= set(found["pids"])
    assert s.recording.metadata.probes["gpu"].details["following"]["processes_held"] > 0
    assert any(a.target == os.path.realpath(wheel) for a in s.metadata.attachments)      # in the attach points
    doc = s.recording.to_html()
    assert "Libraries probed" in doc and "mapped by pid" in doc and str(WHEEL_CUDART.name) in doc


@bpf
def test_two_cuda_runtime_versions_in_one_session(wheel):
    assert SYSTEM_CUDART.is_file(), "the CUDA toolkit (libcudart.so.13) is installed at /usr/local/cuda"
    s = Session(GpuTrace(["cuda"]), descendants_of="command")
    with s:
        own12 = _run(s, [sys.executable, PROG, wheel, "--mallocs", "3"])
        own13 = _run(s, [sys.executable, PROG, SYSTEM_CUDART, "--mallocs", "4"])
    df = s.tables["gpu"]
    by = df[df["call"] == "cudaMalloc"].groupby("library").size().to_dict()
    assert by == {os.path.realpath(wheel): own12["calls"]["cudaMalloc"],
                  os.path.realpath(SYSTEM_CUDART): own13["calls"]["cudaMalloc"]}, by


@bpf
def test_a_static_cuda_build_started_by_a_script_is_traced_without_binaries(tmp_path):
    res = subprocess.run(["make", "-C", str(W)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    exe = W / "build" / "cuda_ops_static"
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\ncd {tmp_path}\n{exe}\n")
    script.chmod(0o755)
    oracle = Bpftrace({"malloc": f"{exe}:cudaMalloc"})
    s = Session(GpuTrace(["cuda"]), descendants_of="command")
    with s:
        own = _run(s, [script])
    bt = oracle.counts()
    got = s.tables["gpu"].groupby("call").size().to_dict()
    assert got.get("cudaMalloc", 0) == own["calls"]["cudaMalloc"] == bt["malloc"], (got, own["calls"], bt)
    assert got.get("cudaMemcpy", 0) == own["calls"]["cudaMemcpy"]
    assert got.get("cudaLaunchKernel", 0) == own["calls"]["kernel_launch"]
    assert _libraries(s)["cuda_ops_static"]["how"].startswith("exec'd by pid")
    launches = s.tables["gpu"][s.tables["gpu"]["call"] == "cudaLaunchKernel"]
    assert set(launches["kernel"]) == {"scale(float*, int, float)"}                    # workloads/gpu/cuda_ops.cu
    assert "Kernels launched" in s.recording.to_html()


@bpf
def test_a_running_process_that_already_loaded_the_runtime(wheel):
    p = subprocess.Popen([sys.executable, str(PROG), wheel, "--wait", "2", "--mallocs", "4"], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "loaded"        # mapped before the session starts
    s = Session(GpuTrace(["cuda"]), descendants_of=p.pid)
    with s:
        own = json.loads(p.stdout.readline())
        p.wait(timeout=60)
    got = s.tables["gpu"].groupby("call").size().to_dict()
    assert got.get("cudaMalloc", 0) == own["calls"]["cudaMalloc"] == 4, got
    assert "when the session started" in _libraries(s)["libcudart.so.12"]["how"]


@bpf
def test_the_notebook_case_a_runtime_loaded_in_the_tracing_process(wheel):
    rt = ctypes.CDLL(wheel)           # as `import torch` would, before the traced cell
    ptr = ctypes.c_void_p()
    s = Session(GpuTrace(["cuda"]), descendants_of="self")
    with s:
        for n in (100, 200, 300):
            rt.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(n))
    df = s.tables["gpu"]
    mine = df[(df["call"] == "cudaMalloc") & (df["pid"] == os.getpid())]
    assert list(mine["bytes"]) == [100, 200, 300], df[["call", "bytes", "library"]]


@bpf
def test_add_call_on_a_program_records_its_calls_by_default(tmp_path):
    src = tmp_path / "prog.c"
    src.write_text("#include <stdio.h>\n__attribute__((noinline)) int upload_frame(int i) "
                   "{ __asm__ volatile(\"\"); return i * 2; }\n"
                   "int main(void) { int s = 0; for (int i = 0; i < 25; i++) s += upload_frame(i); "
                   "printf(\"{\\\"calls\\\": %d, \\\"sum\\\": %d}\\n\", 25, s); return 0; }\n")
    exe = tmp_path / "prog"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    spec = add_call("myapp", "upload_frame", library=str(exe), category="copy_h2d", size="arg0")
    try:
        oracle = Bpftrace({"upload": f"{exe}:upload_frame"})
        s = Session(GpuTrace(["myapp"]), descendants_of="command")
        with s:
            own = _run(s, [exe])
        bt = oracle.counts()
    finally:
        CATALOGUE.remove(spec)          # add_call is for the whole process: leave the catalogue as it was
    df = s.tables["gpu"]
    assert len(df[df["call"] == "upload_frame"]) == own["calls"] == bt["upload"] == 25
    assert sorted(df["bytes"]) == list(range(25))


@bpf
def test_an_api_that_nothing_loaded_says_so():
    s = Session(GpuTrace(["cuda"]), descendants_of="command")
    with pytest.warns(DecodeWarning, match="cuda: 0 calls recorded"):
        with s:
            s.run(["/bin/true"])
    notes = s.recording.metadata.notes
    assert any("no traced process loaded a library of it" in n for n in notes), notes
    assert "no traced process loaded a library of it" in s.recording.summary()
    assert "no traced process loaded a library of it" in s.recording.to_html()


@bpf
def test_calls_left_unprobed_when_the_room_is_used_up_are_said(wheel, monkeypatch, tmp_path):
    from ebpftoolkit.probes.gpu import probe as gpu_probe
    monkeypatch.setattr(gpu_probe, "FOLLOW_HEADROOM", 2)         # room for 2 attach points found while recording
    copy = tmp_path / "libcudart.so.12"                          # another file (inode) of the same runtime
    shutil.copy(wheel, copy)
    s = Session(GpuTrace(["cuda"]), descendants_of="command")
    with pytest.warns(DecodeWarning, match="room for attach points"):
        with s:
            _run(s, [sys.executable, PROG, wheel, "--mallocs", "2"])
            _run(s, [sys.executable, PROG, copy, "--mallocs", "2"])   # the room stays used up
    libs = s.recording.metadata.probes["gpu"].details["libraries"]
    by_path = {f["path"]: f for f in libs}
    assert by_path[os.path.realpath(wheel)]["calls"] == 2 and by_path[str(copy)]["calls"] == 0
    assert not [f for f in libs if f.get("error")], libs
    notes = s.recording.metadata.notes
    assert any("were not probed" in n and os.path.realpath(wheel) in n for n in notes), notes
    assert any("were not probed" in n and str(copy) in n for n in notes), notes
