"""A recording as the views see it, built once: process lanes and names, spans, instants,
PMU counter rows and loss windows, all with integer ns timestamps.

The timeline, the HTML report and the Chrome trace consume a :class:`TraceModel`
instead of each re-deriving process lifetimes, names and events from the tables.
Every span and instant keeps ``row``, its row in the source table (``kind`` says which
table: ``process`` -> processes, ``exec`` -> exec, ``call`` -> gpu, ``syscall`` -> syscalls).
A GPU row with a ``label`` (a marker) is named by it; an ``ebpftoolkit.frame`` block is one span,
from its begin marker (its row) to its end marker.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analysis.gpu import FRAME_BEGIN, FRAME_END
from ..analysis.proctree import process_tree

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["TraceModel", "to_ns", "NAT", "TREE_MAX", "span_ns"]

NAT = np.iinfo(np.int64).min
TREE_MAX = 20_000   # processes above which lanes are in start order rather than process-tree order
_TS_COLS = {"exec": ("ts", "end_ts"), "processes": ("start_ts", "fork_ts", "exit_ts"), "gpu": ("ts",),
            "pmu": ("ts",), "syscalls": ("ts",), "pmu_samples": ("ts",)}
_SPAN_COLS = ["pid", "tid", "start_ns", "end_ns", "name", "cat", "kind", "row"]
_INSTANT_COLS = ["pid", "tid", "ts_ns", "name", "cat", "kind", "row"]


def to_ns(s) -> np.ndarray:
    """Datetime-like values -> int64 ns since the epoch (NaT -> NAT)."""
    return pd.to_datetime(pd.Series(s)).to_numpy("datetime64[ns]").view("int64")


def span_ns(rec: "Recording") -> tuple[int, int]:
    """(first, last) timestamp of anything recorded, in ns since the epoch (the metadata's start and
    end when nothing has a timestamp)."""
    vals = []
    for name, cols in _TS_COLS.items():
        df = rec.tables.get(name)
        for c in cols if df is not None else ():
            if c in df and len(df):
                v = to_ns(df[c])
                vals.append(v[v != NAT])
    lw = rec.loss_windows
    if lw is not None and len(lw):
        vals += [to_ns(lw["start"]), to_ns(lw["end"])]
    vals = [v for v in vals if len(v)]
    if vals:
        return int(min(v.min() for v in vals)), int(max(v.max() for v in vals))
    m = rec.metadata
    t = [x.value for x in (m.start, m.end) if x is not None]
    return (t[0], t[-1]) if t else (0, 1)


def _text(s) -> np.ndarray:
    """A column as an object array of str (missing values as "")."""
    return np.array(["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in s], dtype=object)


def _frame(cols, **data) -> pd.DataFrame:
    """A DataFrame whose text columns stay object dtype (pandas' string dtype rejects the surrogates
    that keep non-UTF-8 bytes)."""
    def col(v):
        return pd.Series(v, dtype=object) if isinstance(v, np.ndarray) and v.dtype == object else v
    return pd.DataFrame({c: col(data[c]) for c in cols})


@dataclass
class TraceModel:
    t0_ns: int
    end_ns: int
    lanes: pd.DataFrame            # pid, comm, start_ns, end_ns (NAT: unknown), events, first_ns: lane order
    spans: pd.DataFrame            # _SPAN_COLS, sorted by start
    instants: pd.DataFrame         # _INSTANT_COLS, sorted by time
    counters: pd.DataFrame         # ts_ns, pid, event, value: PMU rows
    loss: pd.DataFrame             # start_ns, end_ns, probe, stream, lost
    process_names: dict[int, str] = field(default_factory=dict)
    thread_names: dict[tuple[int, int], str] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    pmu_interval_ns: int = 10_000_000

    @classmethod
    def from_recording(cls, rec: "Recording") -> "TraceModel":
        t0, end = span_ns(rec)
        t = rec.tables
        spans, instants = [], []
        procs, ex, gpu, sc = t.get("processes"), t.get("exec"), t.get("gpu"), t.get("syscalls")
        if procs is not None and len(procs):
            start = procs["start_ts"].fillna(procs["fork_ts"]) if "fork_ts" in procs else procs["start_ts"]
            pid = procs["pid"].to_numpy(np.int64)
            spans.append(_frame(_SPAN_COLS, pid=pid, tid=pid, start_ns=to_ns(start), end_ns=to_ns(procs["exit_ts"]),
                                name="process " + _text(procs["comm"]),
                                cat="process", kind="process", row=np.arange(len(procs))))
        if ex is not None and len(ex):
            ok = (ex["retval"] == 0).to_numpy()
            # a PATH search's failed tries are folded into the exec that found the program: not drawn as failures
            shown = ~ex["path_search"].to_numpy(bool) if "path_search" in ex else np.ones(len(ex), bool)
            name = np.where(ok, "exec " + _text(ex["comm"]), "exec failed: " + _text(ex["error"]))
            instants.append(_frame(_INSTANT_COLS, pid=ex["pid"].to_numpy(np.int64)[shown],
                                   tid=ex["tid"].to_numpy(np.int64)[shown], ts_ns=to_ns(ex["ts"])[shown],
                                   name=name[shown], cat="exec", kind="exec", row=np.flatnonzero(shown)))
            run = ex[ok]
            base = [str(f).rsplit("/", 1)[-1] or str(c) for f, c in zip(run["filename"], run["comm"])]
            spans.append(_frame(_SPAN_COLS, pid=run["pid"].to_numpy(np.int64), tid=run["pid"].to_numpy(np.int64),
                                start_ns=to_ns(run["ts"]), end_ns=to_ns(run["end_ts"]), name=np.array(base, object),
                                cat="exec", kind="exec", row=np.flatnonzero(ok)))
        if gpu is not None and len(gpu):
            dur = gpu["duration_ns"].astype("Float64").to_numpy(float, na_value=np.nan)
            has = ~np.isnan(dur)
            ts = to_ns(gpu["ts"])
            pid, tid = gpu["pid"].to_numpy(np.int64), gpu["tid"].to_numpy(np.int64)
            call, cat = _text(gpu["call"]), _text(gpu["category"])
            rows = np.arange(len(gpu))
            name = call.copy()
            if "label" in gpu:                          # markers: named by what the program called them
                label = _text(gpu["label"])
                name[label != ""] = label[label != ""]
            blocks = _blocks(call, ts, tid)
            paired = np.zeros(len(gpu), bool)
            paired[blocks.ravel()] = True                # a block's markers are its span
            sp, b = has & ~paired, blocks[:, 0]
            spans.append(_frame(_SPAN_COLS, pid=np.r_[pid[sp], pid[b]], tid=np.r_[tid[sp], tid[b]],
                                start_ns=np.r_[ts[sp], ts[b]],
                                end_ns=np.r_[ts[sp] + dur[sp].astype(np.int64), ts[blocks[:, 1]]],
                                name=np.r_[name[sp], name[b]], cat=np.r_[cat[sp], cat[b]], kind="call",
                                row=np.r_[rows[sp], b]))
            it = ~has & ~paired
            instants.append(_frame(_INSTANT_COLS, pid=pid[it], tid=tid[it], ts_ns=ts[it], name=name[it],
                                   cat=cat[it], kind="call", row=rows[it]))
        if sc is not None and len(sc):
            instants.append(_frame(_INSTANT_COLS, pid=sc["pid"].to_numpy(np.int64), tid=sc["tid"].to_numpy(np.int64),
                                   ts_ns=to_ns(sc["ts"]), name=_text(sc["syscall"]),
                                   cat="syscall", kind="syscall", row=np.arange(len(sc))))
        spans_df = (pd.concat(spans, ignore_index=True) if spans else _frame(_SPAN_COLS, **{c: [] for c in _SPAN_COLS}))
        inst_df = (pd.concat(instants, ignore_index=True) if instants else
                   _frame(_INSTANT_COLS, **{c: [] for c in _INSTANT_COLS}))
        spans_df = spans_df.sort_values("start_ns", kind="stable").reset_index(drop=True)
        inst_df = inst_df.sort_values("ts_ns", kind="stable").reset_index(drop=True)
        pmu = t.get("pmu")
        counters = (pd.DataFrame({"ts_ns": to_ns(pmu["ts"]), "pid": pmu["pid"].to_numpy(np.int64),
                                  "event": _text(pmu["event"]),
                                  "value": pmu["value"].to_numpy(np.int64)})
                    if pmu is not None and len(pmu) else pd.DataFrame(columns=["ts_ns", "pid", "event", "value"]))
        lw = rec.loss_windows
        loss = pd.DataFrame({"start_ns": to_ns(lw["start"]), "end_ns": to_ns(lw["end"]),
                             "probe": _text(lw["probe"]), "stream": _text(lw["stream"]),
                             "lost": lw["lost"].to_numpy(np.int64)}) if len(lw) else \
            pd.DataFrame(columns=["start_ns", "end_ns", "probe", "stream", "lost"])
        cfg = rec.metadata.config("pmu")
        interval = getattr(cfg, "interval_ns", None) or 10_000_000
        pnames, tnames = _names(t, rec.metadata.process_names)
        lanes = _lanes(t, pnames, end)
        return cls(t0, end, lanes, spans_df, inst_df, counters, loss, pnames, tnames,
                   {k: int(v) for k, v in rec.lost.items()}, int(interval))


def _blocks(call: np.ndarray, ts: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """``ebpftoolkit.frame`` blocks: (begin row, end row) pairs, matched per thread in time order (nested
    blocks too).  A begin or end without its other half stays an instant."""
    sel = np.flatnonzero((call == FRAME_BEGIN) | (call == FRAME_END))
    open_: dict[int, list[int]] = {}
    pairs = []
    for i in sel[np.argsort(ts[sel], kind="stable")]:
        if call[i] == FRAME_BEGIN:
            open_.setdefault(int(tid[i]), []).append(int(i))
        elif open_.get(int(tid[i])):
            pairs.append((open_[int(tid[i])].pop(), int(i)))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _names(tables, main_threads=None) -> tuple[dict, dict]:
    """Process names from their main thread (tid == pid, or its name read at stop: ``main_threads``),
    then from exec and the processes table; thread names from each thread's last comm."""
    proc, thread = {int(p): str(c) for p, c in (main_threads or {}).items()}, {}
    for name in ("pmu", "syscalls", "gpu", "pmu_samples"):
        df = tables.get(name)
        if df is None or df.empty or "comm" not in df or "tid" not in df:
            continue
        last = df.groupby(["pid", "tid"], sort=False)["comm"].last()
        for (p, t), c in last.items():
            if isinstance(c, str):
                thread[(int(p), int(t))] = c
                if p == t:
                    proc[int(p)] = c
        for p, c in df.groupby("pid", sort=False)["comm"].last().items():
            proc.setdefault(int(p), c if isinstance(c, str) else str(p))
    ex = tables.get("exec")
    if ex is not None and len(ex):
        ok = ex[ex["retval"] == 0]
        proc.update({int(p): c for p, c in ok.groupby("pid", sort=False)["comm"].last().items() if isinstance(c, str)})
        for (p, t), c in ok.groupby(["pid", "tid"], sort=False)["comm"].last().items():
            thread[(int(p), int(t))] = c
    procs = tables.get("processes")
    if procs is not None and len(procs):
        proc.update({int(p): c for p, c in zip(procs["pid"], procs["comm"]) if isinstance(c, str)})
    return proc, thread


def _lanes(tables, names: dict, end_ns: int) -> pd.DataFrame:
    """One lane per process: tree order first (exec), then by first appearance."""
    info: dict[int, dict] = {}
    procs, ex = tables.get("processes"), tables.get("exec")
    if procs is not None and len(procs):
        start = procs["start_ts"].fillna(procs["fork_ts"]) if "fork_ts" in procs else procs["start_ts"]
        for pid, s, e in zip(procs["pid"], to_ns(start), to_ns(procs["exit_ts"])):
            info[int(pid)] = dict(start=s, end=end_ns if e == NAT else e, n=1, first=s)
    if ex is not None and len(ex):
        for pid, s, e, ok in zip(ex["pid"], to_ns(ex["ts"]), to_ns(ex["end_ts"]), ex["retval"] == 0):
            d = info.setdefault(int(pid), dict(start=NAT, end=NAT, n=1, first=s))
            if ok:
                d["start"] = s if d["start"] == NAT else min(d["start"], s)
                d["end"] = max(d["end"], end_ns if e == NAT else e)
    for name in ("gpu", "pmu", "syscalls"):
        df = tables.get(name)
        if df is not None and len(df):
            g = df.groupby("pid", sort=False)
            for (pid, n), f in zip(g.size().items(), to_ns(g["ts"].min())):
                d = info.setdefault(int(pid), dict(start=NAT, end=NAT, n=0, first=f))
                d["n"] += int(n)
    order = []
    if ex is not None and 0 < ex.loc[ex["retval"] == 0, "pid"].nunique() <= TREE_MAX:
        order = [int(p) for p in process_tree(ex, procs)["pid"] if int(p) in info]
    rest = sorted(set(info) - set(order), key=lambda p: info[p]["first"] if info[p]["first"] != NAT else np.inf)
    pids = order + rest
    return pd.DataFrame({"pid": np.array(pids, np.int64), "comm": pd.Series([names.get(p, "") for p in pids], dtype=object),
                         "start_ns": np.array([info[p]["start"] for p in pids], np.int64),
                         "end_ns": np.array([info[p]["end"] for p in pids], np.int64),
                         "events": np.array([info[p]["n"] for p in pids], np.int64),
                         "first_ns": np.array([info[p]["first"] for p in pids], np.int64)})
