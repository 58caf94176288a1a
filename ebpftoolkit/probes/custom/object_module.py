"""A custom probe's libbpf object: built by the user (``from_object``) or compiled here from
libbpf-style C (``from_libbpf_source``), then loaded with libbpf as any libbpf tool would.

The object takes part in the session through ``ebpftoolkit.bpf.h`` (bpf_src/): its
``ebt_state`` and ``ebt_tracked`` maps are replaced by the session's before load (so
``EBPF_TRACED()`` sees the session's processes and recording switch), ``ebt_scope`` says
whether the session traces the whole machine, and ``EBPF_RINGBUF_OUTPUT``/``RESERVE`` count what
a full ring refused in ``ebt_user_lost``.  An object built without the header still loads and
records; its losses in the kernel cannot be counted, and the session says so.
Same interface as :class:`.bcc_module.BccModule`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import BTFError, ProbeAttachError, ProbeConfigError, ProbeStateError
from ...runtime import btf as btfmod
from ...runtime.abi import PerfEventAttr, perf_event_open
from ...runtime.bpfcompile import compile_bpf_source, include_dir
from ...runtime.bpfobject import BpfObject
from ...runtime.libbpf import LibbpfError
from ...runtime.links import CallbackLink
from ...runtime.maps import BpfMap
from ...runtime.perf import online_cpus
from .attach import UPROBE_HINT, attach_configured, supported_event
from .readers import PERF_ARRAY, RINGBUF, PerfReader, RingReader, table_map

__all__ = ["ObjectModule"]

_OWN = ("ebt_state", "ebt_tracked", "ebt_scope", "ebt_user_lost")
_HEADER = "#include \"ebpftoolkit.bpf.h\""


class ObjectModule:
    def __init__(self, config):
        self.config = config
        self.path = Path(config.path)
        self.file = self.path.name
        self.text = ""
        self.obj: BpfObject | None = None
        self.streams: list[tuple[str, np.dtype, object, object]] = []
        self.maps: dict[str, BpfMap] = {}
        self.skipped: dict[str, str] = {}
        self.attached: list[str] = []
        self.histograms = set(config.histograms)
        self.loaded_once = False
        self.notes: list[str] = []
        self._object: Path | None = None
        self._lost_map: BpfMap | None = None

    # -- before the session loads -------------------------------------------
    def prepare(self, tree: bool) -> None:
        """Compile the source (clang's errors come before anything is attached) or check the object."""
        if not self.path.is_file():
            raise ProbeConfigError(f"custom probe {self.config.name}: {self.path} does not exist")
        if self.config.flavour == "libbpf_source":
            self.text = self.path.read_text(errors="replace")
            code = re.sub(r"//[^\n]*|/\*.*?\*/", "", self.text, flags=re.S)
            if re.search(r"(?<![\w.])bpf_ringbuf_(?:output|reserve)\s*\(", code):
                self.notes.append(f"custom probe {self.config.name}: {self.file} calls bpf_ringbuf_output/reserve: "
                                  "what a full ring refuses there is not counted (EBPF_RINGBUF_OUTPUT and "
                                  "EBPF_RINGBUF_RESERVE of ebpftoolkit.bpf.h count it)")
            self._object = compile_bpf_source(self.path, extra_cflags=self.config.cflags)
        else:
            self._object = self.path

    def preview_text(self, tree: bool = True) -> str:
        if self.config.flavour == "libbpf_source":
            return self.path.read_text(errors="replace")
        return (f"// {self.path}: a BPF object built elsewhere (its C is not part of it); its programs:\n"
                + "\n".join(f"//   SEC(\"{p.section}\") {p.name}" for p in BpfObject.open(self.path).programs))

    # -- loading ----------------------------------------------------------------
    def load(self, program, tree: bool, track_max: int) -> None:
        self.loaded_once = True
        if self._object is None:
            self.prepare(tree)
        obj = self.obj = BpfObject.open(self._object)
        program.add_closer(self.close)
        have = {m.name for m in obj.maps}
        if "ebt_state" in have:
            obj.reuse_map_fd("ebt_state", program.map("ebt_state", "u4", "u4").fd)
        if "ebt_tracked" in have and tree:
            obj.reuse_map_fd("ebt_tracked", program.map("ebt_tracked", "u4", "u1").fd)
        obj.load()
        if "ebt_scope" in have:
            BpfMap(obj.map_fd("ebt_scope"), "ebt_scope", "u4", "u4").update(0, 0 if tree else 1)
        elif "ebt_state" not in have:
            self.notes.append(f"custom probe {self.config.name}: {self.file} does not include ebpftoolkit.bpf.h, so "
                              "its programs run for every process, recording or not (add `" + _HEADER + "` after "
                              f"vmlinux.h and bpf_helpers.h, compile with -I{include_dir()}, and test EBPF_TRACED())")
        for link in obj.attach_auto():
            self._adopt(program, link)
        attach_configured(self, program)
        self._find_tables()

    def _adopt(self, program, link, said: bool = True) -> None:
        program.add_link(CallbackLink(link.close, link.kind, link.target, link.program, "libbpf link",
                                      section=link.section))
        if said:
            self.attached.append(f"{link.kind} {link.target} -> {link.program}")

    def _uprobe(self, program, fn: str, target: str, ret: bool) -> None:
        lib, sym = target.split(":", 1)
        try:
            link = self.obj.attach_uprobe(fn, lib, sym, retprobe=ret)
        except ProbeAttachError as exc:
            raise ProbeAttachError(f"custom probe {self.config.name}: {exc}. {UPROBE_HINT}") from None
        self._adopt(program, link)

    def _perf_event(self, program, fn: str, event: str, period: int) -> None:
        ev = supported_event(self.config.name, fn, event)
        for cpu in online_cpus():
            attr = PerfEventAttr(type=ev.type, config=ev.config, sample_period=int(period))
            try:
                fd = perf_event_open(attr, -1, cpu)
            except OSError as exc:
                raise ProbeAttachError(f"custom probe {self.config.name}: could not open {ev.name} on CPU {cpu} for "
                                       f"{fn}: {exc.strerror}. Run `ebpftoolkit doctor`") from None
            self._adopt(program, self.obj.attach_perf_event(fn, fd), said=False)     # the link owns the fd
        self.attached.append(f"perf event {ev.name} every {period} -> {fn}")

    # -- tables ---------------------------------------------------------------------
    def _find_tables(self) -> None:
        obj, btf = self.obj, self.obj.btf()
        counted = "ebt_user_lost" in {m.name for m in obj.maps}
        for m in obj.maps:
            if m.name in _OWN:
                continue
            if m.internal:
                self.skipped[m.name] = "the program's global variables (.bss/.data/.rodata)"
                continue
            fd = obj.map_fd(m.name)
            if m.type in (RINGBUF, PERF_ARRAY):
                dtype = self._record_dtype(m.name, btf)
                if m.type == RINGBUF:
                    reader = RingReader(fd, m.max_entries, dtype)
                    # the header's one counter holds every ring's failures: the probe's total, said once
                    first = not any(isinstance(r, RingReader) for _n, _d, r, _l in self.streams)
                    lost = self._lost if counted and first else None
                    if not counted:
                        self.notes.append(f"custom probe {self.config.name}: records ring {m.name} refused when full "
                                          "are not counted (write with EBPF_RINGBUF_OUTPUT/EBPF_RINGBUF_RESERVE of "
                                          "ebpftoolkit.bpf.h to have them counted)")
                else:
                    reader, lost = PerfReader(fd, dtype), None
                self.streams.append((m.name, dtype, reader, lost))
                continue
            table, why = table_map(m.name, fd, m.type, m.key_size, btf, m.btf_key_type_id, m.btf_value_type_id)
            if table is None:
                self.skipped[m.name] = why
            else:
                self.maps[m.name] = table

    def _record_dtype(self, ring: str, btf) -> np.dtype:
        given = self.config.record_dtype(ring)
        if given is not None:
            return given
        struct = self.config.record_struct(ring)
        marked = _marked_record(btf, ring)
        if struct is None and marked is None:
            raise ProbeConfigError(f"custom probe {self.config.name}: what records does {ring} of {self.file} hold? "
                                   f"Say it in the C with `EBPF_RECORD({ring}, struct event);` (ebpftoolkit.bpf.h), "
                                   f"or pass records={{'{ring}': 'struct event'}} or a numpy dtype")
        if btf is None:
            raise ProbeConfigError(f"custom probe {self.config.name}: {self.file} has no BTF to find {struct} in: "
                                   f"compile with clang -g, or pass records={{'{ring}': numpy dtype}}")
        try:
            if struct is None:
                return btfmod.type_dtype(btf, marked, f"the records of {ring}")
            return btfmod.struct_dtype(btf, struct)
        except (BTFError, LibbpfError) as exc:
            raise ProbeConfigError(
                f"custom probe {self.config.name}: the records of {ring} cannot be decoded as {struct}: {exc}. clang "
                f"puts a struct in the object's BTF only when the program uses it: declare the record as that type "
                f"with `EBPF_RECORD({ring}, struct {struct});` (ebpftoolkit.bpf.h) and build with -g, or pass records={{'{ring}': "
                "numpy dtype}") from None

    def _lost(self) -> int:                 # the collector asks at every poll: the map is opened once
        if self.obj is None or not self.obj.loaded:
            return 0
        if self._lost_map is None:
            self._lost_map = BpfMap(self.obj.map_fd("ebt_user_lost"), "ebt_user_lost", "u4", "u8")
        return self._lost_map.sum(0)

    # -- exploring ------------------------------------------------------------------
    def prog_fds(self) -> dict[str, int]:
        if self.obj is None or not self.obj.loaded:
            raise ProbeStateError("the custom probe is not loaded")
        return self.obj.prog_fds()

    def unattached(self) -> list[str]:
        if self.obj is None or not self.obj.loaded:
            return []
        named = {fn for fn, _t in self.config.uprobes} | {fn for fn, _t in self.config.uretprobes} | \
            {fn for fn, _e, _p in self.config.perf_events}
        return [p.name for p in self.obj.not_auto_attachable() if p.name not in named]

    def close(self) -> None:     # the session closed the streams' readers already
        obj, self.obj = self.obj, None
        if obj is not None:
            obj.close()


def _marked_record(btf, ring: str) -> int | None:
    """The type id ``EBPF_RECORD(ring, type)`` names (its variable ``ebt_record__RING`` points to it)."""
    if btf is None:
        return None
    try:
        var = btf.type(btf.find(f"ebt_record__{ring}", "var"))
    except LibbpfError:
        return None
    ptr = btf.type(btf.resolve(var.ref))
    return btf.resolve(ptr.ref) if ptr.kind_name == "PTR" else None
