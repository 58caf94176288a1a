"""The dynamic linker's cache (``ldconfig -p``): which shared library is which file, as a program's
own loader finds it.  Read once per process."""
from __future__ import annotations

import functools
import platform
import re
import subprocess

__all__ = ["linker_cache", "ARCH_TAG"]

#: how ldconfig -p names this architecture in an entry's flags ("libc.so.6 (libc6,x86-64) => ...")
ARCH_TAG = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine(), "")
_ENTRY = re.compile(r"\s*(\S+) \(([^)]*)\) => (\S+)")


@functools.lru_cache(maxsize=1)
def linker_cache() -> tuple[tuple[str, str, str], ...]:
    """Every entry as (soname, flags, path), in ldconfig's order; empty where ldconfig cannot run."""
    for exe in ("/sbin/ldconfig", "ldconfig"):
        try:
            text = subprocess.run([exe, "-p"], capture_output=True, text=True, check=True, timeout=30).stdout
            break
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
            text = ""
    return tuple(m.groups() for m in map(_ENTRY.match, text.splitlines()) if m)
