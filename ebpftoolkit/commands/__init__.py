"""The command-line commands, one module each.  A command module has:

- ``HELP``: one line for ``ebpftoolkit --help``;
- ``add_arguments(parser)``: its options;
- ``run(args) -> int``: do it, return the exit status.

:data:`COMMANDS` lists them in the order ``--help`` shows them.
"""
from . import calibrate, doctor, execsnoop, export, record, report

__all__ = ["COMMANDS"]

COMMANDS = {"doctor": doctor, "record": record, "execsnoop": execsnoop, "report": report, "export": export,
            "calibrate": calibrate}
