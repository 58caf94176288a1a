"""SyscallTrace: entries of chosen system calls, as events or in-kernel counts.

Built for high rates: records are 24-40 bytes, the ring buffer wakes the
collector only every few thousand records, and with ``count_only=True`` the
kernel keeps counts per (pid, syscall) and no event leaves it at all.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import ProbeConfigError
from ..runtime.clock import MonotonicClock
from ..runtime.streams import StreamSpec
from ..runtime.records import c_struct_dtype
from ..runtime.sources import bpf_source
from .base import SELF, Probe

__all__ = ["SyscallTrace"]

_NAME = re.compile(r"^[a-z0-9_]+$")


def _syscall_events_dir():
    from ..doctor import ensure_tracefs
    return ensure_tracefs() / "events" / "syscalls"


class SyscallTrace(Probe):
    """Trace the entry of system calls ``names`` (e.g. ``["openat", "read"]``).

    ``nargs``: how many of each call's first arguments to keep (0-6), as
    ``arg0``... columns (raw 64-bit values).  ``count_only``: keep only
    counts per process and syscall, in the kernel (table ``syscall_counts``).
    ``ring_pages``: ring buffer size in pages (a power of two).  ``kernel_batch``: records
    gathered per CPU in the kernel and handed over together (0: one by one); a live
    view then advances in steps of that many records per CPU, and the rest arrives at stop.
    """

    name = "syscalls"

    def __init__(self, names, descendants_of=SELF, *, nargs: int = 1, count_only: bool = False,
                 ring_pages: int = 4096, kernel_batch: int = 64):
        if isinstance(names, str):
            names = [names]
        names = list(names)
        if not names or not all(isinstance(n, str) and _NAME.match(n) for n in names):
            raise ProbeConfigError("names must be syscall names such as ['openat', 'read']")
        if len(set(names)) != len(names):
            raise ProbeConfigError(f"each syscall once, got {names}")
        if isinstance(nargs, bool) or not isinstance(nargs, int) or not 0 <= nargs <= 6:
            raise ProbeConfigError("nargs must be an integer from 0 to 6")
        if not isinstance(ring_pages, int) or ring_pages < 1 or ring_pages & (ring_pages - 1):
            raise ProbeConfigError("ring_pages must be a power of two")
        super().__init__(descendants_of)
        if isinstance(kernel_batch, bool) or not isinstance(kernel_batch, int) or not 0 <= kernel_batch <= 256:
            raise ProbeConfigError("kernel_batch must be an integer from 0 (off) to 256")
        self.names, self.nargs, self.count_only, self.ring_pages = names, nargs, bool(count_only), ring_pages
        self.kernel_batch = kernel_batch
        self._nr: dict[str, int] | None = None
        fields = [("ts", "u8"), ("pid", "u4"), ("tid", "u4")]
        if len(names) > 1:
            fields += [("nr", "u4"), ("_pad", "u4")]
        fields += [(f"arg{i}", "u8") for i in range(nargs)]
        self.event_dtype = c_struct_dtype(fields)

    def _indices(self) -> dict[str, int]:
        """Syscall name -> index in ``names`` (what the records carry), after checking each tracepoint exists."""
        if self._nr is None:
            base = _syscall_events_dir()
            for n in self.names:
                if not (base / f"sys_enter_{n}" / "format").is_file():
                    raise ProbeConfigError(f"no tracepoint syscalls:sys_enter_{n}: is '{n}' a system call "
                                           f"on this kernel? (see {base})")
            self._nr = {n: i for i, n in enumerate(self.names)}
        return self._nr

    def config(self):
        return {"names": self.names, "nargs": self.nargs, "count_only": self.count_only,
                "ring_pages": self.ring_pages}

    def streams(self):
        if self.count_only:
            return []
        return [StreamSpec("sys_events", self.event_dtype, self.ring_pages, wakeup="batch", c_type="struct sys_event",
                           kernel_batch=self.kernel_batch)]

    def bpf_text(self) -> str:
        nrs = self._indices()
        head = (f"#define SYS_NARGS {self.nargs}\n#define SYS_MULTI {int(len(self.names) > 1)}\n"
                f"#define SYS_COUNT_ONLY {int(self.count_only)}\n#define SYS_COUNT_KEYS 16384\n")
        if self.count_only:
            head += "static __always_inline void sys_events_emit(void *c, void *d, u64 s) {}\n"
        # plain functions attached in setup(), not TRACEPOINT_PROBE: another probe of the session
        # (ExecSnoop on sys_enter_execve) may define a TRACEPOINT_PROBE on the same tracepoint
        probes = "".join(f"\nint sys_tp_{n}(void *ctx)\n{{\n    return sys_on_enter(ctx, {i});\n}}\n"
                         for n, i in nrs.items())
        return head + bpf_source("syscalls.c") + probes

    def setup(self, program) -> None:
        for n in self._indices():
            program.attach_tracepoint_fn(f"syscalls:sys_enter_{n}", f"sys_tp_{n}")

    def table_names(self):
        return ["syscall_counts"] if self.count_only else ["syscalls"]

    def snapshot(self, program) -> dict[str, np.ndarray]:
        if not self.count_only:
            return {}
        table = program.table("sys_counts")
        rows = [(k.pid, k.nr, sum(int(v) for v in vals)) for k, vals in table.items()]
        return {"sys_counts": np.array(rows, dtype=[("pid", "u4"), ("nr", "u4"), ("count", "u8")])}

    def lost_counters(self) -> list[str]:
        return ["sys_counts_lost"] if self.count_only else []

    def make_tables(self, records, clock: MonotonicClock):
        names = pd.Categorical.from_codes
        cats = self.names
        if self.count_only:
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
        for i in range(self.nargs):
            df[f"arg{i}"] = r[f"arg{i}"].view(np.int64)
        return {"syscalls": df}
