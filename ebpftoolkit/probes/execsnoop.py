"""ExecSnoop: every process started, with argv, return code, exit code and lifetime.

Tracepoints only (syscalls execve/execveat enter and exit, sched_process_exec,
and raw sched_process_fork / sched_process_exit): it works where kprobes do not
exist, unlike bcc's execsnoop.
"""
from __future__ import annotations

import errno
import re

import numpy as np
import pandas as pd

from ..errors import ProbeConfigError
from ..runtime.clock import MonotonicClock
from ..runtime.kernel import kernel_at_least
from ..runtime.program import RawTracepoint
from ..runtime.streams import StreamSpec
from ..runtime.records import c_struct_dtype, decode_str, decode_str_array
from ..runtime.sources import bpf_source
from .base import SELF, Probe

__all__ = ["ExecSnoop", "EXEC_COLUMNS"]

F_ARGV_TRUNC, F_ARG_TRUNC, F_FNAME_TRUNC, F_NO_ENTRY, F_READ_ERROR = 1, 2, 4, 8, 16
TASK_FORK, TASK_EXIT = 1, 2

EXEC_COLUMNS = ["ts", "pid", "tid", "ppid", "uid", "comm", "filename", "argv", "argc", "argv_truncated",
                "retval", "error", "exit_code", "exit_signal", "core_dumped", "duration", "lifetime",
                "end_ts", "ended_by", "exec_latency", "flags"]


def _int_opt(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ProbeConfigError(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProbeConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


class ExecSnoop(Probe):
    """Trace every exec (and the fork/exit of the processes around it).

    Parameters
    ----------
    descendants_of:
        ``"self"`` (default): this process and everything it starts;
        an ``int`` pid: that process's tree; ``None``: the whole machine.
    uid:
        only processes of this user id.
    comm:
        only execs whose new command name matches this regular expression.
    failed_only:
        only execs that failed (retval < 0).
    max_args, max_arg_len:
        how many arguments and how many bytes of each are captured (bcc's
        defaults: 20 and 128).  Anything longer is flagged ``argv_truncated``.
    """

    name = "exec"

    def __init__(self, descendants_of: int | str | None = SELF, *, uid: int | None = None,
                 comm: str | None = None, failed_only: bool = False, max_args: int = 20,
                 max_arg_len: int = 128, filename_len: int = 256, ring_pages: int = 256):
        if descendants_of is not None and descendants_of != SELF:
            _int_opt("descendants_of", descendants_of, 1, 2**22)
        super().__init__(descendants_of)
        self.uid = None if uid is None else _int_opt("uid", uid, 0, 2**32 - 2)
        if comm is not None and not isinstance(comm, str):
            raise ProbeConfigError("comm must be a regular expression string")
        try:
            self._comm_re = re.compile(comm) if comm is not None else None
        except re.error as exc:
            raise ProbeConfigError(f"comm is not a valid regular expression: {exc}") from None
        self.comm = comm
        if not isinstance(failed_only, bool):
            raise ProbeConfigError("failed_only must be True or False")
        self.failed_only = failed_only
        self.max_args = _int_opt("max_args", max_args, 1, 128)
        self.max_arg_len = _int_opt("max_arg_len", max_arg_len, 8, 4096)
        self.filename_len = _int_opt("filename_len", filename_len, 16, 4096)
        self.ring_pages = _int_opt("ring_pages", ring_pages, 1, 65536)
        if self.ring_pages & (self.ring_pages - 1):
            raise ProbeConfigError("ring_pages must be a power of two")
        self.exec_dtype = c_struct_dtype([
            ("ts", "u8"), ("ts_done", "u8"), ("pid", "u4"), ("tid", "u4"), ("ppid", "u4"), ("uid", "u4"),
            ("old_tid", "u4"), ("retval", "i4"), ("argc", "u4"), ("flags", "u4"), ("comm", "S16"),
            ("filename", f"S{self.filename_len}"), ("args", (f"S{self.max_arg_len}", (self.max_args,))),
        ])
        self.task_dtype = c_struct_dtype([
            ("ts", "u8"), ("start_ns", "u8"), ("type", "u4"), ("pid", "u4"), ("tid", "u4"), ("ppid", "u4"),
            ("exit_code", "i4"), ("uid", "u4"), ("comm", "S16"),
        ])

    def config(self) -> dict:
        return {"descendants_of": self.descendants_of, "uid": self.uid, "comm": self.comm,
                "failed_only": self.failed_only, "max_args": self.max_args, "max_arg_len": self.max_arg_len,
                "filename_len": self.filename_len}

    def streams(self):
        record_pages = -(-self.exec_dtype.itemsize * 64 // 4096)  # room for 64 execs at least
        pages = max(self.ring_pages, 1 << (record_pages - 1).bit_length())
        return [StreamSpec("exec_events", self.exec_dtype, pages),
                StreamSpec("exec_tasks", self.task_dtype, 64)]

    def raw_tracepoints(self):
        return [RawTracepoint("sched_process_fork", "exec_on_fork"),
                RawTracepoint("sched_process_exit", "exec_on_exit")]

    def btf_members(self):
        return {"TASK_TGID": ("task_struct", "tgid"), "TASK_REAL_PARENT": ("task_struct", "real_parent"),
                "TASK_EXIT_CODE": ("task_struct", "exit_code"), "TASK_START_TIME": ("task_struct", "start_time"),
                "TASK_GROUP_LEADER": ("task_struct", "group_leader")}

    def bpf_text(self) -> str:
        defines = {
            "EXEC_MAX_ARGS": self.max_args, "EXEC_ARG_LEN": self.max_arg_len, "EXEC_FNAME_LEN": self.filename_len,
            "EXEC_UNROLL": int(not kernel_at_least(5, 3)),      # bounded loops need 5.3
            "EXEC_FAILED_ONLY": int(self.failed_only), "EXEC_UID": -1 if self.uid is None else self.uid,
            "EXEC_RING_PAGES": self.streams()[0].pages, "EXEC_TASK_RING_PAGES": self.streams()[1].pages,
        }
        head = "".join(f"#define {k} {v}\n" for k, v in defines.items())
        return head + bpf_source("execsnoop.c")

    def table_names(self):
        return ["exec", "processes"]

    # -- decoding -------------------------------------------------------
    def make_tables(self, records, clock: MonotonicClock):
        procs = self._processes(records["exec_tasks"], clock)
        execs = self._execs(records["exec_events"], clock)
        execs = _join_exits(execs, procs)
        if self._comm_re is not None:
            execs = execs[execs["comm"].map(lambda c: bool(self._comm_re.search(c)))].reset_index(drop=True)
        return {"exec": execs[EXEC_COLUMNS], "processes": procs.drop(columns=["_exit_ns", "_start_ns"])}

    def _execs(self, r: np.ndarray, clock) -> pd.DataFrame:
        r = np.sort(r, order="ts", kind="stable")
        flags = r["flags"].astype(np.int64)
        argc = r["argc"].astype(np.int64)
        args = r["args"]
        argv = [[decode_str(a) for a in row[:n]] for row, n in zip(args, argc)]
        retval = r["retval"].astype(np.int64)
        df = pd.DataFrame({
            "ts": clock.to_wall(r["ts"]),
            "pid": r["pid"].astype(np.int64), "tid": r["tid"].astype(np.int64),
            "ppid": r["ppid"].astype(np.int64), "uid": r["uid"].astype(np.int64),
            "comm": decode_str_array(r["comm"]), "filename": decode_str_array(r["filename"]),
            "argv": pd.Series(argv, dtype=object), "argc": argc,
            "argv_truncated": (flags & (F_ARGV_TRUNC | F_ARG_TRUNC)) != 0,
            "retval": retval,
            "error": pd.Series([errno.errorcode.get(-v, f"E{-v}") if v < 0 else None for v in retval], dtype=object),
            "flags": flags,
        })
        done = r["ts_done"].astype(np.int64)
        df["exec_latency"] = pd.to_timedelta(np.where(done > 0, done - r["ts"].astype(np.int64), np.nan))
        df["_done_ns"] = done
        return df

    def _processes(self, r: np.ndarray, clock) -> pd.DataFrame:
        r = np.sort(r, order="ts", kind="stable")
        forks, exits = r[r["type"] == TASK_FORK], r[r["type"] == TASK_EXIT]
        f = pd.DataFrame({"pid": forks["pid"].astype(np.int64), "ppid": forks["ppid"].astype(np.int64),
                          "fork_ts": clock.to_wall(forks["ts"]), "parent_comm": decode_str_array(forks["comm"]),
                          "_start_ns": forks["start_ns"].astype(np.int64)})
        status = exits["exit_code"].astype(np.int64)
        sig = status & 0x7F
        e = pd.DataFrame({
            "pid": exits["pid"].astype(np.int64), "exit_ppid": exits["ppid"].astype(np.int64),
            "comm": decode_str_array(exits["comm"]), "uid": exits["uid"].astype(np.int64),
            "exit_ts": clock.to_wall(exits["ts"]),
            "exit_code": pd.array(np.where(sig == 0, (status >> 8) & 0xFF, 0), dtype="Int64"),
            "exit_signal": pd.array(sig, dtype="Int64"),
            "core_dumped": (status & 0x80) != 0,
            "_exit_ns": exits["ts"].astype(np.int64), "_estart_ns": exits["start_ns"].astype(np.int64),
        })
        e.loc[sig != 0, "exit_code"] = pd.NA
        e.loc[sig == 0, "exit_signal"] = pd.NA
        # One row per process: a fork and/or an exit (pids can be reused: match in time order).
        f["_n"] = f.groupby("pid").cumcount()
        e["_n"] = e.groupby("pid").cumcount()
        p = f.merge(e, on=["pid", "_n"], how="outer", sort=False)
        start = p["_start_ns"].fillna(p["_estart_ns"]).astype("Int64")
        p["start_ts"] = clock.to_wall(start.fillna(0).to_numpy(np.int64))
        p["ppid"] = p["ppid"].fillna(p["exit_ppid"]).astype("Int64")
        life = p["_exit_ns"] - start
        p["lifetime"] = pd.to_timedelta(life.astype("float64"))
        p["core_dumped"] = p["core_dumped"].astype("boolean")
        p["uid"] = p["uid"].astype("Int64")
        p = p.sort_values("start_ts", kind="stable").reset_index(drop=True)
        p["_exit_ns"] = p["_exit_ns"].astype("Int64")
        p["_start_ns"] = start
        cols = ["pid", "ppid", "comm", "parent_comm", "uid", "start_ts", "fork_ts", "exit_ts", "lifetime",
                "exit_code", "exit_signal", "core_dumped"]
        out = p[cols + ["_exit_ns", "_start_ns"]].copy()
        for c in ("comm", "parent_comm"):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
        return out

    def decode(self, stream, records, clock):
        if stream != "exec_events":
            return pd.DataFrame(columns=EXEC_COLUMNS)
        return self.make_tables({"exec_events": records, "exec_tasks": np.empty(0, self.task_dtype)}, clock)["exec"]


def _join_exits(execs: pd.DataFrame, procs: pd.DataFrame) -> pd.DataFrame:
    """Give each successful exec its end: the next exec of the same pid, or the process's exit."""
    out = execs.copy()
    n = len(out)
    out["exit_code"] = pd.array([pd.NA] * n, dtype="Int64")
    out["exit_signal"] = pd.array([pd.NA] * n, dtype="Int64")
    out["core_dumped"] = pd.array([pd.NA] * n, dtype="boolean")
    out["duration"] = pd.to_timedelta(pd.Series([np.nan] * n))
    out["lifetime"] = pd.to_timedelta(pd.Series([np.nan] * n))
    out["end_ts"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
    out["ended_by"] = pd.Series([None] * n, dtype=object)
    ok = out.index[out["retval"] == 0]
    out.loc[ok, "ended_by"] = "running"
    if len(ok):
        good = out.loc[ok, ["pid", "_done_ns"]].reset_index().sort_values(["pid", "_done_ns"])
        good["next_exec"] = good.groupby("pid")["_done_ns"].shift(-1)
        exits = procs.dropna(subset=["_exit_ns"])[["pid", "_exit_ns", "_start_ns", "exit_code", "exit_signal",
                                                   "core_dumped", "exit_ts"]]
        exits = exits.astype({"_exit_ns": "int64"}).sort_values("_exit_ns")
        m = pd.merge_asof(good.sort_values("_done_ns"), exits, left_on="_done_ns", right_on="_exit_ns",
                          by="pid", direction="forward")
        m = m.set_index("index")
        by_exec = m["next_exec"].notna() & (m["_exit_ns"].isna() | (m["next_exec"] < m["_exit_ns"]))
        by_exit = ~by_exec & m["_exit_ns"].notna()
        ix_exec, ix_exit = m.index[by_exec], m.index[by_exit]
        out.loc[ix_exec, "ended_by"] = "exec"
        out.loc[ix_exec, "duration"] = pd.to_timedelta(m.loc[ix_exec, "next_exec"] - m.loc[ix_exec, "_done_ns"])
        out.loc[ix_exit, "ended_by"] = "exit"
        out.loc[ix_exit, "end_ts"] = m.loc[ix_exit, "exit_ts"]
        out.loc[ix_exit, "duration"] = pd.to_timedelta(m.loc[ix_exit, "_exit_ns"] - m.loc[ix_exit, "_done_ns"])
        life = m.loc[ix_exit, "_exit_ns"] - m.loc[ix_exit, "_start_ns"].astype("float64")
        out.loc[ix_exit, "lifetime"] = pd.to_timedelta(life)
        for c in ("exit_code", "exit_signal", "core_dumped"):
            out.loc[ix_exit, c] = m.loc[ix_exit, c]
        if len(ix_exec):
            out.loc[ix_exec, "end_ts"] = out.loc[ix_exec, "ts"] + out.loc[ix_exec, "exec_latency"] + out.loc[ix_exec, "duration"]
    return out.drop(columns=["_done_ns"])
