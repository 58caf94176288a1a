"""ExecSnoop: every process started, with argv, return code, exit code and lifetime.

Tracepoints only (syscalls execve/execveat enter and exit, sched_process_exec,
and raw sched_process_fork / sched_process_exit): it works where kprobes do not
exist, unlike bcc's execsnoop.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ...runtime.clock import MonotonicClock
from ...runtime.kernel import kernel_at_least
from ...runtime.layout import Layout, c_defines
from ...runtime.program import RawTracepoint
from ...runtime.sources import source_beside
from ...runtime.streams import StreamSpec
from ..standalone import StandaloneProbe
from .config import ExecConfig
from .tables import EXEC_COLUMNS, FLAGS, TASK_EVENTS, exec_table, fold_path_search, join_exits, process_table

__all__ = ["ExecSnoop", "EXEC_COLUMNS", "exec_layout", "TASK_EVENT"]

TASK_EVENT = Layout("task_event", [
    ("ts", "u64"), ("start_ns", "u64"),      # start_ns: process start (task->start_time, monotonic)
    ("type", "u32"), ("pid", "u32"), ("tid", "u32"), ("ppid", "u32"),
    ("exit_code", "s32"),                    # raw wait status: code << 8 | signal
    ("uid", "u32"), ("comm", "char", 16)])


def exec_layout(c: ExecConfig) -> Layout:
    """struct exec_event for this configuration (filename and argv sizes are part of it)."""
    return Layout("exec_event", [
        ("ts", "u64"), ("ts_done", "u64"),   # syscall entry; exec completed or failed
        ("pid", "u32"), ("tid", "u32"), ("ppid", "u32"), ("uid", "u32"), ("old_tid", "u32"), ("retval", "s32"),
        ("argc", "u32"), ("flags", "u32"), ("comm", "char", 16), ("filename", "char", c.filename_len),
        ("args", "char", (c.max_args, c.max_arg_len))])


class ExecSnoop(StandaloneProbe):
    """Trace every exec (and the fork/exit of the processes around it): table ``exec``, and
    ``processes`` (one row per process).  Options: see :class:`ExecConfig`."""

    name = "exec"
    table_names = ("exec", "processes")

    def __init__(self, *, uid: int | None = None, comm: str | None = None, failed_only: bool = False,
                 max_args: int = 20, max_arg_len: int = 128, filename_len: int = 256, ring_pages: int = 256):
        super().__init__(ExecConfig(uid, comm, failed_only, max_args, max_arg_len, filename_len, ring_pages))
        self.exec_layout = exec_layout(self.config)
        self._comm_re = re.compile(comm) if comm is not None else None

    def streams(self):
        record_pages = -(-self.exec_layout.dtype.itemsize * 64 // 4096)  # room for 64 execs at least
        pages = max(self.config.ring_pages, 1 << (record_pages - 1).bit_length())
        # forks and exits are as frequent as execs, or more: their ring follows ring_pages too
        return [StreamSpec("exec_events", self.exec_layout.dtype, pages, c_type="struct exec_event"),
                StreamSpec("exec_tasks", TASK_EVENT.dtype, max(64, self.config.ring_pages), c_type="struct task_event")]

    def raw_tracepoints(self):
        return [RawTracepoint("sched_process_fork", "exec_on_fork"),
                RawTracepoint("sched_process_exit", "exec_on_exit")]

    def btf_members(self):
        return {"TASK_TGID": ("task_struct", "tgid"), "TASK_REAL_PARENT": ("task_struct", "real_parent"),
                "TASK_EXIT_CODE": ("task_struct", "exit_code"), "TASK_START_TIME": ("task_struct", "start_time"),
                "TASK_GROUP_LEADER": ("task_struct", "group_leader")}

    def bpf_text(self) -> str:
        c = self.config
        defines = {"EXEC_MAX_ARGS": c.max_args, "EXEC_ARG_LEN": c.max_arg_len, "EXEC_FNAME_LEN": c.filename_len,
                   "EXEC_UNROLL": int(not kernel_at_least(5, 3)),      # bounded loops need 5.3
                   "EXEC_FAILED_ONLY": int(c.failed_only), "EXEC_UID": -1 if c.uid is None else c.uid}
        return (c_defines(defines) + c_defines(FLAGS, "EXEC_F_") + c_defines(TASK_EVENTS, "TASK_EV_")
                + self.exec_layout.c_decl() + TASK_EVENT.c_decl() + source_beside(__file__, "execsnoop.bpf.c"))

    # -- decoding -------------------------------------------------------
    def make_tables(self, records, clock: MonotonicClock):
        procs = process_table(records["exec_tasks"], clock)
        execs = join_exits(exec_table(records["exec_events"], clock), procs)
        if self._comm_re is not None:
            execs = execs[execs["comm"].map(lambda c: bool(self._comm_re.search(c)))].reset_index(drop=True)
        return {"exec": fold_path_search(execs[EXEC_COLUMNS]), "processes": procs.drop(columns=["_exit_ns", "_start_ns"])}

    def decode(self, stream, records, clock):
        if stream != "exec_events":
            return pd.DataFrame(columns=EXEC_COLUMNS)
        return self.make_tables({"exec_events": records, "exec_tasks": np.empty(0, TASK_EVENT.dtype)}, clock)["exec"]
