"""One privilege check, used by the loader, the doctor and the notebook magics alike.

Loading and attaching BPF programs needs root, or these effective capabilities:
CAP_BPF (load programs, create maps), CAP_PERFMON (tracing programs, perf
events, reading kernel memory) and CAP_SYS_ADMIN, which BCC 0.26 still needs
for what it does around loading (its kallsyms and tracefs use) and which
kernels before 5.8, without CAP_BPF and CAP_PERFMON, need for everything.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotRootError
from .kernel import kernel_at_least

__all__ = ["Privilege", "privilege", "require_privilege", "CAPABILITIES", "ROOT_FIX"]

CAPABILITIES = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
ROOT_FIX = ("run with sudo (as root), or grant the capabilities to the interpreter: "
            "sudo setcap cap_bpf,cap_perfmon,cap_sys_admin+ep $(readlink -f $(which python3)) "
            "(or capsh --caps=... for one shell)")


def _effective_caps(status_text: str | None = None) -> int:
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    m = re.search(r"^CapEff:\s*([0-9a-f]+)", text, re.M)
    return int(m[1], 16) if m else 0


@dataclass(frozen=True)
class Privilege:
    ok: bool
    detail: str
    fix: str = ""


def privilege(euid: int | None = None, caps: int | None = None) -> Privilege:
    """Whether this process may load and attach BPF programs, and why (``euid``/``caps`` for tests)."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return Privilege(True, "running as root (euid 0)")
    caps = _effective_caps() if caps is None else caps
    need = ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"] if kernel_at_least(5, 8) else ["CAP_SYS_ADMIN"]
    have = [n for n in need if caps >> CAPABILITIES[n] & 1]
    missing = [n for n in need if n not in have]
    if not missing:
        return Privilege(True, f"euid {euid} with {', '.join(have)} effective")
    return Privilege(False, f"euid {euid}, not root, and {', '.join(missing)} not effective "
                     f"(have: {', '.join(have) or 'none of ' + ', '.join(need)})", ROOT_FIX)


def require_privilege(what: str = "loading BPF programs") -> None:
    """Raise :class:`NotRootError` (saying what is missing and how to fix it) unless privileged."""
    p = privilege()
    if not p.ok:
        raise NotRootError(f"{what} needs root or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: {p.detail}. "
                           f"Fix: {p.fix}")
