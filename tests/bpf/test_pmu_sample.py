"""PMU sampling (PmuSampler): functions and user stacks of a known
CPU profile, symbolized after the process is gone; typed errors for hardware events here;
the CLI; top_functions on synthetic tables.

tests/progs/hot_cold.c spends 90% of its CPU time in hot_loop and 10% in cold_loop, both
called from main; it is built with -O0 -fno-omit-frame-pointer because GCC sets up no frame
pointer in leaf functions when optimizing, which would hide main from the stacks.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from support import bpf, our_bpf_programs, own_bpf_and_perf_fds
from ebpftoolkit import PmuCounters, Session
from ebpftoolkit.analysis.pmu import top_functions
from ebpftoolkit.errors import PmuUnsupportedError, ProbeConfigError
from ebpftoolkit.runtime.perf import hardware_pmu_available, online_cpus
from ebpftoolkit.probes.pmu import SAMPLE_COLUMNS, PmuSampler, SamplerConfig
from ebpftoolkit.runtime.symbols import ProcessMaps, read_exec_maps, resolve

PROGS = Path(__file__).resolve().parents[1] / "progs"
HW_PMU = hardware_pmu_available()[0]
CLI = [sys.executable, "-m", "ebpftoolkit"]


@pytest.fixture(scope="module")
def hot_cold(tmp_path_factory):
    exe = tmp_path_factory.mktemp("pmu_sample") / "hot_cold"
    subprocess.run(["gcc", "-O0", "-g", "-fno-omit-frame-pointer", "-o", str(exe), str(PROGS / "hot_cold.c")],
                   check=True)
    return str(exe)


@bpf
def test_cpu_clock_samples_rank_the_hot_function_with_stacks(hot_cold, tmp_path):
    before = own_bpf_and_perf_fds()
    probe = PmuSampler("cpu-clock", period=1_000_000, stacks=True)
    s = Session(probe, descendants_of="command")
    res = s.run([hot_cold, "500"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert own_bpf_and_perf_fds() == before               # perf events, programs and maps all closed
    pid = int(res.stdout.split()[0])
    assert not Path(f"/proc/{pid}").exists()              # gone: symbols came from the maps read while it ran
    att = [a.to_dict() for a in s.metadata.attachments if a.kind == "perf_event"]
    assert att == [{"kind": "perf_event", "target": "cpu-clock", "function": "pmu_on_sample", "mechanism": "perf event",
                    "details": {"period_ns": 1_000_000, "cpus": len(online_cpus())}}]
    assert s.lost == {"pmu_samples": 0, "tracking": 0}

    df = s.tables["pmu_samples"]
    assert list(df.columns) == SAMPLE_COLUMNS + ["stack"]
    assert df["ts"].dtype == "datetime64[ns]" and df["ts"].is_monotonic_increasing
    assert set(df["pid"]) == {pid} and (df["event"] == "cpu-clock").all()
    ours = df[df["comm"] == "hot_cold"]
    print(f"hot_cold 500 ms: {len(ours)} samples; status {ours['sym_status'].value_counts().to_dict()}")
    assert 250 <= len(ours) <= 1000                       # ~500 at one per ms of CPU
    # before its exec the child ran Session.run's Python: never symbolized with hot_cold's map
    assert not (df.loc[df["comm"] != "hot_cold", "module"] == hot_cold).any()
    resolved = ours.loc[ours["sym_status"] == "ok", "module"]
    assert resolved.map(lambda m: m == hot_cold or m.startswith(("/usr/", "/lib"))).all(), resolved.unique()

    top = top_functions(ours)
    print(top.head(6).to_string())
    assert list(top.columns) == ["symbol", "module", "samples", "share"]
    assert top.loc[0, "symbol"] == "hot_loop" and top.loc[0, "module"] == hot_cold
    assert top.loc[0, "share"] > 0.6
    cold = top[top["symbol"] == "cold_loop"]
    assert len(cold) == 1 and 0 < cold["share"].iloc[0] < top.loc[0, "share"] and cold.index[0] > 0
    assert top_functions(df).loc[0, "symbol"] == "hot_loop"     # all rows (with the pre-exec ones) too

    hot = ours[ours["symbol"] == "hot_loop"]
    print(f"hot_loop samples that interrupted the kernel (an interrupt on its behalf): {hot['in_kernel'].sum()}")
    assert (hot["ip"] > 0).all() and (~hot["in_kernel"]).mean() > 0.8
    assert all(st[0] == "hot_loop" for st in hot["stack"])                  # innermost first
    with_main = sum("main" in st[1:3] for st in hot["stack"])
    assert with_main >= 0.9 * len(hot), hot["stack"].head().tolist()        # hot_loop called from main
    assert top_functions(ours, inclusive=True).set_index("symbol").loc["main", "share"] > 0.9

    back = Session.load(s.save(tmp_path / "run"))
    pd.testing.assert_frame_equal(back.tables["pmu_samples"], df)


@bpf
def test_hardware_sampling_is_refused_before_anything_is_loaded():
    before = own_bpf_and_perf_fds()
    if HW_PMU:       # a machine with a PMU: the constructor accepts it
        assert PmuSampler("cache-misses", period=10_000, stacks=True).config.event == "cache-misses"
    else:
        with pytest.raises(PmuUnsupportedError) as ei:
            PmuSampler("cache-misses", period=10_000, stacks=True)
        assert ei.value.events == ["cache-misses"]
        assert "no hardware PMU" in str(ei.value) and "cpu-clock" in str(ei.value)
        with pytest.raises(PmuUnsupportedError):
            Session(PmuSampler("cycles", 100_000), descendants_of="command")
    assert own_bpf_and_perf_fds() == before == []
    assert not any(" name pmu_on_" in line for line in our_bpf_programs())


@bpf
def test_cpp_functions_are_named_as_cpp_writes_them(tmp_path):
    exe = tmp_path / "hot_cpp"
    subprocess.run(["g++", "-O1", "-fno-omit-frame-pointer", "-o", str(exe), str(PROGS / "hot_cpp.cc")], check=True)
    # the independent name: nm's own demangler (binutils) for the symbol at the hot function's address
    nm = subprocess.run(["nm", "-C", "--defined-only", str(exe)], capture_output=True, text=True, check=True).stdout
    cpp_names = {line.split(" ", 2)[2] for line in nm.splitlines() if "hotspace::spin" in line}
    assert cpp_names == {"hotspace::spin(unsigned long)", "hotspace::spin(int)"}, cpp_names
    s = Session(PmuSampler("cpu-clock", period=1_000_000), descendants_of="command")
    res = s.run([str(exe), "300"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    top = top_functions(s.tables["pmu_samples"][s.tables["pmu_samples"]["comm"] == "hot_cpp"])
    assert top.loc[0, "symbol"] == "hotspace::spin(unsigned long)" and top.loc[0, "share"] > 0.8, top.head()


@bpf
def test_cli_records_pmu_samples(hot_cold, tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(CLI + ["record", "--pmu-sample", "cpu-clock:1000000", "-o", str(out), "--", hot_cold, "300"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"session written to {out}" in res.stdout
    back = Session.load(out)
    assert set(back.tables) == {"pmu_samples"}                # no other probe asked for
    df = back.tables["pmu_samples"]
    assert list(df.columns) == SAMPLE_COLUMNS                 # no --stacks: no stack column
    assert top_functions(df[df["comm"] == "hot_cold"]).loc[0, "symbol"] == "hot_loop"
    meta = back.metadata.probes["pmu_samples"]
    assert meta.kind == "PmuSampler" and meta.config == SamplerConfig("cpu-clock", 1_000_000, False, 32, 1024)


def test_cli_bad_sample_options():
    for args, msg in ((["--pmu-sample", "cpu-clock:soon"], "integer period"),
                      (["--stacks"], "--stacks goes with --pmu-sample"),
                      (["--pmu-sample", "page-faults"], "give a sample period")):
        res = subprocess.run(CLI + ["record", *args, "--", "true"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and msg in res.stderr, (args, res.stderr)


def test_configuration():
    p = PmuSampler("task-clock")
    assert p.name == "pmu_samples"
    assert p.config.to_dict() == {"event": "task-clock", "period": 1_000_000, "stacks": False, "max_depth": 32,
                                  "ring_pages": 1024}
    assert PmuSampler("faults", 1, stacks=True, max_depth=8).config.event == "page-faults"
    for kw, msg in (({"event": "page-faults"}, "sample period"), ({"event": "cpu-clock", "period": 1000}, "10 us"),
                    ({"event": "cpu-clock", "period": 0}, "positive"),
                    ({"event": "cpu-clock", "max_depth": 500}, "max_depth"),
                    ({"event": "cpu-clock", "ring_pages": 3}, "power of two"),
                    ({"event": "cpu-clock", "interval": "10ms"}, "unexpected keyword")):
        with pytest.raises((ProbeConfigError, TypeError), match=msg):
            PmuSampler(**kw)
    with pytest.raises(ProbeConfigError, match="give the events"):
        PmuCounters(None)


def test_symbols_of_a_shared_library_in_a_live_process():
    libc = ctypes.CDLL(None)
    addr = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    snap = read_exec_maps(os.getpid())
    module, symbol, status = resolve(snap, addr + 1)          # inside getpid, in the PIE libc
    assert status == "ok" and symbol.lstrip("_") == "getpid" and "libc.so" in module, (module, symbol)
    assert resolve(snap, 8)[2] == "unmapped" and resolve(None, addr)[2] == "no maps"
    assert resolve(snap, 0)[2] == "no user ip"
    maps = ProcessMaps(lambda pid: 0)
    maps.remember(os.getpid(), 0)
    assert maps.resolve(os.getpid(), 0, addr)[1] == symbol
    maps.remember(os.getpid(), 1)                             # the process is not in generation 1: no map
    assert maps.known(os.getpid(), 1) and maps.resolve(os.getpid(), 1, addr)[2] == "no maps"
    assert read_exec_maps(2 ** 22 + 12345) is None            # no such process


def test_top_functions():
    df = pd.DataFrame({"symbol": ["f", "f", "g", None, "f", "h"], "module": ["/a", "/a", "/a", None, "/a", "/b"],
                       "stack": [["f", "main"], ["f", "g", "main"], ["g", "main"], ["0x1"], ["f", "f", "main"],
                                 ["h"]]})
    top = top_functions(df)
    assert top.to_dict("list") == {"symbol": ["f", "[unknown]", "g", "h"], "module": ["/a", "[unknown]", "/a", "/b"],
                                   "samples": [3, 1, 1, 1], "share": [0.5, 1 / 6, 1 / 6, 1 / 6]}
    assert len(top_functions(df, n=2)) == 2
    inc = top_functions(df, inclusive=True).set_index("symbol")
    assert inc.loc["main", "samples"] == 4 and inc.loc["f", "samples"] == 3 and inc.loc["g", "samples"] == 2
    assert top_functions(df.iloc[:0]).empty
    with pytest.raises(ProbeConfigError, match="stacks=True"):
        top_functions(df.drop(columns="stack"), inclusive=True)
