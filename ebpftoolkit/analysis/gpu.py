"""Pure functions on GpuTrace's table (``Session.tables["gpu"]``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["frames", "data_movement", "bandwidth", "memory_timeline", "leaks", "latency"]

_DIRECTIONS = ("h2d", "d2h", "d2d")


def frames(gpu: pd.DataFrame) -> pd.DataFrame:
    """One row per (pid, frame): start, frame time, draw calls, dispatches/launches, bytes up and back.

    A frame ends at its swap/present call; ``frame_time`` is the time from the
    previous frame's end to this one's (NaT for the first).
    """
    if gpu.empty:
        return pd.DataFrame(columns=["pid", "frame", "start", "end", "frame_time", "draws", "dispatches",
                                     "bytes_up", "bytes_down", "calls"])
    g = gpu.assign(_draw=gpu["category"].eq("draw"),
                   _disp=gpu["category"].isin(["dispatch", "launch"]),
                   _up=gpu["bytes"].where(gpu["direction"].eq("h2d"), 0).fillna(0),
                   _down=gpu["bytes"].where(gpu["direction"].eq("d2h"), 0).fillna(0))
    out = g.groupby(["pid", "frame"]).agg(start=("ts", "min"), end=("ts", "max"), draws=("_draw", "sum"),
                                          dispatches=("_disp", "sum"), bytes_up=("_up", "sum"),
                                          bytes_down=("_down", "sum"), calls=("call", "size")).reset_index()
    swaps = gpu[gpu["category"].eq("frame")][["pid", "frame", "ts"]].rename(columns={"ts": "swap"})
    out = out.merge(swaps, on=["pid", "frame"], how="left")
    out["end"] = out["swap"].fillna(out["end"])
    out["frame_time"] = out.groupby("pid")["end"].diff()
    return out.drop(columns=["swap"]).astype({"bytes_up": "int64", "bytes_down": "int64", "draws": "int64",
                                               "dispatches": "int64"})


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
