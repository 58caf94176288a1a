"""``ebpftoolkit export``: a saved recording in another tool's format."""
from __future__ import annotations

from pathlib import Path

HELP = "a recording for other tools: Chrome trace JSON"


def add_arguments(p) -> None:
    p.description = "Export a saved recording for other tools."
    p.add_argument("--format", choices=["chrome"], default="chrome",
                   help="chrome: Trace Event Format JSON for chrome://tracing and ui.perfetto.dev (default)")
    p.add_argument("session", metavar="RECORDING_DIR", help="a recording folder (ebpftoolkit record -o DIR)")
    p.add_argument("-o", "--output", metavar="FILE", help="file to write (default: RECORDING_DIR/trace.json)")


def run(args) -> int:
    from ..recording import Recording
    out = Path(args.output or Path(args.session) / "trace.json")
    Recording.load(args.session).to_chrome_trace(out)
    print(f"trace written to {out} ({out.stat().st_size / 1e6:.2f} MB); open it in ui.perfetto.dev or chrome://tracing")
    return 0
