"""Which processes a session traces: its one ``descendants_of`` value.

``"self"`` (default): this process and everything it starts; ``"command"``: only
what :meth:`Session.run` starts; a pid: that process and its descendants; ``None``:
the whole machine.
"""
from __future__ import annotations

import os
from typing import Union

from .errors import ProbeConfigError

__all__ = ["Scope", "SELF", "COMMAND", "check_scope", "describe_scope"]

SELF, COMMAND = "self", "command"
Scope = Union[int, str, None]


def check_scope(value) -> Scope:
    """``value`` if it is a valid scope (a pid must be a running process), else ProbeConfigError."""
    if value is None or value in (SELF, COMMAND):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProbeConfigError(f"descendants_of must be 'self', 'command', a pid (int) or None (whole machine), "
                               f"got {value!r}")
    if value <= 0:
        raise ProbeConfigError(f"descendants_of={value}: a pid is a positive integer")
    if not os.path.exists(f"/proc/{value}"):
        raise ProbeConfigError(f"descendants_of={value}: no such process (is it still running? see `ps -p {value}`)")
    return value


def describe_scope(scope: Scope, own_pid: int | None = None) -> str:
    if scope is None:
        return "whole machine"
    if scope == SELF:
        return f"process {own_pid or os.getpid()} and its descendants"
    if scope == COMMAND:
        return "the commands run()"
    return f"pid {scope} and its descendants"
