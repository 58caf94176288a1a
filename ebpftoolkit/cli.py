"""Command line: ``ebpftoolkit doctor | record | execsnoop | report | export`` (one module each in
:mod:`ebpftoolkit.commands`); ``python -m ebpftoolkit`` is the same."""
from __future__ import annotations

import argparse
import sys

from .commands import COMMANDS
from .errors import EbpfToolkitError

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpftoolkit", description="Exploratory eBPF profiling: record, report, export.")
    sub = p.add_subparsers(dest="cmd", metavar="{" + ",".join(COMMANDS) + "}")
    for name, mod in COMMANDS.items():
        mod.add_arguments(sub.add_parser(name, help=mod.HELP, prog=f"ebpftoolkit {name}"))
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    if not argv or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            p.print_help(sys.stderr)
            return 2
        p.print_help()
        return 0
    args = p.parse_args(argv)
    try:
        return COMMANDS[args.cmd].run(args)
    except EbpfToolkitError as exc:
        print(f"ebpftoolkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
