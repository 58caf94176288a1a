"""Export a recording as a Perfetto protobuf trace (ui.perfetto.dev, trace_processor).

Built with the ``perfetto`` package's ``TraceProtoBuilder`` and its protos, not by hand.  Tracks:

- per process (a ``ProcessDescriptor`` track): its lifetime ("process <comm>") and the run of
  each program it exec'd;
- per thread (a ``ThreadDescriptor`` track): its GPU calls, slices when they have a duration
  (return probes) and instants otherwise, and its exec calls (instants, failed ones too);
- per process, child tracks: "frames" (a slice per frame, as ``analysis.gpu.frames`` has them: its
  first call to the end of the call that ended it, swap/present by default)
  and a counter track per PMU event (the sum per PMU interval) and per syscall (calls per 10 ms);
- "ebpftoolkit", a track of its own whose description holds host, kernel and the lost counts,
  with a child track per probe that lost events: a slice per loss window.

Arguments are debug annotations (bytes, direction, handle, frame, retval of a call; argv,
filename... of an exec).  Timestamps are ns since the epoch, as recorded.  Event names,
categories and annotation names are interned on one packet sequence; packets are written in
time order, serialised a chunk at a time, so that 10M events take bounded memory.  Slices on
one track are made to nest as the Chrome exporter's are: one that would end after the slice
enclosing it is cut at that slice's end and says so (annotation ``clipped``).  Text from
traced programs is escaped as :func:`ebpftoolkit.text.printable` does (protobuf strings are UTF-8).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analysis.gpu import frames as gpu_frames
from ..text import printable
from .model import NAT, TraceModel, to_ns

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["to_perfetto", "SEQUENCE_ID"]

SEQUENCE_ID = 1                                  # trusted_packet_sequence_id of every packet
CHUNK = 20_000                                   # packets serialised and written at a time
_BEGIN, _END, _INSTANT, _COUNTER = 1, 2, 3, 4    # TrackEvent.Type
_CLEARED, _NEEDS = 1, 2                          # TracePacket.SequenceFlags
_PROCESS, _EXEC_RUN, _EXEC, _CALL, _FRAME, _LOSS = range(1, 7)   # where a slice's or instant's arguments come from
SYSCALL_BIN_NS = 10_000_000


def _clean(values) -> np.ndarray:
    """Text -> printable str (object array), each distinct value escaped once; missing -> ""."""
    codes, uniq = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    table = np.array([printable(u) for u in uniq] + [""], dtype=object)
    return table[codes]


def _ints(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as int64, valid) of a numeric, timedelta or nullable column."""
    if pd.api.types.is_timedelta64_dtype(s):
        v = s.to_numpy("timedelta64[ns]").view("int64")
        return v, v != NAT
    v = pd.to_numeric(s, errors="coerce")
    return v.fillna(0).to_numpy(np.int64), v.notna().to_numpy()


def _spec(df: pd.DataFrame, cols) -> list[tuple]:
    """The debug annotations of ``df``'s rows: (name, field, values, valid) per column it has."""
    out = []
    for name, kind in cols:
        if name not in df:
            continue
        s = df[name]
        if kind == "int":
            out.append((name, "int_value", *_ints(s)))
        elif kind == "str":
            out.append((name, "string_value", _clean(s), pd.notna(s).to_numpy(bool)))
        else:                                     # a list of str (argv)
            vals = np.array([[printable(x) for x in v] if isinstance(v, (list, tuple, np.ndarray)) else [] for v in s]
                            + [None], dtype=object)[:-1]
            out.append((name, "array", vals, np.array([len(v) > 0 for v in vals], bool)))   # [] has no encoding
    return out


_EXEC_ARGS = [("argv", "list"), ("filename", "str"), ("ppid", "int"), ("retval", "int")]


def _arg_specs(rec: "Recording", fr: pd.DataFrame, loss: pd.DataFrame) -> dict[int, list[tuple]]:
    t = rec.tables
    ex, procs, gpu = t.get("exec"), t.get("processes"), t.get("gpu")
    specs = {_FRAME: _spec(fr, [(c, "int") for c in ("draws", "dispatches", "bytes_up", "bytes_down", "calls",
                                                     "frame_time_ns")] + [("ended_by", "str")]),
             _LOSS: _spec(loss, [("probe", "str"), ("stream", "str"), ("lost", "int")])}
    if procs is not None:
        specs[_PROCESS] = _spec(procs, [("ppid", "int"), ("exit_code", "int"), ("exit_signal", "int")])
    if ex is not None:
        specs[_EXEC] = _spec(ex, _EXEC_ARGS)
        specs[_EXEC_RUN] = _spec(ex, _EXEC_ARGS + [("exit_code", "int"), ("ended_by", "str")])
    if gpu is not None:
        specs[_CALL] = _spec(gpu, [("bytes", "int"), ("direction", "str"), ("handle", "int"), ("frame", "int"),
                                   ("retval", "int")])
    return specs


class _Tracks:
    """Track descriptors, each with a uuid (1, 2, ...), in the order they were first asked for."""

    def __init__(self, m: TraceModel):
        self.m, self.ids, self.desc = m, {}, []

    def _new(self, key, **kw) -> int:
        if key not in self.ids:
            self.ids[key] = len(self.ids) + 1
            self.desc.append(dict(uuid=self.ids[key], **kw))
        return self.ids[key]

    def process(self, pid: int) -> int:
        name = printable(self.m.process_names.get(pid, str(pid)))
        return self._new(("process", pid), process=dict(pid=pid, process_name=name))

    def thread(self, pid: int, tid: int) -> int:
        self.process(pid)
        name = self.m.thread_names.get((pid, tid)) or self.m.process_names.get(pid) or str(tid)
        return self._new(("thread", pid, tid), thread=dict(pid=pid, tid=tid, thread_name=printable(name)))

    def child(self, key, pid: int, name: str, **kw) -> int:
        return self._new((key, pid, name), parent_uuid=self.process(pid), name=printable(name), **kw)

    def map(self, fn, *cols) -> np.ndarray:
        """``fn(*key)`` per row of the int64 key columns, called once per distinct key."""
        if not len(cols[0]):
            return np.empty(0, np.int64)
        key = np.asarray(cols[0], np.int64)
        if len(cols) == 2:                        # (pid, tid): tids are below 2**22
            key = (key << 32) | np.asarray(cols[1], np.int64)
        codes, uniq = pd.factorize(key)
        keys = [(int(k),) if len(cols) == 1 else (int(k) >> 32, int(k) & 0xFFFFFFFF) for k in uniq]
        return np.array([fn(*k) for k in keys], np.int64)[codes]


def _items(rec: "Recording", m: TraceModel, tracks: _Tracks) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Slices and instants as columns (track, s, e (-1: an instant), name, c1..c3 (categories), src, row),
    slices first; with the frames and loss windows their arguments are read from."""
    t = rec.tables
    gpu = t.get("gpu")
    api = gpu["api"].to_numpy(object) if gpu is not None and "api" in gpu else np.empty(0, object)
    parts = []

    def add(track, s, e, name, c1, src, row, api_cat=None):
        n = len(track)
        c2, c3 = (api[row], api_cat) if api_cat is not None else (np.full(n, ""), np.full(n, ""))
        parts.append(dict(track=np.asarray(track, np.int32), s=np.asarray(s, np.int64), e=np.asarray(e, np.int64),
                          name=np.asarray(name, object), c1=np.full(n, c1, object), c2=np.asarray(c2, object),
                          c3=np.asarray(c3, object), src=np.full(n, src, np.int8), row=np.asarray(row, np.int32)))

    for kind, sp in m.spans.groupby("kind", sort=False):
        pid, tid = sp["pid"].to_numpy(np.int64), sp["tid"].to_numpy(np.int64)
        row = sp["row"].to_numpy(np.int64)
        if kind == "call":
            add(tracks.map(tracks.thread, pid, tid), sp["start_ns"], sp["end_ns"], sp["name"], "gpu", _CALL, row,
                sp["cat"].to_numpy(object))
        else:
            add(tracks.map(tracks.process, pid), sp["start_ns"], sp["end_ns"], sp["name"], kind,
                _PROCESS if kind == "process" else _EXEC_RUN, row)
    fr = pd.DataFrame(columns=["pid", "frame", "start", "end"])
    if gpu is not None and len(gpu) and "frame" in gpu:
        fr = gpu_frames(gpu)                      # frames as recorded; of processes that ended one
        fr = fr[fr["pid"].isin(fr.loc[fr["ended_by"].notna(), "pid"])].reset_index(drop=True)
        if len(fr):
            pid = fr["pid"].to_numpy(np.int64)
            add(tracks.map(lambda p: tracks.child("frames", p, "frames"), pid), to_ns(fr["start"]), to_ns(fr["end"]),
                np.array([f"frame {int(f)}" for f in fr["frame"]], object), "frame", _FRAME, np.arange(len(fr)))
    loss = m.loss.reset_index(drop=True)
    if len(loss):
        root = tracks.ids["root"]
        probes = _clean(loss["probe"])
        track = np.array([tracks._new(("loss", p), parent_uuid=root, name=f"lost events: {p}") for p in probes])
        add(track, loss["start_ns"], loss["end_ns"],
            np.array([f"lost {int(n)} events ({p})" for n, p in zip(loss["lost"], probes)], object), "lost", _LOSS,
            np.arange(len(loss)))
    ns = sum(len(p["s"]) for p in parts)
    for kind, it in m.instants.groupby("kind", sort=False):
        if kind == "syscall":
            continue                               # syscalls are counters
        row = it["row"].to_numpy(np.int64)
        track = tracks.map(tracks.thread, it["pid"], it["tid"])
        add(track, it["ts_ns"], np.full(len(it), -1), it["name"], "gpu" if kind == "call" else "exec",
            _CALL if kind == "call" else _EXEC, row, it["cat"].to_numpy(object) if kind == "call" else None)
    cols = ["track", "s", "e", "name", "c1", "c2", "c3", "src", "row"]
    empty = {"track": np.int32, "name": object, "c1": object, "c2": object, "c3": object, "src": np.int8,
             "row": np.int32}
    items = {c: np.concatenate([p.pop(c) for p in parts]) if parts else np.empty(0, empty.get(c, np.int64))
             for c in cols}                       # a column at a time: its parts are freed as it is made
    items["slice"] = np.arange(len(items["s"])) < ns
    fr = fr.assign(frame_time_ns=fr["frame_time"]) if "frame_time" in fr else fr
    return items, fr, loss


def _nest(track, s, e) -> tuple[np.ndarray, np.ndarray]:
    """Begin/end events of the slices, in an order in which the slices of each track nest: codes
    2*i (begin of slice i) and 2*i+1 (its end); and the clipped mask.  ``e`` is clipped in place."""
    clipped = np.zeros(len(s), bool)
    o = np.lexsort((-e, s, track))
    ts, ss, es = track[o], s[o], e[o]
    if not np.any((ts[1:] == ts[:-1]) & (es[:-1] > ss[1:])):        # nothing overlaps: begin, end, begin, end...
        return np.stack([2 * o, 2 * o + 1], axis=1).reshape(-1), clipped
    out, stack, cur = [], [], None
    for i, ti, si, ei in zip(o.tolist(), ts.tolist(), ss.tolist(), es.tolist()):
        if ti != cur:
            out.extend(2 * j + 1 for j, _e in reversed(stack))
            stack, cur = [], ti
        while stack and stack[-1][1] <= si:
            out.append(2 * stack.pop()[0] + 1)
        if stack and ei > stack[-1][1]:
            ei = stack[-1][1]
            e[i], clipped[i] = ei, True
        out.append(2 * i)
        stack.append((i, ei))
    out.extend(2 * j + 1 for j, _e in reversed(stack))
    return np.array(out, np.int64), clipped


def _counters(m: TraceModel, tracks: _Tracks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts, track, value) of the counter events: PMU sums per interval, syscalls per 10 ms."""
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import CounterDescriptor
    t0, out = m.t0_ns, []
    desc = dict(counter=dict(unit=CounterDescriptor.UNIT_COUNT))
    c = m.counters
    if len(c):
        b = m.pmu_interval_ns
        sums = c.assign(_b=(c["ts_ns"] - t0) // b).groupby(["pid", "event", "_b"], sort=True)["value"].sum()
        keys = sums.index.to_frame(index=False)
        track = [tracks.child("pmu", int(p), str(ev), description=f"{printable(ev)}: sum per {b / 1e6:g} ms", **desc)
                 for p, ev in zip(keys["pid"], keys["event"])]
        out.append((t0 + keys["_b"].to_numpy(np.int64) * b, np.array(track, np.int64), sums.to_numpy(np.int64)))
    sc = m.instants[m.instants["kind"] == "syscall"]
    if len(sc):
        counts = sc.assign(_b=(sc["ts_ns"] - t0) // SYSCALL_BIN_NS).groupby(["pid", "name", "_b"], sort=True).size()
        keys = counts.index.to_frame(index=False)
        track = [tracks.child("syscalls", int(p), f"syscalls: {n} per 10 ms", **desc)
                 for p, n in zip(keys["pid"], keys["name"])]
        out.append((t0 + keys["_b"].to_numpy(np.int64) * SYSCALL_BIN_NS, np.array(track, np.int64),
                    counts.to_numpy(np.int64)))
    if not out:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    return tuple(np.concatenate(x) for x in zip(*out))


def _factor(*cols) -> tuple[np.ndarray, list[tuple]]:
    """Codes of the distinct tuples of the columns' values, and those tuples (text made printable)."""
    codes, levels = np.zeros(len(cols[0]), np.int64), []
    for c in cols:
        k, u = pd.factorize(pd.Series(c, dtype=object), use_na_sentinel=False)
        codes = codes * max(len(u), 1) + k
        levels.append([printable(x) if isinstance(x, str) else "" for x in u])
    combo, uniq = pd.factorize(codes)
    tuples = []
    for u in uniq.tolist():
        parts = []
        for lv in reversed(levels):
            u, k = divmod(u, max(len(lv), 1))
            parts.append(lv[k])
        tuples.append(tuple(reversed(parts)))
    return combo.astype(np.int64), tuples


def to_perfetto(rec: "Recording", path) -> Path:
    """Write the recording to ``path`` as a Perfetto protobuf trace (a ``Trace``'s packets); returns the path."""
    from perfetto.trace_builder.proto_builder import TraceProtoBuilder
    m = TraceModel.from_recording(rec)
    meta, tracks = rec.metadata, _Tracks(m)
    about = f"host {meta.host or '-'}, kernel {meta.kernel or '-'}, lost events: " + \
        (", ".join(f"{k} {v}" for k, v in m.lost.items()) or "none")
    tracks._new("root", name="ebpftoolkit", description=printable(about))
    for pid in m.lanes["pid"]:
        tracks.process(int(pid))
    items, fr, loss = _items(rec, m, tracks)
    if (items["s"] == NAT).any():                 # no start: not drawn
        items = {k: v[items["s"] != NAT] for k, v in items.items()}
    sl, s, e = items["slice"], items["s"], items["e"]
    e[sl] = np.where(e[sl] == NAT, m.end_ns, np.maximum(e[sl], s[sl]))
    nsl = int(sl.sum())
    codes, clipped = _nest(items["track"][:nsl], s[:nsl], e[:nsl])
    items["clipped"] = np.concatenate([clipped, np.zeros(len(s) - nsl, bool)])
    ctr_ts, ctr_track, ctr_val = _counters(m, tracks)
    # the event stream: (ts, code); code & 3 = type - 1, code >> 2 = an item (slices, instants) or counter index
    idx = codes >> 1
    ev_ts = np.concatenate([np.where(codes & 1, e[idx], s[idx]), s[nsl:], ctr_ts])
    ev_code = np.concatenate([(idx << 2) | (codes & 1), (np.arange(nsl, len(s)) << 2) | (_INSTANT - 1),
                              (np.arange(len(ctr_ts)) << 2) | (_COUNTER - 1)])
    order = np.argsort(ev_ts, kind="stable")
    names, name_list = _factor(items.pop("name"))
    cats, cat_tuples = _factor(items.pop("c1"), items.pop("c2"), items.pop("c3"))
    specs = _arg_specs(rec, fr, loss)
    cat_names = sorted({c for tup in cat_tuples for c in tup if c})
    cat_iid = {c: i + 1 for i, c in enumerate(cat_names)}
    cat_iids = [tuple(cat_iid[c] for c in tup if c) for tup in cat_tuples]
    ann_names = ["clipped"] + sorted({a[0] for spec in specs.values() for a in spec})
    ann_iid = {a: i + 1 for i, a in enumerate(ann_names)}
    specs = {k: [(ann_iid[a[0]],) + a[1:] for a in spec] for k, spec in specs.items()}
    path = Path(path)
    with open(path, "wb") as f:
        b = TraceProtoBuilder()
        for d in tracks.desc:
            _descriptor(b, d)
        for a in range(0, len(order), CHUNK):
            sel = order[a:a + CHUNK]
            _chunk(b, ev_ts[sel], ev_code[sel], items, names, cats, cat_iids, (ctr_track, ctr_val), specs,
                   (name_list, cat_names, ann_names) if a == 0 else None)
            f.write(b.serialize())
            b = TraceProtoBuilder()
        f.write(b.serialize())
    return path


def _chunk(b, ts, code, items: dict, names, cats, cat_iids, counters, specs, interned) -> None:
    """Add the packets of a chunk of the event stream to builder ``b``; ``interned``: the sequence's interned
    names (event names, categories, annotation names), given with the first chunk, go on its first packet."""
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import DebugAnnotation
    typ, ref = (code & 3) + 1, code >> 2
    is_item = typ != _COUNTER
    item, ctr = np.where(is_item, ref, 0), np.where(is_item, 0, ref)
    track = np.where(is_item, _take(items["track"], item), _take(counters[0], ctr)).tolist()
    name, cat = _take(names, item).tolist(), _take(cats, item).tolist()
    src, row = _take(items["src"], item), _take(items["row"], item)
    clip, val = _take(items["clipped"], item).tolist(), _take(counters[1], ctr).tolist()
    jpos, cols = np.zeros(len(ts), np.int64), {}      # arguments: per source, its columns at the chunk's rows
    for k, spec in specs.items():
        pos = np.flatnonzero((src == k) & is_item & (typ != _END))
        if len(pos):
            jpos[pos] = np.arange(len(pos))
            r = row[pos]
            cols[k] = [(iid, field, vals[r].tolist(), valid[r].tolist()) for iid, field, vals, valid in spec]
    n0 = len(b.trace.packet)
    for t, ty, tr, nm, ct, sr, j, cl, v in zip(ts.tolist(), typ.tolist(), track, name, cat, src.tolist(),
                                               jpos.tolist(), clip, val):
        p = b.add_packet()
        p.timestamp = t
        p.trusted_packet_sequence_id = SEQUENCE_ID
        p.sequence_flags = _NEEDS
        te = p.track_event
        te.type = ty
        te.track_uuid = tr
        if ty == _COUNTER:
            te.counter_value = v
            continue
        if ty == _END:
            continue
        te.name_iid = nm + 1
        te.category_iids.extend(cat_iids[ct])
        ann = te.debug_annotations
        for iid, field, vals, valid in cols.get(sr, ()):
            if valid[j]:
                d = ann.add()
                d.name_iid = iid
                if field == "array":
                    d.array_values.extend(DebugAnnotation(string_value=x) for x in vals[j])
                else:
                    setattr(d, field, vals[j])
        if cl:
            d = ann.add()
            d.name_iid, d.bool_value = 1, True
    if interned is not None and len(ts):
        p0 = b.trace.packet[n0]
        p0.sequence_flags = _CLEARED | _NEEDS
        _intern(p0.interned_data, *interned)


def _take(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return arr[idx] if len(arr) else np.zeros(len(idx), arr.dtype)


def _descriptor(b, d: dict) -> None:
    p = b.add_packet()
    p.trusted_packet_sequence_id = SEQUENCE_ID
    td = p.track_descriptor
    for k, v in d.items():
        if isinstance(v, dict):
            getattr(td, k).MergeFrom(type(getattr(td, k))(**v))
        else:
            setattr(td, k, v)


def _intern(data, names: list[tuple], cats: list[str], anns: list[str]) -> None:
    for i, (n,) in enumerate(names):
        data.event_names.add(iid=i + 1, name=n)
    for i, c in enumerate(cats):
        data.event_categories.add(iid=i + 1, name=c)
    for i, a in enumerate(anns):
        data.debug_annotation_names.add(iid=i + 1, name=a)
