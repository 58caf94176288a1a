"""The questions a GPU recording is opened for, answered first (issue 17, item 2): which calls were
slowest, which calls moved the most bytes, which frames were slowest.

Pure functions on GpuTrace's table (``Recording.tables["gpu"]``).  Each returns a DataFrame
with ``start`` and ``end`` (datetime64[ns]) for every row, the span a view zooms to: the call
itself, the calls of a group from the first one's start to the last one's end, or the frame.
An empty result has the same columns; :func:`why_empty` says why it is empty.
"""
from __future__ import annotations

import pandas as pd

from ..text import printable
from .gpu import frames

__all__ = ["slowest_calls", "most_bytes", "slowest_frames", "why_empty", "summary_lines"]

CALL_COLUMNS = ["start", "end", "duration_ns", "pid", "tid", "comm", "api", "call", "category", "bytes", "frame"]
BYTES_COLUMNS = ["start", "end", "pid", "comm", "api", "call", "direction", "bytes", "calls", "largest"]
FRAME_COLUMNS = ["start", "end", "frame_time", "pid", "comm", "frame", "draws", "dispatches", "bytes_up", "bytes_down",
                 "calls"]


def _empty(columns) -> pd.DataFrame:
    dtypes = {"start": "datetime64[ns]", "end": "datetime64[ns]", "frame_time": "timedelta64[ns]"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c in columns})


def _comm(gpu: pd.DataFrame, pids) -> pd.Series:
    """The name of each pid's last calling thread (object dtype: traced text may hold surrogates, which
    the string dtype pandas would infer rejects)."""
    last = dict(zip(gpu["pid"], gpu["comm"]))
    return pd.Series([last.get(p) for p in pids], index=pids.index, dtype=object)


def slowest_calls(gpu: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` calls with the longest durations (return probes on), longest first; ties in time order.

    ``end`` is ``start`` + the duration: the time the call held its thread."""
    if gpu is None or "duration_ns" not in gpu:
        return _empty(CALL_COLUMNS)
    timed = gpu[gpu["duration_ns"].notna()]
    if timed.empty:
        return _empty(CALL_COLUMNS)
    d = timed["duration_ns"].astype("int64")
    top = timed.assign(_d=d.to_numpy(), _ts=timed["ts"]).sort_values(["_d", "_ts"], ascending=[False, True],
                                                                     kind="stable").head(n)
    out = top.assign(start=top["ts"], end=top["ts"] + pd.to_timedelta(top["_d"], unit="ns"),
                     duration_ns=top["_d"].astype("int64"))
    return out[CALL_COLUMNS].reset_index(drop=True)


def most_bytes(gpu: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Bytes moved (calls with a direction and a size) per process, call and direction, most first:
    the total, the number of calls, the largest single call, and the span from the first call's
    start to the last call's end."""
    if gpu is None or gpu.empty:
        return _empty(BYTES_COLUMNS)
    moved = gpu[gpu["direction"].notna() & gpu["bytes"].notna()]
    if moved.empty:
        return _empty(BYTES_COLUMNS)
    dur = moved["duration_ns"].astype("Int64").fillna(0).astype("int64") if "duration_ns" in moved else 0
    m = moved.assign(_b=moved["bytes"].astype("int64"), _end=moved["ts"] + pd.to_timedelta(dur, unit="ns"),
                     direction=moved["direction"].astype(object), api=moved["api"].astype(object),
                     call=moved["call"].astype(object))
    out = (m.groupby(["pid", "api", "call", "direction"], sort=False, dropna=False)
           .agg(bytes=("_b", "sum"), calls=("_b", "size"), largest=("_b", "max"), start=("ts", "min"),
                end=("_end", "max"))
           .reset_index())
    out = out.sort_values(["bytes", "start"], ascending=[False, True], kind="stable").head(n)
    out["comm"] = _comm(gpu, out["pid"])
    return out.astype({"bytes": "int64", "calls": "int64", "largest": "int64"})[BYTES_COLUMNS].reset_index(drop=True)


def _timed_frames(gpu: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """(frames that were ended and have a frame time, whether any frame was ended at all)."""
    fr = frames(gpu)
    if "ended_by" in fr:                         # frames ended by a swap/present, a marker...
        ended = fr[fr["ended_by"].notna()]
    else:                                        # by a swap or present: the calls after the last one end none
        swapped = gpu.loc[gpu["category"].eq("frame"), ["pid", "frame"]].drop_duplicates()
        ended = fr.merge(swapped, on=["pid", "frame"], how="inner")
    return ended[ended["frame_time"].notna()], len(ended) > 0


def slowest_frames(gpu: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` frames with the longest frame times, longest first.  A frame is the time from the
    previous frame's end to its own (``start`` .. ``end``, :func:`ebpftoolkit.analysis.gpu.frames`):
    the calls after a process's last boundary (a frame not ended) and its first frame (no start)
    are not timed."""
    if gpu is None or gpu.empty:
        return _empty(FRAME_COLUMNS)
    fr, _ = _timed_frames(gpu)
    if fr.empty:
        return _empty(FRAME_COLUMNS)
    top = fr.sort_values(["frame_time", "end"], ascending=[False, True], kind="stable").head(n)
    out = top.assign(start=top["end"] - top["frame_time"], comm=_comm(gpu, top["pid"]),
                     calls=top["calls"].astype("int64"))
    return out[FRAME_COLUMNS].reset_index(drop=True)


def why_empty(answer: str, gpu: pd.DataFrame | None, returns: str | None = None) -> str:
    """Why ``answer`` ("slowest_calls", "most_bytes" or "slowest_frames") found nothing.

    ``returns``: the recording's GpuTrace ``returns`` option, when known."""
    if gpu is None:
        return "GPU API calls were not recorded"
    if gpu.empty:
        return "no GPU API call was recorded"
    if answer == "slowest_calls":
        if returns == "none":
            return "no call has a duration (recorded with returns='none')"
        return ("no call has a duration: none of the calls made has a return probe by default "
                "(returns='all' times every call)")
    if answer == "most_bytes":
        return "no call moved bytes (no copy with a known size)"
    if answer == "slowest_frames":
        if not _timed_frames(gpu)[1]:
            return "no frame boundaries (no swap or present call, no frame marker)"
        return "one frame boundary per process: no frame has both a start and an end"
    raise ValueError(f"unknown answer {answer!r}")


# -- in words: Recording.summary() and the notebook's summary line -------------------------------------
def duration_text(ns) -> str:
    ns = float(ns)
    if ns < 1e6:
        return f"{ns / 1e3:.3g} us"
    return f"{ns / 1e6:.3g} ms" if ns < 1e9 else f"{ns / 1e9:.3g} s"


def bytes_text(b) -> str:
    b = float(b)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def _who(comm, pid) -> str:
    return f"{printable(comm)} {int(pid)}"


def _at(ts, t0) -> str:
    return f"at {(ts - t0).total_seconds():.3f} s"


def call_text(row, t0) -> str:
    """``glReadPixels 1.2 ms (gl_egl 123, at 0.512 s)``: one row of :func:`slowest_calls`."""
    return f"{printable(row.call)} {duration_text(row.duration_ns)} ({_who(row.comm, row.pid)}, {_at(row.start, t0)})"


def summary_lines(gpu: pd.DataFrame | None, t0=None, returns: str | None = None, n: int = 3) -> list[str]:
    """Three lines: the slowest calls, the most bytes moved, the slowest frames (the top ``n`` of each,
    times since ``t0``: default the first call), or why there are none."""
    if gpu is None:
        return []
    t0 = gpu["ts"].min() if t0 is None and len(gpu) else t0
    calls, moved, fr = slowest_calls(gpu, n), most_bytes(gpu, n), slowest_frames(gpu, n)
    lines = [("slowest calls", [call_text(r, t0) for r in calls.itertuples()], "slowest_calls"),
             ("most bytes moved", [f"{printable(r.call)} {r.direction} {bytes_text(r.bytes)} in {r.calls:,} "
                                   f"call{'s' if r.calls != 1 else ''} ({_who(r.comm, r.pid)})"
                                   for r in moved.itertuples()], "most_bytes"),
             ("slowest frames", [f"frame {int(r.frame)} {duration_text(r.frame_time.value)} "
                                 f"({_who(r.comm, r.pid)}, {_at(r.start, t0)})" for r in fr.itertuples()],
              "slowest_frames")]
    return [f"{title}: " + ("; ".join(items) if items else f"none; {why_empty(key, gpu, returns)}")
            for title, items, key in lines]
