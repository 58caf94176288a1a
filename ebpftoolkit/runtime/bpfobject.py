"""A thin ctypes layer over libbpf's object API: users' own BPF objects, loaded, attached and read.

A user builds ``prog.bpf.o`` with ``clang -O2 -g -target bpf`` (or :func:`.bpfcompile.compile_bpf_source`);
libbpf does the rest, as for any libbpf tool: it parses the ELF, its BTF-defined maps and its
``SEC()`` programs, creates the maps, relocates (CO-RE), loads the programs and attaches them by
section name.  This layer only declares the C signatures it uses (libbpf 1.1, ``libbpf.so.1``),
turns NULL/-errno results into typed errors and keeps what libbpf prints (runtime/libbpflog.py: a
rejected program's error starts with the source line the verifier stopped at).

Ring-buffer maps are read with :class:`.ringbuf.RingBufferReader` on ``map_fd(name)``, perf event
arrays with :class:`.perfbuffer.PerfBufferReader`, other maps with :class:`.maps.BpfMap`.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
import re
from ctypes import c_bool, c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass

from ..errors import ProbeAttachError, ProbeCompileError, ProbeConfigError, ProbeStateError
from .libbpf import Btf, _lib, strerror
from .libbpflog import DEBUG, WARN, capture, load_error, text
from .ldcache import ARCH_TAG, linker_cache
from .maps import map_info
from .progids import LOADED_PROGRAM_IDS, prog_id

__all__ = ["BpfObject", "ObjMap", "ObjProgram", "ObjLink", "resolve_binary", "BUILD_HINT"]

BUILD_HINT = ("build one with `clang -O2 -g -target bpf -c prog.bpf.c -o prog.bpf.o` "
              "(or ebpftoolkit.runtime.bpfcompile.compile_bpf_source)")
# section prefix -> attachment kind (the names runtime/links.py uses)
_KINDS = {"tp": "tracepoint", "tracepoint": "tracepoint", "raw_tp": "raw_tracepoint",
          "raw_tracepoint": "raw_tracepoint", "raw_tp.w": "raw_tracepoint", "raw_tracepoint.w": "raw_tracepoint",
          "uprobe.s": "uprobe", "uretprobe.s": "uretprobe", "kprobe": "kprobe", "kretprobe": "kretprobe"}


@functools.lru_cache(maxsize=1)
def _olib() -> ctypes.CDLL:
    """libbpf with the object API's signatures declared (the BTF ones are libbpf.py's)."""
    lib, p, i, u = _lib(), c_void_p, c_int, c_uint32
    sigs = {
        "bpf_object__open_file": (p, [c_char_p, p]), "bpf_object__load": (i, [p]), "bpf_object__close": (None, [p]),
        "bpf_object__btf": (p, [p]), "bpf_object__next_map": (p, [p, p]), "bpf_object__next_program": (p, [p, p]),
        "bpf_object__find_map_by_name": (p, [p, c_char_p]), "bpf_object__find_program_by_name": (p, [p, c_char_p]),
        "bpf_map__name": (c_char_p, [p]), "bpf_map__type": (i, [p]), "bpf_map__key_size": (u, [p]),
        "bpf_map__value_size": (u, [p]), "bpf_map__max_entries": (u, [p]), "bpf_map__btf_key_type_id": (u, [p]),
        "bpf_map__btf_value_type_id": (u, [p]), "bpf_map__is_internal": (c_bool, [p]), "bpf_map__fd": (i, [p]),
        "bpf_map__reuse_fd": (i, [p, i]), "libbpf_bpf_map_type_str": (c_char_p, [i]),
        "bpf_program__name": (c_char_p, [p]), "bpf_program__section_name": (c_char_p, [p]),
        "bpf_program__type": (i, [p]), "bpf_program__fd": (i, [p]), "bpf_program__attach": (p, [p]),
        "bpf_program__attach_uprobe_opts": (p, [p, i, c_char_p, c_size_t, p]),
        "bpf_program__attach_perf_event": (p, [p, i]), "bpf_link__destroy": (i, [p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class _UprobeOpts(ctypes.Structure):
    """``struct bpf_uprobe_opts`` of libbpf 1.1 (40 bytes on 64-bit: the trailing ``size_t :0`` pads)."""
    _fields_ = [("sz", c_size_t), ("ref_ctr_offset", c_size_t), ("bpf_cookie", c_uint64), ("retprobe", c_bool),
                ("func_name", c_char_p)]


def resolve_binary(binary: str) -> str:
    """A path for a uprobe's binary.  A name with a ``/`` is a path (it must exist); a bare name is a
    shared library: ``c``, ``libc``, ``libc.so.6`` and ``libz.so`` all name one, found in the
    dynamic linker's cache (``ldconfig -p``, this architecture's entry first), as the program's own
    loader would.  Executables need a path (``shutil.which`` gives one)."""
    if "/" in binary:
        if not os.path.exists(binary):
            raise ProbeConfigError(f"{binary} does not exist: pass the path of the executable or library to probe")
        return binary
    import ctypes.util
    stem = re.sub(r"\.so(\.\d+)*$", "", binary)
    stem = stem if stem.startswith("lib") else f"lib{stem}"
    soname = ctypes.util.find_library(stem[3:]) or ""
    found = [(name not in (binary, soname), ARCH_TAG not in flags, path) for name, flags, path in linker_cache()
             if name in (binary, soname) or name.startswith(f"{stem}.so")]
    if not found:
        raise ProbeConfigError(f"no shared library {binary!r} in the dynamic linker's cache (ldconfig -p): pass "
                               "the library's or executable's path instead")
    return sorted(found)[0][2]


@dataclass(frozen=True)
class ObjMap:
    name: str
    type: int            # BPF_MAP_TYPE_*
    type_name: str       # "ringbuf", "hash", "array", "percpu_array", "perf_event_array", "lru_hash", ...
    key_size: int
    value_size: int
    max_entries: int     # a ring buffer's size in bytes
    btf_key_type_id: int
    btf_value_type_id: int
    internal: bool = False   # .bss/.data/.rodata/.kconfig: the program's global variables


@dataclass(frozen=True)
class ObjProgram:
    name: str
    section: str         # the SEC() string
    prog_type: int       # BPF_PROG_TYPE_*


class ObjLink:
    """One attachment of an object's program; ``close()`` detaches it (bpf_link__destroy), once."""

    def __init__(self, ptr: int, program: str, kind: str, target: str, section: str):
        self._ptr, self.program, self.kind, self.target, self.section = ptr, program, kind, target, section

    @property
    def closed(self) -> bool:
        return not self._ptr

    def describe(self) -> dict:
        """The keys of runtime/links.py's ``Link.describe()``, plus the program's section."""
        return {"kind": self.kind, "target": self.target, "function": self.program, "mechanism": "libbpf link",
                "section": self.section}

    def close(self) -> None:
        ptr, self._ptr = self._ptr, 0
        if ptr:
            _olib().bpf_link__destroy(ptr)

    def __repr__(self) -> str:
        return f"<ObjLink {self.kind} {self.target} {self.program}{' closed' if self.closed else ''}>"


class _ObjectBtf(Btf):
    """The object's BTF: owned by the ``bpf_object``, so closing it only forgets the pointer."""

    def close(self) -> None:
        self._ptr = 0
        self._types.clear()


class BpfObject:
    """One libbpf ``struct bpf_object``: ``open(path)``, optionally ``reuse_map_fd``, ``load()``, attach,
    read its maps, ``close()`` (or use ``with``)."""

    def __init__(self, ptr: int, path: str):
        self._ptr, self.path = ptr, path
        self._links: list[ObjLink] = []
        self._skipped: list[ObjProgram] = []
        self._btf: _ObjectBtf | None = None
        self.loaded = False
        self.maps = [self._map_record(m) for m in self._iter("bpf_object__next_map")]
        self.programs = [ObjProgram(lib.bpf_program__name(p).decode(), lib.bpf_program__section_name(p).decode(),
                                    lib.bpf_program__type(p))
                         for lib in [_olib()] for p in self._iter("bpf_object__next_program")]

    @classmethod
    def open(cls, path) -> "BpfObject":
        """Parse ``path`` (an ELF BPF object); nothing reaches the kernel until ``load()``."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ProbeConfigError(f"BPF object {path} does not exist: {BUILD_HINT}")
        with capture() as said:
            ctypes.set_errno(0)
            ptr = _olib().bpf_object__open_file(os.fsencode(path), None)
            err = ctypes.get_errno() or _errno.EINVAL
        if not ptr:
            raise ProbeConfigError(f"{path} is not a BPF object libbpf can open ({strerror(err)}"
                                   + (f"; libbpf: {text(said, WARN)}" if text(said, WARN) else "")
                                   + f"): {BUILD_HINT}")
        return cls(ptr, path)

    # -- what is in it ----------------------------------------------------------------------------------
    @property
    def _obj(self) -> int:
        if not self._ptr:
            raise ProbeStateError(f"BPF object {self.path} is closed: open it again")
        return self._ptr

    def _iter(self, next_fn: str):
        fn, pos = getattr(_olib(), next_fn), None
        while True:
            pos = fn(self._obj, pos)
            if not pos:
                return
            yield pos

    @staticmethod
    def _map_record(m: int) -> ObjMap:
        lib = _olib()
        mtype = lib.bpf_map__type(m)
        type_name = lib.libbpf_bpf_map_type_str(mtype)
        return ObjMap(lib.bpf_map__name(m).decode(), mtype, type_name.decode() if type_name else f"type {mtype}",
                      lib.bpf_map__key_size(m), lib.bpf_map__value_size(m), lib.bpf_map__max_entries(m),
                      lib.bpf_map__btf_key_type_id(m), lib.bpf_map__btf_value_type_id(m),
                      bool(lib.bpf_map__is_internal(m)))

    def _find(self, what: str, name: str) -> int:
        ptr = getattr(_olib(), f"bpf_object__find_{what}_by_name")(self._obj, name.encode())
        if not ptr:
            have = [m.name for m in self.maps] if what == "map" else [p.name for p in self.programs]
            raise ProbeConfigError(f"{self.path} has no {what} named {name!r}: it has {', '.join(have) or 'none'}")
        return ptr

    def btf(self) -> Btf | None:
        """The object's BTF (for :func:`.btf.struct_dtype` of its record structs), or None without .BTF
        (compiled without -g).  Valid while the object is open."""
        if self._btf is None:
            ptr = _olib().bpf_object__btf(self._obj)
            self._btf = _ObjectBtf(ptr, self.path) if ptr else None
        return self._btf

    # -- loading ------------------------------------------------------------------------------------------
    def reuse_map_fd(self, name: str, fd: int) -> None:
        """Use the existing map ``fd`` (e.g. the session's ``ebt_tracked``) for map ``name``, before load.
        Its type and key/value sizes must match the declaration (libbpf does not check)."""
        if self.loaded:
            raise ProbeStateError(f"{self.path} is already loaded: reuse_map_fd({name!r}) must come before load()")
        ptr, decl = self._find("map", name), next(m for m in self.maps if m.name == name)
        info = map_info(fd)
        if (info.type, info.key_size, info.value_size) != (decl.type, decl.key_size, decl.value_size):
            raise ProbeConfigError(
                f"map fd {fd} (type {info.type}, {info.key_size}-byte keys, {info.value_size}-byte values) cannot "
                f"stand for map {name!r} of {self.path} (type {decl.type}, {decl.key_size}-byte keys, "
                f"{decl.value_size}-byte values): declare the map with the same type and key/value types")
        rc = _olib().bpf_map__reuse_fd(ptr, fd)
        if rc < 0:
            raise ProbeConfigError(f"bpf_map__reuse_fd({name!r}, {fd}): {strerror(rc)}: pass an open BPF map fd")

    def load(self) -> None:
        """Create the maps and load every program; a rejected program raises ProbeCompileError with libbpf's
        output (the verifier log included), its first line the source line the verifier stopped at."""
        from .privilege import require_privilege
        if self.loaded:
            raise ProbeStateError(f"{self.path} is already loaded: a BPF object loads once; open it again")
        require_privilege()
        with capture() as said:
            rc = _olib().bpf_object__load(self._obj)
        if rc < 0:
            err = ProbeCompileError(load_error(self.path, rc, said, {p.name: p.section for p in self.programs}))
            err.libbpf_log = text(said, DEBUG)
            raise err
        self.loaded = True
        self.maps = [self._map_record(m) for m in self._iter("bpf_object__next_map")]   # sizes fixed at load
        LOADED_PROGRAM_IDS.update(self.prog_ids())   # the test suite's leak guard watches these ids

    def _loaded(self, what: str) -> None:
        if not self.loaded:
            raise ProbeStateError(f"{what} needs {self.path} loaded: call load() first")

    def map_fd(self, name: str) -> int:
        """The fd of map ``name`` (owned by the object: valid until close())."""
        self._loaded(f"map_fd({name!r})")
        return _olib().bpf_map__fd(self._find("map", name))

    def prog_fds(self) -> dict[str, int]:
        """{program name: fd} (owned by the object: valid until close())."""
        self._loaded("prog_fds()")
        lib = _olib()
        return {lib.bpf_program__name(p).decode(): lib.bpf_program__fd(p) for p in self._iter("bpf_object__next_program")}

    def prog_ids(self) -> list[int]:
        """Kernel program ids, in program order (``bpftool prog dump xlated id N``)."""
        self._loaded("prog_ids()")
        lib = _olib()
        return [prog_id(lib.bpf_program__fd(p)) for p in self._iter("bpf_object__next_program")]

    # -- attaching ----------------------------------------------------------------------------------------
    def _attach(self, prog: ObjProgram, kind: str, target: str, fn, *args, quiet_eopnotsupp=False):
        self._loaded(f"attaching {prog.name}")
        with capture() as said:
            ctypes.set_errno(0)
            ptr = fn(self._find("program", prog.name), *args)
            err = ctypes.get_errno() or _errno.EINVAL
        if not ptr:
            warned = text(said, WARN)
            if quiet_eopnotsupp and err == _errno.EOPNOTSUPP and not warned:
                return None   # libbpf knows no target from the section alone
            raise ProbeAttachError(
                f"could not attach program {prog.name!r} (section {prog.section!r}) to {kind} {target}: "
                f"{strerror(err)}" + (f" (libbpf: {warned})" if warned else "") + ". Check that the target "
                "exists (tracepoint under /sys/kernel/tracing/events, binary path and function symbol) and that "
                "`ebpftoolkit doctor` reports this kind of probe available")
        link = ObjLink(ptr, prog.name, kind, target, prog.section)
        self._links.append(link)
        return link

    def _program(self, name: str) -> ObjProgram:
        self._find("program", name)
        return next(p for p in self.programs if p.name == name)

    def attach_auto(self) -> list[ObjLink]:
        """Attach every program by its SEC() (tracepoint/CAT/NAME, raw_tp/NAME, uprobe/PATH:FUNC,
        uretprobe/...); programs whose section names no target (SEC("uprobe"), SEC("perf_event"))
        are left for attach_uprobe/attach_perf_event and listed by not_auto_attachable()."""
        links, self._skipped = [], []
        for prog in self.programs:
            head, _, target = prog.section.partition("/")
            link = self._attach(prog, _KINDS.get(head, head), target or prog.section, _olib().bpf_program__attach,
                                quiet_eopnotsupp=True)
            if link is None:
                self._skipped.append(prog)
            else:
                links.append(link)
        return links

    def not_auto_attachable(self) -> list[ObjProgram]:
        """The programs the last attach_auto() skipped: their section names no target."""
        return list(self._skipped)

    def attach_uprobe(self, prog: str, binary: str, func: str | None = None, offset: int = 0,
                      retprobe: bool = False, pid: int = -1) -> ObjLink:
        """Attach ``prog`` at ``func`` (+ ``offset``) of ``binary``, or at file ``offset`` without ``func``.
        ``binary``: a path, or a shared library's name (``c``, ``libc.so.6``: see resolve_binary());
        ``pid`` -1: every process that maps it."""
        path = resolve_binary(binary)
        opts = _UprobeOpts(sz=ctypes.sizeof(_UprobeOpts), retprobe=retprobe,
                           func_name=func.encode() if func else None)
        where = f"{path}:{func}{f'+{offset:#x}' if offset else ''}" if func else f"{path}:{offset:#x}"
        return self._attach(self._program(prog), "uretprobe" if retprobe else "uprobe", where,
                            _olib().bpf_program__attach_uprobe_opts, pid, os.fsencode(path), offset,
                            ctypes.byref(opts))

    def attach_perf_event(self, prog: str, perf_fd: int) -> ObjLink:
        """Run ``prog`` (SEC("perf_event")) on each overflow of the perf event ``perf_fd``; the link then
        owns the fd (libbpf closes it when the link is destroyed)."""
        return self._attach(self._program(prog), "perf_event", f"perf event fd {perf_fd}",
                            _olib().bpf_program__attach_perf_event, perf_fd)

    @property
    def links(self) -> list[ObjLink]:
        return [link for link in self._links if not link.closed]

    # -- lifecycle ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy every link, then the object (its programs and maps); safe to call twice."""
        for link in self._links:
            link.close()
        self._links.clear()
        if self._btf is not None:
            self._btf.close()
        ptr, self._ptr = self._ptr, 0
        if ptr:
            _olib().bpf_object__close(ptr)

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown may have torn ctypes down already
            pass

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if not self._ptr else "loaded" if self.loaded else "opened"
        return f"<BpfObject {self.path} {state}: {len(self.programs)} programs, {len(self.maps)} maps>"
