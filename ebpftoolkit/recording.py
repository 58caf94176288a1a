"""Recording: what a Session produces when it stops -- plain data, no BCC, no root.

``tables`` (one DataFrame per table), ``lost`` (events dropped per probe),
``loss_windows`` (when) and ``metadata`` (a :class:`~ebpftoolkit.metadata.RecordingMetadata`).
It saves to a folder (Parquet + JSON) and loads back; a folder of recordings (several
runs, several hosts) loads as one, with ``run`` and ``host`` columns.  The views are a
method call away: :meth:`timeline`, :meth:`to_html`, :meth:`to_chrome_trace`, :meth:`to_perfetto`.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis.answers import summary_lines
from .errors import SessionLoadError
from .metadata import RecordingMetadata, RunInfo
from .probes.gpu.catalogue import OLD_CATEGORIES
from .scope import describe_scope
from .storage import load_tables, save_tables
from .text import printable

__all__ = ["Recording", "LOSS_COLUMNS"]

LOSS_COLUMNS = ["start", "end", "probe", "stream", "lost"]


def _empty_losses() -> pd.DataFrame:
    return pd.DataFrame({"start": pd.Series(dtype="datetime64[ns]"), "end": pd.Series(dtype="datetime64[ns]"),
                         "probe": pd.Series(dtype=object), "stream": pd.Series(dtype=object),
                         "lost": pd.Series(dtype="int64")})


class Recording:
    """Tables, loss accounting and metadata of one recording (or of several runs combined)."""

    def __init__(self, tables: dict[str, pd.DataFrame], metadata: RecordingMetadata | None = None,
                 lost: dict[str, int] | None = None, loss_windows: pd.DataFrame | None = None,
                 raw: dict[str, np.ndarray] | None = None):
        self.tables = dict(tables)
        #: records of a probe that could not be decoded into tables (a bug), per stream: kept, and saved
        self.raw = dict(raw or {})
        self.metadata = metadata if metadata is not None else RecordingMetadata()
        self.lost = {k: int(v) for k, v in (lost or {}).items()}
        self.loss_windows = loss_windows if loss_windows is not None else _empty_losses()

    # -- saving and loading ----------------------------------------------
    def save(self, path) -> Path:
        """Write the recording to folder ``path`` (atomically: the old folder or none on failure)."""
        tables = dict(self.tables, _loss_windows=self.loss_windows)
        meta = {"metadata": self.metadata.to_dict(), "lost": self.lost,
                "tables": sorted(n for n in self.tables if not n.startswith("_"))}
        return save_tables(path, tables, meta, self.raw)

    @classmethod
    def load(cls, path) -> "Recording":
        """A saved recording; or, for a folder whose subfolders are recordings, all of them as one
        (:meth:`combine`, each run named after its folder)."""
        path = Path(path)
        if not (path / "metadata.json").is_file() and path.is_dir():
            runs = sorted(p for p in path.iterdir() if (p / "metadata.json").is_file())
            if runs:
                return cls.combine([cls._load_one(p) for p in runs], [p.name for p in runs])
        return cls._load_one(path)

    @classmethod
    def _load_one(cls, path: Path) -> "Recording":
        tables, doc, raw = load_tables(path)
        try:
            meta = RecordingMetadata.from_dict(doc.get("metadata", {}))
        except SessionLoadError as exc:
            raise SessionLoadError(f"{path / 'metadata.json'}: {exc}") from None
        lost = doc.get("lost", {})
        if not isinstance(lost, dict):
            raise SessionLoadError(f"{path / 'metadata.json'}: 'lost' must be an object of counts")
        try:
            lost = {str(k): int(v) for k, v in lost.items()}
        except (TypeError, ValueError, OverflowError):
            raise SessionLoadError(f"{path / 'metadata.json'}: 'lost' counts must be integers, got {lost}") from None
        losses = tables.pop("_loss_windows")
        gpu = tables.get("gpu")
        if gpu is not None and "category" in gpu:      # saved before one vocabulary: upload -> copy_h2d...
            tables["gpu"] = gpu.assign(category=gpu["category"].replace(OLD_CATEGORIES))
        missing = [c for c in LOSS_COLUMNS if c not in losses]
        if missing:
            raise SessionLoadError(f"{path / '_loss_windows.parquet'} lacks columns {missing}")
        return cls(tables, meta, lost, losses, raw)

    @classmethod
    def combine(cls, recordings: list["Recording"], names: list[str] | None = None) -> "Recording":
        """Several recordings as one: every table gets ``run`` and ``host`` columns; ``lost`` is summed;
        the metadata is the first run's, with every run listed in ``metadata.runs``."""
        if not recordings:
            raise SessionLoadError("nothing to combine: no recordings given")
        names = names or [f"run{i}" for i in range(len(recordings))]
        tables: dict[str, list[pd.DataFrame]] = {}
        losses, lost = [], {}
        for name, rec in zip(names, recordings):
            for t, df in rec.tables.items():
                tables.setdefault(t, []).append(df.assign(run=name, host=rec.metadata.host))
            losses.append(rec.loss_windows.assign(run=name, host=rec.metadata.host))
            for k, v in rec.lost.items():
                lost[k] = lost.get(k, 0) + v
        first = recordings[0].metadata
        meta = RecordingMetadata(**{**first.__dict__, "runs": [
            RunInfo(n, r.metadata.host, r.metadata.kernel, r.metadata.start, r.metadata.end)
            for n, r in zip(names, recordings)]})
        meta.start = min((r.metadata.start for r in recordings if r.metadata.start is not None), default=None)
        meta.end = max((r.metadata.end for r in recordings if r.metadata.end is not None), default=None)
        return cls({t: pd.concat(dfs, ignore_index=True) for t, dfs in tables.items()}, meta, lost,
                   pd.concat(losses, ignore_index=True))

    # -- looking at it ---------------------------------------------------
    def summary(self) -> str:
        """Rows per table and lost events; with GPU calls, the slowest calls, the most bytes moved and the
        slowest frames (:mod:`ebpftoolkit.analysis.answers`, times since the recording's start); notes."""
        parts = [f"{name}: {len(df)} rows" for name, df in self.tables.items()]
        text = "; ".join(parts) + f"; lost events: {sum(self.lost.values())}"
        gpu = self.tables.get("gpu")
        pm = self.metadata.probes.get("gpu")
        returns = getattr(pm.config, "returns", None) if pm is not None else None
        answers = summary_lines(gpu, self.metadata.start, returns) if gpu is not None else []
        return "\n".join([text] + answers + [f"note: {printable(n)}" for n in self.metadata.notes])

    def timeline(self, **kw):
        """Interactive timeline for Jupyter (:func:`ebpftoolkit.views.timeline`)."""
        from .views import timeline
        return timeline(self, **kw)

    def to_html(self, path=None, **kw) -> Path | str:
        """A self-contained HTML report (:func:`ebpftoolkit.views.render_html`): written to ``path``
        (which is returned), or returned as a string when no path is given."""
        from .views import render_html
        text = render_html(self, path, **kw)
        return Path(path) if path is not None else text

    def to_chrome_trace(self, path=None):
        """Chrome Trace Event Format JSON (:func:`ebpftoolkit.views.to_chrome_trace`)."""
        from .views import to_chrome_trace
        return to_chrome_trace(self, path)

    def to_perfetto(self, path) -> Path:
        """A Perfetto protobuf trace written to ``path`` (:func:`ebpftoolkit.views.to_perfetto`)."""
        from .views import to_perfetto
        return to_perfetto(self, path)

    def __repr__(self) -> str:
        return f"<Recording {', '.join(f'{k}={len(v)}' for k, v in self.tables.items())} lost={sum(self.lost.values())}>"

    def _repr_html_(self) -> str:
        return recording_html(self, "recorded")


def recording_html(rec: Recording, state: str, probe_names=None) -> str:
    """Jupyter: a summary table (state, probes, rows per table, lost per probe in red, duration, kernel)."""
    e = html.escape
    m = rec.metadata
    rows = "".join(f"<tr><td style='padding-left:1.5em'>{e(str(n))}</td><td>{len(df):,} rows</td></tr>"
                   for n, df in rec.tables.items() if not n.startswith("_"))

    def lost_cell(v):
        return f"<span style='color:#c00;font-weight:bold'>{e(str(v))}</span>" if v else e(str(v))
    lost_rows = "".join(f"<tr><td style='padding-left:1.5em'>{e(str(k))}</td><td>{lost_cell(v)}</td></tr>"
                        for k, v in rec.lost.items())
    end = m.end if m.end is not None else pd.Timestamp.now()
    duration = "-" if m.start is None else f"{(end - m.start).total_seconds():.3f} s" + ("" if m.end else " (so far)")
    names = list(probe_names or m.probes)
    head = [("state", state), ("probes", ", ".join(names) or "none"), ("scope", describe_scope(m.scope)),
            ("duration", duration), ("kernel", m.kernel or "-")]
    body = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in head)
    if rows:
        body += "<tr><th style='text-align:left' colspan=2>tables</th></tr>" + rows
    if lost_rows:
        body += "<tr><th style='text-align:left' colspan=2>lost events</th></tr>" + lost_rows
    return (f"<table class='ebpftoolkit-session'><caption style='text-align:left'><b>Session</b></caption>"
            f"<tbody>{body}</tbody></table>")
