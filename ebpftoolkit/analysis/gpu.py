"""Pure functions on GpuTrace's table (``Session.tables["gpu"]``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..probes.gpu.catalogue import FRAME_BEGIN, FRAME_END, MARK

__all__ = ["frames", "assign_frames", "data_movement", "bandwidth", "memory_timeline", "leaks", "latency"]

_DIRECTIONS = ("h2d", "d2h", "d2d")


_FRAME_COLUMNS = ["pid", "frame", "start", "end", "frame_time", "draws", "dispatches", "bytes_up", "bytes_down",
                  "calls", "ended_by"]


def frames(gpu: pd.DataFrame, boundary=None) -> pd.DataFrame:
    """One row per (pid, frame): start, end, frame time, draw calls, dispatches/launches, bytes up and
    back, calls, and ``ended_by``: the call that ended the frame (None: the calls after a process's
    last boundary, a frame not ended).

    ``boundary``: None takes the table's ``frame`` column as recorded (``GpuTrace(frames=...)``);
    ``"swap/present"``, ``"marker"`` or call names (e.g. ``["clFinish"]``) work the frames out again
    from the calls (see :func:`assign_frames`).  A frame ends at its boundary call's end when that
    call has a duration (a return probe), else at its start; ``frame_time`` is the time from the
    previous frame's end to this one's (NaT for the first).  Calls in no frame (outside
    ``ebpftoolkit.frame`` blocks) are in no row.
    """
    if gpu.empty:
        return pd.DataFrame(columns=_FRAME_COLUMNS)
    if boundary is not None:
        fr, closing = _assign(gpu, boundary)
        gpu = gpu.assign(frame=fr)
    g = gpu[gpu["frame"].notna()]
    if g.empty:
        return pd.DataFrame(columns=_FRAME_COLUMNS)
    g = g.assign(_draw=g["category"].eq("draw"), _disp=g["category"].isin(["dispatch", "launch"]),
                 _up=g["bytes"].where(g["direction"].eq("h2d"), 0).fillna(0),
                 _down=g["bytes"].where(g["direction"].eq("d2h"), 0).fillna(0))
    out = g.groupby(["pid", "frame"]).agg(start=("ts", "min"), end=("ts", "max"), draws=("_draw", "sum"),
                                          dispatches=("_disp", "sum"), bytes_up=("_up", "sum"),
                                          bytes_down=("_down", "sum"), calls=("call", "size")).reset_index()
    # a frame that was ended, was ended by its last call (in time order)
    last = g.iloc[np.argsort(g["ts"].to_numpy(), kind="stable")].groupby(["pid", "frame"]).tail(1)
    if boundary is not None:
        done = closing[last.index].to_numpy(bool)
    else:
        done = _ended_as_recorded(last)
    dur = pd.to_timedelta(last["duration_ns"].astype("Float64").fillna(0).to_numpy(float), unit="ns")
    ends = pd.DataFrame({"pid": last["pid"].to_numpy(), "frame": last["frame"].to_numpy(),
                         "_end": np.where(done, last["ts"].to_numpy() + dur.to_numpy(), np.datetime64("NaT")),
                         "ended_by": pd.Series(np.where(done, last["call"].to_numpy(object), None), dtype=object)})
    ends["frame"] = ends["frame"].astype(out["frame"].dtype)
    out = out.merge(ends, on=["pid", "frame"], how="left")
    out["end"] = out["_end"].fillna(out["end"])
    out["frame_time"] = out.groupby("pid")["end"].diff()
    return out.drop(columns=["_end"]).astype({"bytes_up": "int64", "bytes_down": "int64", "draws": "int64",
                                               "dispatches": "int64"})[_FRAME_COLUMNS]


def _ended_as_recorded(last: pd.DataFrame) -> np.ndarray:
    """Which frames were ended, from each frame's last call (``last``) alone: every frame but a process's
    last was, by its last call; a process's last frame was if its last call is of the same kind (a
    swap/present, a marker, one of the calls that ended the others; with one frame per process, a
    swap/present).  Pass boundary= to be exact."""
    final = (last["frame"] == last.groupby("pid")["frame"].transform("max")).to_numpy(bool)
    enders = set(last["call"][~final])
    cats = set(last["category"][~final])
    call, swap = last["call"], last["category"].eq("frame").to_numpy(bool)
    if not enders or cats == {"frame"}:      # one frame each: read as swap/present frames
        done = swap
    elif enders <= {MARK, FRAME_END}:
        done = call.isin([MARK, FRAME_END]).to_numpy(bool)
    else:
        done = call.isin(enders).to_numpy(bool)
    return ~final | done


def assign_frames(gpu: pd.DataFrame, boundary="swap/present") -> pd.Series:
    """The frame of every call (the ``frame`` column, Int64; NA: in no frame), per process, in time order.

    ``boundary``: ``"swap/present"`` (calls of category ``frame``), call names (``["clFinish"]``) or
    ``"marker"``.  With calls, a frame ends with (and holds) each boundary call: frame k is the calls
    made after the k-th boundary up to and including the (k+1)-th, and the calls after the last one
    are an unfinished frame.  With ``"marker"``, each outermost ``ebpftoolkit.frame`` block is a frame
    (its begin marker, the calls inside, its end marker; the calls outside blocks are in none), and
    outside blocks ``ebpftoolkit.mark()`` ends a frame as a boundary call does (inside, it is an instant
    of the block's frame).
    """
    return _assign(gpu, boundary)[0]


def _assign(gpu: pd.DataFrame, boundary) -> tuple[pd.Series, pd.Series]:
    """(frame, closing): the frames, and which calls ended one."""
    n = len(gpu)
    call = gpu["call"]
    if boundary == "swap/present":
        mark, begin, end = gpu["category"].eq("frame").to_numpy(bool), np.zeros(n, bool), np.zeros(n, bool)
    elif boundary == "marker":
        mark, begin, end = (call.eq(c).to_numpy(bool) for c in (MARK, FRAME_BEGIN, FRAME_END))
    elif isinstance(boundary, (str, list, tuple, set, frozenset)) and all(isinstance(b, str) for b in boundary):
        names = [boundary] if isinstance(boundary, str) else list(boundary)
        mark, begin, end = call.isin(names).to_numpy(bool), np.zeros(n, bool), np.zeros(n, bool)
    else:
        raise ValueError(f"boundary is 'swap/present', 'marker' or call names such as ['clFinish'], got {boundary!r}")
    o = np.argsort(gpu["ts"].to_numpy(), kind="stable")
    pid = pd.Series(gpu["pid"].to_numpy()[o])
    mark, begin, end = mark[o], begin[o], end[o]
    step = pd.Series(begin.astype(np.int64) - end.astype(np.int64))
    by = step.groupby(pid, sort=False)
    c = by.cumsum()
    after = (c - np.minimum(0, c.groupby(pid, sort=False).cummin())).to_numpy()   # block depth, never below 0
    before = pd.Series(after).groupby(pid, sort=False).shift(1, fill_value=0).to_numpy()
    opening = begin & (before == 0)
    closing = (end & (after == 0)) | (mark & (before == 0))
    close = pd.Series(closing.astype(np.int64))
    frame = (close.groupby(pid, sort=False).cumsum() - close).to_numpy()
    outside = (before == 0) & ~opening & ~closing
    nxt = pd.Series(np.where(opening, 1.0, np.where(closing, 2.0, np.nan))).groupby(pid, sort=False).bfill().to_numpy()
    blocks = pd.Series(begin).groupby(pid, sort=False).transform("any").to_numpy(bool)
    none = outside & ((nxt == 1.0) | (np.isnan(nxt) & blocks))
    fr = pd.array(np.where(none, 0, frame), dtype="Int64")
    fr[none] = pd.NA
    res, cl = pd.array(np.zeros(n, np.int64), dtype="Int64"), np.zeros(n, bool)
    res[o], cl[o] = fr, closing
    return pd.Series(res, index=gpu.index, name="frame"), pd.Series(cl, index=gpu.index)


def data_movement(gpu: pd.DataFrame, interval: str = "100ms") -> pd.DataFrame:
    """Bytes moved per direction per time bin (columns h2d, d2h, d2d, unknown)."""
    moved = gpu[gpu["direction"].notna() & gpu["bytes"].notna()]
    if moved.empty:
        return pd.DataFrame(columns=list(_DIRECTIONS) + ["unknown"])
    out = (moved.assign(bytes=moved["bytes"].astype("int64"))
           .pivot_table(index=pd.Grouper(key="ts", freq=interval), columns="direction", values="bytes",
                        aggfunc="sum", fill_value=0))
    for d in list(_DIRECTIONS) + ["unknown"]:
        if d not in out:
            out[d] = 0
    return out


def bandwidth(gpu: pd.DataFrame) -> pd.DataFrame:
    """Per copy call (copy_h2d, copy_d2h, copy_d2d, copy) with a duration: bytes / call duration.

    This is *call-time* bandwidth: for asynchronous copies the call returns
    before the transfer ends, so it is not the transfer's bandwidth.
    """
    c = gpu[gpu["direction"].notna() & gpu["bytes"].notna() & gpu["duration_ns"].notna() & (gpu["duration_ns"] > 0)]
    return c.assign(call_time_bandwidth_gbs=c["bytes"].astype("float64") / c["duration_ns"].astype("float64"))[
        ["ts", "pid", "api", "call", "direction", "bytes", "duration_ns", "call_time_bandwidth_gbs"]]


def _alloc_free(gpu: pd.DataFrame):
    ok = gpu["retval"].isna() | gpu["retval"].eq(0)
    alloc = gpu[gpu["category"].eq("alloc") & gpu["handle"].notna() & gpu["handle"].ne(0) & ok]
    free = gpu[gpu["category"].eq("free") & gpu["handle"].notna()]
    return alloc, free


def memory_timeline(gpu: pd.DataFrame) -> pd.DataFrame:
    """Outstanding allocated bytes over time, per pid and API (a row at every alloc/free whose size is known)."""
    alloc, free = _alloc_free(gpu)
    size = alloc["bytes"].astype("float64")
    sizes = dict(zip(zip(alloc["pid"], alloc["api"], alloc["handle"]), size))
    freed = pd.Series([sizes.get(k, float("nan")) for k in zip(free["pid"], free["api"], free["handle"])],
                      index=free.index, dtype="float64")
    ev = pd.concat([alloc.assign(delta=size), free.assign(delta=-freed)])
    ev = ev.dropna(subset=["delta"]).sort_values("ts", kind="stable")
    ev["outstanding"] = ev.groupby(["pid", "api"])["delta"].cumsum().astype("float64")
    return ev[["ts", "pid", "api", "call", "handle", "delta", "outstanding"]].reset_index(drop=True)


def leaks(gpu: pd.DataFrame, end=None) -> pd.DataFrame:
    """Allocations never freed by the end of the recording: size, age at the end, where from.

    Frees are matched to allocations of the same (pid, API, handle) in time order, so a handle
    that is freed and handed out again is a new allocation."""
    alloc, free = _alloc_free(gpu)
    ev = pd.concat([pd.DataFrame({"ts": alloc["ts"], "row": range(len(alloc)), "free": False}),
                    pd.DataFrame({"ts": free["ts"], "row": range(len(free)), "free": True})])
    keys = list(zip(alloc["pid"], alloc["api"], alloc["handle"])), list(zip(free["pid"], free["api"], free["handle"]))
    live: dict = {}
    ordered = ev.sort_values(["ts", "free"], kind="stable")      # at one instant: the allocation first
    for row, is_free in zip(ordered["row"], ordered["free"]):
        key = keys[is_free][row]
        if not is_free:
            live.setdefault(key, []).append(row)
        elif live.get(key):
            live[key].pop()
    keep = np.zeros(len(alloc), bool)
    keep[[r for rows in live.values() for r in rows]] = True
    out = alloc[keep]
    end = gpu["ts"].max() if end is None else end
    return out.assign(age=end - out["ts"])[["ts", "pid", "api", "call", "handle", "bytes", "age", "caller"]]


def latency(gpu: pd.DataFrame, percentiles=(0.5, 0.9, 0.99)) -> pd.DataFrame:
    """Per call: count, total bytes, and duration percentiles (ns) where return probes were on
    (NaN for calls recorded without durations)."""
    names = [f"p{int(p * 100)}_ns" for p in percentiles]
    out = gpu.groupby(["api", "call"]).agg(count=("call", "size"), bytes=("bytes", "sum"))
    d = gpu[gpu["duration_ns"].notna()]
    if len(d):
        q = d.assign(d=d["duration_ns"].astype("float64")).groupby(["api", "call"])["d"].quantile(list(percentiles))
        q = q.unstack()
        q.columns = names
        out = out.join(q)
    else:
        out = out.assign(**{n: float("nan") for n in names})
    return out.reset_index()
