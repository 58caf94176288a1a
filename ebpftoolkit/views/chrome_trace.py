"""Export a session as Chrome Trace Event Format JSON (chrome://tracing, Perfetto UI).

- ``X`` complete events: process lifetimes, the run of each exec'd program, and
  GPU calls that have a duration (return probes), on the thread that made them;
- ``i`` instant events: exec calls (failed ones too) and GPU calls without a duration;
- ``C`` counters: PMU events and syscalls per process, summed per time bin;
- ``M`` metadata: process and thread names.

Timestamps are microseconds since the first recorded event (``otherData.start``
holds that instant).  Spans on one thread are made properly nested: a span that
would end after its enclosing span is cut at the enclosing span's end (its
``args.clipped`` says so), as clock jitter of a few ns can otherwise produce.
Lost-event windows are spans of their own process, "ebpftoolkit: lost events".
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .charts import session_span_ns, to_ns

__all__ = ["to_chrome_trace", "trace_events"]

_NAT = np.iinfo(np.int64).min


def _py(v):
    """A JSON-safe Python value (NA/NaN -> None)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_py(x) for x in v]
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (pd.Timedelta,)):
        return v.value / 1e3
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    return v if isinstance(v, (int, bool)) else str(v)


class _Clock:
    def __init__(self, t0_ns: int, end_ns: int):
        self.t0, self.end = t0_ns, end_ns

    def ns(self, s) -> np.ndarray:
        return to_ns(s)

    def us(self, ns) -> float:
        return round((int(ns) - self.t0) / 1e3, 3)


def _nest(spans: list[dict]) -> list[dict]:
    """Clip the spans of one thread so that they nest (sorted by start, longest first)."""
    spans.sort(key=lambda e: (e["_s"], -e["_e"]))
    stack: list[int] = []
    for e in spans:
        while stack and stack[-1] <= e["_s"]:
            stack.pop()
        if stack and e["_e"] > stack[-1]:
            e["_e"] = stack[-1]
            e["args"]["clipped"] = True
        stack.append(e["_e"])
    return spans


def _names(tables) -> tuple[dict, dict]:
    proc, thread = {}, {}
    for name in ("pmu", "syscalls", "gpu", "exec", "processes"):
        df = tables.get(name)
        if df is None or df.empty:
            continue
        if name == "exec":
            df = df[df["retval"] == 0]
        if "comm" in df:
            last = df.groupby("pid", sort=False)["comm"].last()
            proc.update({int(p): c for p, c in last.items() if isinstance(c, str)})
        if "tid" in df:
            for (p, t), c in df.groupby(["pid", "tid"], sort=False)[("comm" if "comm" in df else "pid")].last().items():
                thread[(int(p), int(t))] = c if isinstance(c, str) else f"{t}"
    return proc, thread


def trace_events(session) -> Iterator[dict]:
    """The trace's events, one dict at a time (metadata first, then by time per kind)."""
    tables = session.tables
    clk = _Clock(*session_span_ns(session))
    proc_names, thread_names = _names(tables)
    spans: dict[tuple[int, int], list[dict]] = {}

    def span(pid, tid, s, e, name, cat, args):
        if s == _NAT:
            return
        e = clk.end if e == _NAT else max(e, s)
        spans.setdefault((pid, tid), []).append({"_s": s, "_e": e, "name": name, "cat": cat, "args": args})

    procs = tables.get("processes")
    if procs is not None and len(procs):
        start = clk.ns(procs["start_ts"].fillna(procs["fork_ts"]) if "fork_ts" in procs else procs["start_ts"])
        end = clk.ns(procs["exit_ts"])
        for r, s, e in zip(procs.itertuples(index=False), start, end):
            span(int(r.pid), int(r.pid), s, e, f"process {r.comm}", "process",
                 {"ppid": _py(r.ppid), "exit_code": _py(r.exit_code), "exit_signal": _py(r.exit_signal)})
    ex = tables.get("exec")
    instants = []
    if ex is not None and len(ex):
        ts, end = clk.ns(ex["ts"]), clk.ns(ex["end_ts"])
        for r, s, e in zip(ex.itertuples(index=False), ts, end):
            args = {"argv": _py(list(r.argv) if r.argv is not None else []), "filename": _py(r.filename),
                    "ppid": _py(r.ppid), "retval": _py(r.retval)}
            ok = r.retval == 0
            instants.append({"name": _py(f"exec {r.comm}" if ok else f"exec failed: {r.error}"), "cat": "exec",
                             "ph": "i", "s": "t", "ts": clk.us(s), "pid": int(r.pid), "tid": int(r.tid),
                             "args": args})
            if ok:
                span(int(r.pid), int(r.pid), s, e, os.path.basename(str(r.filename)) or str(r.comm), "exec",
                     dict(args, exit_code=_py(r.exit_code), ended_by=_py(r.ended_by)))
    gpu = tables.get("gpu")
    if gpu is not None and len(gpu):
        ts = clk.ns(gpu["ts"])
        dur = gpu["duration_ns"].astype("Float64").to_numpy(float, na_value=np.nan)
        cols = ["pid", "tid", "api", "call", "category", "bytes", "direction", "handle", "frame", "retval"]
        for vals, s, d in zip(gpu[cols].itertuples(index=False, name=None), ts, dur):
            pid, tid, api, call, cat = int(vals[0]), int(vals[1]), vals[2], vals[3], vals[4]
            args = {k: _py(v) for k, v in zip(cols[5:], vals[5:]) if not pd.isna(v)}
            if np.isnan(d):
                instants.append({"name": _py(call), "cat": f"gpu,{api},{cat}", "ph": "i", "s": "t", "ts": clk.us(s),
                                 "pid": pid, "tid": tid, "args": args})
            else:
                span(pid, tid, s, s + int(d), call, f"gpu,{api},{cat}", args)
    lw = getattr(session, "loss_windows", None)
    loss_pid = None
    if lw is not None and len(lw):
        used = set(proc_names) | {p for p, _t in thread_names}
        loss_pid = 0 if 0 not in used else max(used) + 1
        for r, s, e in zip(lw.itertuples(index=False), clk.ns(lw["start"]), clk.ns(lw["end"])):
            span(loss_pid, loss_pid, s, e, f"lost {int(r.lost)} events ({r.probe})", "lost",
                 {"probe": _py(r.probe), "stream": _py(r.stream), "lost": _py(r.lost)})
    # metadata
    for pid in sorted(set(proc_names) | {p for p, _t in spans} | {e["pid"] for e in instants}):
        name = "ebpftoolkit: lost events" if pid == loss_pid else _py(proc_names.get(pid, str(pid)))
        yield {"name": "process_name", "ph": "M", "pid": pid, "tid": pid, "args": {"name": name}}
    threads = set(thread_names) | set(spans) | {(e["pid"], e["tid"]) for e in instants}
    for pid, tid in sorted(threads):
        name = thread_names.get((pid, tid)) or proc_names.get(pid) or str(tid)
        yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
               "args": {"name": "lost events" if pid == loss_pid else _py(name)}}
    for (pid, tid), lst in sorted(spans.items()):
        for e in _nest(lst):
            yield {"name": _py(e["name"]), "cat": e["cat"], "ph": "X", "ts": clk.us(e["_s"]),
                   "dur": round((e["_e"] - e["_s"]) / 1e3, 3), "pid": pid, "tid": tid, "args": e["args"]}
    yield from instants
    yield from _counters(tables, clk, session)


def _counters(tables, clk: _Clock, session) -> Iterator[dict]:
    pmu = tables.get("pmu")
    if pmu is not None and len(pmu):
        cfg = (getattr(session, "metadata", {}) or {}).get("probes", {}).get("pmu", {})
        bin_ns = int(cfg.get("interval_ns") or 10_000_000)
        b = (clk.ns(pmu["ts"]) - clk.t0) // bin_ns
        sums = pmu.assign(_b=b, event=pmu["event"].astype(str)).groupby(["pid", "event", "_b"])["value"].sum()
        for (pid, ev, k), v in sums.items():
            yield {"name": ev, "cat": "pmu", "ph": "C", "ts": clk.us(clk.t0 + k * bin_ns), "pid": int(pid),
                   "args": {ev: int(v)}}
    sc = tables.get("syscalls")
    if sc is not None and len(sc):
        bin_ns = 10_000_000
        b = (clk.ns(sc["ts"]) - clk.t0) // bin_ns
        counts = sc.assign(_b=b, syscall=sc["syscall"].astype(str)).groupby(["pid", "_b", "syscall"]).size()
        for (pid, k), g in counts.groupby(level=[0, 1]):
            yield {"name": "syscalls per 10 ms", "cat": "syscalls", "ph": "C", "ts": clk.us(clk.t0 + k * bin_ns),
                   "pid": int(pid), "args": {str(s): int(v) for (_p, _k, s), v in g.items()}}


def to_chrome_trace(session, path=None) -> dict | Path:
    """The session as a Trace Event Format object; with ``path``, streamed to that JSON file (returns the path)."""
    meta = getattr(session, "metadata", {}) or {}
    t0, _end = session_span_ns(session)
    other = {"start": pd.Timestamp(t0).isoformat(), "kernel": _py(meta.get("kernel")), "host": _py(meta.get("host")),
             "lost": {k: int(v) for k, v in (getattr(session, "lost", {}) or {}).items()},
             "generator": "ebpftoolkit"}
    if path is None:
        return {"traceEvents": list(trace_events(session)), "displayTimeUnit": "ms", "otherData": other}
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        head = json.dumps(other, allow_nan=False)
        f.write('{"displayTimeUnit": "ms", "otherData": ' + head + ',\n"traceEvents": [\n')
        first = True
        for e in trace_events(session):
            f.write(("" if first else ",\n") + json.dumps(e, allow_nan=False, ensure_ascii=False))
            first = False
        f.write("\n]}\n")
    return path
