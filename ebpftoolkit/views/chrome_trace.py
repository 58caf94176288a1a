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
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd

from .model import NAT, TraceModel

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["to_chrome_trace", "trace_events"]

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


def _us(ns, t0: int) -> float:
    return round((int(ns) - t0) / 1e3, 3)


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


_GPU_ARGS = ["bytes", "direction", "handle", "frame", "retval"]


def _args(rec: "Recording", kind: str, rows: np.ndarray) -> list[dict]:
    """The args of spans/instants of ``kind`` from their rows of the source table."""
    t = rec.tables
    if kind == "process":
        p = t["processes"].iloc[rows]
        return [{"ppid": _py(a), "exit_code": _py(b), "exit_signal": _py(c)}
                for a, b, c in zip(p["ppid"], p["exit_code"], p["exit_signal"])]
    if kind == "exec":
        x = t["exec"].iloc[rows]
        return [{"argv": _py(list(av) if av is not None else []), "filename": _py(f), "ppid": _py(pp),
                 "retval": _py(rv), "exit_code": _py(ec), "ended_by": _py(eb)}
                for av, f, pp, rv, ec, eb in zip(x["argv"], x["filename"], x["ppid"], x["retval"], x["exit_code"],
                                                 x["ended_by"])]
    if kind == "call":
        g = t["gpu"].iloc[rows]
        return [{k: _py(v) for k, v in zip(_GPU_ARGS, vals) if not pd.isna(v)}
                for vals in g[_GPU_ARGS].itertuples(index=False, name=None)]
    return [{} for _ in rows]


def _cat(kind: str, cat: str, api) -> str:
    return f"gpu,{api},{cat}" if kind == "call" else cat


def trace_events(rec: "Recording", model: TraceModel | None = None) -> Iterator[dict]:
    """The trace's events, one dict at a time (metadata first, then spans per thread, instants, counters)."""
    m = model or TraceModel.from_recording(rec)
    t0, end = m.t0_ns, m.end_ns
    gpu = rec.tables.get("gpu")
    apis = gpu["api"].to_numpy(object) if gpu is not None and len(gpu) else np.empty(0, object)
    spans: dict[tuple[int, int], list[dict]] = {}
    for kind, sp in m.spans.groupby("kind", sort=False):
        args = _args(rec, kind, sp["row"].to_numpy(np.int64))
        for (pid, tid, s, e, name, cat, row), a in zip(sp[["pid", "tid", "start_ns", "end_ns", "name", "cat", "row"]]
                                                      .itertuples(index=False, name=None), args):
            if s == NAT:
                continue
            e = end if e == NAT else max(e, s)
            spans.setdefault((int(pid), int(tid)), []).append(
                {"_s": s, "_e": e, "name": name, "cat": _cat(kind, cat, apis[row] if kind == "call" else None),
                 "args": a})
    loss_pid = None
    if len(m.loss):
        used = set(m.process_names) | {p for p, _t in m.thread_names} | {p for p, _t in spans}
        loss_pid = 0 if 0 not in used else max(used) + 1
        for r in m.loss.itertuples(index=False):
            spans.setdefault((loss_pid, loss_pid), []).append(
                {"_s": r.start_ns, "_e": max(r.end_ns, r.start_ns), "name": f"lost {int(r.lost)} events ({r.probe})",
                 "cat": "lost", "args": {"probe": _py(r.probe), "stream": _py(r.stream), "lost": _py(r.lost)}})
    instants = []
    for kind, it in m.instants.groupby("kind", sort=False):
        if kind == "syscall":
            continue          # syscalls become counters below
        args = _args(rec, kind, it["row"].to_numpy(np.int64))
        for (pid, tid, ts, name, cat, row), a in zip(it[["pid", "tid", "ts_ns", "name", "cat", "row"]]
                                                     .itertuples(index=False, name=None), args):
            if kind == "exec":
                a = {k: a[k] for k in ("argv", "filename", "ppid", "retval")}
            instants.append({"name": _py(name), "cat": _cat(kind, cat, apis[row] if kind == "call" else None),
                             "ph": "i", "s": "t", "ts": _us(ts, t0), "pid": int(pid), "tid": int(tid), "args": a})
    instants.sort(key=lambda e: e["ts"])
    pids = set(m.process_names) | {p for p, _t in spans} | {e["pid"] for e in instants}
    for pid in sorted(pids):
        name = "ebpftoolkit: lost events" if pid == loss_pid else _py(m.process_names.get(pid, str(pid)))
        yield {"name": "process_name", "ph": "M", "pid": pid, "tid": pid, "args": {"name": name}}
    threads = set(m.thread_names) | set(spans) | {(e["pid"], e["tid"]) for e in instants}
    for pid, tid in sorted(threads):
        name = m.thread_names.get((pid, tid)) or m.process_names.get(pid) or str(tid)
        yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
               "args": {"name": "lost events" if pid == loss_pid else _py(name)}}
    for (pid, tid), lst in sorted(spans.items()):
        for e in _nest(lst):
            yield {"name": _py(e["name"]), "cat": e["cat"], "ph": "X", "ts": _us(e["_s"], t0),
                   "dur": round((e["_e"] - e["_s"]) / 1e3, 3), "pid": pid, "tid": tid, "args": e["args"]}
    yield from instants
    yield from _counters(m)


def _counters(m: TraceModel) -> Iterator[dict]:
    c, t0 = m.counters, m.t0_ns
    if len(c):
        bin_ns = m.pmu_interval_ns
        sums = c.assign(_b=(c["ts_ns"] - t0) // bin_ns).groupby(["pid", "event", "_b"])["value"].sum()
        for (pid, ev, k), v in sums.items():
            yield {"name": ev, "cat": "pmu", "ph": "C", "ts": _us(t0 + k * bin_ns, t0), "pid": int(pid),
                   "args": {ev: int(v)}}
    sc = m.instants[m.instants["kind"] == "syscall"]
    if len(sc):
        bin_ns = 10_000_000
        counts = sc.assign(_b=(sc["ts_ns"] - t0) // bin_ns).groupby(["pid", "_b", "name"]).size()
        for (pid, k), g in counts.groupby(level=[0, 1]):
            yield {"name": "syscalls per 10 ms", "cat": "syscalls", "ph": "C", "ts": _us(t0 + k * bin_ns, t0),
                   "pid": int(pid), "args": {str(s): int(v) for (_p, _k, s), v in g.items()}}


def to_chrome_trace(rec: "Recording", path=None) -> dict | Path:
    """The recording as a Trace Event Format object; with ``path``, streamed to that JSON file (returns the path)."""
    meta = rec.metadata
    model = TraceModel.from_recording(rec)
    other = {"start": pd.Timestamp(model.t0_ns).isoformat(), "kernel": _py(meta.kernel), "host": _py(meta.host),
             "lost": {k: int(v) for k, v in rec.lost.items()}, "generator": "ebpftoolkit"}
    if path is None:
        return {"traceEvents": list(trace_events(rec, model)), "displayTimeUnit": "ms", "otherData": other}
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        head = json.dumps(other, allow_nan=False)
        f.write('{"displayTimeUnit": "ms", "otherData": ' + head + ',\n"traceEvents": [\n')
        first = True
        for e in trace_events(rec, model):
            f.write(("" if first else ",\n") + json.dumps(e, allow_nan=False, ensure_ascii=False))
            first = False
        f.write("\n]}\n")
    return path
