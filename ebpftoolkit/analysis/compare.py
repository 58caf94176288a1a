"""Two recordings side by side: what changed between a baseline and a run.

``compare(a, b)`` gives one row per (api, call) seen in either: counts, bytes and duration
percentiles of each, and b's over a's ratios (NaN where a has none, so nothing is divided by
zero); ``compare_frames`` the frame-time statistics of each; ``compare_pmu`` each PMU event's
totals.  Arguments are Recordings (or Sessions) or their ``tables`` dicts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import gpu as ga

__all__ = ["compare", "compare_frames", "compare_pmu"]

CALL_COLUMNS = ["api", "call", "count_a", "count_b", "bytes_a", "bytes_b", "p50_ns_a", "p50_ns_b", "p99_ns_a",
                "p99_ns_b", "count_ratio", "bytes_ratio", "p50_ratio", "p99_ratio"]


def _tables(x) -> dict:
    t = getattr(x, "tables", x)
    if not isinstance(t, dict):
        raise TypeError(f"compare() takes Recordings, Sessions or their tables dicts, not {type(x).__name__}")
    return t


def _ratio(b: pd.Series, a: pd.Series) -> pd.Series:
    a, b = a.astype("float64"), b.astype("float64")
    return (b / a.where(a != 0)).astype("float64")


def compare(a, b) -> pd.DataFrame:
    """Per (api, call): count, bytes, p50 and p99 duration (ns) of ``a`` (the baseline) and ``b``, and b/a."""
    sides = []
    for t in (_tables(a), _tables(b)):
        gpu = t.get("gpu")
        if gpu is None or not len(gpu):
            sides.append(pd.DataFrame(columns=["api", "call", "count", "bytes", "p50_ns", "p99_ns"]))
            continue
        lat = ga.latency(gpu, percentiles=(0.5, 0.99))
        lat["bytes"] = pd.to_numeric(lat["bytes"], errors="coerce").fillna(0)
        sides.append(lat[["api", "call", "count", "bytes", "p50_ns", "p99_ns"]])
    out = sides[0].merge(sides[1], on=["api", "call"], how="outer", suffixes=("_a", "_b"))
    for col in ("count", "bytes"):
        for s in ("_a", "_b"):
            out[col + s] = pd.to_numeric(out[col + s], errors="coerce").fillna(0).astype("int64")
    for col in ("p50_ns", "p99_ns"):
        for s in ("_a", "_b"):
            out[col + s] = pd.to_numeric(out[col + s], errors="coerce").astype("float64")
    out["count_ratio"] = _ratio(out["count_b"], out["count_a"])
    out["bytes_ratio"] = _ratio(out["bytes_b"], out["bytes_a"])
    out["p50_ratio"] = _ratio(out["p50_ns_b"], out["p50_ns_a"])
    out["p99_ratio"] = _ratio(out["p99_ns_b"], out["p99_ns_a"])
    return out[CALL_COLUMNS].sort_values(["api", "call"], kind="stable").reset_index(drop=True)


def _frame_stats(t: dict) -> dict:
    gpu = t.get("gpu")
    ft = ga.frames(gpu)["frame_time"].dropna() if gpu is not None and len(gpu) else pd.Series([], dtype="timedelta64[ns]")
    ms = ft.dt.total_seconds().to_numpy() * 1e3 if len(ft) else np.zeros(0)
    return {"frames": int(len(ms)), "mean_ms": float(ms.mean()) if len(ms) else np.nan,
            "p50_ms": float(np.median(ms)) if len(ms) else np.nan,
            "p99_ms": float(np.quantile(ms, 0.99)) if len(ms) else np.nan,
            "max_ms": float(ms.max()) if len(ms) else np.nan}


def compare_frames(a, b) -> pd.DataFrame:
    """Frame times of ``a`` and ``b`` (frames timed, mean, p50, p99, max in ms) and b/a, one row per statistic."""
    fa, fb = _frame_stats(_tables(a)), _frame_stats(_tables(b))
    out = pd.DataFrame({"statistic": list(fa), "a": [float(v) for v in fa.values()],
                        "b": [float(v) for v in fb.values()]})
    out["ratio"] = _ratio(out["b"], out["a"])
    return out


def compare_pmu(a, b) -> pd.DataFrame:
    """Each PMU event's total in ``a`` and ``b`` (summed over processes and CPUs) and b/a."""
    tot = []
    for t in (_tables(a), _tables(b)):
        pmu = t.get("pmu")
        tot.append({} if pmu is None or not len(pmu) else
                   {str(k): int(v) for k, v in pmu.groupby(pmu["event"].astype(str))["value"].sum().items()})
    events = sorted(set(tot[0]) | set(tot[1]))
    out = pd.DataFrame({"event": events, "total_a": [tot[0].get(e, 0) for e in events],
                        "total_b": [tot[1].get(e, 0) for e in events]}).astype({"total_a": "int64", "total_b": "int64"})
    out["ratio"] = _ratio(out["total_b"], out["total_a"])
    return out
