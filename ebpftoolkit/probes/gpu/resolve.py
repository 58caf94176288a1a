"""Where to put the uprobes for each catalogued call.

Exported symbols alone undercount: GetProcAddress pointers (GL) and
vkGetDeviceProcAddr pointers (Vulkan) skip the exported functions.  For those
APIs the calls are caught where every path ends, inside the driver, found by a
helper process (``_resolve_helper``) that asks the API itself.  Fallbacks are
said out loud in the ``mechanism`` column.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ...runtime.cache import cached
from ...runtime.elf import elf_file, elf_identity
from ...runtime.ldcache import ARCH_TAG, linker_cache
from ...runtime.x86 import ProbeSite, first_instruction, probe_site
from .catalogue import CallSpec
from .costs import costs

__all__ = ["AttachPoint", "resolve", "find_libraries", "point_at"]

EXTRA_DIRS = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]


@dataclass(frozen=True)
class AttachPoint:
    spec: CallSpec
    path: str
    vaddr: int
    mechanism: str
    lib_lo: int
    lib_hi: int
    first_insn: str
    emulated: bool
    site: ProbeSite = ProbeSite()    # where the entry probe goes when there is no return probe (runtime.x86)
    executable: bool = False         # in a program, not a library: its calls come from itself (no self filter)

    def entry(self, with_return: bool) -> tuple[int, ProbeSite]:
        """(address, site) of the entry probe: moved into the function, with a return probe only where
        the stack pointer has not moved yet (the return probe then sits there too: see return_vaddr)."""
        if self.site.offset and (not with_return or self.site.stack_adj == 0):
            return self.vaddr + self.site.offset, self.site
        return self.vaddr, ProbeSite(0, 0, self.first_insn, self.emulated)

    @property
    def return_vaddr(self) -> int:
        """Where the return probe goes: the kernel finds the return address at the stack pointer, so at
        the entry, or at the moved site when nothing before it moved the stack pointer."""
        return self.vaddr + self.site.offset if self.site.offset and self.site.stack_adj == 0 else self.vaddr

    def row(self, with_return: bool = False) -> dict:
        addr, site = self.entry(with_return)
        return {"api": self.spec.api, "call": self.spec.name, "library": self.path, "address": hex(addr),
                "mechanism": self.mechanism, "probe_offset": addr - self.vaddr, "instruction": site.insn,
                "emulated": site.emulated, "arguments_moved": site.describe(),
                "cost_per_call_us": cost_estimate_us(site.emulated, with_return),
                "note": "" if site.emulated else
                ("single-stepped: a return probe needs the stack pointer as it was at entry, and it moves before "
                 "the first push or call" if with_return and self.site.offset else
                 "single-stepped: no push, call or branch run once per call comes before an instruction the walk "
                 "cannot step over (runtime/x86.py)"),
                "cost_source": "measured" if costs().get("source", "").startswith("measured") else "estimated"}




def cost_estimate_us(emulated: bool, with_return: bool) -> float:
    """Cost of one traced call, in microseconds: measured on this machine by calibrate.py (the trap,
    GpuTrace's program and record; a return probe), or that module's estimates until then."""
    c = costs()
    return round((c["emulated_us"] if emulated else c["single_stepped_us"]) + (c["return_us"] if with_return else 0.0), 3)


@functools.lru_cache(maxsize=1)
def _ldconfig() -> dict[str, list[str]]:
    """soname -> this architecture's paths of it in the linker cache."""
    out: dict[str, list[str]] = {}
    for name, flags, path in linker_cache():
        if ARCH_TAG and ARCH_TAG in flags:
            out.setdefault(name, []).append(path)
    return out


def linker_cache_paths() -> list[str]:
    """Every library path the dynamic linker's cache lists (ldconfig -p), this architecture's."""
    return [p for paths in _ldconfig().values() for p in paths]


def find_libraries(soname: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Paths of ``soname`` (a prefix match for names like ``libcudart.so``), deduplicated by real path."""
    found = []
    for name, paths in _ldconfig().items():
        if name == soname or (soname.endswith(".so") and name.startswith(soname + ".")):
            found += paths
    for d in list(EXTRA_DIRS) + list(extra):
        found += glob.glob(os.path.join(d, soname)) + glob.glob(os.path.join(d, soname + ".*"))
    seen, out = set(), []
    for p in found:
        real = os.path.realpath(p)
        if os.path.isfile(real) and real not in seen:
            seen.add(real)
            out.append(real)
    return out


def bundled_opencl_loaders(paths=None) -> list[str]:
    """OpenCL ICD loaders shipped inside Python packages (pyopencl's wheel bundles its own)."""
    return list(_bundled_opencl_loaders(tuple(paths if paths is not None else sys.path)))


@functools.lru_cache(maxsize=8)
def _bundled_opencl_loaders(paths: tuple[str, ...]) -> tuple[str, ...]:
    # globbing every site-packages folder takes ~15 ms; resolve() asks once per OpenCL call
    out = []
    for d in paths:
        out += glob.glob(os.path.join(d, "*", ".libs", "libOpenCL*.so*"))
        out += glob.glob(os.path.join(d, "*.libs", "libOpenCL*.so*"))
    return tuple(sorted({os.path.realpath(p) for p in out}))


def point_at(spec: CallSpec, path: str, mechanism: str) -> AttachPoint | None:
    """The attach point of ``spec``'s function in ``path`` (by its symbol), or None if it has none."""
    addr = elf_file(path).functions.get(spec.name)
    return _point(spec, path, addr, mechanism) if addr else None


def _point(spec: CallSpec, path: str, vaddr: int, mechanism: str) -> AttachPoint:
    elf = elf_file(path)
    lo = min(s.vaddr for s in elf.segments)
    hi = max(s.vaddr + s.filesz for s in elf.segments)
    code = elf.read(vaddr, 64)
    insn, emulated = first_instruction(code)
    ident = elf_identity(path)
    return AttachPoint(spec, path, vaddr, mechanism, lo, hi, insn, emulated, probe_site(code, needed_args(spec)),
                       bool(ident and ident.executable))


def needed_args(spec: CallSpec) -> set[int]:
    """Register arguments (0-5) the catalogue entry reads: its size, handle, direction, deref, out and string
    arguments."""
    text = " ".join(x for x in (spec.size, spec.handle, spec.direction) if x)
    used = {int(m) for m in re.findall(r"\barg(\d)\b", text)}
    used |= {a for a in ((spec.deref or (None,))[0], spec.out_arg, spec.str_arg) if a is not None}
    return {a for a in used if a < 6}


# what decides which driver a helper process gets, besides the files it returns
_DRIVER_ENV = ("LIBGL_ALWAYS_SOFTWARE", "MESA_LOADER_DRIVER_OVERRIDE", "GALLIUM_DRIVER", "__GLX_VENDOR_LIBRARY_NAME",
               "__EGL_VENDOR_LIBRARY_FILENAMES", "VK_ICD_FILENAMES", "VK_DRIVER_FILES", "VK_LOADER_DRIVERS_SELECT",
               "mesa_glthread")
_ENTRY_LIBS = {"opengl": ("libEGL.so.1", "libglapi.so.0", "libGLX.so.0"), "vulkan": ("libvulkan.so.1",)}


@functools.lru_cache(maxsize=8)
def _driver_functions(api: str, names: tuple[str, ...]) -> tuple[dict, str | None]:
    """Driver functions behind the API's dispatch, from a helper process (cached on disk)."""
    entry_libs = [p for so in _ENTRY_LIBS.get(api, ()) for p in find_libraries(so)]
    icds = sorted(glob.glob("/usr/share/vulkan/icd.d/*.json") + glob.glob("/etc/vulkan/icd.d/*.json"))
    helper = Path(__file__).with_name("_resolve_helper.py").read_bytes()
    key = [api, list(names), {k: os.environ.get(k) for k in _DRIVER_ENV}, entry_libs, icds,
           hashlib.sha256(helper).hexdigest()]            # a changed helper finds other functions

    def files(value):
        found = [w["path"] for r in value[0].values() for w in r.values() if w]
        return sorted(set(found + entry_libs + icds))

    value = cached("driver-functions", key, lambda: list(_run_helper(api, names)), files)
    return value[0], value[1]


def _run_helper(api: str, names: tuple[str, ...]) -> tuple[dict, str | None]:
    # the helper is a plain script using ctypes only: run isolated (-I: no PYTHONPATH, no user site;
    # -S: no site-packages), so it imports nothing of ebpftoolkit, numpy or pandas
    helper = [sys.executable, "-I", "-S", str(Path(__file__).with_name("_resolve_helper.py")),
              {"opengl": "gl"}.get(api, api), *names]
    try:
        res = subprocess.run(helper, capture_output=True, text=True, timeout=60)
        data = json.loads(res.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError, OSError) as exc:
        return {}, f"driver lookup failed ({exc})"
    if not data.get("ok"):
        return {}, f"driver lookup failed ({data.get('error')})"
    return data["result"], None


def resolve(specs: list[CallSpec], binaries=(), extra_libraries=()) -> tuple[list[AttachPoint], list[str]]:
    """Attach points for ``specs``, and notes on what could not be resolved (and why)."""
    points: list[AttachPoint] = []
    notes: list[str] = []
    by_api: dict[str, list[CallSpec]] = {}
    for s in specs:
        by_api.setdefault(s.api, []).append(s)
    for api, group in by_api.items():
        driver_names = tuple(s.name for s in group if s.resolve == "driver")
        drivers, why = _driver_functions(api, driver_names) if driver_names else ({}, None)
        if why:
            notes.append(f"{api}: {why}; falling back to exported symbols, which miss calls made through "
                         "GetProcAddress/vkGetDeviceProcAddr pointers")
        for spec in group:
            points += _resolve_one(spec, drivers.get(spec.name), binaries, extra_libraries, notes)
    return points, notes


def _resolve_one(spec, driver, binaries, extra_libraries, notes) -> list[AttachPoint]:
    if spec.resolve == "driver" and driver:
        d = driver.get("driver")
        if d:
            vaddr = elf_file(d["path"]).offset_to_vaddr(d["file_offset"])
            return [_point(spec, d["path"], vaddr, "driver function behind the API dispatch")]
        stub = driver.get("stub")
        if stub:
            vaddr = elf_file(stub["path"]).offset_to_vaddr(stub["file_offset"])
            return [_point(spec, stub["path"], vaddr, "dispatch stub")]
    libs = []
    for soname in spec.libraries:
        if os.sep in soname:                      # a file named by its path (add_call(library="/opt/x/libx.so"))
            libs += [os.path.realpath(soname)] if os.path.isfile(soname) else []
        else:
            libs += find_libraries(soname, tuple(extra_libraries))
    if spec.api == "opencl":
        libs += bundled_opencl_loaders() + [p for p in extra_libraries if "OpenCL" in os.path.basename(p)]
    if spec.api == "cuda" or spec.api not in ("opengl", "vulkan", "opencl"):
        libs += [os.path.realpath(b) for b in binaries]   # static CUDA, and calls of add_call() in executables
    mech = "exported symbol" if spec.resolve == "symbol" else "exported symbol (misses GetProcAddress-pointer calls)"
    out = []
    for path in dict.fromkeys(libs):
        try:
            addr = elf_file(path).functions.get(spec.name)
        except (OSError, ValueError):
            continue
        if addr:
            out.append(_point(spec, path, addr, mech if path not in binaries else "symbol in the executable"))
    return out
