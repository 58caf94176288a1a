"""The interactive timeline in Jupyter: the report's Bokeh timeline (:mod:`.timeline_html`) as an
ipywidget (jupyter_bokeh's ``BokehModel``), so what the user brushes or clicks comes back to Python.

    tl = rec.timeline()        # display it (last expression of a cell)
    ... brush a range with the box-select tool, or click a call ...
    tl.selection               # DataFrame: one row per selected event (kind, row, start, duration, name, ...)
    tl.selected("gpu")         # those events' rows of rec.tables["gpu"]
    tl.zoom(0.2, 0.3)          # seconds since the first event

The timeline needs JupyterLab (or Notebook 7) with the jupyter_bokeh extension, which
``pip install ebpftoolkit`` brings; where no browser runs, use ``static_timeline``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .timeline_html import build_timeline
from .timeline_pack import KINDS, TABLES, unpack

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["InteractiveTimeline", "timeline"]



class InteractiveTimeline:
    """A recording's timeline, drawn by the browser: wheel zoom, drag pan, hover, click, brush.

    :attr:`selection` is what the browser last selected (brushed range or clicked call),
    :meth:`selected` the matching rows of a table, :meth:`zoom` sets the visible range.
    """

    def __init__(self, rec: "Recording", *, width: int = 1100, title: str | None = None):
        from jupyter_bokeh import BokehModel
        self.recording = rec
        self.parts = build_timeline(rec, width=width, divs=True, title=title)
        self.widget = BokehModel(self.parts.layout)
        self._events = None

    @property
    def pack(self):
        return self.parts.pack

    def zoom(self, start: float, end: float) -> None:
        """Show [start, end] seconds since the first event."""
        if not end > start:
            raise ValueError(f"zoom needs end > start, got {start}..{end}")
        self.parts.x_range.update(start=float(start), end=float(end))

    @property
    def visible_range(self) -> tuple[float, float]:
        """The range shown in the browser now (seconds since the first event)."""
        xr = self.parts.x_range
        return float(xr.start), float(xr.end)

    @property
    def selection(self) -> pd.DataFrame:
        """The events selected in the browser (a brushed range, or a clicked call)."""
        data = self.parts.selection.data
        ev = np.asarray(data.get("event", []), dtype=np.int64)
        cols = ["kind", "row", "start", "duration_ns", "name", "category", "thread", "bytes", "frame"]
        if not len(ev):
            return pd.DataFrame(columns=cols)
        if self._events is None:
            self._events = unpack(self.pack)
        e, p = self._events, self.pack
        ev = ev[(ev >= 0) & (ev < len(e["start"]))]
        dur = e["dur"][ev]
        return pd.DataFrame({
            "kind": pd.Series([KINDS[k] for k in e["kind"][ev]], dtype=object),
            "row": e["src"][ev].astype(np.int64),
            "start": pd.to_datetime(p.t0_ns + e["start"][ev], unit="ns"),
            "duration_ns": pd.Series(np.where(dur < 0, 0, dur), dtype="Int64").mask(dur < 0),
            "name": pd.Series([p.names[i] for i in e["name"][ev]], dtype=object),
            "category": pd.Series([p.cats[i] for i in e["cat"][ev]], dtype=object),
            "thread": pd.Series([p.threads[i] for i in e["thread"][ev]], dtype=object),
            "bytes": e["bytes"][ev],
            "frame": pd.Series(e["frame"][ev].astype(np.int64), dtype="Int64").mask(e["frame"][ev] < 0)})

    def selected(self, table: str = "gpu") -> pd.DataFrame:
        """Rows of ``rec.tables[table]`` among the selected events (``gpu``, ``exec``, ``processes``,
        ``syscalls``, ``pmu_samples``)."""
        if table not in TABLES.values():
            raise ValueError(f"unknown table {table!r}: one of {', '.join(sorted(TABLES.values()))}")
        df = self.recording.tables.get(table)
        sel = self.selection
        if df is None or sel.empty:
            return (df.iloc[:0] if df is not None else pd.DataFrame())
        kind = {v: k for k, v in TABLES.items()}[table]
        rows = sel.loc[sel["kind"] == kind, "row"].to_numpy(np.int64)
        return df.iloc[np.unique(rows[(rows >= 0) & (rows < len(df))])]

    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)

    def _ipython_display_(self):
        from IPython.display import display
        load_bokehjs()
        display(self.widget)


_LOADED_FOR: set = set()


def _client() -> str | None:
    """The front end that asked for this output (its Jupyter session id: a reloaded page is a new one)."""
    try:
        from IPython import get_ipython
        k = get_ipython().kernel
        parent = k.get_parent("shell") if hasattr(k, "get_parent") else k._parent_header
        return parent["header"]["session"]
    except Exception:          # not in a kernel, or a kernel without that API: load every time
        return None


def load_bokehjs() -> None:
    """Put BokehJS (inline: no network) into the notebook page, once per page: jupyter_bokeh's
    widget draws with the page's BokehJS."""
    client = _client()
    if client is None or client not in _LOADED_FOR:
        from bokeh.io import output_notebook
        from bokeh.resources import INLINE
        output_notebook(INLINE, hide_banner=True)
        if client is not None:
            _LOADED_FOR.add(client)


def timeline(rec: "Recording", **kw) -> InteractiveTimeline:
    """The interactive timeline of ``rec`` for Jupyter; see :class:`InteractiveTimeline`."""
    return InteractiveTimeline(rec, **kw)
