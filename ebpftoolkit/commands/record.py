"""``ebpftoolkit record``: record a command (or the whole machine) into a recording folder."""
from __future__ import annotations

import sys
import threading

from ..options import probes_from_options, record_parser

HELP = "record a command: ebpftoolkit record --exec -o runs/r1 -- CMD"


def add_arguments(p) -> None:
    record_parser(parser=p)


def run(args) -> int:
    from ..session import Session, program_text_for
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and args.duration is None:
        raise SystemExit("ebpftoolkit record: give a command after --, or --duration SECONDS")
    scope = None if args.system_wide else ("command" if command else None)
    probes = probes_from_options(args, command)
    if args.ebpf:
        print(program_text_for(probes, scope))
        return 0
    session = Session(*probes, descendants_of=scope)
    print(f"Tracing {'the whole machine' if scope is None else ' '.join(command)}... "
          f"{'Ctrl-C to end' if not command else ''}".rstrip(), file=sys.stderr)
    rc = 0
    with session:
        if command:
            rc = session.run(command).returncode
        else:
            sleep_interruptibly(args.duration)
    print(session.summary())
    if args.output:
        print(f"session written to {session.save(args.output)}")
    return rc


def sleep_interruptibly(seconds) -> None:
    try:
        threading.Event().wait(seconds)
    except KeyboardInterrupt:
        pass
