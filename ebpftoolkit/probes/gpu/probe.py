"""GpuTrace: OpenGL, Vulkan, OpenCL and CUDA calls into one DataFrame."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd

from ...errors import ProbeConfigError, ProbeNotSupportedError
from ...runtime.clock import MonotonicClock
from ...runtime.layout import Layout, c_defines
from ...runtime.links import cookies_supported
from ...runtime.program import Uprobe
from ...runtime.records import decode_str_array
from ...runtime.sources import source_beside
from ...runtime.streams import StreamSpec
from ...runtime.x86 import PT_REGS_INDEX
from ..standalone import StandaloneProbe
from .catalogue import CATALOGUE, CallSpec, calls_for
from .config import GpuConfig
from .decode import GPU_COLUMNS, calls_table
from .resolve import AttachPoint, resolve

__all__ = ["GpuTrace", "APIS", "GPU_COLUMNS", "EVENT", "POINT", "KINDS"]

APIS = ("opengl", "vulkan", "opencl", "cuda")
KINDS = {"ENTRY": 0, "RETURN": 1}      # gpu_event.kind
EVENT = Layout("gpu_event", [
    ("ts", "u64"), ("pid", "u32"), ("tid", "u32"),
    ("point", "u32"),                  # attach point index
    ("kind", "u32"),                   # GPU_ENTRY / GPU_RETURN
    ("caller", "u64"),
    ("args", "u64", 9),                # return: args[0] = return value
    ("deref", "u64"),                  # entry: *(arg + off); return: *out_pointer
    ("comm", "char", 16)])
POINT = Layout("gpu_point", [
    ("probe_vaddr", "u64"),            # where the entry probe sits (ELF address in its library)
    ("lib_lo", "u64"), ("lib_hi", "u64"),   # the library's address range, for the self-call filter
    ("deref_arg", "s32"),              # argument holding a pointer to read 8 bytes through, or -1
    ("deref_off", "u32"),
    ("out_arg", "s32"),                # argument through which the call returns a handle, or -1
    ("has_ret", "u32"), ("self_filter", "u32"), ("stack_adj", "u32"),
    ("remap", "u8"),                   # the probe sits past instructions that moved argument registers:
    ("narrow", "u8"),                  #   bit k: only the low 32 bits of argument k survived
    ("arg_reg", "u8", 6)])             #   struct ebt_regs index holding argument k, 255 = overwritten


def known_apis() -> list[str]:
    """The four APIs, then any named through add_call()."""
    return list(dict.fromkeys(list(APIS) + [c.api for c in CATALOGUE]))


def _binary(b) -> str:
    path = str(b) if os.sep in str(b) else (shutil.which(str(b)) or str(b))
    if not os.path.isfile(path):
        raise ProbeConfigError(f"binary {b!r} not found")
    return os.path.realpath(path)


class GpuTrace(StandaloneProbe):
    """Trace graphics/compute API calls with uprobes (table ``gpu``).

    ``apis``: any of ``"opengl"``, ``"vulkan"``, ``"opencl"``, ``"cuda"`` (default: every API
    whose libraries are on this machine).  ``returns``: ``"default"`` (return probes for
    allocations, frees, copies, syncs and frames: durations and return values), ``"all"``
    or ``"none"``.  ``binaries``: executables to probe too, for APIs linked into them
    statically (CUDA's default ``nvcc`` build).  ``libraries``: extra library files or
    folders to look in.  Where to attach is worked out when the session starts (or by
    :meth:`overhead`), never when the probe is built.
    """

    name = "gpu"
    table_names = ("gpu",)

    def __init__(self, apis=None, *, returns: str = "default", binaries=(), libraries=(), ring_pages: int = 4096,
                 cookies: bool = True):
        if isinstance(apis, str):
            apis = [a.strip() for a in apis.split(",") if a.strip()]
        known = known_apis()
        unknown = sorted(set(apis or ()) - set(known))
        if unknown:
            raise ProbeConfigError(f"unknown API {unknown}: choose from {', '.join(known)} "
                                   "(add_call() teaches GpuTrace calls of other libraries)")
        super().__init__(GpuConfig(tuple(apis) if apis else None, returns, tuple(_binary(b) for b in binaries),
                                   tuple(str(x) for x in libraries), ring_pages, cookies))
        self.use_cookies = cookies and cookies_supported()
        self._points: list[AttachPoint] | None = None
        self.notes: list[str] = []
        self.internal_calls = 0

    # -- attach points --------------------------------------------------
    def _wants_return(self, spec: CallSpec) -> bool:
        return {"default": spec.ret, "all": True, "none": False}[self.config.returns]

    def prepare(self, scope=None) -> None:
        """Find the attach points of every asked-for call (driver lookup in a helper process, ELF symbols)."""
        if self._points is not None:
            return
        requested = self.config.apis
        points, notes = resolve(calls_for(requested or known_apis()), self.config.binaries, self.config.libraries)
        found = {p.spec.api for p in points}
        if requested:
            missing = [a for a in requested if a not in found]
            if missing:
                raise ProbeNotSupportedError(
                    f"no library for {', '.join(missing)} was found on this machine "
                    "(OpenGL: libGL/libEGL + Mesa; Vulkan: libvulkan.so.1 + a driver; OpenCL: libOpenCL.so.1; "
                    "CUDA: libcudart.so or a binary linked with it, passed as binaries=[...]). "
                    "Install the API's runtime, or pass libraries=[...]")
        elif not points:
            raise ProbeNotSupportedError("no GPU API library was found on this machine")
        self._points, self.notes = points, notes

    @property
    def points(self) -> list[AttachPoint]:
        self.prepare()
        return self._points

    def overhead(self) -> pd.DataFrame:
        """Every attach point: library, address, how it was found, its first instruction and its cost."""
        return pd.DataFrame([dict(p.row(self._wants_return(p.spec)), returns=self._wants_return(p.spec))
                             for p in self.points])

    def details(self) -> dict:
        return {"apis": sorted({p.spec.api for p in self.points}), "notes": list(self.notes),
                "attach_points": self.overhead().to_dict("records")}

    def streams(self):
        return [StreamSpec("gpu_events", EVENT.dtype, self.config.ring_pages, wakeup="batch",
                           c_type="struct gpu_event")]

    def uprobes(self):
        out = []
        for i, p in enumerate(self.points):
            addr = p.entry(self._wants_return(p.spec))[0]
            cookie = i if self.use_cookies else None
            entry, ret = ("gpu_entry_any", "gpu_return_any") if self.use_cookies else (f"gpu_e_{i}", f"gpu_r_{i}")
            out.append(Uprobe(p.path, addr, entry, False, -1, cookie))
            if self._wants_return(p.spec):
                out.append(Uprobe(p.path, p.vaddr, ret, True, -1, cookie))
        return out

    def _point_record(self, p: AttachPoint) -> np.void:
        """An attach point's gpu_points entry (struct gpu_point)."""
        s = p.spec
        da, do = s.deref if s.deref else (-1, 0)
        ret = int(self._wants_return(s))
        addr, site = p.entry(bool(ret))
        rec = np.zeros((), POINT.dtype)
        rec["probe_vaddr"], rec["lib_lo"], rec["lib_hi"] = addr, p.lib_lo, p.lib_hi
        rec["deref_arg"], rec["deref_off"], rec["out_arg"] = da, do, -1 if s.out_arg is None else s.out_arg
        rec["has_ret"], rec["self_filter"], rec["stack_adj"] = ret, int(s.self_filter), site.stack_adj
        if site.arg_regs is not None:
            rec["remap"], rec["narrow"] = 1, sum(1 << k for k in site.narrow)
            rec["arg_reg"] = [PT_REGS_INDEX.get(r, 255) for r in site.arg_regs]
        else:
            rec["arg_reg"] = 255
        return rec

    def setup(self, program) -> None:
        """Describe every attach point in gpu_points (read by gpu_entry_any through the cookie)."""
        table = program.map("gpu_points", "u4", POINT.dtype)
        for i, p in enumerate(self.points):
            table.update(i, self._point_record(p))

    def bpf_text(self) -> str:
        head = (f"#define GPU_MAX_POINTS {max(len(self.points), 1)}\n#define GPU_COOKIES {int(self.use_cookies)}\n"
                + c_defines(KINDS, "GPU_") + EVENT.c_decl() + POINT.c_decl())
        lines = [head + source_beside(__file__, "gpu.bpf.c")]
        if self.use_cookies:
            lines.append("// attach points (cookie = index into gpu_points):")
            lines += [f"//   {i}: {p.spec.api} {p.spec.name} {p.path}:{p.vaddr:#x}" for i, p in enumerate(self.points)]
            return "\n".join(lines) + "\n"
        lines.append("// one wrapper per attach point: (point, deref arg, deref offset, out arg, has return probe, "
                     "self filter, probe address, library range, stack adjust, arguments moved)")
        for i, p in enumerate(self.points):
            r = self._point_record(p)
            lines.append(f"int gpu_e_{i}(struct ebt_regs *ctx) {{ return gpu_entry(ctx, {i}, {r['deref_arg']}, "
                         f"{r['deref_off']}, {r['out_arg']}, {r['has_ret']}, {r['self_filter']}, "
                         f"{int(r['probe_vaddr']):#x}, {int(r['lib_lo']):#x}, {int(r['lib_hi']):#x}, "
                         f"{r['stack_adj']}, {r['remap']}, 0); }}  // {p.spec.api} {p.spec.name}")
            if r["has_ret"]:
                lines.append(f"int gpu_r_{i}(struct ebt_regs *ctx) {{ return gpu_return(ctx, {i}, "
                             f"{int(r['out_arg'] >= 0)}); }}")
        return "\n".join(lines) + "\n"

    def snapshot(self, program):
        return {"_internal": np.array([program.counter("gpu_internal")], dtype=np.int64)}

    def make_tables(self, records, clock: MonotonicClock):
        r = records["gpu_events"]
        internal = records.get("_internal")
        if internal is not None:
            self.internal_calls = int(internal[0])
        return {"gpu": calls_table(r, self.points, clock, decode_str_array(r["comm"]) if len(r) else [])}
