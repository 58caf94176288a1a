"""One privilege check, used by the loader, the doctor and the notebook magics alike.

Loading and attaching BPF programs needs root, or these effective capabilities (measured
on kernel 6.18 as an unprivileged user with ambient capabilities: exec, GPU uprobes and
PMU counters all recorded): CAP_BPF (programs and maps), CAP_PERFMON (tracing programs,
perf events, reading kernel memory), and CAP_DAC_READ_SEARCH where tracefs is root-only
(its usual mode 0700), since attaching to a tracepoint reads its id there.  CAP_SYS_ADMIN
stands for both CAP_BPF and CAP_PERFMON, and is what kernels before 5.8 need.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotRootError
from .kernel import kernel_at_least
from .tracefs import TRACEFS_PATHS

__all__ = ["Privilege", "privilege", "require_privilege", "CAPABILITIES", "ROOT_FIX"]

CAPABILITIES = {"CAP_DAC_READ_SEARCH": 2, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
_CAPS_TEXT = "cap_bpf,cap_perfmon,cap_dac_read_search"
ROOT_FIX = ("run with sudo (as root), or grant the capabilities: for one command, "
            "sudo setpriv --reuid=$(id -u) --regid=$(id -g) --init-groups "
            "--inh-caps=+bpf,+perfmon,+dac_read_search --ambient-caps=+bpf,+perfmon,+dac_read_search CMD; "
            f"for an interpreter, sudo setcap {_CAPS_TEXT}+ep $(readlink -f $(which python3))")


def _effective_caps(status_text: str | None = None) -> int:
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    m = re.search(r"^CapEff:\s*([0-9a-f]+)", text, re.M)
    return int(m[1], 16) if m else 0


def _tracefs_readable() -> bool:
    for p in TRACEFS_PATHS:
        try:
            os.listdir(p)
            return True
        except FileNotFoundError:
            continue
        except PermissionError:
            return False
    return True          # not mounted: the tracefs check says so, with its own fix


@dataclass(frozen=True)
class Privilege:
    ok: bool
    detail: str
    fix: str = ""


def privilege(euid: int | None = None, caps: int | None = None, tracefs_readable: bool | None = None) -> Privilege:
    """Whether this process may load and attach BPF programs, and why (arguments: for tests)."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return Privilege(True, "running as root (euid 0)")
    caps = _effective_caps() if caps is None else caps
    has = {n for n, bit in CAPABILITIES.items() if caps >> bit & 1}
    admin = "CAP_SYS_ADMIN" in has
    need = ["CAP_BPF", "CAP_PERFMON"] if kernel_at_least(5, 8) else ["CAP_SYS_ADMIN"]
    missing = [n for n in need if n not in has and not admin]
    readable = _tracefs_readable() if tracefs_readable is None else tracefs_readable
    if not readable and "CAP_DAC_READ_SEARCH" not in has:
        missing.append("CAP_DAC_READ_SEARCH (tracefs is root-only here)")
    have = ", ".join(sorted(has)) or "none"
    if not missing:
        return Privilege(True, f"euid {euid} with {have} effective")
    return Privilege(False, f"euid {euid}, not root, and {', '.join(missing)} not effective (have: {have})", ROOT_FIX)


def require_privilege(what: str = "loading BPF programs") -> None:
    """Raise :class:`NotRootError` (saying what is missing and how to fix it) unless privileged."""
    p = privilege()
    if not p.ok:
        raise NotRootError(f"{what} needs root or CAP_BPF and CAP_PERFMON: {p.detail}. Fix: {p.fix}")
