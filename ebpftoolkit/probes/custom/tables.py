"""Users' records and maps as DataFrames: one column per leaf field, whatever the struct's shape.

- nested structs and unions become dotted columns (``in.a``, ``u.x``); a union's members all
  read the same bytes, as in C;
- ``char`` arrays become text (bytes that are not UTF-8 kept, see runtime/records.py); other
  arrays become one column per element (``vals[0]``, ``vals[1]``...);
- a ``u64`` field called ``ts`` is taken as ``bpf_ktime_get_ns()`` and becomes wall-clock time;
- a map gives its key fields then its value fields (a scalar key is ``key``, a scalar value
  ``value``; on a name clash the value's fields get a ``value.`` prefix); per-CPU values are
  summed over the CPUs;
- a log2 histogram (BCC's ``BPF_HISTOGRAM`` and ``bpf_log2l()``) becomes buckets: slot, low,
  high, count, as bcc's print_log2_hist draws them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...runtime.clock import MonotonicClock
from ...runtime.records import decode_str_array, text_column

__all__ = ["columns", "records_frame", "map_frame", "log2_buckets", "plot_log2"]


def columns(arr: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    """Leaf columns of a structured (or plain) array of records, in field order."""
    if arr.ndim > 1:                              # an array field: one column per element
        flat = arr.reshape(len(arr), int(np.prod(arr.shape[1:])))     # -1 cannot size 0 records
        out = {}
        for i in range(flat.shape[1]):
            out.update(columns(np.ascontiguousarray(flat[:, i]), f"{prefix or 'value'}[{i}]"))
        return out
    dt = arr.dtype
    if dt.names is None:
        if dt.kind == "S":
            return {prefix or "value": decode_str_array(arr)}
        return {prefix or "value": arr}
    out = {}
    for name in dt.names:
        out.update(columns(arr[name], f"{prefix}.{name}" if prefix else name))
    return out


def records_frame(arr: np.ndarray, clock: MonotonicClock | None) -> pd.DataFrame:
    cols = columns(arr)
    df = pd.DataFrame({k: (text_column(v) if v.dtype == object else v) for k, v in cols.items()}, index=None)
    if "ts" in cols and cols["ts"].dtype == np.uint64 and clock is not None:
        df["ts"] = clock.to_wall(cols["ts"].astype(np.int64))
    return df


def map_frame(keys: np.ndarray, values: np.ndarray, percpu: bool = False) -> pd.DataFrame:
    """``keys``: n key records; ``values``: n values (``percpu``: n x ncpus values, summed here;
    integers summed in their own signedness, so a u64 counter stays exact)."""
    if percpu:
        per = [columns(np.ascontiguousarray(values[:, c])) for c in range(values.shape[1])]
        vcols = {k: (_sum(p[k] for p in per) if per[0][k].dtype.kind in "iubf" else per[0][k])
                 for k in per[0]} if per else {}
    else:
        vcols = columns(values)
    kcols = columns(keys, "" if keys.dtype.names else "key")
    if keys.dtype.names is None and len(kcols) == 1:         # (an array key keeps all its key[i] columns)
        kcols = {"key": next(iter(kcols.values()))} if kcols else {}
    if values.dtype.names is None and len(vcols) == 1:
        vcols = {"value": next(iter(vcols.values()))}
    clash = set(kcols) & set(vcols)
    vcols = {(f"value.{k}" if k in clash else k): v for k, v in vcols.items()}
    data = {**kcols, **vcols}
    df = pd.DataFrame({k: (text_column(v) if v.dtype == object else v) for k, v in data.items()})
    if not kcols or not len(df):
        return df
    # sorted in Python: key text may hold non-UTF-8 bytes (surrogates), which pandas' multi-column sort
    # (through the string dtype) rejects
    rows = list(zip(*(df[k].tolist() for k in kcols)))
    order = sorted(range(len(rows)), key=lambda i: tuple((v is None, v) for v in rows[i]))
    return df.iloc[order].reset_index(drop=True)


def _sum(parts) -> np.ndarray:
    parts = list(parts)
    kind = parts[0].dtype.kind
    dt = np.uint64 if kind == "u" else np.int64 if kind in "ib" else parts[0].dtype
    return np.sum([p.astype(dt) for p in parts], axis=0, dtype=dt)


def log2_buckets(df: pd.DataFrame) -> pd.DataFrame:
    """A histogram map's rows (key: slot, value: count) as buckets up to the last one used."""
    slot = df["key"].to_numpy(np.int64) if len(df) else np.zeros(0, np.int64)
    count = df["value"].to_numpy(np.int64) if len(df) else np.zeros(0, np.int64)
    used = slot[count > 0]
    top = int(used.max()) if len(used) else -1
    slots = np.arange(top + 1, dtype=np.int64)
    counts = np.zeros(top + 1, np.int64)
    keep = (slot >= 0) & (slot <= top)
    np.add.at(counts, slot[keep], count[keep])
    # uint64: slot 64 (values from 2^63, a histogram of more than 64 slots) holds up to 2^64 - 1
    low = np.array([0 if k == 0 else 1 << (k - 1) for k in slots.tolist()], np.uint64)
    high = np.array([0 if k == 0 else (1 << k) - 1 for k in slots.tolist()], np.uint64)
    return pd.DataFrame({"slot": slots, "low": low, "high": high, "count": counts})


def plot_log2(buckets: pd.DataFrame, title: str = "", ax=None):
    """A bar chart of log2 buckets (labels ``low-high``), on ``ax`` or a new figure; returns the axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _fig, ax = plt.subplots(figsize=(8, 3))
    labels = [f"{lo}-{hi}" if lo != hi else f"{lo}" for lo, hi in zip(buckets["low"], buckets["high"])]
    ax.bar(range(len(buckets)), buckets["count"], color="#4878a8")
    ax.set_xticks(range(len(buckets)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("count")
    ax.set_title(title or "log2 histogram")
    if not len(buckets):
        ax.text(0.5, 0.5, "empty: nothing was counted", ha="center", va="center", transform=ax.transAxes)
    return ax
