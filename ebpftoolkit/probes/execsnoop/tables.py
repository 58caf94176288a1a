"""ExecSnoop's records -> the ``exec`` and ``processes`` tables (pure functions)."""
from __future__ import annotations

import errno

import numpy as np
import pandas as pd

from ...runtime.records import decode_str, decode_str_array, text_column

__all__ = ["exec_table", "process_table", "join_exits", "fold_path_search", "EXEC_COLUMNS", "FLAGS", "TASK_EVENTS"]

EXEC_COLUMNS = ["ts", "pid", "tid", "ppid", "uid", "comm", "filename", "argv", "argc", "argv_truncated",
                "retval", "error", "exit_code", "exit_signal", "core_dumped", "duration", "lifetime",
                "end_ts", "ended_by", "exec_latency", "flags"]
#: exec_event.flags bits (EXEC_F_* in the BPF C, generated from here)
FLAGS = {"ARGV_TRUNC": 1,     # more arguments than max_args
         "ARG_TRUNC": 2,      # an argument longer than max_arg_len - 1
         "FNAME_TRUNC": 4,
         "NO_ENTRY": 8,       # exec seen without its syscall (kernel-started)
         "READ_ERROR": 16}    # user memory could not be read
#: task_event.type values (TASK_EV_* in the BPF C)
TASK_EVENTS = {"FORK": 1, "EXIT": 2}


def exec_table(r: np.ndarray, clock) -> pd.DataFrame:
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
        "comm": text_column(decode_str_array(r["comm"])), "filename": text_column(decode_str_array(r["filename"])),
        "argv": pd.Series(argv, dtype=object), "argc": argc,
        "argv_truncated": (flags & (FLAGS['ARGV_TRUNC'] | FLAGS['ARG_TRUNC'])) != 0,
        "retval": retval,
        "error": pd.Series([errno.errorcode.get(-v, f"E{-v}") if v < 0 else None for v in retval], dtype=object),
        "flags": flags,
    })
    done = r["ts_done"].astype(np.int64)
    df["exec_latency"] = pd.to_timedelta(np.where(done > 0, done - r["ts"].astype(np.int64), np.nan))
    df["_done_ns"] = done
    return df


def process_table(r: np.ndarray, clock) -> pd.DataFrame:
    r = np.sort(r, order="ts", kind="stable")
    forks, exits = r[r["type"] == TASK_EVENTS['FORK']], r[r["type"] == TASK_EVENTS['EXIT']]
    f = pd.DataFrame({"pid": forks["pid"].astype(np.int64), "ppid": forks["ppid"].astype(np.int64),
                      "fork_ts": clock.to_wall(forks["ts"]), "parent_comm": text_column(decode_str_array(forks["comm"])),
                      "_start_ns": forks["start_ns"].astype(np.int64)})
    status = exits["exit_code"].astype(np.int64)
    sig = status & 0x7F
    e = pd.DataFrame({
        "pid": exits["pid"].astype(np.int64), "exit_ppid": exits["ppid"].astype(np.int64),
        "comm": text_column(decode_str_array(exits["comm"])), "uid": exits["uid"].astype(np.int64),
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


def join_exits(execs: pd.DataFrame, procs: pd.DataFrame) -> pd.DataFrame:
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


_SEARCH_ERRORS = {"ENOENT", "ENOTDIR", "EACCES"}


def fold_path_search(execs: pd.DataFrame) -> pd.DataFrame:
    """Mark a PATH search: the failed execs a thread makes of one program in the directories of PATH
    (execvp tries each: ENOENT, ENOTDIR, EACCES) right before the exec that succeeds, with the same
    argv and the same file name.  They get ``path_search`` True (still rows of the table, not failures
    of the program) and the successful exec ``attempts``: how many tries it took (1: found at once).
    A search that never succeeds is left as it is: those are real failures."""
    out = execs.copy()
    n = len(out)
    out["attempts"] = pd.array([1 if r == 0 else pd.NA for r in out["retval"].tolist()], dtype="Int64")
    out["path_search"] = np.zeros(n, bool)
    if not n:
        return out
    tid = out["tid"].to_numpy()
    order = np.lexsort((out["ts"].to_numpy(), tid))          # by thread, then time
    retval, error, filename = out["retval"].to_numpy(), out["error"].tolist(), out["filename"].tolist()
    argv = out["argv"].tolist()
    base = [str(f).rsplit("/", 1)[-1] for f in filename]
    attempts, searched = out["attempts"].to_numpy(dtype=object), np.zeros(n, bool)
    pending: list[int] = []                 # the failed tries just before, of the current thread
    for k, i in enumerate(order):
        if k and tid[i] != tid[order[k - 1]]:
            pending = []
        same = bool(pending) and list(argv[pending[0]]) == list(argv[i]) and base[pending[0]] == base[i]
        if retval[i] == 0:
            if same:
                searched[pending] = True
                attempts[i] = len(pending) + 1
            pending = []
        elif error[i] in _SEARCH_ERRORS and "/" in str(filename[i]):
            pending = pending + [i] if same or not pending else [i]
        else:
            pending = []
    out["attempts"] = pd.array(attempts, dtype="Int64")
    out["path_search"] = searched
    return out
