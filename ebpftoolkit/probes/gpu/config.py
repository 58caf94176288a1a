"""GpuTrace's configuration."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ProbeConfigError
from ..config import ProbeConfig, bool_option, power_of_two

__all__ = ["GpuConfig", "RETURNS", "FRAME_MODES", "frames_option", "check_boundaries"]

RETURNS = ("default", "all", "none")
FRAME_MODES = ("swap/present", "marker")     # or call names ending a frame


@dataclass(frozen=True)
class GpuConfig(ProbeConfig):
    """``apis``: the APIs asked for (None: every API whose libraries are found); ``returns``: return
    probes for the calls whose catalogue entry has them (``"default"``), all calls, or none;
    ``binaries``: executables to probe too (runtimes linked statically); ``libraries``: extra library
    files or folders; ``ring_pages``; ``cookies``: one BPF program for every attach point through
    uprobe cookies (kernel 5.15+), else one generated wrapper per attach point; ``follow``: find and probe
    the API libraries the traced processes map, and the programs they run, while recording (needs
    cookies); ``frames``: what ends a frame (the ``frame`` column): ``"swap/present"`` (the swap and
    present calls), ``"marker"`` (ebpftoolkit.frame blocks and ebpftoolkit.mark), or call names."""

    kind = "GpuTrace"
    apis: tuple[str, ...] | None = None
    returns: str = "default"
    binaries: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    ring_pages: int = 4096
    cookies: bool = True
    follow: bool = True
    frames: str | tuple[str, ...] = "swap/present"

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
        if not (self.frames in FRAME_MODES or (isinstance(self.frames, tuple) and self.frames
                                                and all(isinstance(x, str) and x for x in self.frames))):
            raise ProbeConfigError(_FRAMES_HELP + f", got {self.frames!r}")


_FRAMES_HELP = ("frames takes 'swap/present' (the default: swap and present calls end frames), 'marker' "
                "(ebpftoolkit.frame() blocks and ebpftoolkit.mark() calls) or the names of catalogued calls "
                "that end a frame, e.g. ['glFinish'], ['clFinish'], ['cudaDeviceSynchronize'], ['glReadPixels']")


def frames_option(frames) -> str | tuple[str, ...]:
    """``frames=`` as given (a mode, a call name, 'a,b', a list of names) -> the configuration's value."""
    if isinstance(frames, str):
        if frames in FRAME_MODES:
            return frames
        frames = frames.split(",")
    if isinstance(frames, (list, tuple)) and all(isinstance(x, str) for x in frames):
        return tuple(dict.fromkeys(x.strip() for x in frames if x.strip()))
    raise ProbeConfigError(_FRAMES_HELP + f", got {frames!r}")


def check_boundaries(frames, apis, catalogue) -> None:
    """Every call named in ``frames`` is catalogued and of an API probed (``apis``: those asked for,
    None for all): a boundary that is not probed would never end a frame."""
    if isinstance(frames, str):
        return
    names = {}
    for c in catalogue:
        names.setdefault(c.name, []).append(c.api)
    for name in frames:
        if name not in names:
            raise ProbeConfigError(f"frames={list(frames)!r}: {name!r} is not a catalogued call, so it is not "
                                   "probed and could not end a frame (add_call() teaches GpuTrace a call); "
                                   + _FRAMES_HELP)
        if apis is not None and not set(names[name]) & set(apis):
            raise ProbeConfigError(f"frames={list(frames)!r}: {name} is a call of {', '.join(names[name])}, "
                                   f"which apis={list(apis)!r} does not probe")
