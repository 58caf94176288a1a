"""Timeline of a recording on one time axis: a lane per process (lifetime bar, exec
markers, GPU calls coloured by category, frame boundaries), PMU rates in panels
below, lost-event windows shaded so missing data is not mistaken for idle time.

:func:`static_timeline` draws a matplotlib Figure; :func:`timeline` wraps the same
drawing in ipywidgets (time range, processes, categories, nearest-event readout).
(:mod:`.widget`).  Both work with any subset of tables.  When more than ``max_events`` calls fall in
the visible range they are aggregated into time bins per lane and category
(darker = more calls), and the figure says so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .charts import CATEGORY_COLORS, category_color, safe_text
from .model import NAT, TraceModel, to_ns

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["TimelineData", "static_timeline"]


class TimelineData:
    """What the timeline draws, as numpy arrays in seconds since the first event (built once from
    the recording's :class:`~ebpftoolkit.views.model.TraceModel`)."""

    def __init__(self, rec: "Recording", max_lanes: int = 40, model: TraceModel | None = None):
        m = self.model = model or TraceModel.from_recording(rec)
        self.t0_ns = m.t0_ns
        self.t0 = pd.Timestamp(self.t0_ns)
        self.duration = max((m.end_ns - self.t0_ns) / 1e9, 1e-6)
        self.gpu, self.sys, self.exec = (rec.tables.get(k) for k in ("gpu", "syscalls", "exec"))
        lanes = m.lanes
        self.pids = lanes["pid"].to_numpy(np.int64)
        self.labels = [safe_text(f"{p} {c or ''}")[:28] for p, c in zip(lanes["pid"], lanes["comm"])]
        self.life = np.c_[self.sec_ns(lanes["start_ns"]), self.sec_ns(lanes["end_ns"])].reshape(-1, 2)
        score = lanes["events"].to_numpy()
        self.default_lanes = [int(i) for i in np.sort(np.argsort(-score, kind="stable")[:max_lanes])]
        self.lane_height = np.full(len(self.pids) + 1, 0.4)   # lanes with calls get room for category stripes
        # GPU calls and syscalls: one event array sorted by time
        sp, it = m.spans[m.spans["kind"] == "call"], m.instants[m.instants["kind"].isin(["call", "syscall"])]
        ev = pd.concat([pd.DataFrame({"t": self.sec_ns(sp["start_ns"]), "pid": sp["pid"].to_numpy(np.int64),
                                      "d": (sp["end_ns"] - sp["start_ns"]).to_numpy(float) / 1e9,
                                      "cat": sp["cat"].to_numpy(object), "src": 0, "idx": sp["row"].to_numpy(np.int64)}),
                        pd.DataFrame({"t": self.sec_ns(it["ts_ns"]), "pid": it["pid"].to_numpy(np.int64), "d": 0.0,
                                      "cat": it["cat"].to_numpy(object),
                                      "src": (it["kind"] == "syscall").to_numpy(np.int8),
                                      "idx": it["row"].to_numpy(np.int64)})], ignore_index=True)
        ev = ev.sort_values("t", kind="stable")
        cats = set(pd.unique(ev["cat"]))
        self.categories = [c for c in CATEGORY_COLORS if c in cats] + sorted(cats - set(CATEGORY_COLORS))
        self.stripes = [c for c in self.categories if c != "frame"]
        self.ev_t, self.ev_d = ev["t"].to_numpy(float), ev["d"].to_numpy(float)
        self.ev_cat = pd.Index(self.categories).get_indexer(ev["cat"])
        self.ev_src, self.ev_idx = ev["src"].to_numpy(np.int8), ev["idx"].to_numpy(np.int64)
        self.ev_lane = pd.Index(self.pids).get_indexer(ev["pid"].to_numpy(np.int64))
        self.lane_height[np.unique(self.ev_lane)] = 1.0
        self.max_dur = float(self.ev_d.max()) if len(self.ev_d) else 0.0
        xs = m.instants[m.instants["kind"] == "exec"]
        self.x_t, self.x_idx = self.sec_ns(xs["ts_ns"]), xs["row"].to_numpy(np.int64)
        self.x_ok = (self.exec["retval"].to_numpy()[self.x_idx] == 0) if len(xs) else np.zeros(0, bool)
        self.x_lane = pd.Index(self.pids).get_indexer(xs["pid"].to_numpy(np.int64))
        # PMU: per event, arrays sorted by time
        self.pmu = {}
        self.pmu_interval = m.pmu_interval_ns / 1e9
        c = m.counters
        for ev_name, df in (c.groupby("event", sort=False) if len(c) else ()):
            df = df.sort_values("ts_ns", kind="stable")
            self.pmu[ev_name] = (self.sec_ns(df["ts_ns"]), df["pid"].to_numpy(np.int64), df["value"].to_numpy(float))
        self.loss = list(zip(self.sec_ns(m.loss["start_ns"]), self.sec_ns(m.loss["end_ns"]), m.loss["probe"],
                             m.loss["lost"]))
        self.lost = {k: v for k, v in m.lost.items() if v}

    def sec_ns(self, v) -> np.ndarray:
        """ns since the epoch -> seconds since the first event (NAT -> NaN)."""
        v = np.asarray(v, dtype=np.int64)
        return np.where(v == NAT, np.nan, (v - self.t0_ns) / 1e9)

    def sec(self, s) -> np.ndarray:
        """Timestamps -> seconds since the first event (NaT -> NaN)."""
        v = to_ns(s)
        return np.where(v == NAT, np.nan, (v - self.t0_ns) / 1e9)

    def window(self, t0: float, t1: float, lanes, cats):
        """Indices of the events of these lanes and categories that overlap [t0, t1]."""
        lo, hi = np.searchsorted(self.ev_t, t0 - self.max_dur, "left"), np.searchsorted(self.ev_t, t1, "right")
        sel = np.zeros(len(self.pids) + 1, bool)
        sel[list(lanes)] = True
        csel = np.array([c in cats for c in self.categories] + [False])
        m = sel[self.ev_lane[lo:hi]] & csel[self.ev_cat[lo:hi]] & (self.ev_t[lo:hi] + self.ev_d[lo:hi] >= t0)
        return np.arange(lo, hi)[m]

    def describe(self, x: float, lanes, cats) -> str:
        """Plain text about the event nearest to time ``x`` (seconds) among what is shown."""
        best, text = np.inf, "no event shown"
        idx = self.window(-np.inf, np.inf, lanes, set(cats))
        if len(idx):
            t, d = self.ev_t[idx], self.ev_d[idx]
            dist = np.where((t <= x) & (x <= t + d), 0.0, np.minimum(abs(t - x), abs(t + d - x)))
            best, text = float(dist.min()), self._event_text(idx[int(np.argmin(dist))])
        xm = np.flatnonzero(np.isin(self.x_lane, list(lanes)))
        if len(xm) and abs(self.x_t[j := xm[np.argmin(abs(self.x_t[xm] - x))]] - x) < best:
            r = self.exec.iloc[self.x_idx[j]]
            res = "ok" if r["retval"] == 0 else f"failed {r['error']}"
            text = (f"{self.x_t[j]:+.6f} s  exec pid {r['pid']} (ppid {r['ppid']}) "
                    f"{' '.join(r['argv'] if r['argv'] is not None else [])}  [{res}]")
        for a, b, probe, n in self.loss:
            if a <= x <= b:
                text += f"\ninside a lost-event window: {n} events of probe {probe} were dropped here"
        return text

    def _event_text(self, k: int) -> str:
        t = self.ev_t[k]
        if self.ev_src[k] == 1:
            r = self.sys.iloc[self.ev_idx[k]]
            return f"{t:+.6f} s  pid {r['pid']} tid {r['tid']}  syscall {r['syscall']}"
        r = self.gpu.iloc[self.ev_idx[k]]
        extra = [f"{c}={r[c]}" for c in ("bytes", "direction", "handle", "frame", "retval") if not pd.isna(r[c])]
        if not pd.isna(r["duration_ns"]):
            extra.append(f"duration={int(r['duration_ns']) / 1e3:.1f} us")
        if isinstance(r.get("label"), str):                # a marker's name
            extra.append(f"label={safe_text(r['label'])}")
        return (f"{t:+.6f} s  pid {r['pid']} tid {r['tid']} {r['comm']}  {r['api']} {r['call']} "
                f"[{r['category']}]  " + " ".join(extra))


def _merge_loss(loss, t0, t1, gap) -> list:
    """Loss windows overlapping [t0, t1], those closer than ``gap`` merged (lost counts summed)."""
    out = []
    for a, b, probe, n in sorted(w for w in loss if w[1] >= t0 and w[0] <= t1):
        if out and a - out[-1][1] <= gap:
            pa, pb, pp, pn = out[-1]
            out[-1] = (pa, max(pb, b), pp if probe in pp.split(",") else f"{pp},{probe}", pn + n)
        else:
            out.append((a, b, probe, n))
    return out


def _rects(x, w, y, h) -> np.ndarray:
    """Rectangles (n, 4, 2) for a PolyCollection."""
    return np.stack([np.c_[x, y], np.c_[x, y + h], np.c_[x + w, y + h], np.c_[x + w, y]], axis=1)


class TimelinePlot:
    """The figure (built once) and the drawing of a state into it (repeatable, in place)."""

    def __init__(self, data: TimelineData, n_lanes: int, width: float = 12.0, title: str | None = None):
        self.data = data
        units = data.lane_height[data.default_lanes[:n_lanes]].sum() if n_lanes else 1.0
        lane_h = float(np.clip(units * (0.3 + 0.05 * len(data.stripes)), 1.2, 14))
        events = list(data.pmu)
        self.fig = Figure(figsize=(width, lane_h + 1.2 * len(events) + 1.3), layout="constrained")
        gs = self.fig.add_gridspec(1 + len(events), 1, height_ratios=[lane_h] + [1.1] * len(events))
        self.ax = self.fig.add_subplot(gs[0])
        self.pmu_axes = {e: self.fig.add_subplot(gs[i + 1], sharex=self.ax) for i, e in enumerate(events)}
        self.axes = [self.ax, *self.pmu_axes.values()]
        self.fig.suptitle(safe_text(title or "session timeline"), x=0.01, ha="left", fontsize=10)
        for a in self.axes[:-1]:
            a.tick_params(labelbottom=False)
        self.xlabel = f"seconds since {data.t0:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " (UTC)"
        handles = [Patch(color=category_color(c), label=c) for c in data.stripes]
        handles += [Line2D([], [], color="k", lw=0.8, label="frame boundary")] if "frame" in data.categories else []
        handles += [Patch(color="#b0b0b0", label="process lifetime"),
                    Line2D([], [], ls="", marker="^", color="tab:green", label="exec"),
                    Line2D([], [], ls="", marker="x", color="tab:red", label="failed exec")]
        if data.loss:
            handles.append(Patch(facecolor="tab:red", alpha=0.25, hatch="//", label="lost events (no data)"))
        self.legend_handles = handles
        self.ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(len(handles), 8),
                       fontsize=7, frameon=False)
        self.cursor = [a.axvline(np.nan, color="tab:red", lw=0.8, ls="--") for a in self.axes]
        self._artists: list = []
        self.aggregated = False

    def draw(self, t0: float, t1: float, lanes, cats, max_events: int = 20000, bins: int = 800) -> None:
        d, ax = self.data, self.ax
        for a in self._artists:
            a.remove()
        arts, notes = [], []
        lanes = list(lanes)
        rank = np.full(len(d.pids) + 1, -1)    # row of each lane (-1: hidden); row r starts at y = top[r]
        rank[lanes] = np.arange(len(lanes))
        top = np.r_[0.0, np.cumsum(d.lane_height[lanes])]
        ypos = np.r_[top[:-1], np.nan][rank]    # y of each lane's top, NaN when hidden
        ax.set_ylim(max(top[-1], 0.4), 0)
        ax.set_yticks(top[:-1] + 0.2, [d.labels[i] for i in lanes], fontsize=7)
        arts.append(ax.add_collection(LineCollection([[(-1e12, y), (1e12, y)] for y in top[1:-1]],
                                                     colors="0.85", linewidths=0.5)))
        span = max(t1 - t0, 1e-9)
        ax.set_xlim(t0, t1)   # the PMU axes share it
        # lifetimes and exec markers
        life = d.life[lanes] if lanes else np.zeros((0, 2))
        ok = ~np.isnan(life).any(axis=1)
        if ok.any():
            y = top[:-1][ok] + 0.1
            w = np.maximum(life[ok, 1] - life[ok, 0], span / 1500)
            arts.append(ax.add_collection(PolyCollection(_rects(life[ok, 0], w, y, 0.2),
                                                         facecolors="#b0b0b0", edgecolors="none")))
        xm = (rank[d.x_lane] >= 0) & (d.x_t >= t0) & (d.x_t <= t1) if len(d.x_t) else np.zeros(0, bool)
        for good, mk, col in ((True, "^", "tab:green"), (False, "x", "tab:red")):
            m = xm & (d.x_ok == good)
            if m.any():
                arts.append(ax.scatter(d.x_t[m], ypos[d.x_lane[m]] + 0.2, marker=mk, s=18, color=col, zorder=3))
        # GPU calls and syscalls, one stripe per category
        ns = max(len(d.stripes), 1)
        sh = 0.6 / ns
        stripe = np.array([d.stripes.index(c) if c in d.stripes else -1 for c in d.categories] + [-1])
        idx = d.window(t0, t1, lanes, set(cats) - {"frame"})
        colors = np.array([category_color(c) for c in d.categories] or ["k"])
        self.aggregated = len(idx) > max_events
        if len(idx) and not self.aggregated:
            y = ypos[d.ev_lane[idx]] + 0.35 + stripe[d.ev_cat[idx]] * sh
            verts = _rects(d.ev_t[idx], np.maximum(d.ev_d[idx], span / 1500), y, sh * 0.9)
            arts.append(ax.add_collection(PolyCollection(verts, facecolors=colors[d.ev_cat[idx]], edgecolors="none")))
        elif len(idx):
            b = np.clip(((d.ev_t[idx] - t0) / span * bins).astype(np.int64), 0, bins - 1)
            key = (rank[d.ev_lane[idx]] * (ns + 1) + stripe[d.ev_cat[idx]]) * bins + b
            uk, cnt = np.unique(key, return_counts=True)
            row, rest = np.divmod(uk, (ns + 1) * bins)
            st, bi = np.divmod(rest, bins)
            fc = to_rgba_array(colors[np.array([d.categories.index(c) for c in d.stripes])[st]])
            fc[:, 3] = 0.3 + 0.7 * np.log1p(cnt) / np.log1p(cnt.max())
            verts = _rects(t0 + bi * span / bins, np.full(len(bi), span / bins), top[row] + 0.35 + st * sh, sh * 0.9)
            arts.append(ax.add_collection(PolyCollection(verts, facecolors=fc, edgecolors="none")))
            notes.append(f"aggregated: {len(idx):,} calls drawn as {bins} time bins per process and category "
                         f"(darker = more); zoom in to under {max_events:,} calls to see each one")
        # frame boundaries
        if "frame" in d.categories and "frame" in cats:
            fidx = d.window(t0, t1, lanes, {"frame"})
            if len(fidx) > 500:
                notes.append(f"{len(fidx):,} frame boundaries in range, too dense to draw (zoom in)")
                fidx = fidx[:0]
            if len(fidx):
                x, y = d.ev_t[fidx], ypos[d.ev_lane[fidx]]
                segs = np.stack([np.c_[x, y + 0.33], np.c_[x, y + 0.97]], axis=1)
                arts.append(ax.add_collection(LineCollection(segs, colors="k", linewidths=0.6, alpha=0.7)))
        # PMU rates below
        pids = d.pids[lanes] if len(lanes) != len(d.pids) else None
        for ev, pax in self.pmu_axes.items():
            t, pid, v = d.pmu[ev]
            lo, hi = np.searchsorted(t, [t0, t1])
            m = slice(lo, hi) if pids is None else np.arange(lo, hi)[np.isin(pid[lo:hi], pids)]
            bw = max(span / 300, d.pmu_interval)
            nb = max(int(np.ceil(span / bw)), 1)
            sums = np.bincount(np.clip(((t[m] - t0) / bw).astype(int), 0, nb - 1), weights=v[m], minlength=nb)
            clock = ev in ("cpu-clock", "task-clock")
            rate = sums / bw / (1e9 if clock else 1)
            arts += pax.step(np.r_[t0 + np.arange(nb) * bw, t0 + nb * bw], np.r_[rate, rate[-1:]], where="post",
                             color="tab:blue", lw=0.9)
            pax.set_ylim(0, rate.max() * 1.1 if len(rate) and rate.max() > 0 else 1)
            pax.set_ylabel(f"{ev}\n(CPUs)" if clock else f"{ev}\n(/s)", fontsize=7)
        # lost-event windows, on every axis
        for a, b, probe, n in _merge_loss(d.loss, t0, t1, span / 200):
            w = max(b - a, span / 400)
            arts += [pa.axvspan(a, a + w, facecolor="tab:red", alpha=0.25, hatch="//", edgecolor="tab:red", lw=0)
                     for pa in self.axes]
            arts.append(ax.text(a, 0, f" lost {n} ({probe})", fontsize=6, color="tab:red", va="top", clip_on=True))
        if d.lost:
            notes.append("lost events: " + ", ".join(f"{k} {v:,}" for k, v in d.lost.items()))
        if len(lanes) < len(d.pids):
            notes.append(f"{len(lanes)} of {len(d.pids)} processes shown")
        self.notes = notes
        self.axes[-1].set_xlabel("\n".join([self.xlabel, *map(safe_text, notes)]))
        self._artists = arts

    def set_cursor(self, x) -> None:
        for ln in self.cursor:
            ln.set_xdata([x, x])


def timeline_title(rec: "Recording") -> str:
    m = rec.metadata
    cmd = "; ".join(" ".join(c.argv) for c in m.commands[:2] if c.argv)[:90]
    return " | ".join(x for x in (cmd, m.host, m.kernel and f"kernel {m.kernel}") if x)


def static_timeline(rec: "Recording", *, start: float | None = None, end: float | None = None, pids=None, categories=None,
                    max_events: int = 20000, bins: int = 800, max_lanes: int = 40, width: float = 12.0,
                    data: TimelineData | None = None) -> Figure:
    """The timeline as a matplotlib Figure (PNG/SVG with ``fig.savefig``).

    ``start``/``end``: seconds since the first event; ``pids``: processes to show
    (default: the ``max_lanes`` busiest); ``categories``: GPU categories and
    ``"syscall"`` to draw (default all).
    """
    d = data or TimelineData(rec, max_lanes=max_lanes)
    lanes = d.default_lanes if pids is None else [i for i, p in enumerate(d.pids) if p in set(pids)]
    p = TimelinePlot(d, len(lanes), width, timeline_title(rec))
    p.draw(0.0 if start is None else start, d.duration if end is None else end, lanes,
           set(d.categories if categories is None else categories), max_events, bins)
    p.fig.timeline_aggregated = p.aggregated
    return p.fig
