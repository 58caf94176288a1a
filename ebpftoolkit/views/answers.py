"""The report's opening answers: the slowest calls, the most bytes moved and the slowest frames
(:mod:`ebpftoolkit.analysis.answers`), as rows of text, each with the span the timeline zooms to
(``<a class="tl-zoom" data-start-ns data-end-ns>``: ns since the epoch, padded around the call or
frame, within the recording)."""
from __future__ import annotations

import pandas as pd

from ..analysis import answers as aa
from ..text import printable

__all__ = ["answers_context", "zoom_span"]

MIN_PAD_NS = 100_000          # at least 0.1 ms either side: a 2 us call is still findable


def zoom_span(start_ns: int, end_ns: int, lo_ns: int, hi_ns: int) -> tuple[int, int]:
    """``start_ns`` .. ``end_ns`` padded by half its length (at least MIN_PAD_NS) each side, kept within
    ``lo_ns`` .. ``hi_ns`` (the recording)."""
    end_ns = max(end_ns, start_ns)
    pad = max((end_ns - start_ns) // 2, MIN_PAD_NS)
    a, b = max(start_ns - pad, lo_ns), min(end_ns + pad, hi_ns)
    return (a, b) if a <= b else (lo_ns, hi_ns)


def _ns(ts) -> int:
    return int(pd.Timestamp(ts).value)


def _t(ts, t0_ns: int) -> str:
    return f"{(_ns(ts) - t0_ns) / 1e9:.6f}"


def _who(comm, pid) -> str:
    return f"{printable(comm)} ({int(pid)})"


def answers_context(gpu: pd.DataFrame | None, t0_ns: int, end_ns: int, returns: str | None = None,
                    n: int = 10) -> list[dict]:
    """Three answers, each {key, title, columns, rows: [{cells, start_ns, end_ns}], why (when no rows)}.
    Times in the cells are seconds since ``t0_ns``; the links stay within ``t0_ns`` .. ``end_ns``."""
    if gpu is None:
        return []
    calls, moved, frames = aa.slowest_calls(gpu, n), aa.most_bytes(gpu, n), aa.slowest_frames(gpu, n)
    hi = max([end_ns] + [_ns(df["end"].max()) for df in (calls, moved, frames) if len(df)])   # a call's end, too

    def rows(df, cells):
        return [{"cells": cells(r), "start_ns": s, "end_ns": e}
                for r in df.itertuples() for s, e in [zoom_span(_ns(r.start), _ns(r.end), t0_ns, hi)]]

    out = [
        {"key": "slowest-calls", "title": "Slowest calls",
         "columns": ["t (s)", "duration", "process", "call", "category", "bytes", "frame"],
         "rows": rows(calls, lambda r: [_t(r.start, t0_ns), aa.duration_text(r.duration_ns), _who(r.comm, r.pid),
                                        f"{printable(r.api)} {printable(r.call)}", printable(r.category),
                                        "" if pd.isna(r.bytes) else aa.bytes_text(r.bytes),
                                        "" if pd.isna(r.frame) else str(int(r.frame))]),
         "why": aa.why_empty("slowest_calls", gpu, returns) if calls.empty else ""},
        {"key": "most-bytes", "title": "Most bytes moved",
         "columns": ["process", "call", "direction", "bytes", "calls", "largest call", "first (s)", "last ends (s)"],
         "rows": rows(moved, lambda r: [_who(r.comm, r.pid), f"{printable(r.api)} {printable(r.call)}",
                                        printable(r.direction), aa.bytes_text(r.bytes), f"{r.calls:,}",
                                        aa.bytes_text(r.largest), _t(r.start, t0_ns), _t(r.end, t0_ns)]),
         "why": aa.why_empty("most_bytes", gpu, returns) if moved.empty else ""},
        {"key": "slowest-frames", "title": "Slowest frames",
         "columns": ["t (s)", "frame time", "process", "frame", "draws", "calls", "bytes up", "bytes down"],
         "rows": rows(frames, lambda r: [_t(r.start, t0_ns), aa.duration_text(r.frame_time.value),
                                         _who(r.comm, r.pid), str(int(r.frame)), f"{int(r.draws):,}",
                                         f"{int(r.calls):,}", aa.bytes_text(r.bytes_up), aa.bytes_text(r.bytes_down)]),
         "why": aa.why_empty("slowest_frames", gpu, returns) if frames.empty else ""},
    ]
    return out
