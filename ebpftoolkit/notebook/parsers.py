"""The magics' option parsers: ``%%ebpf`` and ``%ebpf attach`` take exactly ``ebpftoolkit record``'s
options (:mod:`ebpftoolkit.options`) plus the notebook ones; a mistake is a UsageError, not an exit."""
from __future__ import annotations

import argparse
import shlex

from IPython.core.error import UsageError

from ..options import add_exec_filters, record_parser

__all__ = ["cell_parser", "attach_parser", "execsnoop_parser", "parse"]


def _raising(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    def error(message):
        raise UsageError(f"{parser.prog}: {message}\n{parser.format_usage().rstrip()}")
    parser.error = error
    return parser


def _notebook_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("notebook options")
    g.add_argument("--var", default="_ebpf", metavar="NAME",
                   help="bind the Session to this variable (default _ebpf)")
    g.add_argument("--report", metavar="PATH", help="also write a self-contained HTML report to PATH")
    g.add_argument("--no-timeline", action="store_true", help="do not show the interactive timeline")
    g.add_argument("--probe", action="append", default=[], metavar="NAME",
                   help="also trace with your own program defined by a `%%%%bpf NAME` cell (repeatable)")


def cell_parser() -> argparse.ArgumentParser:
    """``%%ebpf``'s options: exactly ``ebpftoolkit record``'s, plus --var, --report, --no-timeline."""
    p = record_parser(prog="%%ebpf")
    p.description = ("Trace this notebook's kernel process and everything it starts while the cell runs "
                     "(the record command's options; the cell takes the place of the command). "
                     "--system-wide traces every process; --duration keeps tracing until SECONDS have passed "
                     "since the start; -o DIR saves the session; --ebpf prints the BPF C and does not run the cell.")
    _notebook_options(p)
    return _raising(p)


def attach_parser() -> argparse.ArgumentParser:
    """``%ebpf attach PID`` options: the record options plus --seconds and the notebook options."""
    p = record_parser(prog="%ebpf attach PID")
    p.description = ("Trace a running process and its descendants. With --seconds (or --duration), wait and "
                     "show the result; without, trace in the background until `%ebpf stop`.")
    p.add_argument("--seconds", type=float, metavar="S", help="trace for S seconds, then show the result")
    _notebook_options(p)
    return _raising(p)


def execsnoop_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%execsnoop", description="Every exec on this machine for SECONDS "
                                "(default 10), returned as a DataFrame.")
    p.add_argument("seconds", type=float, nargs="?", default=10.0, help="how long to watch (default 10)")
    p.add_argument("-p", "--pid", type=int, help="only this process and its descendants")
    add_exec_filters(p)
    return _raising(p)


def parse(parser: argparse.ArgumentParser, line: str):
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{parser.prog}: {exc}") from None
    try:
        return parser.parse_args(tokens)
    except SystemExit:          # -h/--help printed the help
        return None
