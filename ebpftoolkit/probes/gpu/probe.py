"""GpuTrace: OpenGL, Vulkan, OpenCL and CUDA calls into one DataFrame."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd

from ...errors import ProbeConfigError, ProbeNotSupportedError
from ...runtime.clock import MonotonicClock
from ...runtime.program import Uprobe
from ...runtime.streams import StreamSpec
from ...runtime.records import c_struct_dtype, decode_str_array
from ...runtime.sources import bpf_source
from ...runtime.uprobe_link import cookies_supported
from ...runtime.x86 import PT_REGS_INDEX
from ..base import SELF, Probe
from .catalogue import CATALOGUE, CallSpec, calls_for
from .decode import calls_table
from .resolve import AttachPoint, resolve

__all__ = ["GpuTrace", "APIS", "GPU_COLUMNS"]

APIS = ("opengl", "vulkan", "opencl", "cuda")

EVENT_DTYPE = c_struct_dtype([("ts", "u8"), ("pid", "u4"), ("tid", "u4"), ("point", "u4"), ("kind", "u4"),
                              ("caller", "u8"), ("args", ("u8", (9,))), ("deref", "u8"), ("comm", "S16")])

from .decode import GPU_COLUMNS  # noqa: E402


def known_apis() -> list[str]:
    """The four APIs, then any named through add_call()."""
    return list(dict.fromkeys(list(APIS) + [c.api for c in CATALOGUE]))


class GpuTrace(Probe):
    """Trace graphics/compute API calls with uprobes.

    Parameters
    ----------
    apis:
        any of ``"opengl"``, ``"vulkan"``, ``"opencl"``, ``"cuda"`` (default: every API
        whose libraries are on this machine).
    pid:
        attach to this already-running process only (breakpoints go into it alone).
    returns:
        ``"default"`` (return probes for allocations, frees, copies, syncs and frames:
        durations and return values), ``"all"``, or ``"none"``.
    binaries:
        executables to probe too, for APIs linked into them statically (CUDA's
        default ``nvcc`` build links the runtime into the program).
    libraries:
        extra library files or folders to look in (e.g. a bundled OpenCL loader).
    """

    name = "gpu"

    def __init__(self, apis=None, pid: int | None = None, descendants_of=SELF, *, returns: str = "default",
                 binaries=(), libraries=(), ring_pages: int = 4096, _wrappers: bool = False):
        if isinstance(apis, str):
            apis = [a.strip() for a in apis.split(",") if a.strip()]
        known = known_apis()
        unknown = sorted(set(apis or ()) - set(known))
        if unknown:
            raise ProbeConfigError(f"unknown API {unknown}: choose from {', '.join(known)} "
                                   "(add_call() teaches GpuTrace calls of other libraries)")
        if returns not in ("default", "all", "none"):
            raise ProbeConfigError("returns must be 'default', 'all' or 'none'")
        if pid is not None:
            if isinstance(pid, bool) or not isinstance(pid, int) or not os.path.exists(f"/proc/{pid}"):
                raise ProbeConfigError(f"pid {pid!r} is not a running process")
            descendants_of = pid
        if not isinstance(ring_pages, int) or ring_pages < 1 or ring_pages & (ring_pages - 1):
            raise ProbeConfigError("ring_pages must be a power of two")
        super().__init__(descendants_of)
        self.pid, self.returns, self.ring_pages = pid, returns, ring_pages
        self.binaries = tuple(self._binary(b) for b in binaries)
        self.libraries = tuple(str(x) for x in libraries)
        self.requested = list(apis) if apis else None
        self._points: list[AttachPoint] | None = None
        self.notes: list[str] = []
        self.use_cookies = cookies_supported() and not _wrappers


    @staticmethod
    def _binary(b) -> str:
        path = str(b) if os.sep in str(b) else (shutil.which(str(b)) or str(b))
        if not os.path.isfile(path):
            raise ProbeConfigError(f"binary {b!r} not found")
        return os.path.realpath(path)

    # -- attach points --------------------------------------------------
    def _wants_return(self, spec: CallSpec) -> bool:
        return {"default": spec.ret, "all": True, "none": False}[self.returns]

    @property
    def points(self) -> list[AttachPoint]:
        if self._points is None:
            apis = self.requested or known_apis()
            points, notes = resolve(calls_for(apis), self.binaries, self.libraries)
            found = {p.spec.api for p in points}
            if self.requested:
                missing = [a for a in self.requested if a not in found]
                if missing:
                    raise ProbeNotSupportedError(
                        f"no library for {', '.join(missing)} was found on this machine "
                        "(OpenGL: libGL/libEGL + Mesa; Vulkan: libvulkan.so.1 + a driver; OpenCL: libOpenCL.so.1; "
                        "CUDA: libcudart.so or a binary linked with it, passed as binaries=[...]). "
                        "Install the API's runtime, or pass libraries=[...]")
            elif not points:
                raise ProbeNotSupportedError("no GPU API library was found on this machine")
            self._points, self.notes = points, notes
        return self._points

    def overhead(self) -> pd.DataFrame:
        """Every attach point: library, address, how it was found, its first instruction and its cost."""
        return pd.DataFrame([dict(p.row(self._wants_return(p.spec)), returns=self._wants_return(p.spec))
                             for p in self.points])

    def config(self):
        return {"apis": sorted({p.spec.api for p in self.points}), "pid": self.pid, "returns": self.returns,
                "binaries": list(self.binaries), "libraries": list(self.libraries), "notes": self.notes,
                "attach_points": self.overhead().to_dict("records")}

    def streams(self):
        return [StreamSpec("gpu_events", EVENT_DTYPE, self.ring_pages, wakeup="batch", c_type="struct gpu_event")]

    def uprobes(self):
        out = []
        for i, p in enumerate(self.points):
            addr = p.entry(self._wants_return(p.spec))[0]
            cookie = i if self.use_cookies else None
            entry, ret = ("gpu_entry_any", "gpu_return_any") if self.use_cookies else (f"gpu_e_{i}", f"gpu_r_{i}")
            out.append(Uprobe(p.path, addr, entry, False, self.pid or -1, cookie))
            if self._wants_return(p.spec):
                out.append(Uprobe(p.path, p.vaddr, ret, True, self.pid or -1, cookie))
        return out

    def _point_config(self, p: AttachPoint) -> tuple:
        """An attach point's gpu_points entry, in struct gpu_point's field order (bpf_src/gpu.c)."""
        s = p.spec
        da, do = s.deref if s.deref else (-1, 0)
        oa = -1 if s.out_arg is None else s.out_arg
        ret = int(self._wants_return(s))
        addr, site = p.entry(bool(ret))
        remap, regs, narrow = self._arg_moves(site)
        return addr, p.lib_lo, p.lib_hi, da, do, oa, ret, int(s.self_filter), site.stack_adj, remap, narrow, regs

    @staticmethod
    def _arg_moves(site) -> tuple[int, list[int], int]:
        """(remap flag, each argument's struct ebt_regs index or 255 when lost, narrow-argument bit mask)."""
        if site.arg_regs is None:
            return 0, [255] * 6, 0
        return 1, [PT_REGS_INDEX.get(r, 255) for r in site.arg_regs], sum(1 << k for k in site.narrow)

    def setup(self, program) -> None:
        """Describe every attach point in gpu_points (read by gpu_entry_any through the cookie)."""
        table = program.table("gpu_points")
        for i, p in enumerate(self.points):
            *fields, regs = self._point_config(p)
            leaf = table.Leaf(*fields)
            leaf.arg_reg[:] = regs
            table[table.Key(i)] = leaf

    def bpf_text(self) -> str:
        head = (f"#define GPU_MAX_POINTS {max(len(self.points), 1)}\n"
                f"#define GPU_COOKIES {int(self.use_cookies)}\n")
        lines = [head + bpf_source("gpu.c")]
        if self.use_cookies:
            lines.append("// attach points (cookie = index into gpu_points):")
            lines += [f"//   {i}: {p.spec.api} {p.spec.name} {p.path}:{p.vaddr:#x}" for i, p in enumerate(self.points)]
            return "\n".join(lines) + "\n"
        lines.append("// one wrapper per attach point: (point, deref arg, deref offset, out arg, has return probe, "
                     "self filter, probe address, library range, stack adjust, arguments moved)")
        for i, p in enumerate(self.points):
            addr, lo, hi, da, do, oa, ret, sf, adj, remap, _narrow, _regs = self._point_config(p)
            lines.append(f"int gpu_e_{i}(struct ebt_regs *ctx) {{ return gpu_entry(ctx, {i}, {da}, {do}, {oa}, {ret}, "
                         f"{sf}, {addr:#x}, {lo:#x}, {hi:#x}, {adj}, {remap}, 0); }}  // {p.spec.api} {p.spec.name}")
            if ret:
                lines.append(f"int gpu_r_{i}(struct ebt_regs *ctx) {{ return gpu_return(ctx, {i}, {int(oa >= 0)}); }}")
        return "\n".join(lines) + "\n"

    def lost_counters(self):
        return []

    def snapshot(self, program):
        return {"_internal": np.array([program.counter("gpu_internal")], dtype=np.int64)}

    def make_tables(self, records, clock: MonotonicClock):
        r = records["gpu_events"]
        internal = records.get("_internal")
        if internal is not None:
            self.internal_calls = int(internal[0])
        return {"gpu": calls_table(r, self.points, clock, decode_str_array(r["comm"]) if len(r) else [])}
