"""The interactive timeline, drawn in the browser by Bokeh: the same component in the HTML report
(standalone, BokehJS inline: no network) and in Jupyter (:mod:`.timeline_widget`).

Bokeh draws the axes, the glyphs and the tools (wheel zoom, drag pan, hover, tap, box select
as a brush, crosshair cursor, reset); ``templates/timeline.js`` decodes the packed events
(:mod:`.timeline_pack`) once and, on every change of the visible range, puts the visible ones
into the drawn source: each event when at most 8000 are in view, else counts per time bin.
PMU counters and lost-event windows are tracks under it on the same time axis.
"""
from __future__ import annotations

import html
import re
from importlib.resources import files
from typing import TYPE_CHECKING
from uuid import uuid4

from .charts import category_color
from .timeline_pack import TimelinePack, header_json, pack_timeline

if TYPE_CHECKING:
    from ..recording import Recording

__all__ = ["build_timeline", "timeline_fragment", "TimelineParts"]

ROW_PX = 22
MAX_ROWS_SHOWN = 28
MAX_COUNTERS = 8
BORDER_LEFT = 170     # px left of every track, so that their time axes line up
_CSS = (".tl-help,.tl-readout,.tl-note{font-size:12px;color:#444;margin:2px 0}"
        ".tl-info table.tl-list{font-size:11px;border-collapse:collapse;margin-top:4px}"
        ".tl-info table.tl-list td,.tl-info table.tl-list th{padding:1px 6px;border-bottom:1px solid #eee;text-align:left}")


def _js() -> str:
    return files("ebpftoolkit.views").joinpath("templates/timeline.js").read_text()


class TimelineParts:
    """The Bokeh models of one timeline: ``layout`` to show, ``selection`` (a ColumnDataSource the
    browser fills with the brushed or clicked events: kind, row), ``pack`` (its data)."""

    def __init__(self, layout, selection, pack: TimelinePack, uid: str, x_range):
        self.layout, self.selection, self.pack, self.uid, self.x_range = layout, selection, pack, uid, x_range


def build_timeline(rec: "Recording", *, width: int = 1100, divs: bool = True, pack: TimelinePack | None = None,
                   title: str | None = None) -> TimelineParts:
    """Bokeh layout of the interactive timeline of ``rec``.  ``divs``: readout and listing as Bokeh
    Divs (Jupyter); otherwise the page provides elements with ids ``UID-readout``/``UID-info``."""
    from bokeh.events import DocumentReady, MouseMove, RangesUpdate, SelectionGeometry
    from bokeh.layouts import column
    from bokeh.models import (BoxSelectTool, ColumnDataSource, CrosshairTool, CustomJS, Div, FixedTicker, HoverTool,
                              PanTool, Range1d, ResetTool, Span, TapTool, WheelZoomTool)
    from bokeh.plotting import figure

    p = pack or pack_timeline(rec)
    uid = "ebt" + uuid4().hex[:10]
    dur = p.duration_ns / 1e9
    nrows = max(len(p.rows), 1)
    shown = min(nrows, MAX_ROWS_SHOWN)
    xr = Range1d(0, dur, bounds=(-0.02 * dur, 1.02 * dur), min_interval=1e-9)
    yr = Range1d(shown, 0, bounds=(0, max(nrows, 1)))
    fig = figure(width=width, height=shown * ROW_PX + 70, x_range=xr, y_range=yr, tools="", sizing_mode="stretch_width",
                 title=title, x_axis_label="time (s) since the first event", output_backend="canvas",
                 min_border_left=BORDER_LEFT)
    src = ColumnDataSource({k: [] for k in ("x0", "x1", "y0", "y1", "color", "alpha", "name", "cat", "t", "dur",
                                            "bytes", "frame", "thread", "n", "ev")}, name=f"{uid}-events")
    sel = ColumnDataSource({"kind": [], "row": [], "event": []}, name=f"{uid}-selection")
    quads = fig.quad(left="x0", right="x1", bottom="y0", top="y1", source=src, fill_color="color",
                     fill_alpha="alpha", line_color=None, selection_line_color="black",
                     nonselection_fill_alpha="alpha")
    if p.loss:
        loss = ColumnDataSource({"l": [w["start"] for w in p.loss], "r": [w["end"] for w in p.loss],
                                 "b": [0] * len(p.loss), "t": [nrows] * len(p.loss),
                                 "probe": [w["probe"] for w in p.loss], "lost": [w["lost"] for w in p.loss]})
        fig.quad(left="l", right="r", bottom="b", top="t", source=loss, fill_color="red", fill_alpha=0.12,
                 line_color=None, hatch_pattern="/", hatch_color="red", hatch_alpha=0.3, legend_label="lost events")
    fig.yaxis.ticker = FixedTicker(ticks=[i + 0.5 for i in range(nrows)])
    fig.yaxis.major_label_overrides = {i + 0.5: r["label"] for i, r in enumerate(p.rows)}
    fig.yaxis.major_label_text_font_size = "10px"
    fig.ygrid.grid_line_color = None
    cursor = Span(dimension="height", line_color="#555", line_dash="dashed")
    hover = HoverTool(renderers=[quads], tooltips=[("", "@name"), ("category", "@cat"), ("start", "@t"),
                                                   ("duration", "@dur"), ("bytes", "@bytes"), ("frame", "@frame"),
                                                   ("pid/tid", "@thread")])
    wheel, pan = WheelZoomTool(dimensions="width"), PanTool(dimensions="both")
    tap, brush = TapTool(renderers=[quads]), BoxSelectTool(dimensions="width", renderers=[quads])
    fig.add_tools(wheel, pan, brush, tap, hover, CrosshairTool(overlay=cursor), ResetTool())
    fig.toolbar.active_scroll, fig.toolbar.active_drag = wheel, pan
    if fig.legend:
        fig.legend.location, fig.legend.label_text_font_size = "top_right", "9px"
    readout = Div(text="loading timeline...", sizing_mode="stretch_width") if divs else None
    info = Div(text="", sizing_mode="stretch_width") if divs else None
    # the packed events go into the page once: every callback refers to this one model
    store = ColumnDataSource({"hdr": [header_json(p)], "blob": [p.blob]}, name=f"{uid}-store")
    args = dict(src=src, sel=sel, store=store, fig=fig, xr=xr, yr=yr, info=info,
                readout=readout, uid=uid)
    # one callback for every event: the page holds its code once; it tells the events apart itself
    cb = CustomJS(args=args, code=_js())
    fig.js_on_event(RangesUpdate, cb)
    for rng in (xr, yr):              # zooms from code (Python, links in the page): redrawn too
        rng.js_on_change("start", cb)
        rng.js_on_change("end", cb)
    fig.js_on_event(SelectionGeometry, cb)
    fig.js_on_event(MouseMove, cb)
    src.selected.js_on_change("indices", cb)
    parts = [fig]
    parts += _counter_tracks(p, xr, width, cursor)
    if divs:
        parts = [readout] + parts + [info]
    layout = column(*parts, name=uid, sizing_mode="stretch_width")
    # decode and draw once the page (or the notebook output) is laid out: the document's ready event
    # where the page has one, the plot's first layout (its inner width being set) in any case
    from bokeh.document import Document
    doc = Document()
    doc.add_root(layout)
    doc.js_on_event(DocumentReady, cb)
    fig.js_on_change("inner_width", cb)
    fig.js_on_event("reset", cb)
    return TimelineParts(layout, sel, p, uid, xr)


def _counter_tracks(p: TimelinePack, xr, width: int, cursor) -> list:
    """A track per PMU counter (its value per interval, summed over the traced processes), on the
    timeline's time axis, lost-event windows shaded."""
    from bokeh.models import CrosshairTool, HoverTool, ResetTool, WheelZoomTool, PanTool
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure
    out = []
    for k, (name, c) in enumerate(list(p.counters.items())[:MAX_COUNTERS]):
        fig = figure(width=width, height=110, x_range=xr, tools="", title=f"{name} per {c['interval_s'] * 1e3:g} ms",
                     sizing_mode="stretch_width",
                     min_border_left=BORDER_LEFT)
        fig.title.text_font_size = "9px"
        fig.step(c["t"], c["v"], mode="after", color=Category10_10[k % 10])
        top = max(c["v"] or [0]) or 1
        for w in p.loss:
            fig.quad(left=w["start"], right=w["end"], bottom=0, top=top, fill_color="red", fill_alpha=0.12,
                     line_color=None)
        wheel = WheelZoomTool(dimensions="width")
        fig.add_tools(wheel, PanTool(dimensions="width"), CrosshairTool(overlay=cursor), ResetTool(),
                      HoverTool(tooltips=[(name, "$y{0,0}"), ("t", "$x{0.000000} s")], mode="vline"))
        fig.toolbar.active_scroll = wheel
        fig.yaxis.major_label_text_font_size = "9px"
        out.append(fig)
    return out


_LOADER = """(function () {
  const parts = %s;
  const run = code => (0, eval)(code);
  async function inflate(b64) {
    const bin = atob(b64), u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    const s = new Blob([u8]).stream().pipeThrough(new DecompressionStream("deflate"));
    return await new Response(s).text();
  }
  (async () => { for (const p of parts) run(p.z ? await inflate(p.z) : p.js); })().catch(e => {
    const el = document.getElementById("%s-readout");
    if (el) el.textContent = "the timeline could not start in this browser: " + e;
  });
})();"""


def _packed_scripts(codes: list[str], uid: str) -> str:
    """One script that inflates BokehJS (zlib, base64: a third of its size) and runs it, then runs the
    embedding script, in that order; no network."""
    import base64
    import json
    import zlib
    parts = [{"z": base64.b64encode(zlib.compress(c.encode(), 9)).decode()} for c in codes[:-1]] + [{"js": codes[-1]}]
    text = json.dumps(parts).replace("</", "<\\/")
    return "<script>" + _LOADER % (text, uid) + "</script>"


def timeline_fragment(rec: "Recording", *, width: int = 1060, pack: TimelinePack | None = None, model=None) -> str:
    """HTML for the report: BokehJS inline (no network), the plot, a readout and a listing of the
    brushed events, inside an element with id ``timeline-view``."""
    from bokeh.embed import components
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE
    parts = build_timeline(rec, width=width, divs=False, pack=pack or pack_timeline(rec, model))
    script, div = components(parts.layout)
    b = bundle_for_objs_and_resources([parts.layout], INLINE)
    uid = parts.uid
    embed = re.sub(r"(?is)^\s*<script[^>]*>|</script>\s*$", "", script)
    bundle = _packed_scripts(list(b.js_raw) + [embed], uid) + b._render_css()
    notes = "".join(f"<p class='tl-note'>{html.escape(n)}</p>" for n in parts.pack.notes)
    return (f"<style>{_CSS}</style>\n<div id='timeline-view' data-uid='{uid}'>"
            f"<div class='tl-help'>wheel: zoom in time · drag: pan · box-select tool: brush a range to list its "
            f"calls · click: one call · double-click tool 'reset' to see everything</div>"
            f"<div id='{uid}-readout' class='tl-readout'>loading timeline...</div>{div}"
            f"<div id='{uid}-info' class='tl-info'></div>{notes}</div>\n{bundle}")
