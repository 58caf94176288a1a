"""``ebpftoolkit record``: record a command (or the whole machine) into a recording folder.

Nothing captured is lost: the output folder is checked before anything is attached; Ctrl-C
(SIGINT) or SIGTERM stops tracing, saves what was captured and exits 130 / 143 (a second
signal while stopping skips the save, but still detaches); a folder that cannot be written
at the end (a full disk) leaves the previous folder or none, and the recording is saved to
a temporary folder instead, which is named.  The exit status is the traced command's
(128 + N when a signal N killed it).
"""
from __future__ import annotations

import signal
import sys
import tempfile
import threading

from ..errors import OutputError
from ..options import probes_from_options, record_parser
from ..text import printable

HELP = "record a command: ebpftoolkit record --exec -o runs/r1 -- CMD"


def add_arguments(p) -> None:
    record_parser(parser=p)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the recording is stopped and saved), exit status 143."""


def _on_sigterm(_signum, _frame):
    raise Terminated()


def exit_status(returncode: int) -> int:
    """A command's exit status as a shell reports it: 128 + N when signal N killed it."""
    return 128 - returncode if returncode < 0 else returncode


def save_somewhere(recording, wanted) -> tuple[str, int]:
    """Save to ``wanted``; when that fails, to a new temporary folder. (message, exit status to add)."""
    if wanted is None:
        return "", 0
    try:
        return f"session written to {recording.save(wanted)}", 0
    except OutputError as exc:
        rescue = tempfile.mkdtemp(prefix="ebpftoolkit-rescue-")
        try:
            recording.save(rescue)
        except OutputError as exc2:
            return f"ebpftoolkit: error: {exc}; and saving to {rescue} failed too: {exc2}", 1
        return f"ebpftoolkit: error: {exc}.\nThe recording was saved to {rescue} instead.", 1


def run(args) -> int:
    from ..session import Session, program_text_for
    from ..storage import check_writable
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and args.duration is None:
        raise SystemExit("ebpftoolkit record: give a command after --, or --duration SECONDS")
    scope = None if args.system_wide else ("command" if command else None)
    probes = probes_from_options(args, command)
    if args.ebpf:
        print(program_text_for(probes, scope))
        return 0
    if args.output:
        check_writable(args.output)             # before anything is attached
    session = Session(*probes, descendants_of=scope)
    what = "the whole machine" if scope is None else printable(" ".join(command))
    print(f"Tracing {what}... {'Ctrl-C to end' if not command else ''}".rstrip(), file=sys.stderr)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    rc, interrupted = 0, None
    try:
        session.start()
        try:
            if command:
                rc = exit_status(session.run(command).returncode)
            else:
                threading.Event().wait(args.duration)
        except KeyboardInterrupt as exc:        # Ctrl-C or SIGTERM: stop and keep what was captured
            interrupted = exc
        finally:
            if session.running:
                session.stop()
    finally:
        signal.signal(signal.SIGTERM, old_term)
    if interrupted is not None:
        rc = 143 if isinstance(interrupted, Terminated) else 130
        print(f"ebpftoolkit: {'terminated' if rc == 143 else 'interrupted'}: tracing stopped, "
              "the traced command was stopped, what was captured is kept", file=sys.stderr)
    print(session.summary())
    message, failed = save_somewhere(session.recording, args.output)
    if message:
        print(message, file=sys.stderr if failed else sys.stdout)
    return rc or failed
