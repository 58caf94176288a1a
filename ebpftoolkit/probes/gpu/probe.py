"""GpuTrace: OpenGL, Vulkan, OpenCL and CUDA calls into one DataFrame."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd

from ...errors import ProbeConfigError, ProbeNotSupportedError
from ...runtime.clock import MonotonicClock
from ...runtime.layout import Layout, c_defines
from ...runtime.links import cookies_supported, multi_supported
from ...runtime.program import RawTracepoint, Uprobe
from ...runtime.demangle import demangle
from ...runtime.records import decode_str_array
from ...runtime.symbols import read_exec_maps
from ...runtime.symbols import resolve as resolve_ip
from ...runtime.sources import source_beside
from ...runtime.streams import StreamSpec
from ...runtime.tracking import descendants
from ...runtime.x86 import PT_REGS_INDEX
from ..standalone import StandaloneProbe
from .costs import costs, tracing_cost_ms
from .catalogue import CATALOGUE, MARKER_API, CallSpec, calls_for
from .config import GpuConfig, check_boundaries, frames_option
from .decode import GPU_COLUMNS, KERNEL_ARG, calls_table
from .follow import BTF_MEMBERS, FILE_KEY, MAPPED, MAPPED_KINDS, Follower, mapped_files
from .marker import library as marker_library
from .marker import load as load_markers
from .notes import end_notes
from .resolve import AttachPoint, find_libraries, linker_cache_paths, point_at, resolve
from .scoped import ScopedUprobes
from .strings import STRING, string_stream

__all__ = ["GpuTrace", "APIS", "GPU_COLUMNS", "EVENT", "POINT", "KINDS"]

APIS = ("opengl", "vulkan", "opencl", "cuda")
FOLLOW_HEADROOM = 2048                 # attach points that libraries found while recording may add
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
    ("str_arg", "s32"),                # argument holding a string to record (gpu_strings), or -1
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
    folders to look in.  ``frames``: what ends a frame (the ``frame`` column): ``"swap/present"``,
    ``"marker"`` (``ebpftoolkit.frame()`` blocks, ``ebpftoolkit.mark()``) or catalogued call names
    such as ``["clFinish"]``; markers are probed and labelled whatever it is.  Where to attach is
    worked out when the session starts (or by :meth:`overhead`), never when the probe is built.
    """

    name = "gpu"
    table_names = ("gpu",)

    def __init__(self, apis=None, *, returns: str = "default", binaries=(), libraries=(), ring_pages: int = 4096,
                 cookies: bool = True, follow: bool = True, frames="swap/present"):
        if isinstance(apis, str):
            apis = [a.strip() for a in apis.split(",") if a.strip()]
        known = known_apis()
        unknown = sorted(set(apis or ()) - set(known))
        if unknown:
            raise ProbeConfigError(f"unknown API {unknown}: choose from {', '.join(known)} "
                                   "(add_call() teaches GpuTrace calls of other libraries)")
        super().__init__(GpuConfig(tuple(apis) if apis else None, returns, tuple(_binary(b) for b in binaries),
                                   tuple(str(x) for x in libraries), ring_pages, cookies, follow,
                                   frames_option(frames)))
        check_boundaries(self.config.frames, self.config.apis, CATALOGUE)
        self.use_cookies = cookies and cookies_supported()
        self.following = follow and self.use_cookies
        self._points: list[AttachPoint] | None = None
        self._max_points = 0                      # set when the attach points are resolved
        self.notes: list[str] = []
        self.internal_calls = 0
        self.tracing_cost_ms = 0.0                # calls x their attach point's cost (calibrate.py)
        self._scope = None
        self._program = None
        self._follower: Follower | None = None
        self.scoped = False                       # uprobes only in the traced processes (scoped.py)
        self._scoped: ScopedUprobes | None = None
        self._templates: list[Uprobe] = []
        self._late_notes: list[str] = []          # what went wrong while following, said at the end
        self._snaps: dict[int, list] = {}      # pid -> its executable mappings, newest first (kernel names)
        self._symbol_files: dict = {}

    # -- attach points --------------------------------------------------
    def _wants_return(self, spec: CallSpec) -> bool:
        return {"default": spec.ret, "all": True, "none": False}[self.config.returns]

    def prepare(self, scope=None) -> None:
        """Find the attach points of every asked-for call (driver lookup in a helper process, ELF symbols)."""
        self._scope = scope
        self.scoped = self.following and scope is not None and multi_supported()
        if scope == "self":        # the notebook's own markers: mapped now, so probed in it from the start
            load_markers()
        self._resolve()

    def _resolve(self) -> None:
        if self._points is not None:
            return
        requested = self.config.apis
        points, notes = resolve(self._specs(), self.config.binaries, self.config.libraries)
        lib = marker_library()                 # built now if it is not yet (needs cc): probed at start
        have = {(p.spec, p.path) for p in points}
        points += [p for p in (point_at(s, lib, "ebpftoolkit marker library") for s in calls_for([MARKER_API])
                               if lib and (s, lib) not in have) if p]
        if lib is None:
            notes.append("the marker library could not be built here (no C compiler?): markers are recorded only "
                         "from processes that built it themselves")
        found = {p.spec.api for p in points}
        if self.config.follow and not self.use_cookies:
            notes.append("libraries loaded while recording are not followed: that needs uprobe cookies "
                         "(kernel 5.15+); only the libraries found at start are probed")
        if requested:
            missing = [a for a in requested if a not in found]
            if missing and self.following:
                notes.append(f"{', '.join(missing)}: no library on this machine's linker path; probing the "
                             "ones the traced processes load (pip wheels, conda, RPATH, dlopen, static builds)")
            elif missing:
                raise ProbeNotSupportedError(
                    f"no library for {', '.join(missing)} was found on this machine "
                    "(OpenGL: libGL/libEGL + Mesa; Vulkan: libvulkan.so.1 + a driver; OpenCL: libOpenCL.so.1; "
                    "CUDA: libcudart.so or a binary linked with it, passed as binaries=[...]). "
                    "Install the API's runtime, or pass libraries=[...]")
        elif not points and not self.following:
            raise ProbeNotSupportedError("no GPU API library was found on this machine")
        self._points, self.notes = points, notes
        self._max_points = len(points) + (FOLLOW_HEADROOM if self.following else 0)   # the BPF array's size

    def _specs(self) -> list[CallSpec]:
        """The calls probed: those of the APIs asked for (all known by default), and the markers."""
        return calls_for(self.config.apis + (MARKER_API,) if self.config.apis else known_apis())

    @property
    def points(self) -> list[AttachPoint]:
        self._resolve()
        return self._points

    def overhead(self) -> pd.DataFrame:
        """Every attach point: library, address, how it was found, its first instruction and its cost."""
        return pd.DataFrame([dict(p.row(self._wants_return(p.spec)), returns=self._wants_return(p.spec))
                             for p in self.points])

    def details(self) -> dict:
        d = {"apis": sorted({p.spec.api for p in self.points}), "notes": list(self.notes),
             "attach_points": self.overhead().to_dict("records")}
        f = self._follower
        if f is not None:
            held = sorted(f.held_ms)
            d["libraries"] = [x.row() for x in f.found]
            d["following"] = {"files_looked_at": f.files_looked_at, "processes_held": len(held),
                              "held_ms_max": round(held[-1], 2) if held else 0.0,
                              "held_ms_median": round(held[len(held) // 2], 2) if held else 0.0}
        d["uprobes_in"] = "the traced processes only" if self.scoped else "every process that maps the files"
        d["calibration"], d["tracing_cost_ms"] = costs(), self.tracing_cost_ms   # what the probes cost the calls
        if self._scoped is not None:
            d["scoped"] = self._scoped.summary()
        return d

    def end_notes(self, tables) -> list[str]:
        return end_notes(self, tables)

    def streams(self):
        out = [StreamSpec("gpu_events", EVENT.dtype, self.config.ring_pages, wakeup="batch",
                          c_type="struct gpu_event"), string_stream(self.config.ring_pages)]
        if self.following:     # rare and urgent: the process waits for us
            out.append(StreamSpec("gpu_mapped", MAPPED.dtype, 64, wakeup="each", c_type="struct gpu_mapped"))
        return out

    def raw_tracepoints(self):
        return ([RawTracepoint("sched_process_exec", "gpu_on_exec")] if self.following else []) + \
            ([RawTracepoint("sched_process_exit", "gpu_on_exit")] if self.scoped else [])

    def btf_members(self):
        scoped = {"TASK_TGID": ("task_struct", "tgid"), "TASK_REAL_PARENT": ("task_struct", "real_parent")}
        return {**BTF_MEMBERS, **(scoped if self.scoped else {})} if self.following else {}

    def on_records(self, stream, records) -> None:
        if stream == "gpu_mapped" and self._follower is not None:
            self._follower.on_records(records)
        elif stream == "gpu_events" and (points := self._launch_points):
            # the host functions launches name are looked up in the process's maps while it runs
            launch = np.isin(records["point"], list(points)) & (records["kind"] == KINDS["ENTRY"])
            for pid in np.unique(records["pid"][launch]):
                sel = launch & (records["pid"] == pid)
                arg = np.array([points[int(p)] for p in records["point"][sel]])
                ips = records["args"][sel][np.arange(len(arg)), arg].astype(np.uint64)
                snaps = self._snaps.get(int(pid), [])
                if not snaps or not np.logical_or.reduce([x.covers(ips) for x in snaps]).all():
                    self._remember_maps(int(pid))

    def _remember_maps(self, pid: int) -> None:
        """Keep ``pid``'s executable mappings as they are now (at exec and at each new library, while the
        process is held, and when a launch names an address not seen yet): launches are named from them."""
        snap = read_exec_maps(pid)
        if snap is not None:
            self._snaps.setdefault(pid, []).insert(0, snap)

    def _launch_specs(self) -> bool:
        return any(s.name in KERNEL_ARG for s in self._specs())

    @property
    def _launch_points(self) -> dict[int, int]:
        """attach point index -> the argument holding the launched host function"""
        return {i: KERNEL_ARG[p.spec.name] for i, p in enumerate(self._points or ()) if p.spec.name in KERNEL_ARG}

    def _kernel_name(self, pid: int, address: int) -> str | None:
        for snap in self._snaps.get(pid, ()):
            _path, name, _status = resolve_ip(snap, address, self._symbol_files)
            if name:
                return demangle(name)
        return None

    def uprobes(self):
        out = []
        for i, p in enumerate(self.points):
            addr = p.entry(self._wants_return(p.spec))[0]
            cookie = i if self.use_cookies else None
            entry, ret = ("gpu_entry_any", "gpu_return_any") if self.use_cookies else (f"gpu_e_{i}", f"gpu_r_{i}")
            out.append(Uprobe(p.path, addr, entry, False, -1, cookie))
            if self._wants_return(p.spec):
                out.append(Uprobe(p.path, p.return_vaddr, ret, True, -1, cookie))
        if self.scoped:                # attached per traced process in setup() and as processes appear
            self._templates = out
            return []
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
        rec["str_arg"] = -1 if s.str_arg is None else s.str_arg
        rec["has_ret"], rec["stack_adj"] = ret, site.stack_adj
        rec["self_filter"] = int(s.self_filter and not p.executable)   # a program's calls come from itself
        if site.arg_regs is not None:
            rec["remap"], rec["narrow"] = 1, sum(1 << k for k in site.narrow)
            rec["arg_reg"] = [PT_REGS_INDEX.get(r, 255) for r in site.arg_regs]
        else:
            rec["arg_reg"] = 255
        return rec

    def setup(self, program) -> None:
        """Describe every attach point in gpu_points (read by gpu_entry_any through the cookie); when
        following, mark the files probed at start as known and probe what running targets already map."""
        table = program.map("gpu_points", "u4", POINT.dtype)
        for i, p in enumerate(self.points):
            table.update(i, self._point_record(p))
        if not self.following:
            return
        self._program = program
        specs = [s for s in self._specs() if s.resolve == "symbol"]
        if self.scoped:
            self._scoped = ScopedUprobes(program, program.map("gpu_linked", "u4", "u1"),
                                         program.map("gpu_probed", FILE_KEY.dtype, "u1"))
            self._scoped.add(self._templates)
        f = self._follower = Follower(specs, self._attach_file, program.map("gpu_known", FILE_KEY.dtype, "u1"),
                                      on_process=self._remember_maps if self._launch_specs() else None,
                                      link=self._scoped.link if self._scoped else None)
        by_file: dict[str, list] = {}
        for p in self.points:
            by_file.setdefault(p.path, []).append(p.spec.api)
        for path, apis in by_file.items():
            f.add_start_file(path, apis, len(apis), "at start (linker cache, binaries=, libraries=)")
        libs = {(s.api, lib) for s in self._specs() for lib in s.libraries}
        for api, lib in sorted(libs):                                  # the API's other files: stubs, loaders
            for path in ([lib] if os.sep in lib else find_libraries(lib)):
                if path not in by_file:
                    f.add_start_file(path, [api], 0, "")
        f.pass_over(linker_cache_paths(), {lib for s in specs for lib in s.libraries})   # not held for libX11
        for pid in self._running_targets():
            found = [f.look_at(path, f"mapped by pid {pid} when the session started", pid) for path in mapped_files(pid)]
            if self._scoped is not None and any(found):
                self._scoped.link(pid)

    def _running_targets(self) -> list[int]:
        scope = self._scope
        if scope == "self":
            root = os.getpid()
        elif isinstance(scope, int):
            root = scope
        else:
            return []
        return sorted(descendants(root) | {root})

    def _attach_file(self, path: str, specs) -> int:
        """Probe ``path`` (found while recording) for ``specs``: new attach points, described in
        gpu_points, attached with their cookies.  Returns how many."""
        program = self._program
        start = len(self._points)
        new = [p for p in (point_at(s, path, "symbol in a file the traced process maps") for s in specs) if p]
        room = max(0, self._max_points - start)
        if len(new) > room:
            note = (f"{len(new) - room} calls in {path} were not probed: the session's room for attach points "
                    f"found while recording ({FOLLOW_HEADROOM}) is used up")
            if note not in self._late_notes:
                self._late_notes.append(note)
            new = new[:room]
        if not new:
            return 0
        table = program.map("gpu_points", "u4", POINT.dtype)
        ups = []
        for i, p in enumerate(new, start):
            table.update(i, self._point_record(p))
            ups.append(Uprobe(p.path, p.entry(self._wants_return(p.spec))[0], "gpu_entry_any", False, -1, i))
            if self._wants_return(p.spec):
                ups.append(Uprobe(p.path, p.return_vaddr, "gpu_return_any", True, -1, i))
        self._points.extend(new)        # before attaching: a call may arrive at once
        if self._scoped is not None:
            self._scoped.add(ups)
        else:
            program.attach_uprobes(ups)
        return len(new)

    def bpf_text(self) -> str:
        self._resolve()
        head = (f"#define GPU_MAX_POINTS {max(self._max_points, 1)}\n#define GPU_COOKIES {int(self.use_cookies)}\n"
                + c_defines(KINDS, "GPU_") + EVENT.c_decl() + POINT.c_decl() + STRING.c_decl())
        lines = [head + source_beside(__file__, "gpu.bpf.c")]
        if self.following:
            lines.append(f"#define GPU_OWN_PID {os.getpid()}\n#define GPU_SCOPED {int(self.scoped)}\n"
                         + c_defines(MAPPED_KINDS, "GPU_MAPPED_")
                         + MAPPED.c_decl() + FILE_KEY.c_decl() + source_beside(__file__, "follow.bpf.c"))
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
                         f"{r['stack_adj']}, {r['remap']}, {r['str_arg']}, 0); }}  // {p.spec.api} {p.spec.name}")
            if r["has_ret"]:
                lines.append(f"int gpu_r_{i}(struct ebt_regs *ctx) {{ return gpu_return(ctx, {i}, "
                             f"{int(r['out_arg'] >= 0)}); }}")
        return "\n".join(lines) + "\n"

    def snapshot(self, program):
        return {"_internal": np.array([program.counter("gpu_internal")], dtype=np.int64)}

    def make_tables(self, records, clock: MonotonicClock):
        r = records["gpu_events"]
        points, n = np.unique(r["point"][r["kind"] == KINDS["ENTRY"]], return_counts=True)
        self.tracing_cost_ms = tracing_cost_ms(self.overhead().to_dict("records"), dict(zip(points.tolist(), n.tolist())))
        internal = records.get("_internal")
        if internal is not None:
            self.internal_calls = int(internal[0])
        for pid in np.unique(r["pid"]) if len(r) and self._launch_points else ():   # still running: read now
            if int(pid) not in self._snaps:
                self._remember_maps(int(pid))
        return {"gpu": calls_table(r, self.points, clock, decode_str_array(r["comm"]) if len(r) else [],
                                   self._kernel_name, records.get("gpu_strings"), self.config.frames)}
