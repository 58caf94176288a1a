"""``ebpftoolkit execsnoop``: print every exec on this machine, live."""
from __future__ import annotations

import shlex
import sys
import threading

from ..options import add_exec_filters, exec_probe
from ..text import printable

HELP = "print every exec live (Ctrl-C to end)"
OVERHEAD_NOTE = ("Overhead: ExecSnoop costs a few microseconds per exec/fork/exit; "
                 "programs that start thousands of processes per second slow down measurably.")


def add_arguments(p) -> None:
    p.description = "Print every exec on this machine, live."
    p.add_argument("-p", "--pid", type=int, help="only this process and its descendants")
    p.add_argument("-o", "--output", metavar="DIR", help="also save the recording to DIR when stopped")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS (default: Ctrl-C)")
    add_exec_filters(p)
    p.add_argument("--ebpf", action="store_true", help="print the generated BPF C and exit")


def format_row(r) -> str:
    """One exec as a terminal line; text from the traced program is escaped (:func:`printable`)."""
    args = printable(shlex.join(r.argv)) + (" ..." if r.argv_truncated else "")
    ret = str(r.retval) if r.retval == 0 else f"{r.retval} ({r.error})"
    return f"{r.ts:%H:%M:%S.%f}"[:-3] + f" {printable(r.comm):<16} {r.pid:>7} {r.ppid:>7} {ret:>12}  {args}"


def run(args) -> int:
    from ..session import Session, program_text_for
    probe = exec_probe(args)
    if args.ebpf:
        print(program_text_for([probe], args.pid))
        return 0
    session = Session(probe, descendants_of=args.pid)
    lock = threading.Lock()

    def show(_probe, df):
        with lock:
            for r in df.itertuples():
                print(format_row(r), flush=True)

    session.start()
    try:
        session.add_listener(show)
        print(f"Tracing execs{'' if args.pid is None else f' below pid {args.pid}'}... Ctrl-C to end.", file=sys.stderr)
        print(OVERHEAD_NOTE, file=sys.stderr)
        print(f"{'TIME':<12} {'COMM':<16} {'PID':>7} {'PPID':>7} {'RET':>12}  ARGS", flush=True)
        try:
            threading.Event().wait(args.duration)
        except KeyboardInterrupt:       # Ctrl-C ends the watch; what was seen is kept (and saved with -o)
            pass
    finally:
        session.stop()
    print(f"{len(session.tables['exec'])} execs; lost events: {sum(session.lost.values())}", file=sys.stderr)
    if args.output:
        print(f"session written to {session.save(args.output)}", file=sys.stderr)
    return 0
