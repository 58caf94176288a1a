"""SyscallTrace: entries of chosen system calls, as events or in-kernel counts.

Built for high rates: records are 16-64 bytes, the ring buffer wakes the collector
only every few thousand records, records are batched per CPU in the kernel, and
with ``count_only=True`` the kernel keeps counts per (pid, syscall) and no event
leaves it at all.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import ProbeConfigError
from ...runtime.clock import MonotonicClock
from ...runtime.layout import Layout
from ...runtime.sources import source_beside
from ...runtime.streams import StreamSpec
from ...runtime.tracefs import ensure_tracefs, syscall_arg_count
from ..standalone import StandaloneProbe
from .config import SyscallConfig

__all__ = ["SyscallTrace", "SYS_KEY"]

SYS_KEY = Layout("sys_key", [("pid", "u32"), ("nr", "u32")])


class SyscallTrace(StandaloneProbe):
    """Trace the entry of system calls ``names`` (e.g. ``["openat", "read"]``): table ``syscalls``
    (ts, pid, tid, syscall, arg0...), or ``syscall_counts`` with ``count_only``.  See :class:`SyscallConfig`."""

    name = "syscalls"

    def __init__(self, names, *, nargs: int = 1, count_only: bool = False, ring_pages: int = 4096,
                 kernel_batch: int = 64):
        names = (names,) if isinstance(names, str) else tuple(names) if isinstance(names, (list, tuple)) else names
        super().__init__(SyscallConfig(names, nargs, count_only, ring_pages, kernel_batch))
        c = self.config
        fields = [("ts", "u64"), ("pid", "u32"), ("tid", "u32")]
        if len(c.names) > 1:
            fields += [("nr", "u32"), ("_pad", "u32")]
        if c.nargs:
            fields.append(("args", "u64", c.nargs))
        self.event_layout = Layout("sys_event", fields)
        self.table_names = ("syscall_counts",) if c.count_only else ("syscalls",)
        self._checked = False

    def _check_tracepoints(self) -> None:
        if not self._checked:
            base = ensure_tracefs() / "events" / "syscalls"
            for n in self.config.names:
                if not (base / f"sys_enter_{n}" / "format").is_file():
                    raise ProbeConfigError(f"no tracepoint syscalls:sys_enter_{n}: is '{n}' a system call "
                                           f"on this kernel? (see {base})")
            self._checked = True

    def prepare(self, scope) -> None:
        self._check_tracepoints()

    def streams(self):
        c = self.config
        if c.count_only:
            return []
        return [StreamSpec("sys_events", self.event_layout.dtype, c.ring_pages, wakeup="batch",
                           c_type="struct sys_event", kernel_batch=c.kernel_batch)]

    def bpf_text(self) -> str:
        c = self.config
        head = (f"#define SYS_NARGS {c.nargs}\n#define SYS_MULTI {int(len(c.names) > 1)}\n"
                f"#define SYS_COUNT_ONLY {int(c.count_only)}\n#define SYS_COUNT_KEYS 16384\n"
                + self.event_layout.c_decl() + SYS_KEY.c_decl())
        if c.count_only:
            head += "static __always_inline void sys_events_emit(void *c, void *d, u64 s) {}\n"
        # plain functions attached in setup(), not TRACEPOINT_PROBE: another probe of the session
        # (ExecSnoop on sys_enter_execve) may define a TRACEPOINT_PROBE on the same tracepoint
        avail = [syscall_arg_count(n) for n in c.names]
        probes = "".join(f"\nint sys_tp_{n}(void *ctx)\n{{\n    return sys_on_enter(ctx, {i}, {6 if a is None else a});\n}}\n"
                         for i, (n, a) in enumerate(zip(c.names, avail)))
        return head + source_beside(__file__, "syscalls.bpf.c") + probes

    def setup(self, program) -> None:
        for n in self.config.names:
            program.attach_tracepoint_fn(f"syscalls:sys_enter_{n}", f"sys_tp_{n}")

    def snapshot(self, program) -> dict[str, np.ndarray]:
        if not self.config.count_only:
            return {}
        rows = [(int(k["pid"]), int(k["nr"]), int(v.sum())) for k, v in program.map("sys_counts", SYS_KEY.dtype,
                                                                                     "u8").items()]
        return {"sys_counts": np.array(rows, dtype=[("pid", "u4"), ("nr", "u4"), ("count", "u8")])}

    def lost_counters(self) -> list[str]:
        return ["sys_counts_lost"] if self.config.count_only else []

    def make_tables(self, records, clock: MonotonicClock):
        names = pd.Categorical.from_codes
        c = self.config
        cats = list(c.names)
        if c.count_only:
            r = records.get("sys_counts", np.empty(0, [("pid", "u4"), ("nr", "u4"), ("count", "u8")]))
            df = pd.DataFrame({"pid": r["pid"].astype(np.int64), "syscall": names(r["nr"].astype(np.int64), cats),
                               "count": r["count"].astype(np.int64)})
            return {"syscall_counts": df.sort_values(["pid", "syscall"], kind="stable").reset_index(drop=True)}
        r = records["sys_events"]
        if len(r) > 1 and (np.diff(r["ts"].astype(np.int64)) < 0).any():
            r = r[np.argsort(r["ts"], kind="stable")]
        df = pd.DataFrame({"ts": clock.to_wall(r["ts"]), "pid": r["pid"].astype(np.int64),
                           "tid": r["tid"].astype(np.int64)})
        df["syscall"] = names(r["nr"].astype(np.int64) if len(cats) > 1 else np.zeros(len(r), np.int64), cats)
        for i in range(c.nargs):
            df[f"arg{i}"] = r["args"].reshape(len(r), c.nargs)[:, i].view(np.int64)
        return {"syscalls": df}
