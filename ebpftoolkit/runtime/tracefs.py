"""Where tracefs is, mounting it when it is not mounted and we may."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import TracefsError

__all__ = ["syscall_arg_count", "TRACEFS_PATHS", "TRACEFS_FIX", "find_tracefs", "ensure_tracefs"]

TRACEFS_PATHS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
TRACEFS_FIX = "sudo mount -t tracefs nodev /sys/kernel/tracing"


def find_tracefs(mount: bool) -> tuple[Path | None, str, str]:
    """(mount point or None, what was found, fix); with ``mount``, mounts it when root and unmounted."""
    for p in TRACEFS_PATHS:
        if os.path.exists(p / "available_events"):
            return p, f"mounted at {p}", ""
    if os.path.ismount(TRACEFS_PATHS[0]):
        return None, f"{TRACEFS_PATHS[0]} is mounted but not readable", ("run as root, or with CAP_DAC_READ_SEARCH "
                                                                         "(tracefs is root-only)")
    if not mount or os.geteuid() != 0:
        return None, "tracefs is not mounted", TRACEFS_FIX
    res = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS_PATHS[0])], capture_output=True, text=True)
    if res.returncode == 0 and os.path.exists(TRACEFS_PATHS[0] / "available_events"):
        return TRACEFS_PATHS[0], f"was not mounted; mounted it at {TRACEFS_PATHS[0]}", ""
    return None, f"not mounted, and mounting failed: {res.stderr.strip()}", TRACEFS_FIX


def ensure_tracefs() -> Path:
    """The tracefs mount point (mounted here when it was not and we are root); TracefsError otherwise."""
    path, detail, fix = find_tracefs(mount=True)
    if path is None:
        raise TracefsError(f"tracefs: {detail}; fix: {fix}")
    return path


def syscall_arg_count(name: str) -> int | None:
    """How many arguments ``syscalls:sys_enter_NAME`` records (the fields after ``__syscall_nr`` in its
    format), or None where tracefs does not say (the tracepoint, or tracefs, is missing)."""
    root, _how, _why = find_tracefs(False)
    if root is None:
        return None
    try:
        text = (root / "events" / "syscalls" / f"sys_enter_{name}" / "format").read_text()
    except OSError:
        return None
    fields = [ln for ln in text.splitlines() if ln.strip().startswith("field:")]
    nr = next((k for k, ln in enumerate(fields) if "__syscall_nr" in ln), None)
    return 0 if nr is None else len(fields) - nr - 1
