"""GpuTrace's configuration."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ProbeConfigError
from ..config import ProbeConfig, bool_option, power_of_two

__all__ = ["GpuConfig", "RETURNS"]

RETURNS = ("default", "all", "none")


@dataclass(frozen=True)
class GpuConfig(ProbeConfig):
    """``apis``: the APIs asked for (None: every API whose libraries are found); ``returns``: return
    probes for the calls whose catalogue entry has them (``"default"``), all calls, or none;
    ``binaries``: executables to probe too (runtimes linked statically); ``libraries``: extra library
    files or folders; ``ring_pages``; ``cookies``: one BPF program for every attach point through
    uprobe cookies (kernel 5.15+), else one generated wrapper per attach point; ``follow``: find and probe
    the API libraries the traced processes map, and the programs they run, while recording (needs
    cookies)."""

    kind = "GpuTrace"
    apis: tuple[str, ...] | None = None
    returns: str = "default"
    binaries: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    ring_pages: int = 4096
    cookies: bool = True
    follow: bool = True

    def __post_init__(self):
        if self.apis is not None and (not isinstance(self.apis, tuple) or not self.apis
                                      or not all(isinstance(a, str) and a for a in self.apis)):
            raise ProbeConfigError("apis must be API names such as ['opengl', 'opencl'] (or None: all present)")
        if self.returns not in RETURNS:
            raise ProbeConfigError(f"returns must be one of {', '.join(map(repr, RETURNS))}, got {self.returns!r}")
        for name in ("binaries", "libraries"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not all(isinstance(x, str) for x in v):
                raise ProbeConfigError(f"{name} must be a list of paths")
        power_of_two("ring_pages", self.ring_pages)
        bool_option("cookies", self.cookies)
        bool_option("follow", self.follow)
