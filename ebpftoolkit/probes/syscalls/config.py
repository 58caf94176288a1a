"""SyscallTrace's configuration."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ProbeConfigError
from ..config import ProbeConfig, bool_option, int_option, power_of_two

__all__ = ["SyscallConfig"]

_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class SyscallConfig(ProbeConfig):
    """``names``: the system calls; ``nargs``: how many of each call's first arguments to keep (0-6);
    ``count_only``: keep only counts per process and syscall, in the kernel; ``ring_pages``: ring
    buffer size in pages; ``kernel_batch``: records gathered per CPU in the kernel and handed over
    together (0: one by one)."""

    kind = "SyscallTrace"
    names: tuple[str, ...] = ()
    nargs: int = 1
    count_only: bool = False
    ring_pages: int = 4096
    kernel_batch: int = 64

    def __post_init__(self):
        names = self.names
        if not isinstance(names, tuple) or not names or not all(isinstance(n, str) and _NAME.match(n) for n in names):
            raise ProbeConfigError("names must be syscall names such as ['openat', 'read']")
        if len(set(names)) != len(names):
            raise ProbeConfigError(f"each syscall once, got {list(names)}")
        int_option("nargs", self.nargs, 0, 6)
        bool_option("count_only", self.count_only)
        power_of_two("ring_pages", self.ring_pages)
        int_option("kernel_batch", self.kernel_batch, 0, 256)
