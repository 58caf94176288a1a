"""PmuCounters: perf event counts (page faults, context switches, cycles...) per task.

Counting mode with exact per-task attribution: each event is counted on every
CPU, and BPF reads the counters whenever the task on a CPU changes
(sched_switch), when a process exits, and on a timer every ``interval``,
charging each delta to the task that ran (see pmu.bpf.c).  One row per
(charge, event) in table ``pmu``.  Hardware events need a hardware PMU: where
there is none (most VMs) the constructor raises
:class:`~ebpftoolkit.errors.PmuUnsupportedError` and nothing is loaded.
Sampling (where the events happen) is :class:`~ebpftoolkit.probes.pmu.PmuSampler`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...analysis.pmu import pmu_totals
from ...errors import ProbeConfigError
from ...runtime.clock import MonotonicClock
from ...runtime.kernel import kernel_at_least
from ...runtime.layout import Layout, c_defines
from ...runtime.perf import possible_cpus, require_supported, resolve_events
from ...runtime.program import RawTracepoint
from ...runtime.records import decode_str_array, text_column
from ...runtime.sources import source_beside
from ...runtime.streams import StreamSpec
from ..standalone import StandaloneProbe
from .config import PmuConfig

__all__ = ["PmuCounters", "PMU_COLUMNS", "REASONS", "interval_ns"]

PMU_COLUMNS = ["ts", "cpu", "pid", "tid", "comm", "event", "value", "raw_value", "enabled_ns", "running_ns",
               "scaled", "reason"]
#: what ended a charged slice: codes 1-4 (PMU_SWITCH... in the BPF C, generated from here)
REASONS = ["switch", "tick", "exit", "exec"]


def interval_ns(interval) -> int | None:
    """``"10ms"``, a timedelta, or seconds -> ns (None stays None)."""
    if interval is None:
        return None
    if isinstance(interval, bool):
        raise ProbeConfigError("interval must be a duration such as '10ms'")
    try:
        if isinstance(interval, (int, float, np.integer, np.floating)):
            return int(round(float(interval) * 1e9))     # seconds
        return int(pd.Timedelta(interval).value)        # '10ms', timedelta, pd.Timedelta
    except (ValueError, TypeError):
        raise ProbeConfigError(f"interval must be a duration such as '10ms', '1s' or 0.01 (seconds), "
                               f"got {interval!r}") from None


def record_layout(nev: int) -> Layout:
    return Layout("pmu_record", [("ts", "u64"), ("pid", "u32"), ("tid", "u32"), ("cpu", "u32"), ("reason", "u32"),
                                 ("comm", "char", 16), ("value", "u64", nev), ("enabled", "u64", nev),
                                 ("running", "u64", nev)])


class PmuCounters(StandaloneProbe):
    """Count perf ``events`` per task (e.g. ``["page-faults", "context-switches"]``).

    ``interval``: a running task's counts are also charged every ``interval``
    (``"10ms"``; ``None``: only at context switches and exits), which sets the
    time resolution of :func:`ebpftoolkit.analysis.pmu.pmu_timeseries`.
    ``ring_pages``: ring buffer size in pages (a power of two).

    Table ``pmu``: ts (end of the charged slice), cpu, pid, tid, comm, event,
    value (the count in the slice, scaled by enabled/running where the
    counter was multiplexed: ``scaled``; a scaled 0 means it did not run at
    all), raw_value, enabled_ns and running_ns (of the slice), scaled, and
    reason: what ended the slice (switch: the task switched out, tick: the
    timer, exit, exec: an execve, so that each row's comm is the program that
    ran it; the start of an exec, up to the new name, counts under the old
    one).  ``perf stat CMD`` counts from the exec on: compare it with the rows
    whose comm is the program, since a command started by ``Session.run``
    first runs Python code between fork and exec (recorded under the
    parent's comm).
    """

    name = "pmu"
    table_names = ("pmu",)

    def __init__(self, events, interval="10ms", *, ring_pages: int = 1024):
        if events is None:
            raise ProbeConfigError("give the events to count, e.g. PmuCounters(['page-faults', 'context-switches']); "
                                   "to sample one, use PmuSampler('cpu-clock')")
        evs = resolve_events(events)
        super().__init__(PmuConfig(tuple(e.name for e in evs), interval_ns(interval), ring_pages))
        require_supported(evs)           # PmuUnsupportedError here, before anything is loaded
        self.events = evs
        self._ncpu = max(possible_cpus()) + 1
        self.layout = record_layout(len(evs))

    @property
    def event_names(self) -> list[str]:
        return list(self.config.events)

    # -- what the runtime needs -----------------------------------------
    def streams(self):
        # sched_switch of a tracked task can run at 100k/s: no wake-up per record
        return [StreamSpec("pmu_records", self.layout.dtype, self.config.ring_pages, wakeup="batch",
                           c_type="struct pmu_record")]

    def raw_tracepoints(self):
        return [RawTracepoint("sched_switch", "pmu_on_switch"), RawTracepoint("sched_process_exit", "pmu_on_exit")]

    def bpf_text(self) -> str:
        bias = sum(1 << i for i, e in enumerate(self.events) if e.name == "context-switches")
        head = (f"#define PMU_NEV {len(self.events)}\n#define PMU_NCPU {self._ncpu}\n"
                f"#define PMU_HAS_PREV_STATE {int(kernel_at_least(5, 18))}\n"
                f"#define PMU_SWITCH_BIAS {bias}ULL\n#define PMU_INTERVAL_NS {self.config.interval_ns or 0}ULL\n"
                + c_defines({r.upper(): i + 1 for i, r in enumerate(REASONS)}, "PMU_")
                + "".join(f"// event {i}: {e.name} (type {e.type}, config {e.config:#x})\n"
                          for i, e in enumerate(self.events)))
        return head + self.layout.c_decl() + source_beside(__file__, "pmu.bpf.c")

    def setup(self, program) -> None:
        """After load: open the counters on every CPU, then start the timer."""
        for i, e in enumerate(self.events):
            program.open_perf_array("pmu_counters", e.type, e.config, base=i * self._ncpu)
        for tp in ("syscalls:sys_enter_execve", "syscalls:sys_enter_execveat"):
            program.attach_tracepoint_fn(tp, "pmu_on_execve")
        if self.config.interval_ns:
            program.attach_perf_timer("pmu_on_tick", self.config.interval_ns)

    # -- decoding -------------------------------------------------------
    def make_tables(self, records, clock: MonotonicClock):
        r = records.get("pmu_records", np.empty(0, self.layout.dtype))
        if len(r) > 1 and (np.diff(r["ts"].astype(np.int64)) < 0).any():
            r = r[np.argsort(r["ts"], kind="stable")]
        n, k = len(r), len(self.events)

        def per_charge(a):
            return np.repeat(np.asarray(a), k)

        raw = r["value"].reshape(n, k).astype(np.int64).ravel()
        enabled = r["enabled"].reshape(n, k).astype(np.int64).ravel()
        running = r["running"].reshape(n, k).astype(np.int64).ravel()
        scaled = running < enabled
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(scaled & (running > 0), np.rint(raw * (enabled / np.maximum(running, 1))), raw)
        df = pd.DataFrame({
            "ts": per_charge(clock.to_wall(r["ts"])),
            "cpu": per_charge(r["cpu"].astype(np.int64)),
            "pid": per_charge(r["pid"].astype(np.int64)),
            "tid": per_charge(r["tid"].astype(np.int64)),
            "comm": text_column(per_charge(decode_str_array(r["comm"]))),
            "event": pd.Categorical.from_codes(np.tile(np.arange(k), n), self.event_names),
            "value": value.astype(np.int64), "raw_value": raw,
            "enabled_ns": enabled, "running_ns": running, "scaled": scaled,
            "reason": pd.Categorical.from_codes(per_charge(r["reason"].astype(np.int64) - 1), REASONS),
        })
        return {"pmu": df[PMU_COLUMNS]}

    def totals(self) -> pd.DataFrame:
        """Counts per process and event so far: pid, comm, one column per event."""
        return pmu_totals(self.df)
