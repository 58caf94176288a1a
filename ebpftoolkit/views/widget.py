"""The interactive timeline for Jupyter: the static timeline's figure, built once and redrawn in
place as the ipywidgets controls change (time range, cursor readout, categories, processes)."""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .timeline import TimelineData, TimelinePlot, timeline_title

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["TimelineWidget", "timeline"]


class TimelineWidget:
    """Interactive timeline for Jupyter: the figure is built once and redrawn in place.

    Controls: time range (zoom), cursor (the readout describes the event nearest to
    it), category toggles, process multi-select.  :meth:`zoom`, :meth:`select` and
    :meth:`show_categories` do the same from code.  The figure is shown as a PNG
    in an ``ipywidgets.Image``, so no interactive matplotlib backend is needed.
    """

    def __init__(self, rec: "Recording", *, max_events: int = 5000, bins: int = 600, max_lanes: int = 40,
                 width: float = 12.0, dpi: int = 80):
        import ipywidgets as W
        self.data = d = TimelineData(rec, max_lanes=max_lanes)
        self.max_events, self.bins, self.dpi, self._hold = max_events, bins, dpi, False
        self.plot = TimelinePlot(d, len(d.default_lanes), width, timeline_title(rec))
        self.fig, T, lay = self.plot.fig, d.duration, W.Layout(width="95%")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        FigureCanvasAgg(self.fig)          # drawn off-screen, shown as PNG
        self.fig.set_dpi(dpi)
        # the title and legend never change: HTML above the image instead of redrawing them (~35% of a redraw)
        self.header = W.HTML(_legend_html(timeline_title(rec), self.plot.legend_handles))
        self.plot.ax.get_legend().remove()
        self.fig.suptitle("")
        self.range = W.FloatRangeSlider(value=[0, T], min=0, max=T, step=T / 2000, description="time (s)",
                                        readout_format=".4f", continuous_update=False, layout=lay)
        self.processes = W.SelectMultiple(options=[(lbl, i) for i, lbl in enumerate(d.labels)],
                                          value=tuple(d.default_lanes), rows=min(8, max(len(d.labels), 1)),
                                          description="processes")
        self.toggles = {c: W.ToggleButton(value=True, description=c, layout=W.Layout(width="auto"))
                        for c in d.categories}
        self.cursor = W.FloatSlider(value=0, min=0, max=T, step=T / 4000, description="cursor (s)",
                                    readout_format=".6f", continuous_update=False, layout=lay)
        self.reset, self.readout, self.image = W.Button(description="reset zoom"), W.HTML(), W.Image(format="png")
        for w in (self.range, self.processes, *self.toggles.values()):
            w.observe(self.update, names="value")
        self.cursor.observe(self._on_cursor, names="value")
        self.reset.on_click(lambda _b: self.zoom(0, T))
        self.widget = W.VBox([self.header, self.image, self.range, self.cursor, self.readout,
                              W.HBox(list(self.toggles.values())), W.HBox([self.processes, self.reset])])
        self.update()

    def zoom(self, start: float, end: float) -> None:
        self.range.value = (max(start, 0.0), min(end, self.data.duration))

    def select(self, pids) -> None:
        self.processes.value = tuple(i for i, p in enumerate(self.data.pids) if p in set(pids))

    def show_categories(self, cats) -> None:
        self._hold = True       # one redraw, not one per button
        try:
            for c, t in self.toggles.items():
                t.value = c in set(cats)
        finally:
            self._hold = False
        self.update()

    def update(self, *_change) -> None:
        if self._hold:
            return
        t0, t1 = self.range.value
        cats = {c for c, t in self.toggles.items() if t.value}
        self.plot.draw(t0, max(t1, t0 + 1e-6), sorted(self.processes.value), cats, self.max_events, self.bins)
        # draw everything but the cursor once; cursor moves then only redraw the cursor (blitting)
        canvas = self.fig.canvas
        for ln in self.plot.cursor:
            ln.set_visible(False)
        canvas.draw()
        if self.fig.get_layout_engine() is not None:
            self.fig.set_layout_engine("none")   # the layout is set by the first draw; redoing it cost ~40%
        self._background = canvas.copy_from_bbox(self.fig.bbox)
        for ln in self.plot.cursor:
            ln.set_visible(True)
        self._on_cursor()

    def _on_cursor(self, *_change) -> None:
        import html
        self.plot.set_cursor(x := self.cursor.value)
        key = (x, tuple(sorted(self.processes.value)), tuple(c for c, t in self.toggles.items() if t.value))
        if key != getattr(self, "_readout_key", None):    # a zoom alone does not change the nearest event
            text = self.data.describe(x, list(key[1]), list(key[2]))
            self.readout.value = "<pre style='margin:0'>" + html.escape(text) + "</pre>"
            self._readout_key = key
        canvas = self.fig.canvas
        canvas.restore_region(self._background)
        for ln in self.plot.cursor:
            ln.axes.draw_artist(ln)
        self.image.value = self._png(canvas)

    @staticmethod
    def _png(canvas) -> bytes:
        """The canvas as PNG, encoded with light compression (encoding dominated the redraw time)."""
        from PIL import Image
        buf = canvas.buffer_rgba()
        w, h = canvas.get_width_height(physical=True)
        out = io.BytesIO()
        Image.frombuffer("RGBA", (w, h), buf, "raw", "RGBA", 0, 1).save(out, format="PNG", compress_level=1)
        return out.getvalue()

    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)


def _legend_html(title: str, handles) -> str:
    import html
    from matplotlib.colors import to_hex
    items = []
    for h in handles:
        color = to_hex(h.get_facecolor() if isinstance(h, Patch) else h.get_color())
        mark = h.get_marker() if isinstance(h, Line2D) else None
        swatch = (f"<span style='color:{color}'>{'&#9650;' if mark == '^' else '&#10005;'}</span>" if mark in ("^", "x")
                  else f"<span style='display:inline-block;width:10px;height:10px;background:{color}'></span>")
        items.append(f"<span style='margin-right:10px;white-space:nowrap'>{swatch} {html.escape(h.get_label())}</span>")
    return (f"<div style='font-size:12px'><b>{html.escape(title)}</b></div>"
            f"<div style='font-size:11px'>{''.join(items)}</div>")


def timeline(rec: "Recording", **kw) -> TimelineWidget:
    """Interactive timeline (ipywidgets); display it in a notebook cell.  See :class:`TimelineWidget`."""
    return TimelineWidget(rec, **kw)
