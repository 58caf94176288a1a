"""``ebpftoolkit report``: a self-contained HTML report of a saved recording (no root needed)."""
from __future__ import annotations

from pathlib import Path

HELP = "HTML report of a recording folder (no root needed)"


def add_arguments(p) -> None:
    p.description = "Write a self-contained HTML report of a saved recording (no root needed)."
    p.add_argument("session", metavar="RECORDING_DIR", help="a recording folder (ebpftoolkit record -o DIR)")
    p.add_argument("-o", "--output", metavar="FILE", help="HTML file to write (default: RECORDING_DIR/report.html)")
    p.add_argument("--title", help="report title")
    p.add_argument("--max-rows", type=int, default=200, help="rows shown per table (default 200)")
    p.add_argument("--baseline", metavar="RECORDING_DIR", help="compare with this recording (per call, frames, PMU)")


def run(args) -> int:
    from ..recording import Recording
    out = Path(args.output or Path(args.session) / "report.html")
    baseline = Recording.load(args.baseline) if args.baseline else None
    Recording.load(args.session).to_html(out, title=args.title, max_rows=args.max_rows, baseline=baseline)
    print(f"report written to {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0
