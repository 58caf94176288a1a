"""``ebpftoolkit doctor``: what this machine can trace, with fixes."""
from __future__ import annotations

HELP = "check what this machine can trace, with fixes"


def add_arguments(p) -> None:
    p.description = "What this machine can trace."


def run(args) -> int:
    from ..doctor import doctor
    return 0 if doctor().ok else 1
