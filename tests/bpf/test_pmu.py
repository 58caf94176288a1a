"""PMU counters through perf_event: PmuCounters against `perf stat`, attribution,
typed errors where hardware counters are missing, cachegrind, and the analysis functions.

tests/progs/pmu_work.c does known work (one page fault per page, one context
switch per 1 ms sleep, optionally a CPU spin), pmu_threads.c the same in threads;
tests/progs/cache_pattern.c has a cache-hostile and a cache-friendly loop with the
same number of loads.  perf stat counts a command from its exec, so the comparisons
use the rows whose comm is the program (Session.run's child runs Python before it).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import bpf, our_bpf_programs, own_bpf_and_perf_fds
from ebpftoolkit import PmuCounters, Session
from ebpftoolkit.analysis.pmu import ipc, miss_rate, mpki, pmu_timeseries, pmu_totals
from ebpftoolkit.errors import PmuUnsupportedError, ProbeConfigError, ValgrindMissingError
from ebpftoolkit.probes.pmu import available_events, simulate_cache_misses
from ebpftoolkit.runtime.abi import PERF_TYPE_HW_CACHE, PERF_TYPE_RAW
from ebpftoolkit.runtime.perf import hardware_pmu_available, resolve_event

PROGS = Path(__file__).resolve().parents[1] / "progs"
HW_PMU = hardware_pmu_available()[0]


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pmu_progs")
    names = ("pmu_work", "pmu_threads", "cache_pattern")
    for name in names:
        subprocess.run(["gcc", "-O2", "-g", "-pthread", "-o", str(out / name), str(PROGS / f"{name}.c")], check=True)
    return {n: str(out / n) for n in names}


def read_perf_csv(path, events) -> dict[str, float | None]:
    """`perf stat -x, -o PATH` output -> {event: value, or None where `<not supported>`}."""
    return {f[2]: None if f[0].startswith("<") else float(f[0])
            for f in (line.split(",") for line in Path(path).read_text().splitlines()) if len(f) > 2 and f[2] in events}


def perf_stat(argv, events, tmp_path) -> dict[str, float | None]:
    """`perf stat -x, -e EVENTS argv`, run on its own."""
    out = tmp_path / "perf.csv"
    subprocess.run(["perf", "stat", "-x,", "-o", str(out), "-e", ",".join(events), *argv],
                   check=True, capture_output=True, timeout=120)
    return read_perf_csv(out, events)


def close(ours, theirs, rel=0.02):
    return abs(ours - theirs) <= rel * theirs


def program_rows(df, pid, comm="pmu_work"):
    """Rows of ``pid`` while it ran ``comm`` (perf stat counts a command from its exec)."""
    return df[(df["pid"] == pid) & (df["comm"] == comm)]


# -- software events end to end --------------------------------------------------
@bpf
def test_software_events_match_perf_stat(progs, tmp_path):
    argv = [progs["pmu_work"], "2000", "200"]
    before = own_bpf_and_perf_fds()
    s = Session(PmuCounters(["page-faults", "context-switches"]), descendants_of="command")
    res = s.run(argv, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert own_bpf_and_perf_fds() == before                # counters, timer, programs and maps all closed
    kinds = [a.kind for a in s.metadata.attachments]
    assert kinds.count("perf_event_array") == 2 and "perf_event" in kinds
    pid = int(res.stdout.split()[0])
    df = s.tables["pmu"]
    assert s.lost == {"pmu": 0, "tracking": 0}
    assert list(df.columns) == ["ts", "cpu", "pid", "tid", "comm", "event", "value", "raw_value", "enabled_ns",
                                "running_ns", "scaled", "reason"]
    assert df["ts"].dtype == "datetime64[ns]" and df["ts"].is_monotonic_increasing
    assert set(df["pid"]) == {pid}                       # only the command
    assert not df["scaled"].any() and (df["value"] == df["raw_value"]).all()   # software events: never multiplexed
    assert (df["running_ns"] <= df["enabled_ns"]).all()

    ours = program_rows(df, pid).groupby("event", observed=True)["value"].sum()
    ref = perf_stat(argv, ["page-faults", "context-switches"], tmp_path)
    print(f"pmu_work 2000 200: ebpftoolkit {ours.to_dict()}  perf stat {ref}")
    assert ours["page-faults"] >= 2000 and ours["context-switches"] >= 200
    assert close(ours["page-faults"], ref["page-faults"]), (ours.to_dict(), ref)
    assert close(ours["context-switches"], ref["context-switches"]), (ours.to_dict(), ref)

    # before its exec the child ran Session.run's Python (fork, register, exec): recorded apart,
    # under the parent's comm, cut at execve
    pre = df[(df["pid"] == pid) & (df["comm"] != "pmu_work")]
    assert (pre["reason"] == "exec").any()
    assert pre["ts"].max() <= program_rows(df, pid)["ts"].min()

    # the time series sums to the totals exactly, per pid and event
    ts = pmu_timeseries(df, "10ms")
    assert ts["ts"].dtype == "datetime64[ns]" and (ts["ts"] == ts["ts"].dt.floor("10ms")).all()
    by_ts = ts.groupby(["pid", "event"], observed=True)["value"].sum()
    by_rows = df.groupby(["pid", "event"], observed=True)["value"].sum()
    pd.testing.assert_series_equal(by_ts, by_rows)
    tot = pmu_totals(df, by=["pid", "comm"]).set_index("comm")
    assert tot.loc["pmu_work", "page-faults"] == ours["page-faults"]


@bpf
def test_timer_charges_a_running_task_and_cpu_time_matches_perf_stat(progs, tmp_path):
    # perf stat counts the same execution (in a VM, steal time differs from run to run)
    out = tmp_path / "perf.csv"
    argv = ["perf", "stat", "-x,", "-o", str(out), "-e", "cpu-clock", progs["pmu_work"], "10", "2", "200"]
    s = Session(PmuCounters(["cpu-clock"], interval="10ms"), descendants_of="command")
    res = s.run(argv, capture_output=True, timeout=60)
    pid = int(res.stdout.split()[0])
    rows = program_rows(s.tables["pmu"], pid)
    ref = read_perf_csv(out, ["cpu-clock"])["cpu-clock"] * 1e6     # msec -> ns
    ours = rows["value"].sum()
    print(f"pmu_work 10 2 200 (200 ms of CPU): cpu-clock ebpftoolkit {ours / 1e6:.2f} ms, "
          f"perf stat {ref / 1e6:.2f} ms")
    assert close(ours, ref), (ours, ref)
    assert (rows["reason"] == "tick").sum() >= 10          # a 200 ms slice is cut every 10 ms
    assert len(pmu_timeseries(rows, "10ms")) >= 15


@bpf
def test_two_processes_on_one_cpu_each_get_their_own_counts(progs, tmp_path):
    # Both run at once on CPU 0, each under its own `perf stat` (per-task counters: the reference),
    # in the same run, so both see the same preemptions by the other.
    exe, events = progs["pmu_work"], ["page-faults", "context-switches"]
    script = (f"for N in 1000 4000; do taskset -c 0 perf stat -x, -e {','.join(events)} "
              f"-o {tmp_path}/perf-$N.csv {exe} $N 200 & done; wait")
    s = Session(PmuCounters(events), descendants_of="command")
    res = s.run(["sh", "-c", script], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pids = {int(n): int(pid) for pid, n, _ in (line.split() for line in res.stdout.decode().splitlines())}
    assert sorted(pids) == [1000, 4000]
    df = s.tables["pmu"]
    assert s.lost["pmu"] == 0
    spans, totals = {}, {}
    for n, pid in pids.items():
        rows = program_rows(df, pid)
        assert (rows["cpu"] == 0).all()
        spans[n] = (rows["ts"].min(), rows["ts"].max())
        ours = totals[n] = rows.groupby("event", observed=True)["value"].sum()
        ref = read_perf_csv(tmp_path / f"perf-{n}.csv", events)
        print(f"pmu_work {n} 200 on CPU 0 beside the other: ebpftoolkit {ours.to_dict()}  perf stat {ref}")
        assert close(ours["page-faults"], ref["page-faults"]), (n, ours.to_dict(), ref)
        assert close(ours["context-switches"], ref["context-switches"]), (n, ours.to_dict(), ref)
    assert 2900 <= totals[4000]["page-faults"] - totals[1000]["page-faults"] <= 3100
    (a0, a1), (b0, b1) = spans[1000], spans[4000]
    assert a0 < b1 and b0 < a1                             # they really ran at the same time


@bpf
def test_threads_on_both_cpus_add_up_to_their_process(progs, tmp_path):
    out, events = tmp_path / "perf.csv", ["page-faults", "context-switches"]
    argv = ["perf", "stat", "-x,", "-o", str(out), "-e", ",".join(events), progs["pmu_threads"], "4", "300"]
    s = Session(PmuCounters(events), descendants_of="command")
    res = s.run(argv, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout.split()[0])
    rows = program_rows(s.tables["pmu"], pid, "pmu_threads")
    ref = read_perf_csv(out, events)                       # perf stat's counters inherit into the threads
    ours = rows.groupby("event", observed=True)["value"].sum()
    print(f"pmu_threads 4 300: ebpftoolkit {ours.to_dict()}  perf stat {ref}")
    assert close(ours["page-faults"], ref["page-faults"]) and close(ours["context-switches"], ref["context-switches"])
    faults = rows[rows["event"] == "page-faults"].groupby("tid")["value"].sum().sort_values().to_numpy()
    assert len(faults) == 5                                # main thread + 4 workers
    assert all(300 * i <= f <= 300 * i + 20 for i, f in zip(range(1, 5), faults[-4:]))


# -- hardware events on this machine ---------------------------------------------
@bpf
def test_hardware_events_are_refused_before_anything_is_loaded():
    before = own_bpf_and_perf_fds()
    if HW_PMU:      # a machine with a PMU: the constructor accepts it
        PmuCounters(["cycles"])
    else:
        with pytest.raises(PmuUnsupportedError) as ei:
            PmuCounters(["page-faults", "cycles", "LLC-load-misses"])
        msg = str(ei.value)
        assert ei.value.events == ["cycles", "LLC-load-misses"]
        assert "no hardware PMU" in msg and "virtual PMU" in msg
        assert "software events" in msg and "page-faults" in msg and "cachegrind" in msg
        with pytest.raises(PmuUnsupportedError):
            Session(PmuCounters(["instructions"]), descendants_of="command")
    assert own_bpf_and_perf_fds() == before == []
    assert not any(" name pmu_on_" in line for line in our_bpf_programs())


def test_available_events_agree_with_perf_stat(tmp_path):
    names = ["cycles", "instructions", "cache-misses", "page-faults", "context-switches", "cpu-clock"]
    table = available_events(names).set_index("event")
    assert table["available"].dtype == bool
    ref = perf_stat(["true"], names, tmp_path)
    for n in names:
        assert table.loc[n, "available"] == (ref[n] is not None), (n, table.loc[n, "reason"], ref[n])
    assert table.loc[["page-faults", "context-switches", "cpu-clock"], "available"].all()
    if not HW_PMU:
        assert "no hardware PMU" in table.loc["cycles", "reason"]


@pytest.mark.hardware_pmu
@pytest.mark.skipif(not HW_PMU, reason="no hardware PMU on this machine (doctor: 'hardware PMU' absent)")
@bpf
def test_cycles_and_instructions_are_counted(progs, tmp_path):
    argv = [progs["cache_pattern"], "5000000"]
    s = Session(PmuCounters(["instructions", "cycles"]), descendants_of="command")
    res = s.run(argv, capture_output=True, timeout=60)
    assert res.returncode == 0
    rows = s.tables["pmu"][s.tables["pmu"]["comm"] == "cache_pattern"]
    ours = rows.groupby("event", observed=True)["value"].sum()
    ref = perf_stat(argv, ["instructions", "cycles"], tmp_path)
    assert close(ours["instructions"], ref["instructions"], 0.05), (ours.to_dict(), ref)
    assert ours["cycles"] > 0
    r = ipc(rows)
    assert len(r) == 1 and 0 < r["ipc"].iloc[0] < 10


# -- cachegrind ---------------------------------------------------------------------
def test_cachegrind_shows_the_cache_hostile_function(progs):
    df = simulate_cache_misses([progs["cache_pattern"], "1000000"], timeout=120)
    assert df.attrs["simulated"] and (df["source"] == "cachegrind").all()
    assert list(df.columns) == ["source", "file", "function", "Ir", "I1mr", "ILmr", "Dr", "D1mr", "DLmr",
                                "Dw", "D1mw", "DLmw"]
    assert all(df[c].dtype == np.int64 for c in df.columns[3:])
    f = df.groupby("function")[["Ir", "Dr", "D1mr", "DLmr"]].sum()
    hostile, friendly = f.loc["hostile"], f.loc["friendly"]
    print(f"cachegrind (simulated): hostile {hostile.to_dict()}  friendly {friendly.to_dict()}")
    assert hostile["Dr"] >= 1_000_000 and friendly["Dr"] >= 1_000_000
    assert hostile["D1mr"] >= 10 * max(friendly["D1mr"], 1)
    assert hostile["DLmr"] >= 10 * max(friendly["DLmr"], 1)
    assert any("D1 cache" in d for d in df.attrs["desc"])


def test_cachegrind_without_valgrind_is_a_typed_error(progs, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))               # a PATH with no valgrind on it
    with pytest.raises(ValgrindMissingError, match="apt-get install -y valgrind"):
        simulate_cache_misses([progs["cache_pattern"]])


# -- configuration ------------------------------------------------------------------
def test_event_names_and_bad_configuration():
    assert resolve_event("cs").name == "context-switches" and resolve_event("faults").name == "page-faults"
    assert (resolve_event("r01c2").type, resolve_event("r01c2").config) == (PERF_TYPE_RAW, 0x01C2)
    assert (resolve_event("L1-dcache-load-misses").type, resolve_event("L1-dcache-load-misses").config) == \
        (PERF_TYPE_HW_CACHE, 0 | 0 << 8 | 1 << 16)
    assert resolve_event("LLC-loads").config == 2
    with pytest.raises(ProbeConfigError, match="did you mean"):
        PmuCounters(["page-fault"])
    with pytest.raises(ProbeConfigError, match="each event once"):
        PmuCounters(["page-faults", "faults"])
    with pytest.raises(ProbeConfigError, match="interval"):
        PmuCounters(["page-faults"], interval="soon")
    with pytest.raises(ProbeConfigError, match="interval"):
        PmuCounters(["page-faults"], interval="1us")
    assert PmuCounters(["cs"], interval=0.005).config.to_dict() == {"events": ["context-switches"],
                                                            "interval_ns": 5_000_000, "ring_pages": 1024}


# -- analysis (pure functions on synthetic tables) ---------------------------------------
def _table(rows):
    """rows: (ms, pid, event, value) -> a pmu-like table."""
    df = pd.DataFrame(rows, columns=["ms", "pid", "event", "value"])
    df["ts"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(df.pop("ms"), unit="ms")
    df["comm"] = "p" + df["pid"].astype(str)
    return df


def test_ipc_per_process_and_over_time():
    df = _table([(1, 1, "instructions", 300), (2, 1, "cycles", 100), (15, 1, "instructions", 100),
                 (16, 1, "cycles", 200), (3, 2, "instructions", 50), (4, 2, "cycles", 0)])
    r = ipc(df).set_index("pid")
    assert r.loc[1, "ipc"] == pytest.approx(400 / 300)
    assert np.isnan(r.loc[2, "ipc"])                         # no cycles: undefined, not inf
    t = ipc(df, interval="10ms")
    assert list(t.columns) == ["ts", "pid", "instructions", "cycles", "ipc"]
    assert t[t["pid"] == 1]["ipc"].tolist() == pytest.approx([3.0, 0.5])
    with pytest.raises(ProbeConfigError, match="cycles"):
        ipc(df[df["event"] != "cycles"])


def test_miss_rate_is_clipped_and_flagged():
    df = _table([(1, 1, "cache-misses", 10), (1, 1, "cache-references", 100),
                 (1, 2, "cache-misses", 150), (1, 2, "cache-references", 100),    # misses > references
                 (1, 3, "cache-misses", 5),                                       # no references at all
                 (1, 4, "cache-references", 40)])
    r = miss_rate(df).set_index("pid")
    assert r.loc[1, "miss_rate"] == pytest.approx(0.1) and not r.loc[1, "misses_exceed_references"]
    assert r.loc[2, "miss_rate"] == 1.0 and r.loc[2, "misses_exceed_references"]
    assert np.isnan(r.loc[3, "miss_rate"]) and r.loc[3, "misses_exceed_references"]
    assert r.loc[4, "miss_rate"] == 0.0 and not r.loc[4, "misses_exceed_references"]
    assert r["miss_rate"].dropna().between(0, 1).all()
    llc = _table([(1, 1, "LLC-load-misses", 3), (1, 1, "LLC-loads", 12)])
    assert miss_rate(llc, "LLC-load-misses", "LLC-loads")["miss_rate"].iloc[0] == pytest.approx(0.25)


def test_mpki_and_timeseries():
    df = _table([(1, 1, "cache-misses", 20), (1, 1, "instructions", 10_000), (12, 1, "cache-misses", 5),
                 (12, 1, "instructions", 0)])
    assert mpki(df)["mpki"].iloc[0] == pytest.approx(2.5)
    over = mpki(df, interval="10ms")
    assert over["mpki"].iloc[0] == pytest.approx(2.0) and np.isnan(over["mpki"].iloc[1])
    ts = pmu_timeseries(df, "10ms")
    assert list(ts.columns) == ["ts", "pid", "event", "value"] and ts["value"].sum() == df["value"].sum()
    assert len(pmu_timeseries(df, "1s")) == 2                 # one bin, two events
    tot = pmu_totals(df)
    assert tot.loc[0, "cache-misses"] == 25 and tot.loc[0, "comm"] == "p1"
