"""A self-contained HTML report of a recording: one file, readable offline.

Figures are inline images (``data:`` URIs: SVG, or PNG when the SVG would be
large), styles are inline, there is no script and no external resource.  All
text from traced programs (argv, file names, comm, symbols) goes through
Jinja2's autoescaping.  Big sessions stay small: figures are drawn from
aggregates and tables show summaries and their first ``max_rows`` rows; the
report says when it did so.
"""
from __future__ import annotations

import base64
import io
import json
import shlex
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analysis import gpu as ga
from ..analysis import pmu as pa
from ..analysis.proctree import process_tree, render_process_tree
from ..text import printable
from . import charts
from .answers import answers_context
from .model import TREE_MAX, TraceModel
from .timeline import TimelineData, static_timeline
from .timeline_html import timeline_fragment

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["render_html"]

SVG_LIMIT = 250_000   # bytes of SVG above which a figure is embedded as PNG instead


def _text(v) -> str:
    """Traced text as it is shown: control characters escaped, non-UTF-8 bytes as \\xNN (then HTML-escaped)."""
    return printable(v)


_IDS = {"pid", "ppid", "tid", "uid", "returncode", "exit_code", "exit_signal", "retval", "frame", "handle"}


def _fmt(v, plain: bool = False) -> str:
    if isinstance(v, (list, tuple, np.ndarray)):
        return _text(shlex.join(map(str, v)))
    if v is None or (np.ndim(v) == 0 and pd.isna(v)):
        return ""
    if isinstance(v, pd.Timedelta):
        return f"{v.total_seconds() * 1e3:.3f} ms"
    if isinstance(v, pd.Timestamp):
        return f"{v:%H:%M:%S.%f}"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v)) if plain else f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return _text(v)


def _table(df: pd.DataFrame | None, max_rows: int, columns=None) -> dict | None:
    if df is None:
        return None
    columns = list(columns or df.columns)
    head = df.head(max_rows)
    return {"columns": [_text(c) for c in columns], "total": len(df), "shown": len(head),
            "rows": [[_fmt(v, c in _IDS) for c, v in zip(columns, row)]
                     for row in head[columns].itertuples(index=False, name=None)]}


def _image(fig, alt: str) -> dict:
    import matplotlib
    with matplotlib.rc_context({"svg.hashsalt": "ebpftoolkit", "svg.fonttype": "path"}):
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        data, mime = buf.getvalue(), "image/svg+xml"
        if len(data) > SVG_LIMIT:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=96, metadata={"Software": None})
            data, mime = buf.getvalue(), "image/png"
    return {"src": f"data:{mime};base64," + base64.b64encode(data).decode("ascii"), "alt": alt,
            "no_data": getattr(fig, "no_data", False)}


def _rel(ts, t0_ns: int) -> pd.Series:
    return (pd.to_datetime(pd.Series(ts)).astype("int64") - t0_ns) / 1e9


def _environment(rec: "Recording", t0_ns, end_ns, max_rows) -> dict:
    m = rec.metadata
    env = [("kernel", m.kernel), ("host", m.host), ("python", m.python), ("ebpftoolkit", m.ebpftoolkit_version),
           ("event transport", m.transport), ("scope (descendants_of)", m.scope),
           ("recording started", m.start), ("recording ended", m.end),
           ("first to last event", f"{(end_ns - t0_ns) / 1e9:.6f} s"),
           ("BPF load time", m.load_seconds and f"{m.load_seconds} s")]
    if m.runs:
        env.append(("runs", ", ".join(f"{r.run} ({r.host})" for r in m.runs)))
    probes, gpu_points = [], None
    for name, pm in m.probes.items():
        points = pm.details.get("attach_points")
        if points:
            pts = pd.DataFrame(points)
            gpu_points = _table(pts, 10 * max_rows, [c for c in ("api", "call", "library", "mechanism", "returns",
                                                                 "cost_per_call_us") if c in pts])
        cfg = pm.config.to_dict() if pm.config is not None else {}
        notes = pm.details.get("notes")
        probes.append((name, pm.kind, json.dumps(dict(cfg, **({"notes": notes} if notes else {})), default=str)))
    att = pd.DataFrame([a.to_dict() for a in m.attachments], columns=["kind", "target", "function", "mechanism",
                                                                      "details"])
    summ = (att.assign(kind=att["kind"].fillna("?"), mechanism=att["mechanism"].fillna("?"))
            .groupby(["mechanism", "kind"], sort=False)
            .agg(count=("target", "size"), targets=("target", lambda t: ", ".join(map(str, pd.unique(t.dropna())[:4]))
                                                   + (" ..." if t.nunique() > 4 else "")))
            .reset_index()) if len(att) else att
    cmds = pd.DataFrame([(c.argv, c.pid, c.returncode) for c in m.commands], columns=["argv", "pid", "returncode"])
    return {"attach_summary": _table(summ, max_rows), "env": [(k, _fmt(v)) for k, v in env if v is not None],
            "probes": probes, "gpu_points": gpu_points,
            "attachments": _table(att, 10 * max_rows, ["kind", "target", "function", "mechanism"]),
            "commands": _table(cmds, max_rows)}


def _processes(tables, t0_ns, max_rows, figs, t0) -> dict:
    ex, procs = tables.get("exec"), tables.get("processes")
    out = {}
    if ex is not None and len(ex):
        n = ex.loc[ex["retval"] == 0, "pid"].nunique()
        lines = [printable(line) for line in render_process_tree(process_tree(ex, procs)).split("\n")] if n <= TREE_MAX else \
            [f"({n:,} processes: too many to build the tree here; use ebpftoolkit.analysis.process_tree)"]
        out["tree"] = "\n".join(lines[: 5 * max_rows]) + (f"\n... {len(lines) - 5 * max_rows:,} more"
                                                            if len(lines) > 5 * max_rows else "")
        shown = ex.assign(**{"t (s)": _rel(ex["ts"], t0_ns),
                             "result": np.where(ex["retval"] == 0, "ok", np.where(
                                 ex["path_search"].to_numpy(bool) if "path_search" in ex else False,
                                 "PATH search: " + ex["error"].astype(str), ex["error"].astype(str)))})
        out["exec"] = _table(shown, max_rows, ["t (s)", "pid", "ppid", "uid", "comm", "filename", "argv", "result",
                                               "exit_code", "exit_signal", "duration"])
    if (ex is not None and len(ex)) or (procs is not None and len(procs)):
        figs["lifetimes"] = _image(charts.process_lifetimes(procs, ex, t0=t0), "process lifetimes")
    return out


def _gpu(gpu, t0_ns, max_rows, figs, t0) -> dict:
    lat = ga.latency(gpu)
    for c in [c for c in lat if c.endswith("_ns")]:
        lat[c.replace("_ns", "_us")] = lat.pop(c) / 1e3
    fr = ga.frames(gpu)
    stats = []
    for pid, g in fr.groupby("pid"):
        ft = g["frame_time"].dropna().dt.total_seconds() * 1e3
        if len(ft):
            stats.append({"pid": pid, "frames": len(g), "mean ms": ft.mean(), "p50 ms": ft.median(),
                          "p95 ms": ft.quantile(0.95), "max ms": ft.max(),
                          "fps": 1e3 / ft.mean() if ft.mean() > 0 else float("nan"),   # frames of no duration
                          "draws/frame": g["draws"].mean(), "MB up/frame": g["bytes_up"].mean() / 1e6})
    moved = gpu[gpu["direction"].notna() & gpu["bytes"].notna()]
    mv = (moved.assign(b=moved["bytes"].astype("int64")).groupby(["api", "direction"])
          .agg(calls=("call", "size"), bytes=("b", "sum")).reset_index())
    bw = ga.bandwidth(gpu)
    if len(mv) and len(bw):
        mv = mv.merge(bw.groupby(["api", "direction"])["call_time_bandwidth_gbs"].median().rename(
            "median call-time GB/s").reset_index(), how="left")
    lk = ga.leaks(gpu)
    lk = lk.assign(**{"t (s)": _rel(lk["ts"], t0_ns)}, handle=lk["handle"].map(lambda h: f"{int(h):#x}"),
                   caller=lk["caller"].map(lambda h: "" if pd.isna(h) else f"{int(h):#x}"))
    for name, fn in (("frames", charts.frame_times), ("bytes", charts.bytes_moved), ("memory", charts.gpu_memory)):
        figs[name] = _image(fn(gpu, t0=t0), name)
    launches = gpu[gpu["category"] == "launch"]
    kernels = None
    if "kernel" in gpu.columns and len(launches):
        # counted in Python: kernel names may hold non-UTF-8 bytes (surrogates), which the string dtype
        # pandas would give a groupby key rejects
        found = Counter(zip(launches["api"], launches["call"], launches["kernel"].fillna("unknown")))
        kernels = pd.DataFrame([(*k, n) for k, n in found.most_common()],
                               columns=["api", "call", "kernel", "launches"], dtype=object)
        kernels["launches"] = kernels["launches"].astype("int64")
    return {"latency": _table(lat, max_rows), "frames": _table(pd.DataFrame(stats), max_rows),
            "kernels": _table(kernels, max_rows),
            "movement": _table(mv, max_rows), "leaks": _table(lk, max_rows, ["t (s)", "pid", "api", "call", "handle",
                                                                              "bytes", "age", "caller"]),
            "leaked_bytes": int(lk["bytes"].fillna(0).sum()), "calls": len(gpu), "frame_count": len(fr)}


def _gpu_libraries(rec, max_rows) -> dict | None:
    """The API libraries GpuTrace found and probed: where, how, in which processes."""
    pm = rec.metadata.probes.get("gpu")
    rows = (pm.details.get("libraries") if pm is not None else None) or []
    if not rows:
        return None
    df = pd.DataFrame([{"file": r.get("path"), "apis": ", ".join(r.get("apis") or []), "calls probed": r.get("calls"),
                        "found": r.get("how"), "processes": ", ".join(map(str, r.get("pids") or [])) or "none seen",
                        "error": r.get("error", "")} for r in rows if isinstance(r, dict)])
    return _table(df, max_rows)


def _pmu(pmu, max_rows, figs, t0, cachegrind, min_interval) -> dict:
    out = {}
    if pmu is not None and len(pmu):
        tot = pa.pmu_totals(pmu)
        first = [c for c in tot.columns if c not in ("pid", "comm")][:1]
        out["totals"] = _table(tot.sort_values(first, ascending=False) if first else tot, max_rows)
        out["scaled"] = bool(pmu["scaled"].any()) if "scaled" in pmu else False
        figs["pmu"] = _image(charts.pmu_rates(pmu, t0=t0, min_interval=min_interval), "PMU counters over time")
        if charts.miss_pairs(pmu["event"].unique()):
            figs["miss_rate"] = _image(charts.miss_rate_over_time(pmu, t0=t0), "miss rate over time")
        if "instructions" in set(map(str, pmu["event"].unique())):
            figs["mpki"] = _image(charts.mpki(pmu, t0=t0), "MPKI over time")
    if cachegrind is not None and len(cachegrind):
        figs["cachegrind"] = _image(charts.misses_by_function(cachegrind), "cache misses by function")
        cols = [c for c in ("source", "file", "function", "Ir", "D1mr", "D1mw", "DLmr", "DLmw") if c in cachegrind]
        out["cachegrind"] = _table(cachegrind, max_rows, cols)
    return out


def _syscalls(tables, max_rows) -> dict | None:
    sc, cnt = tables.get("syscalls"), tables.get("syscall_counts")
    if sc is not None and len(sc):
        cnt = sc.groupby(["pid", sc["syscall"].astype(str)]).size().rename("count").reset_index()
    if cnt is None or cnt.empty:
        return None
    return _table(cnt.sort_values("count", ascending=False), max_rows)


def _guard(errors: dict, section: str, fn, *args, default=None):
    """A section that cannot be drawn says why in that section; the rest of the report stands."""
    try:
        return fn(*args)
    except Exception as exc:
        errors[section] = f"{type(exc).__name__}: {exc}"
        return default


def _comparison(rec, baseline, max_rows) -> dict | None:
    """The run against a baseline recording: per call, frame times, PMU totals (analysis/compare.py)."""
    if baseline is None:
        return None
    from ..analysis.compare import compare, compare_frames, compare_pmu
    calls = compare(baseline, rec)
    changed = calls.assign(_d=(calls["count_b"] - calls["count_a"]).abs()).sort_values("_d", ascending=False)
    frames = compare_frames(baseline, rec)
    return {"calls": _table(changed.drop(columns="_d"), max_rows),
            "frames": _table(frames, max_rows) if frames.loc[0, "a"] or frames.loc[0, "b"] else None,
            "pmu": _table(compare_pmu(baseline, rec), max_rows),
            "baseline": f"{baseline.metadata.start} ({', '.join(' '.join(map(str, c.argv)) for c in baseline.metadata.commands) or 'no command'})"}


def _context(rec: "Recording", title, max_rows, aggregate_above, cachegrind, baseline=None, interactive=True) -> dict:
    tables = rec.tables
    errors: dict[str, str] = {}
    model = TraceModel.from_recording(rec)
    t0_ns, end_ns = model.t0_ns, model.end_ns
    t0 = pd.Timestamp(t0_ns)
    figs: dict[str, dict] = {}
    rows = {k: len(v) for k, v in tables.items()}
    data = TimelineData(rec, model=model)
    tl = _guard(errors, "timeline", lambda: static_timeline(rec, data=data, width=11))
    live = _guard(errors, "timeline", lambda: timeline_fragment(rec, model=model)) if interactive else None
    if tl is not None:
        figs["timeline"] = _image(tl, "timeline")
    notes = [f"table {k!r} has {n:,} rows: figures are drawn from aggregates (time bins, busiest processes) and "
             f"tables show summaries and at most their first {max_rows} rows" for k, n in rows.items()
             if n > aggregate_above]
    if tl is not None and tl.timeline_aggregated and not notes:
        notes.append("the timeline is aggregated: more calls than it can draw one by one (time bins per process)")
    notes = [str(n) for n in rec.metadata.notes] + notes     # what the recording itself says (why a zero...)
    lost = rec.lost
    lw = rec.loss_windows
    lw = lw.assign(start=_rel(lw["start"], t0_ns), end=_rel(lw["end"], t0_ns)) if lw is not None and len(lw) else None
    gpu = tables.get("gpu")
    ex = tables.get("exec")
    summary = [("duration", f"{(end_ns - t0_ns) / 1e9:.3f} s"), ("processes", f"{len(data.pids):,}")]
    if ex is not None:
        searched = ex["path_search"].to_numpy(bool) if "path_search" in ex else np.zeros(len(ex), bool)
        summary += [("execs", f"{len(ex):,}"), ("failed execs", f"{int(((ex['retval'] != 0) & ~searched).sum()):,}")]
        if searched.any():
            summary.append(("PATH-search tries (not failures)", f"{int(searched.sum()):,}"))
    ctx_gpu = _guard(errors, "gpu", _gpu, gpu, t0_ns, max_rows, figs, t0) if gpu is not None and len(gpu) else None
    answers = _guard(errors, "answers", answers_context, gpu, t0_ns, end_ns,
                     getattr(rec.metadata.config("gpu"), "returns", None), min(10, max_rows))
    if ctx_gpu:
        moved = gpu["bytes"].where(gpu["direction"].notna()).fillna(0).sum()
        summary += [("GPU API calls", f"{len(gpu):,}"), ("frames", f"{ctx_gpu['frame_count']:,}"),
                    ("bytes moved", f"{moved / 1e6:,.2f} MB"),
                    ("never freed", f"{ctx_gpu['leaked_bytes'] / 1e6:,.2f} MB")]
    for name in ("pmu", "syscalls"):
        if name in rows:
            summary.append((f"{name} records", f"{rows[name]:,}"))
    summary.append(("lost events", f"{sum(lost.values()):,}"))
    pmu_bin = f"{2 * data.pmu_interval * 1e3:.0f}ms"
    return {"title": title or "ebpftoolkit session report",
            "generated": pd.Timestamp.now().isoformat(timespec="seconds"),
            "start": f"{t0:%Y-%m-%d %H:%M:%S.%f} UTC", "notes": notes, "summary": summary,
            "lost": sorted(lost.items()), "lost_total": sum(lost.values()), "loss_windows": _table(lw, max_rows),
            "tables": sorted(rows.items()), "figs": figs, "errors": errors, "timeline_html": live,
            "processes": _guard(errors, "processes", _processes, tables, t0_ns, max_rows, figs, t0, default={}),
            "gpu": ctx_gpu, "gpu_libraries": _guard(errors, "gpu", _gpu_libraries, rec, max_rows),
            "answers": answers,
            "pmu": _guard(errors, "pmu", _pmu, tables.get("pmu"), max_rows, figs, t0, cachegrind,
                                          pmu_bin, default={}),
            "syscalls": _guard(errors, "syscalls", _syscalls, tables, max_rows),
            "comparison": _guard(errors, "comparison", _comparison, rec, baseline, max_rows),
            **_guard(errors, "environment", _environment, rec, t0_ns, end_ns, max_rows, default=_NO_ENVIRONMENT)}


_NO_ENVIRONMENT = {"attach_summary": None, "env": [], "probes": [], "gpu_points": None, "attachments": None,
                   "commands": None}


def render_html(rec: "Recording", path=None, *, title: str | None = None, cachegrind: pd.DataFrame | None = None,
                max_rows: int = 200, aggregate_above: int = 100_000, baseline: "Recording | None" = None,
                interactive: bool = True) -> str:
    """The report as one HTML string; with ``path``, also written there (UTF-8).

    ``cachegrind``: :func:`ebpftoolkit.pmu.simulate_cache_misses` output to chart as
    simulated cache misses per function.  ``max_rows``: rows shown per table.  ``baseline``: a
    recording to compare this one with (a "Compared with a baseline" section).  ``interactive``: the
    Bokeh timeline (BokehJS inline, about 1.4 MB) above the static figure; off: the figure only.
    """
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("ebpftoolkit.views", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = env.get_template("report.html.j2").render(**_context(rec, title, max_rows, aggregate_above, cachegrind,
                                                                       baseline, interactive))
    if path is not None:
        Path(path).write_text(html, encoding="utf-8", errors="backslashreplace")
    return html
