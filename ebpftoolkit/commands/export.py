"""``ebpftoolkit export``: a saved recording in another tool's format."""
from __future__ import annotations

from pathlib import Path

HELP = "a recording for other tools: Chrome trace JSON or a Perfetto protobuf trace"
DEFAULT_NAME = {"chrome": "trace.json", "perfetto": "trace.pftrace"}


def add_arguments(p) -> None:
    p.description = "Export a saved recording for other tools."
    p.add_argument("--format", choices=["chrome", "perfetto"], default="chrome",
                   help="chrome: Trace Event Format JSON for chrome://tracing and ui.perfetto.dev (default); "
                        "perfetto: Perfetto's protobuf trace format for ui.perfetto.dev and trace_processor, "
                        "compact and fast for millions of events")
    p.add_argument("session", metavar="RECORDING_DIR", help="a recording folder (ebpftoolkit record -o DIR)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="file to write (default: RECORDING_DIR/trace.json, or trace.pftrace for perfetto)")


def run(args) -> int:
    from ..recording import Recording
    out = Path(args.output or Path(args.session) / DEFAULT_NAME[args.format])
    rec = Recording.load(args.session)
    if args.format == "perfetto":
        rec.to_perfetto(out)
        where = "ui.perfetto.dev or trace_processor"
    else:
        rec.to_chrome_trace(out)
        where = "ui.perfetto.dev or chrome://tracing"
    print(f"trace written to {out} ({out.stat().st_size / 1e6:.2f} MB); open it in {where}")
    return 0
