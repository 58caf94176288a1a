"""Pure functions on PmuCounters tables: totals, time series, derived metrics.

:func:`top_functions` ranks functions in PmuSampler's ``pmu_samples`` table.
Otherwise the input is the tidy ``pmu`` table (one row per charge and event: ts, pid, comm,
event, value...) or the output of :func:`pmu_timeseries`.  Every function
groups by ``by`` (default ``"pid"``); with ``interval`` it also bins ``ts``
(each charge counts in the bin holding its ``ts``, the end of the charged
slice), giving a metric over time.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from ..errors import ProbeConfigError

__all__ = ["process_names", "pmu_totals", "pmu_timeseries", "ipc", "miss_rate", "mpki", "top_functions"]


def _keys(by) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _check(df: pd.DataFrame, cols) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ProbeConfigError(f"the table lacks columns {missing}: pass PmuCounters' table "
                               "(session.tables['pmu']) or the output of pmu_timeseries()")


def _interval(interval) -> pd.Timedelta:
    try:
        td = pd.Timedelta(interval)
    except (ValueError, TypeError):
        raise ProbeConfigError(f"interval must be a duration such as '100ms', got {interval!r}") from None
    if td <= pd.Timedelta(0):
        raise ProbeConfigError(f"interval must be positive, got {interval!r}")
    return td


def pmu_timeseries(df: pd.DataFrame, interval="100ms", by="pid") -> pd.DataFrame:
    """Sum ``value`` per time bin, ``by`` group and event: columns ts (bin start), *by, event, value.

    Bins are aligned to multiples of ``interval`` since the epoch; bins with
    nothing recorded are absent.  Summing ``value`` over the result gives the
    table's totals exactly.
    """
    keys = _keys(by)
    _check(df, ["ts", "event", "value", *keys])
    td = _interval(interval)
    out = df.assign(ts=df["ts"].dt.floor(td))
    out = (out.groupby(["ts", *keys, "event"], observed=True, sort=True)["value"].sum()
           .reset_index())
    out["value"] = out["value"].astype(np.int64)
    out.attrs["interval"] = str(td)
    return out


def process_names(df: pd.DataFrame, main_threads: dict | None = None) -> pd.Series:
    """pid -> its name: the main thread's (tid == pid) last comm in ``df``, else ``main_threads[pid]``
    (``Recording.metadata.process_names``, read at stop), else the last comm of any of its threads."""
    last = df.groupby("pid")["comm"].last()
    if "tid" in df.columns:
        main = df[df["tid"] == df["pid"]].groupby("pid")["comm"].last()
        fallback = pd.Series({p: (main_threads or {}).get(int(p), c) for p, c in last.items()}, dtype=object)
        last = main.combine_first(fallback) if len(fallback) else main
    return last.rename("comm")


def pmu_totals(df: pd.DataFrame, by="pid", names: dict | None = None) -> pd.DataFrame:
    """Totals per ``by`` group: one column per event (and ``comm``, the process's name (process_names),
    when grouping by pid; ``names``: the recording's metadata.process_names)."""
    keys = _keys(by)
    _check(df, ["event", "value", *keys])
    wide = df.pivot_table(index=keys or None, columns="event", values="value", aggfunc="sum",
                          fill_value=0, observed=True) if keys else \
        df.groupby("event", observed=True)["value"].sum().to_frame().T
    wide.columns = [str(c) for c in wide.columns]
    wide = wide.astype(np.int64)
    if keys == ["pid"] and "comm" in df.columns:
        wide.insert(0, "comm", process_names(df, names))
    return wide.reset_index() if keys else wide.reset_index(drop=True)


def _wide(df, events, interval, by, metric) -> pd.DataFrame:
    """Sums of ``events`` per group (and time bin): one column per event."""
    keys = _keys(by)
    if interval is not None:
        df = pmu_timeseries(df, interval, by=keys)
        keys = ["ts", *keys]
    _check(df, ["event", "value", *keys])
    have = set(map(str, df["event"].unique()))
    missing = [e for e in events if e not in have]
    if missing:
        raise ProbeConfigError(f"{metric} needs the events {events}; the table has no {missing}: record "
                               f"PmuCounters({events}) (hardware events need a hardware PMU)")
    sub = df[df["event"].astype(str).isin(events)]
    grouped = sub.groupby([*keys, sub["event"].astype(str)], sort=True)["value"].sum()
    wide = grouped.unstack("event", fill_value=0) if keys else grouped.to_frame().T
    wide = wide.reindex(columns=events, fill_value=0).astype(np.int64)
    wide.columns.name = None
    return wide.reset_index() if keys else wide.reset_index(drop=True)


def _ratio(num: pd.Series, den: pd.Series, scale: float = 1.0) -> pd.Series:
    num, den = num.astype("float64"), den.astype("float64")
    return (num * scale / den).where(den > 0)


def ipc(df: pd.DataFrame, interval=None, by="pid") -> pd.DataFrame:
    """Instructions per cycle per ``by`` group (and per time bin with ``interval``):
    columns *keys, instructions, cycles, ipc (NaN where no cycles were counted)."""
    out = _wide(df, ["instructions", "cycles"], interval, by, "ipc")
    out["ipc"] = _ratio(out["instructions"], out["cycles"])
    return out


def miss_rate(df: pd.DataFrame, misses="cache-misses", references="cache-references", interval=None,
              by="pid") -> pd.DataFrame:
    """``misses / references`` per group (and time bin), clipped to [0, 1].

    Counters of misses and references are separate and may disagree (multiplexing,
    prefetches counted in one and not the other): ``misses_exceed_references``
    flags the rows where misses > references, whose rate was clipped to 1 (NaN
    when there were no references at all).  Any pair works, e.g.
    ``misses="LLC-load-misses", references="LLC-loads"``.
    """
    out = _wide(df, [misses, references], interval, by, "miss_rate")
    out = out.rename(columns={misses: "misses", references: "references"})
    out["miss_rate"] = _ratio(out["misses"], out["references"]).clip(0.0, 1.0)
    out["misses_exceed_references"] = out["misses"] > out["references"]
    out.attrs.update(misses=misses, references=references)
    return out


def mpki(df: pd.DataFrame, misses="cache-misses", interval=None, by="pid") -> pd.DataFrame:
    """Misses per thousand instructions per group (and time bin): *keys, misses, instructions, mpki."""
    out = _wide(df, [misses, "instructions"], interval, by, "mpki")
    out = out.rename(columns={misses: "misses"})
    out["mpki"] = _ratio(out["misses"], out["instructions"], 1000.0)
    out.attrs["misses"] = misses
    return out


UNKNOWN = "[unknown]"


def top_functions(samples: pd.DataFrame, n: int | None = 20, inclusive: bool = False) -> pd.DataFrame:
    """Functions ranked by samples: columns symbol, module, samples, share (of all samples), most first.

    ``samples``: PmuSampler's table (``session.tables["pmu_samples"]``), or any
    subset of its rows.  Self samples by default: the function the sample
    interrupted (unresolved addresses count under symbol ``"[unknown]"``, with
    their module where known; ``sym_status`` says why).  ``inclusive=True``
    counts each function once per sample whose stack holds it (needs
    ``stacks=True``; module is then empty and shares add up to more than 1).
    ``n``: rows kept (None: all).
    """
    need = ["stack"] if inclusive else ["symbol", "module"]
    missing = [c for c in need if c not in samples.columns]
    if missing:
        raise ProbeConfigError(f"the table lacks columns {missing}: pass PmuSampler's table "
                               "(session.tables['pmu_samples'])" + (", recorded with stacks=True" if inclusive else ""))
    total = len(samples)

    def name(v) -> str:
        return UNKNOWN if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)
    # counted in Python, kept as object columns: symbols and file names may hold non-UTF-8 bytes
    # (surrogates), which pandas' string dtype (where groupby would put them) rejects
    if inclusive:
        found = Counter(f for st in samples["stack"] for f in dict.fromkeys(st))
        keys = [(f, "") for f in found]
    else:
        found = Counter(zip(map(name, samples["symbol"]), map(name, samples["module"])))
        keys = list(found)
    n_of = [found[k[0]] if inclusive else found[k] for k in keys]
    keys = [k for _c, k in sorted(zip(n_of, keys), key=lambda ck: (-ck[0], ck[1][0]))][:n]   # most first
    counts = pd.DataFrame({"symbol": pd.Series([k[0] for k in keys], dtype=object),
                           "module": pd.Series([k[1] for k in keys], dtype=object),
                           "samples": np.array([found[k[0]] if inclusive else found[k] for k in keys], np.int64)})
    counts["share"] = counts["samples"] / max(total, 1)
    return counts.reset_index(drop=True)[["symbol", "module", "samples", "share"]]
