"""Charts: plain functions, DataFrame(s) in, matplotlib Figure out.

No pyplot (figures are not registered anywhere, nothing is shown by itself);
in a notebook, display the returned Figure or ``fig.savefig(...)`` it.  Empty
inputs give a figure that says there is no data, so a report never breaks on a
table that was not recorded.  Time axes are seconds since ``t0`` (default: the
first timestamp of the input).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis import gpu as gpu_analysis
from ..text import printable
from ..analysis import pmu as pmu_analysis

__all__ = ["miss_rate_over_time", "misses_by_function", "mpki", "frame_times", "bytes_moved", "gpu_memory",
           "process_lifetimes", "pmu_rates", "miss_pairs", "CATEGORY_COLORS", "category_color", "safe_text"]


CATEGORY_COLORS = {
    "draw": "#1f77b4", "dispatch": "#9467bd", "launch": "#6a3d9a", "frame": "#000000", "alloc": "#2ca02c",
    "free": "#98df8a", "copy_h2d": "#ff7f0e", "copy_d2h": "#d62728", "copy_d2d": "#ff9896", "copy": "#ffbb78",
    "submit": "#17becf", "sync": "#7f7f7f", "other": "#c7c7c7", "marker": "#e377c2",
    "syscall": "#bcbd22"}
_EXTRA = ["#8dd3c7", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#bc80bd", "#ccebc5"]
DIRECTION_COLORS = {"h2d": "#ff7f0e", "d2h": "#d62728", "d2d": "#9467bd", "unknown": "#7f7f7f"}
# (misses, references) pairs a miss rate can be computed from, most common first
MISS_PAIRS = [("cache-misses", "cache-references"), ("LLC-load-misses", "LLC-loads"),
              ("L1-dcache-load-misses", "L1-dcache-loads"), ("LLC-store-misses", "LLC-stores"),
              ("dTLB-load-misses", "dTLB-loads"), ("branch-misses", "branch-instructions")]


def category_color(cat: str) -> str:
    return CATEGORY_COLORS.get(cat) or _EXTRA[sum(map(ord, str(cat))) % len(_EXTRA)]


def safe_text(s) -> str:
    """Text from a traced program, safe for matplotlib: escaped as on a terminal (no control
    characters, non-UTF-8 bytes as \\xNN) and no mathtext ($)."""
    return printable(s).replace("$", r"\$")


def _figure(title: str, nrows: int = 1, height: float = 3.2, width: float = 9.0, sharex=True):
    fig = Figure(figsize=(width, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    fig.suptitle(safe_text(title), x=0.01, ha="left", fontsize=10)
    return fig, list(axes)


def _no_data(title: str, why: str) -> Figure:
    fig, (ax,) = _figure(title, height=1.4)
    ax.text(0.5, 0.5, safe_text(why), ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()
    fig.no_data = True
    return fig


def _t0(ts: pd.Series, t0=None) -> pd.Timestamp:
    return pd.Timestamp(t0) if t0 is not None else pd.Timestamp(ts.min())


def _rel(ts, t0: pd.Timestamp) -> np.ndarray:
    return (pd.to_datetime(pd.Series(ts)) - t0).dt.total_seconds().to_numpy()


def _xlabel(ax, t0: pd.Timestamp) -> None:
    ax.set_xlabel(f"seconds since {t0:%H:%M:%S.%f}"[:-3])


def _auto_interval(ts: pd.Series, bins: int = 120) -> str:
    span = (ts.max() - ts.min()).total_seconds() if len(ts) else 0.0
    ms = max(1, int(np.ceil(span * 1000 / bins)))
    return f"{ms}ms"


def miss_pairs(events) -> list[tuple[str, str]]:
    """The (misses, references) pairs of :data:`MISS_PAIRS` present in ``events``."""
    have = set(map(str, events))
    return [(m, r) for m, r in MISS_PAIRS if m in have and r in have]


def miss_rate_over_time(pmu: pd.DataFrame, misses: str | None = None, references: str | None = None,
                        interval=None, by=None, t0=None) -> Figure:
    """Miss rate (misses / references, clipped to 1) per time bin; one line per ``by`` group."""
    title = "cache miss rate over time (measured)"
    if pmu is None or pmu.empty:
        return _no_data(title, "no PMU counts recorded")
    pairs = [(misses, references)] if misses else miss_pairs(pmu["event"].unique())
    if not pairs:
        return _no_data(title, "no miss/reference counter pair recorded (e.g. cache-misses,cache-references)")
    misses, references = pairs[0]
    interval = interval or _auto_interval(pmu["ts"])
    df = pmu_analysis.miss_rate(pmu, misses, references, interval=interval, by=by)
    t0 = _t0(pmu["ts"], t0)
    fig, (ax,) = _figure(f"{title}: {misses} / {references} per {interval}")
    groups = [((), df)] if by is None else df.groupby(by)
    for key, g in list(groups)[:12]:
        ax.step(_rel(g["ts"], t0), g["miss_rate"], where="post", label=safe_text(key) if by else None)
        bad = g[g["misses_exceed_references"]]
        if len(bad):
            ax.plot(_rel(bad["ts"], t0), bad["miss_rate"], "rx", ms=4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("miss rate")
    if by is not None:
        ax.legend(fontsize=7, title=by)
    _xlabel(ax, t0)
    return fig


def mpki(pmu: pd.DataFrame, misses: str | None = None, interval=None, by=None, t0=None) -> Figure:
    """Misses per thousand instructions per time bin."""
    title = "misses per 1000 instructions (measured)"
    have = set(map(str, pmu["event"].unique())) if pmu is not None and len(pmu) else set()
    cands = [misses] if misses else [m for m, _r in MISS_PAIRS if m in have]
    if "instructions" not in have or not cands or cands[0] not in have:
        return _no_data(title, "needs 'instructions' and a miss counter (e.g. cache-misses) in the PMU table")
    interval = interval or _auto_interval(pmu["ts"])
    df = pmu_analysis.mpki(pmu, cands[0], interval=interval, by=by)
    t0 = _t0(pmu["ts"], t0)
    fig, (ax,) = _figure(f"{title}: {cands[0]} per {interval}")
    groups = [((), df)] if by is None else df.groupby(by)
    for key, g in list(groups)[:12]:
        ax.step(_rel(g["ts"], t0), g["mpki"], where="post", label=safe_text(key) if by else None)
    ax.set_ylabel("MPKI")
    if by is not None:
        ax.legend(fontsize=7, title=by)
    _xlabel(ax, t0)
    return fig


def misses_by_function(df: pd.DataFrame, top: int = 20) -> Figure:
    """Cache misses per function, largest first.

    ``df``: :func:`ebpftoolkit.pmu.simulate_cache_misses` output (cachegrind: L1 data
    and last-level misses, labelled *simulated*), or measured samples with columns
    ``function`` and ``value`` (or ``misses``), labelled *measured*.
    """
    if df is None or df.empty:
        return _no_data("cache misses by function", "no per-function data")
    simulated = "D1mr" in df.columns
    if simulated:
        g = df.groupby("function", sort=False)[["D1mr", "D1mw", "DLmr", "DLmw"]].sum()
        data = pd.DataFrame({"D1 misses (L1 data)": g["D1mr"] + g["D1mw"],
                             "LL misses (last level)": g["DLmr"] + g["DLmw"]})
        title = "cache misses by function — simulated (cachegrind cache model, not hardware counters)"
    else:
        col = "misses" if "misses" in df.columns else "value"
        label = str(df["event"].iloc[0]) if "event" in df.columns and df["event"].nunique() == 1 else "misses"
        data = df.groupby("function", sort=False)[col].sum().to_frame(label)
        title = "cache misses by function — measured"
    data = data.sort_values(data.columns[0], ascending=False).head(top).iloc[::-1]
    fig, (ax,) = _figure(title, height=max(2.0, 0.28 * len(data) + 1.0))
    y = np.arange(len(data))
    h = 0.8 / len(data.columns)
    for i, c in enumerate(data.columns):
        ax.barh(y + i * h, data[c].to_numpy(float), height=h, label=c)
    ax.set_yticks(y + h * (len(data.columns) - 1) / 2, [safe_text(f)[:60] for f in data.index], fontsize=7)
    ax.set_xlabel("misses")
    ax.legend(fontsize=7)
    return fig


def frame_times(gpu: pd.DataFrame, t0=None) -> Figure:
    """Frame time per frame (ms) and draw calls per frame, one line per process."""
    title = "frame times and draw calls per frame"
    fr = gpu_analysis.frames(gpu) if gpu is not None and len(gpu) else pd.DataFrame()
    if len(fr):   # only processes whose frames were ended (a swap, a present, frames= calls or markers)
        fr = fr[fr["pid"].isin(fr.loc[fr["ended_by"].notna(), "pid"])]
    if fr.empty or fr["frame_time"].notna().sum() == 0:
        return _no_data(title, "no frames recorded (no swap/present calls, nor frames= boundaries)")
    t0 = _t0(gpu["ts"], t0)
    fig, (a1, a2) = _figure(title, nrows=2, height=2.4)
    for pid, g in list(fr.groupby("pid"))[:8]:
        x = _rel(g["end"], t0)
        a1.plot(x, g["frame_time"].dt.total_seconds() * 1000, ".-", ms=3, lw=0.8, label=f"pid {pid}")
        a2.step(x, g["draws"], where="mid", lw=0.9, label=f"pid {pid}")
    a1.set_ylabel("frame time (ms)")
    a2.set_ylabel("draw calls / frame")
    a1.legend(fontsize=7)
    _xlabel(a2, t0)
    return fig


def bytes_moved(gpu: pd.DataFrame, interval=None, t0=None) -> Figure:
    """Bytes moved per direction (host-to-device, device-to-host...) per time bin."""
    title = "GPU data movement"
    moved = gpu[gpu["direction"].notna() & gpu["bytes"].notna()] if gpu is not None and len(gpu) else None
    if moved is None or moved.empty:
        return _no_data(title, "no copy with a known size recorded (copy_h2d, copy_d2h, copy_d2d, copy)")
    interval = interval or _auto_interval(moved["ts"])
    dm = gpu_analysis.data_movement(moved, interval)
    t0 = _t0(gpu["ts"], t0)
    fig, (ax,) = _figure(f"{title}: bytes per {interval}")
    x = _rel(pd.Series(dm.index), t0)
    w = pd.Timedelta(interval).total_seconds()
    bottom = np.zeros(len(dm))
    for d in [c for c in dm.columns if dm[c].sum() > 0]:
        v = dm[d].to_numpy(float) / 1e6
        ax.bar(x, v, width=w, bottom=bottom, align="edge", color=DIRECTION_COLORS.get(d), label=d)
        bottom += v
    ax.set_ylabel("MB")
    ax.legend(fontsize=7)
    _xlabel(ax, t0)
    return fig


def gpu_memory(gpu: pd.DataFrame, t0=None) -> Figure:
    """Outstanding allocated bytes over time per process and API; allocations never freed marked."""
    title = "GPU memory outstanding (allocations minus frees)"
    mem = gpu_analysis.memory_timeline(gpu) if gpu is not None and len(gpu) else pd.DataFrame()
    if mem.empty:
        return _no_data(title, "no allocations recorded")
    t0 = _t0(gpu["ts"], t0)
    lk = gpu_analysis.leaks(gpu)
    fig, (ax,) = _figure(title)
    for (pid, api), g in list(mem.groupby(["pid", "api"]))[:8]:
        if len(g) > 4000:   # keep the envelope: every n-th point plus the maximum
            keep = np.zeros(len(g), bool)
            keep[:: len(g) // 2000] = True
            keep[int(np.argmax(g["outstanding"].to_numpy()))] = keep[-1] = True
            g = g[keep]
        ax.step(_rel(g["ts"], t0), g["outstanding"] / 1e6, where="post", label=safe_text(f"pid {pid} {api}"))
    if len(lk):
        ax.plot(_rel(lk["ts"], t0), np.zeros(len(lk)), "rv", ms=6, clip_on=False,
                label=f"never freed: {len(lk)} allocations, {lk['bytes'].sum() / 1e6:.2f} MB")
    ax.set_ylabel("MB outstanding")
    ax.legend(fontsize=7)
    _xlabel(ax, t0)
    return fig


def process_lifetimes(processes: pd.DataFrame | None = None, exec: pd.DataFrame | None = None,
                      max_rows: int = 60, t0=None) -> Figure:
    """One bar per process from start to exit (coloured by how it ended), exec events marked."""
    title = "process lifetimes"
    rows = []
    if processes is not None and len(processes):
        start = processes["start_ts"].fillna(processes["fork_ts"]) if "fork_ts" in processes else processes["start_ts"]
        rows = pd.DataFrame({"pid": processes["pid"], "comm": processes["comm"], "start": start,
                             "end": processes["exit_ts"], "code": processes["exit_code"],
                             "sig": processes["exit_signal"]})
    elif exec is not None and len(exec):
        ok = exec[exec["retval"] == 0]
        rows = ok.groupby("pid").agg(comm=("comm", "last"), start=("ts", "min"), end=("end_ts", "max"),
                                     code=("exit_code", "last"), sig=("exit_signal", "last")).reset_index()
    if len(rows) == 0:
        return _no_data(title, "no processes recorded (record with --exec)")
    rows = rows.dropna(subset=["start"]).sort_values("start")
    n_all = len(rows)
    rows = rows.head(max_rows)
    t0 = _t0(rows["start"], t0)
    end_all = rows["end"].max() if rows["end"].notna().any() else rows["start"].max()
    x0 = _rel(rows["start"], t0)
    x1 = _rel(rows["end"].fillna(end_all), t0)
    col = np.where(rows["sig"].notna(), "tab:red", np.where(rows["code"].fillna(0).ne(0), "tab:orange", "tab:green"))
    col = np.where(rows["end"].isna(), "tab:gray", col)
    fig, (ax,) = _figure(title if n_all <= max_rows else f"{title} (first {max_rows} of {n_all})",
                         height=max(1.8, 0.22 * len(rows) + 1.0))
    y = np.arange(len(rows))
    ax.barh(y, np.maximum(x1 - x0, 1e-6), left=x0, color=col, height=0.7)
    if exec is not None and len(exec):
        pos = dict(zip(rows["pid"], y))
        ex = exec[exec["pid"].isin(pos)]
        ax.scatter(_rel(ex["ts"], t0), ex["pid"].map(pos), marker="|", color="k", s=40, zorder=3, label="exec")
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_yticks(y, [safe_text(f"{p} {c}")[:30] for p, c in zip(rows["pid"], rows["comm"])], fontsize=7)
    ax.invert_yaxis()
    ax.set_title("green: exit 0, orange: non-zero exit, red: killed by a signal, grey: still running",
                 fontsize=7, loc="left")
    _xlabel(ax, t0)
    return fig


def pmu_rates(pmu: pd.DataFrame, interval=None, t0=None, top: int = 5, min_interval="20ms") -> Figure:
    """Per event, the counted rate over time for the ``top`` processes (CPUs for clock events).

    Counts are charged at context switches and timer ticks, so bins shorter than
    the tick (``min_interval``, default twice PmuCounters' 10 ms) would show spikes.
    """
    title = "PMU counters over time"
    if pmu is None or pmu.empty:
        return _no_data(title, "no PMU counts recorded")
    interval = interval or max(_auto_interval(pmu["ts"]), min_interval, key=pd.Timedelta)
    ts = pmu_analysis.pmu_timeseries(pmu, interval, by="pid")
    secs = pd.Timedelta(interval).total_seconds()
    events = [str(e) for e in pmu["event"].unique()]
    t0 = _t0(pmu["ts"], t0)
    fig, axes = _figure(f"{title} (per {interval})", nrows=len(events), height=1.7)
    comm = pmu_analysis.process_names(pmu)
    for ax, ev in zip(axes, events):
        sub = ts[ts["event"].astype(str) == ev]
        busiest = sub.groupby("pid")["value"].sum().nlargest(top).index
        clock = ev in ("cpu-clock", "task-clock")
        for pid in busiest:
            g = sub[sub["pid"] == pid]
            ax.step(_rel(g["ts"], t0), g["value"] / secs / (1e9 if clock else 1), where="post", lw=0.9,
                    label=safe_text(f"{pid} {comm.get(pid, '')}")[:24])
        ax.set_ylabel(f"{ev}\n({'CPUs' if clock else '/s'})", fontsize=7)
        ax.legend(fontsize=6, loc="upper right")
    _xlabel(axes[-1], t0)
    return fig
