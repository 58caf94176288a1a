"""The running kernel's version, for features a probe may use (uprobe cookies 5.15,
uprobe_multi links 6.6, bounded loops 5.3)."""
from __future__ import annotations

import os
import re

__all__ = ["kernel_version", "kernel_at_least"]


def kernel_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def kernel_at_least(major: int, minor: int) -> bool:
    return kernel_version() >= (major, minor)
