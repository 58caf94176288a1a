"""PmuSampler: where programs spend their events -- one row per sample, with the function and the user stack.

Sampling mode of the PMU probes: a perf event (``cpu-clock``, ``page-faults``,
or a hardware event such as ``cache-misses`` where the machine has a PMU) is
opened on every CPU with ``sample_period=period`` and runs a BPF program every
``period``-th occurrence, which records the interrupted task's user
instruction pointer and, with ``stacks=True``, its user stack (see
pmu_sample.bpf.c).  Addresses are resolved to (module, function) in user
space from the memory maps remembered while recording (:mod:`..runtime.symbols`),
so the process need not be alive at decode time.  Hardware events on a machine
without a PMU raise :class:`~ebpftoolkit.errors.PmuUnsupportedError` in the
constructor, before anything is loaded.
"""
from __future__ import annotations

import os
import platform

import numpy as np
import pandas as pd

from ...errors import ProbeConfigError
from ...runtime.clock import MonotonicClock
from ...runtime.demangle import demangle_many
from ...runtime.layout import Layout
from ...runtime.perf import CLOCK_EVENTS, require_supported, resolve_event
from ...runtime.program import RawTracepoint
from ...runtime.records import decode_str_array, text_column
from ...runtime.sources import source_beside
from ...runtime.streams import StreamSpec
from ...runtime.symbols import SYM_STATUS, ProcessMaps
from ..standalone import StandaloneProbe
from .config import SamplerConfig

__all__ = ["PmuSampler", "SAMPLE_COLUMNS", "FLAG_IN_KERNEL"]

SAMPLE_COLUMNS = ["ts", "cpu", "pid", "tid", "comm", "event", "ip", "symbol", "module", "sym_status", "in_kernel"]
STREAM = "pmu_sample_recs"
FLAG_IN_KERNEL = 1                         # pmu_sample.flags: the sample interrupted kernel code
_DEFAULT_CLOCK_PERIOD = 1_000_000          # 1 ms: 1000 samples per second of CPU


def sample_layout(depth: int) -> Layout:
    return Layout("pmu_sample", [
        ("ts", "u64"), ("pid", "u32"), ("tid", "u32"), ("cpu", "u32"), ("flags", "u32"), ("comm", "char", 16),
        ("ip", "u64"),                     # user IP, 0 when the task has no user context
        ("nframes", "u32"),                # frames filled in stack[]
        ("gen", "u32"),                    # execs of the process seen so far (pmu_sample_gen)
        ("stack", "u64", depth)])          # user stack, innermost first


class PmuSampler(StandaloneProbe):
    """Sample perf ``event`` every ``period`` occurrences (ns of CPU time for cpu-clock/task-clock).

    ``period``: default 1 ms for the clock events; required for the others.
    ``stacks``: also record the user stack (``max_depth`` frames at most),
    unwound with frame pointers: code built without them (most distribution
    libraries) shows short stacks.  ``ring_pages``: ring buffer size in pages.

    Table ``pmu_samples``: ts, cpu, pid, tid, comm, event, ip (the user
    instruction pointer), symbol (function name, C++ names demangled; None where unresolved),
    module (the file), sym_status (why a symbol is missing: see
    :data:`ebpftoolkit.runtime.symbols.SYM_STATUS`; "no maps" means the process
    ended or exec'd before its memory map was read), in_kernel (the sample
    interrupted kernel code on the task's behalf: ip is where it entered the
    kernel), and with ``stacks`` a column ``stack``: the functions, innermost
    first (``0xADDRESS [file]``, or the bare address, where no symbol is known).
    Rank functions with :func:`ebpftoolkit.analysis.pmu.top_functions`.
    """

    name = "pmu_samples"

    def __init__(self, event, period: int | None = None, stacks: bool = False, *, max_depth: int = 32,
                 ring_pages: int = 1024):
        ev = resolve_event(event)
        if period is None:
            if ev.name not in CLOCK_EVENTS:
                raise ProbeConfigError(f"give a sample period for {ev.name}: one sample every `period` events, "
                                       "e.g. period=10_000")
            period = _DEFAULT_CLOCK_PERIOD
        if isinstance(period, np.integer):
            period = int(period)
        super().__init__(SamplerConfig(ev.name, period, stacks, max_depth, ring_pages))
        require_supported([ev])          # PmuUnsupportedError here, before anything is loaded
        self.event = ev
        self._depth = max_depth if stacks else 1   # one frame: the user IP of a sample in the kernel
        self.layout = sample_layout(self._depth)
        self._program = None
        self.maps = ProcessMaps(self._exec_gen)
        self._resolved: dict[tuple[int, int, int], tuple] = {}

    @property
    def stacks(self) -> bool:
        return self.config.stacks

    @property
    def period(self) -> int:
        return self.config.period

    # -- what the runtime needs -----------------------------------------
    def streams(self):
        return [StreamSpec(STREAM, self.layout.dtype, self.config.ring_pages, wakeup="batch",
                           c_type="struct pmu_sample")]

    def raw_tracepoints(self):
        return [RawTracepoint("sched_process_exec", "pmu_on_sample_exec"),
                RawTracepoint("sched_process_exit", "pmu_on_sample_exit")]

    def bpf_text(self) -> str:
        head = (f"#define PMU_SAMPLE_DEPTH {self._depth}\n"
                f"#define PMU_SAMPLE_ARM64 {int(platform.machine() == 'aarch64')}\n"
                f"#define PMU_SAMPLE_IN_KERNEL {FLAG_IN_KERNEL}\n"
                f"// event {self.event.name} (type {self.event.type}, config {self.event.config:#x}), "
                f"period {self.period}\n")
        return head + self.layout.c_decl() + source_beside(__file__, "pmu_sample.bpf.c")

    def setup(self, program) -> None:
        """After load: open the sampling event on every CPU with pmu_on_sample attached."""
        self._program = program
        program.attach_perf_event("pmu_on_sample", self.event.type, self.event.config, self.period,
                                  label=self.event.name)

    def _exec_gen(self, pid: int) -> int:
        """``pid``'s generation: the execs (and exit) BPF saw it do, what its records carry in ``gen``."""
        gen = self._program.map("pmu_sample_gen", "u4", "u4").lookup(pid)
        return 0 if gen is None else int(gen)

    def on_records(self, stream: str, records: np.ndarray) -> None:
        """Collector thread, as records arrive: remember the memory map of every process seen."""
        if stream != STREAM or not len(records):
            return
        keys = records["pid"].astype(np.uint64) << np.uint64(32) | records["gen"].astype(np.uint64)
        for key in np.unique(keys):
            pid, gen = int(key) >> 32, int(key) & 0xFFFFFFFF
            self.maps.remember(pid, gen, records["ip"][keys == key])

    # -- decoding -------------------------------------------------------
    def _resolve(self, pid: int, gen: int, ip: int) -> tuple:
        key = (pid, gen, ip)
        r = self._resolved.get(key)
        if r is None:
            r = self.maps.resolve(pid, gen, ip)
            if r[2] in ("ok", "no symbol", "no file", "no user ip"):   # final: cache it
                self._resolved[key] = r
        return r

    @staticmethod
    def _frame_name(ip: int, r: tuple) -> str:
        module, symbol, _ = r
        if symbol:
            return symbol
        if not module:
            return f"{ip:#x}"
        return f"{ip:#x} {module}" if module.startswith("[") else f"{ip:#x} [{os.path.basename(module)}]"

    def make_tables(self, records, clock: MonotonicClock):
        r = records.get(STREAM, np.empty(0, self.layout.dtype))
        if len(r) > 1 and (np.diff(r["ts"].astype(np.int64)) < 0).any():
            r = r[np.argsort(r["ts"], kind="stable")]
        n = len(r)
        pids, gens, ips = r["pid"].astype(np.int64), r["gen"].astype(np.int64), r["ip"].astype(np.uint64)
        ukeys, kidx = np.unique(pids << 32 | gens, return_inverse=True)
        kidx = kidx.reshape(-1).astype(np.int64)
        if self._program is not None and self._program.loaded:
            for key in ukeys.tolist():
                if not self.maps.known(key >> 32, key & 0xFFFFFFFF):   # not seen by the collector: read it now
                    self.maps.remember(key >> 32, key & 0xFFFFFFFF)
        # every address once per process generation: the IPs, then the stack frames; a frame past the
        # first is a return address, which follows its call: look up the byte before it
        groups, addrs, counts = [kidx * 2], [ips], None
        if self.stacks:
            frames = r["stack"].reshape(n, self._depth)
            valid = np.arange(self._depth) < np.minimum(r["nframes"].astype(np.int64), self._depth)[:, None]
            rows, cols = np.nonzero(valid)
            fr = frames[rows, cols]
            groups.append(kidx[rows] * 2 + ((cols > 0) & (fr > 0)))
            addrs.append(fr)
            counts = valid.sum(axis=1)
        ug, ua, inv = _unique_pairs(np.concatenate(groups), np.concatenate(addrs))
        res = [self._resolve(int(ukeys[g >> 1]) >> 32, int(ukeys[g >> 1]) & 0xFFFFFFFF, a - (g & 1))
               for g, a in zip(ug.tolist(), ua.tolist())]
        names = demangle_many([x[1] or "" for x in res])     # C++ names as people write them
        res = [(m, name or None, st) for (m, _n, st), name in zip(res, names)]
        at_ip = inv[:n]
        status = np.array([SYM_STATUS.index(x[2]) for x in res], dtype=np.int64)
        df = pd.DataFrame({
            "ts": clock.to_wall(r["ts"]),
            "cpu": r["cpu"].astype(np.int64), "pid": pids, "tid": r["tid"].astype(np.int64),
            "comm": text_column(decode_str_array(r["comm"])),
            "event": pd.Categorical.from_codes(np.zeros(n, np.int64), [self.event.name]),
            "ip": ips.astype(np.int64),
            "symbol": pd.Series(_objects([x[1] for x in res])[at_ip], dtype=object),
            "module": pd.Series(_objects([x[0] for x in res])[at_ip], dtype=object),
            "sym_status": pd.Categorical.from_codes(status[at_ip], SYM_STATUS),
            "in_kernel": (r["flags"] & FLAG_IN_KERNEL).astype(bool),
        })
        if self.stacks:
            flat = _objects([self._frame_name(a, x) for a, x in zip(ua.tolist(), res)])[inv[n:]]
            df["stack"] = pd.Series([part.tolist() for part in np.split(flat, np.cumsum(counts)[:-1])] if n else [],
                                    dtype=object)
        return {self.name: df}


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _unique_pairs(a: np.ndarray, b: np.ndarray):
    """The distinct (a, b) pairs, and for each input pair the index of its distinct one."""
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    new = np.ones(len(a), bool)
    new[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    inv = np.empty(len(a), np.int64)
    inv[order] = np.cumsum(new) - 1
    return sa[new], sb[new], inv
