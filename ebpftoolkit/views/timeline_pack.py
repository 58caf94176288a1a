"""The interactive timeline's data: display rows and every event of a recording, packed into one
compressed blob that the browser decodes once (:mod:`.timeline_html` draws it with Bokeh).

Rows: per process (the :class:`~ebpftoolkit.views.model.TraceModel`'s lane order) a header row
(lifetime, exec calls, frames, markers), one row per (thread, GPU category) with calls, one for its
syscalls and one for its PMU samples.  Events are sorted by start; columns are little-endian
arrays, start times delta-coded, each column padded to 8 bytes, the whole zlib-compressed and
base64-encoded (a 1M-call recording of a real-shaped workload packs to a few MB).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..text import printable
from .charts import CATEGORY_COLORS, category_color
from .model import NAT, TraceModel, to_ns
from .timeline_codec import decode, encode

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["TimelinePack", "pack_timeline", "KINDS", "TABLES"]

# kind codes shared with templates/timeline.js; "row" of each event is its row in that kind's table
KINDS = ("process", "exec", "call", "syscall", "frame", "sample", "loss")
_K = {k: i for i, k in enumerate(KINDS)}
# the recording's table each kind's source rows index (frames are analysis.gpu.frames rows)
TABLES = {"process": "processes", "exec": "exec", "call": "gpu", "syscall": "syscalls", "sample": "pmu_samples"}
_FIXED = {"process": "#cfd8dc", "exec": "#2e7d32", "exec failed": "#c62828", "frame span": "#455a64",
          "sample": "#6d4c41", "syscall": CATEGORY_COLORS.get("syscall", "#bcbd22")}


@dataclass
class TimelinePack:
    t0_ns: int
    duration_ns: int
    rows: list[dict]          # label, pid, tid (None: the process's header row), what
    cats: list[str]           # category names, index = the events' cat code
    colors: list[str]
    names: list[str]          # event names, index = the events' name code
    threads: list[str]        # "tid name", index = the events' thread code
    n: int
    blob: str                 # base64(zlib(columns))
    quantum_ns: int           # start times are multiples of it (1: exact)
    layout: list[dict]        # per column: name, size, signed, float, offset, length (in the decompressed buffer)
    coding: dict              # how the columns are coded (timeline_codec.encode's header fields)
    counters: dict            # PMU counter tracks: event -> {"t": [s], "v": [value per interval]}
    loss: list[dict]          # lost-event windows: start, end (s), probe, lost
    notes: list[str]

    def header(self) -> dict:
        """Everything but the blob, as JSON-able data for the browser."""
        return {"t0_ns": self.t0_ns, "duration_ns": self.duration_ns, "rows": self.rows, "cats": self.cats,
                "colors": self.colors, "names": self.names, "threads": self.threads, "n": self.n,
                "layout": self.layout, **self.coding, "loss": self.loss, "kinds": list(KINDS),
                "notes": self.notes}


def _txt(v) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else printable(str(v))


class _Builder:
    def __init__(self, m: TraceModel):
        self.m = m
        self.rows: list[dict] = []
        self.row_of: dict = {}
        self.cats: dict[str, int] = {}
        self.names: dict[str, int] = {}
        self.threads: dict[tuple, int] = {}
        self.parts: list[dict] = []

    def code(self, table: dict, key) -> int:
        return table.setdefault(key, len(table))

    def header(self, pid: int) -> int:
        """The row of a process itself (lifetime, execs, frames), named after its main thread."""
        return self.row(pid, None, "process", _txt(f"{pid} {self.m.process_names.get(pid) or ''}").strip())

    def headers(self, pids) -> np.ndarray:
        return np.array([self.header(int(p)) for p in pids], np.int32)

    def row(self, pid: int, tid, what: str, label: str) -> int:
        if what != "process":               # every process gets its header, before its other rows
            self.header(pid)
        key = (pid, tid, what)
        if key not in self.row_of:
            self.row_of[key] = len(self.rows)
            self.rows.append({"label": label, "pid": pid, "tid": tid, "what": what})
        return self.row_of[key]

    def add(self, kind, start, dur, rows, cat, name, pid, tid, src_row, nbytes=None, frame=None):
        n = len(start)
        if not n:
            return
        full = lambda v, fill, dt: np.full(n, fill, dt) if v is None else np.asarray(v, dt)   # noqa: E731
        self.parts.append({"start": np.asarray(start, np.int64), "dur": full(dur, -1, np.int64),
                           "row": np.asarray(rows, np.int32), "cat": np.asarray(cat, np.int32),
                           "name": np.asarray(name, np.int32), "kind": np.full(n, _K[kind], np.uint8),
                           "thread": np.array([self.code(self.threads, (int(p), int(t))) for p, t in zip(pid, tid)],
                                              np.int32),
                           "src": np.asarray(src_row, np.int64), "bytes": full(nbytes, np.nan, np.float64),
                           "frame": full(frame, -1, np.int64)})


def pack_timeline(rec: "Recording", model: TraceModel | None = None) -> TimelinePack:
    """Rows, events and counter tracks of ``rec`` for the interactive timeline."""
    m = model or TraceModel.from_recording(rec)
    b, t0 = _Builder(m), m.t0_ns
    b.headers(m.lanes["pid"])           # the lanes' order first
    gpu, sc, smp = (rec.tables.get(k) for k in ("gpu", "syscalls", "pmu_samples"))

    def codes(table, values):
        return np.array([b.code(table, _txt(v)) for v in values], np.int32)

    sp, it = m.spans, m.instants
    for kind in ("process", "exec"):
        s = sp[sp["kind"] == kind]
        ok = s["end_ns"].to_numpy(np.int64) != NAT
        end = np.where(ok, s["end_ns"].to_numpy(np.int64), m.end_ns)
        start = s["start_ns"].to_numpy(np.int64)
        start = np.where(start == NAT, t0, start)
        b.add(kind, start - t0, np.maximum(end - start, 0), b.headers(s["pid"]),
              np.full(len(s), b.code(b.cats, "process" if kind == "process" else "exec run")),
              codes(b.names, s["name"]), s["pid"], s["tid"], s["row"])
    x = it[it["kind"] == "exec"]
    if len(x):
        failed = x["name"].str.startswith("exec failed").to_numpy(bool)
        b.add("exec", x["ts_ns"].to_numpy(np.int64) - t0, None, b.headers(x["pid"]),
              np.where(failed, b.code(b.cats, "exec failed"), b.code(b.cats, "exec")),
              codes(b.names, x["name"]), x["pid"], x["tid"], x["row"])
    if gpu is not None and len(gpu):
        _gpu(b, rec, gpu, t0)
    if sc is not None and len(sc):
        pid, tid = sc["pid"].to_numpy(np.int64), sc["tid"].to_numpy(np.int64)
        rows = np.array([b.row(int(p), "syscalls", "syscall", "syscalls") for p in pid], np.int32)
        b.add("syscall", to_ns(sc["ts"]) - t0, None, rows, np.full(len(sc), b.code(b.cats, "syscall")),
              codes(b.names, sc["syscall"]), pid, tid, np.arange(len(sc)))
    if smp is not None and len(smp):
        pid = smp["pid"].to_numpy(np.int64)
        tid = smp["tid"].to_numpy(np.int64) if "tid" in smp else pid
        rows = np.array([b.row(int(p), "samples", "sample", "PMU samples") for p in pid], np.int32)
        what = smp["symbol"] if "symbol" in smp else smp.get("event", pd.Series(["sample"] * len(smp)))
        b.add("sample", to_ns(smp["ts"]) - t0, None, rows, np.full(len(smp), b.code(b.cats, "sample")),
              codes(b.names, what), pid, tid, np.arange(len(smp)))
    return _finish(b, rec, m)


def _gpu(b: _Builder, rec, gpu: pd.DataFrame, t0: int) -> None:
    from ..analysis.gpu import frames
    ts = to_ns(gpu["ts"])
    dur = gpu["duration_ns"].astype("Float64").to_numpy(float, na_value=np.nan)
    pid, tid = gpu["pid"].to_numpy(np.int64), gpu["tid"].to_numpy(np.int64)
    cat = [_txt(c) for c in gpu["category"]]
    rows = np.array([b.row(int(p), int(t), c, f"tid {t}: {c}") for p, t, c in zip(pid, tid, cat)], np.int32)
    labels = gpu["label"] if "label" in gpu else [None] * len(gpu)      # a marker's label names it
    names = [_txt(lb) or _txt(c) for c, lb in zip(gpu["call"], labels)]
    b.add("call", ts - t0, np.where(np.isnan(dur), -1, np.nan_to_num(dur)).astype(np.int64), rows,
          np.array([b.code(b.cats, c) for c in cat], np.int32), np.array([b.code(b.names, n) for n in names]),
          pid, tid, np.arange(len(gpu)), gpu["bytes"].astype("Float64").to_numpy(float, na_value=np.nan),
          gpu["frame"].astype("Int64").to_numpy(np.int64, na_value=-1) if "frame" in gpu else None)
    f = frames(gpu)
    f = f[f["frame_time"].notna()] if len(f) else f
    if len(f):
        end, ft = to_ns(f["end"]), pd.to_timedelta(f["frame_time"]).to_numpy("timedelta64[ns]").view(np.int64)
        fp = f["pid"].to_numpy(np.int64)
        rows = b.headers(fp)
        b.add("frame", end - ft - t0, ft, rows, np.full(len(f), b.code(b.cats, "frame span")),
              np.full(len(f), b.code(b.names, "frame"), np.int32), fp, fp,
              np.arange(len(f)), None, f["frame"].to_numpy(np.int64))


def _row_order(b: _Builder) -> np.ndarray:
    """New position of each row: a process's header, its (thread, category) rows, syscalls, samples;
    processes in lane order."""
    first = {}
    for i, r in enumerate(b.rows):
        first.setdefault(r["pid"], i)
    cat_rank = {c: i for i, c in enumerate(CATEGORY_COLORS)}

    def key(i):
        r = b.rows[i]
        section = {"process": 0, "syscall": 2, "sample": 3}.get(r["what"], 1)
        tid = r["tid"] if isinstance(r["tid"], int) else -1
        return first[r["pid"]], section, tid, cat_rank.get(r["what"], len(cat_rank)), r["what"]
    order = sorted(range(len(b.rows)), key=key)
    remap = np.empty(len(b.rows), np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    return remap


def _finish(b: _Builder, rec, m: TraceModel) -> TimelinePack:
    cols = ("start", "dur", "row", "cat", "name", "kind", "thread", "src", "bytes", "frame")
    if b.parts:
        ev = {c: np.concatenate([p[c] for p in b.parts]) for c in cols}
    else:
        ev = {c: np.zeros(0, np.float64 if c == "bytes" else np.int64) for c in cols}
    remap = _row_order(b)
    ev["row"] = remap[ev["row"]] if len(ev["row"]) else ev["row"]
    b.rows = [b.rows[i] for i in np.argsort(remap)] if b.rows else b.rows
    order = np.argsort(ev["start"], kind="stable")
    ev = {c: v[order] for c, v in ev.items()}
    blob, layout, coding = encode(ev)
    quantum = coding["quantum_ns"]
    cats = [c for c, _ in sorted(b.cats.items(), key=lambda kv: kv[1])]
    counters, interval = {}, m.pmu_interval_ns
    c = m.counters
    for event, df in (c.groupby("event", sort=True) if len(c) else ()):
        s = df.groupby("ts_ns", sort=True)["value"].sum()
        counters[_txt(event)] = {"t": ((s.index.to_numpy(np.int64) - m.t0_ns) / 1e9).tolist(),
                                 "v": s.to_numpy(float).tolist(), "interval_s": interval / 1e9}
    loss = [{"start": (int(a) - m.t0_ns) / 1e9, "end": (int(e) - m.t0_ns) / 1e9, "probe": _txt(p), "lost": int(n)}
            for a, e, p, n in zip(m.loss["start_ns"], m.loss["end_ns"], m.loss["probe"], m.loss["lost"])]
    tnames = m.thread_names
    threads = [f"{p}/{t} {tnames.get((p, t), '') if t != p else m.process_names.get(p, '')}".strip()
               for (p, t), _ in sorted(b.threads.items(), key=lambda kv: kv[1])]
    threads = [_txt(t) for t in threads]
    notes = [f"{sum(m.lost.values())} events lost (shaded)"] if sum(m.lost.values()) else []
    if quantum > 1:
        notes.append(f"{len(order)} events: start times drawn to {quantum} ns and durations to 0.3 % "
                     "(the tables keep exact ns)")
    return TimelinePack(m.t0_ns, max(int(m.end_ns - m.t0_ns), 1), b.rows, cats,
                        [_FIXED.get(c) or category_color(c) for c in cats],
                        [n for n, _ in sorted(b.names.items(), key=lambda kv: kv[1])], threads, len(order), blob,
                        quantum, layout, coding, counters, loss, notes)


def unpack(pack: TimelinePack) -> dict[str, np.ndarray]:
    """The events back from the blob, as the browser decodes them (tests use it)."""
    return decode(pack.blob, pack.layout, pack.coding)


def header_json(pack: TimelinePack) -> str:
    return json.dumps(pack.header(), ensure_ascii=True)
