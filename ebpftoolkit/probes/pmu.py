"""PmuCounters: perf event counts (page faults, context switches, cycles...) per task.

Counting mode with exact per-task attribution: each event is counted on every
CPU, and BPF reads the counters whenever the task on a CPU changes
(sched_switch), when a process exits, and on a timer every ``interval``,
charging each delta to the task that ran (see bpf_src/pmu.c).  One row per
(charge, event) in table ``pmu``.  Hardware events need a hardware PMU: where
there is none (most VMs) the constructor raises
:class:`~ebpftoolkit.errors.PmuUnsupportedError` and nothing is loaded.
"""
from __future__ import annotations

import platform
import re

import numpy as np
import pandas as pd

from ..errors import ProbeConfigError
from ..pmu import possible_cpus, require_supported, resolve_events, simulate_cache_misses
from ..runtime.clock import MonotonicClock
from ..runtime.program import RawTracepoint
from ..runtime.streams import StreamSpec
from ..runtime.records import c_struct_dtype, decode_str_array
from ..runtime.sources import bpf_source
from .base import SELF, Probe

__all__ = ["PmuCounters", "PMU_COLUMNS"]

PMU_COLUMNS = ["ts", "cpu", "pid", "tid", "comm", "event", "value", "raw_value", "enabled_ns", "running_ns",
               "scaled", "reason"]
REASONS = ["switch", "tick", "exit", "exec"]   # codes 1-4 in pmu.c
MAX_EVENTS = 8
_MIN_INTERVAL_NS = 100_000                 # the kernel's cpu-clock floor is 10 us; below 100 us is all overhead


def _interval_ns(interval) -> int | None:
    if interval is None:
        return None
    if isinstance(interval, bool):
        raise ProbeConfigError("interval must be a duration such as '10ms'")
    try:
        if isinstance(interval, (int, float, np.integer, np.floating)):
            ns = int(round(float(interval) * 1e9))     # seconds
        else:
            ns = int(pd.Timedelta(interval).value)     # '10ms', timedelta, pd.Timedelta
    except (ValueError, TypeError):
        raise ProbeConfigError(f"interval must be a duration such as '10ms', '1s' or 0.01 (seconds), "
                               f"got {interval!r}") from None
    if ns < _MIN_INTERVAL_NS:
        raise ProbeConfigError(f"interval must be at least 100us, got {interval!r}")
    return ns


def _kernel_at_least(major: int, minor: int) -> bool:
    """sched_switch passes prev_state as its 4th argument since Linux 5.18."""
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return bool(m) and (int(m[1]), int(m[2])) >= (major, minor)


class PmuCounters(Probe):
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

    Sampling (which functions the events happen in): ``PmuCounters(sample="cpu-clock",
    period=1_000_000, stacks=True)`` or ``PmuCounters.sampler(...)`` give a
    :class:`~ebpftoolkit.probes.pmu_sample.PmuSampler` (table ``pmu_samples``).
    """

    name = "pmu"
    cachegrind = staticmethod(simulate_cache_misses)

    def __new__(cls, events=None, *args, sample=None, period=None, stacks=False, **kw):
        """``PmuCounters(sample=EVENT, period=N, stacks=...)`` is :meth:`sampler`: it returns a
        :class:`~ebpftoolkit.probes.pmu_sample.PmuSampler` (table ``pmu_samples``), not a counter."""
        if sample is None:
            if period is not None or stacks:
                raise ProbeConfigError("period= and stacks= are for sampling: PmuCounters(sample='cpu-clock', "
                                       "period=1_000_000, stacks=True)")
            return super().__new__(cls)
        if events is not None or args or "interval" in kw:
            raise ProbeConfigError("sample= records samples of one event; it takes no events or interval "
                                   "(count those with another PmuCounters in the same Session)")
        return cls.sampler(sample, period, stacks, **kw)

    @classmethod
    def sampler(cls, event, period=None, stacks=False, descendants_of=SELF, **kw):
        """Sampling mode: a :class:`~ebpftoolkit.probes.pmu_sample.PmuSampler` recording one row per
        ``period``-th ``event`` (ns for cpu-clock/task-clock) with the function and, with ``stacks``,
        the user stack: ``PmuCounters.sampler("cpu-clock", 1_000_000, stacks=True)``."""
        from .pmu_sample import PmuSampler
        return PmuSampler(event, period, stacks, descendants_of, **kw)

    def __init__(self, events=None, interval="10ms", descendants_of=SELF, *, ring_pages: int = 1024,
                 sample=None, period=None, stacks=False):
        if events is None:
            raise ProbeConfigError("give the events to count, e.g. PmuCounters(['page-faults', "
                                   "'context-switches']), or sample='cpu-clock' to sample one")
        evs = resolve_events(events)
        if len(evs) > MAX_EVENTS:
            raise ProbeConfigError(f"at most {MAX_EVENTS} events per PmuCounters, got {len(evs)}")
        if isinstance(ring_pages, bool) or not isinstance(ring_pages, int) or ring_pages < 1 \
                or ring_pages & (ring_pages - 1):
            raise ProbeConfigError("ring_pages must be a power of two")
        self.interval_ns = _interval_ns(interval)
        require_supported(evs)           # PmuUnsupportedError here, before anything is loaded
        super().__init__(descendants_of)
        self.events, self.ring_pages = evs, ring_pages
        self._ncpu = max(possible_cpus()) + 1
        n = len(evs)
        self.record_dtype = c_struct_dtype([
            ("ts", "u8"), ("pid", "u4"), ("tid", "u4"), ("cpu", "u4"), ("reason", "u4"), ("comm", "S16"),
            ("value", ("u8", (n,))), ("enabled", ("u8", (n,))), ("running", ("u8", (n,))),
        ])

    @property
    def event_names(self) -> list[str]:
        return [e.name for e in self.events]

    def config(self):
        return {"events": self.event_names, "interval_ns": self.interval_ns, "ring_pages": self.ring_pages}

    # -- what the runtime needs -----------------------------------------
    def streams(self):
        # sched_switch of a tracked task can run at 100k/s: no wake-up per record
        return [StreamSpec("pmu_records", self.record_dtype, self.ring_pages, wakeup="batch")]

    def raw_tracepoints(self):
        return [RawTracepoint("sched_switch", "pmu_on_switch"), RawTracepoint("sched_process_exit", "pmu_on_exit")]

    def bpf_text(self) -> str:
        bias = sum(1 << i for i, e in enumerate(self.events) if e.name == "context-switches")
        head = (f"#define PMU_NEV {len(self.events)}\n#define PMU_NCPU {self._ncpu}\n"
                f"#define PMU_HAS_PREV_STATE {int(_kernel_at_least(5, 18))}\n"
                f"#define PMU_SWITCH_BIAS {bias}ULL\n#define PMU_INTERVAL_NS {self.interval_ns or 0}ULL\n"
                + "".join(f"// event {i}: {e.name} (type {e.type}, config {e.config:#x})\n"
                          for i, e in enumerate(self.events)))
        return head + bpf_source("pmu.c")

    def setup(self, program) -> None:
        """After load: open the counters on every CPU, then start the timer."""
        for i, e in enumerate(self.events):
            program.open_perf_array("pmu_counters", e.type, e.config, base=i * self._ncpu)
        for tp in ("syscalls:sys_enter_execve", "syscalls:sys_enter_execveat"):
            program.attach_tracepoint_fn(tp, "pmu_on_execve")
        if self.interval_ns:
            program.attach_perf_timer("pmu_on_tick", self.interval_ns)

    # -- decoding -------------------------------------------------------
    def make_tables(self, records, clock: MonotonicClock):
        r = records.get("pmu_records", np.empty(0, self.record_dtype))
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
            "comm": per_charge(decode_str_array(r["comm"])),
            "event": pd.Categorical.from_codes(np.tile(np.arange(k), n), self.event_names),
            "value": value.astype(np.int64), "raw_value": raw,
            "enabled_ns": enabled, "running_ns": running, "scaled": scaled,
            "reason": pd.Categorical.from_codes(per_charge(r["reason"].astype(np.int64) - 1), REASONS),
        })
        return {"pmu": df[PMU_COLUMNS]}

    def totals(self) -> pd.DataFrame:
        """Counts per process and event so far: pid, comm, one column per event."""
        from ..analysis.pmu import pmu_totals
        return pmu_totals(self.df)

