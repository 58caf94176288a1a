"""A user's own BCC C program as a module beside the session's: compiled, attached, read.

What it shares with the session: the process filter and the recording switch (pinned for
the moment the module loads, runtime/bpffs.py), its attachments (detached with the
session's, so nothing is produced after the last drain) and its record streams (drained by
the session's collector, in bulk).  Record and map types come from the BTF that BCC
loads with the module: a ring buffer's record is the struct BCC saw passed to
``ringbuf_output``/``ringbuf_reserve``/``perf_submit``, found in that BTF by its members.
"""
from __future__ import annotations

import ctypes
import re

import numpy as np

from ...errors import BTFError, ProbeAttachError, ProbeCompileError, ProbeConfigError, ProbeStateError
from ...runtime import btf as btfmod
from ...runtime.bpffs import pinned_maps
from ...runtime.compile import capture_output, classify_compile_error, compile_module_with_log, import_bcc
from ...runtime.libbpf import Btf, LibbpfError
from ...runtime.links import CallbackLink, FdLink
from ...runtime.maps import BpfMap, map_info
from ...runtime.perf import online_cpus
from ...runtime.progids import LOADED_PROGRAM_IDS, prog_id
from .attach import UPROBE_HINT, attach_configured, supported_event
from .bcc_source import (DEBUG_PREPROCESSOR, diagnostics, histogram_names, program_text, rewritten_lines, submitted,
                         user_line, verifier_failure)
from .readers import PERF_ARRAY as _PERF_ARRAY, RINGBUF as _RINGBUF, PerfReader, RingReader, table_map

__all__ = ["BccModule"]

_OWN = ("ebt_state", "ebt_tracked", "ebt_user_lost", "ebt_btf_anchor")
_CLANG_ERR = re.compile(r"^(?P<loc>[^\s:]+:\d+:\d+): (?:fatal )?error: (?P<msg>.*)$")


class BccModule:
    """The compiled module of one CustomProbe of flavour "bcc"."""

    def __init__(self, config):
        self.config = config
        self.file = f"{config.name}.bpf.c"
        self.text = ""
        self.module = None
        self.rewritten: list[str] = []
        self.streams: list[tuple[str, np.dtype, object, object]] = []   # (ring, dtype, reader, kernel_lost)
        self.maps: dict[str, BpfMap] = {}
        self.skipped: dict[str, str] = {}       # map -> why it has no table
        self.attached: list[str] = []
        self.histograms = set(config.histograms) | set(histogram_names(config.source))
        self.loaded_once = False
        self.notes: list[str] = []              # said at the end of the session
        self._lost_map: BpfMap | None = None

    def prepare(self, tree: bool) -> None:
        """Nothing to do before the session's program loads: the module needs its maps to compile."""

    def preview_text(self, tree: bool = True) -> str:
        return program_text(self.config.source, self.config.name, self.file, "<pinned by the session>", tree,
                            65536)[0]

    # -- loading ------------------------------------------------------------
    def load(self, program, tree: bool, track_max: int) -> None:
        self.loaded_once = True
        fds = {"ebt_state": program.map("ebt_state", "u4", "u4").fd}
        if tree:
            fds["ebt_tracked"] = program.map("ebt_tracked", "u4", "u1").fd
        with pinned_maps(fds) as folder:
            self.text, self._rings = program_text(self.config.source, self.config.name, self.file, str(folder), tree,
                                                  track_max)
            self.module, log = compile_module_with_log(self.text, list(self.config.cflags), DEBUG_PREPROCESSOR,
                                                       self._classify)
        self.rewritten = rewritten_lines(log, self.file)
        program.add_closer(self.close)
        m = self.module
        for tp in list(m.tracepoint_fds):
            program.add_link(CallbackLink(lambda tp=tp: m.detach_tracepoint(tp), "tracepoint", _s(tp), None, "tracepoint"))
            self.attached.append(f"tracepoint {_s(tp)}")
        for tp in list(getattr(m, "raw_tracepoint_fds", {})):
            program.add_link(CallbackLink(lambda tp=tp: m.detach_raw_tracepoint(tp), "raw_tracepoint", _s(tp), None,
                                          "raw tracepoint"))
            self.attached.append(f"raw tracepoint {_s(tp)}")
        attach_configured(self, program)
        for fd in self.prog_fds().values():      # the suite's leak guard checks none outlives its session
            LOADED_PROGRAM_IDS.add(prog_id(fd))
        self._find_tables()

    def _classify(self, log: str, exc: Exception) -> Exception:
        """clang's or the verifier's complaint, located in the user's source."""
        base = classify_compile_error(log, exc)
        if not isinstance(base, ProbeCompileError):
            return base
        user = self.config.source.splitlines()
        lines = log.splitlines()
        for i, line in enumerate(lines):
            m = _CLANG_ERR.match(line)
            if m and m.group("loc").startswith(self.file + ":"):
                n = int(m.group("loc").split(":")[1])
                echoed = lines[i + 1].strip() if i + 1 < len(lines) else ""
                if not (0 < n <= len(user) and user[n - 1].strip() == echoed):
                    # BCC inserted lines before (tracepoint structs) or rewrote the line (a map call)
                    same = [k + 1 for k in range(min(n, len(user))) if user[k].strip() == echoed]
                    n = same[-1] if same else user_line(rewritten_lines(log, self.file), n, user) or n
                src = user[n - 1].strip() if 0 < n <= len(user) else echoed
                return ProbeCompileError(f"{self.file}:{n}: error: {m.group('msg')}\n    {src}\n"
                                         f"(custom probe {self.config.name}: fix the C)\n\n{diagnostics(log)[-4000:]}")
        found = verifier_failure(log, self.file)
        if found is not None:
            rewritten = rewritten_lines(log, self.file) or self.rewritten
            line, message = found
            n = user_line(rewritten, line, user) if line else None
            where = (f"{self.file}:{n}: the kernel's BPF verifier rejected the program at `{user[n - 1].strip()}`"
                     if n else f"{self.file}: the kernel's BPF verifier rejected the program (at BCC's rewritten "
                     f"line {line})")
            return ProbeCompileError(f"{where}: {message}\n"
                                     f"(custom probe {self.config.name}: {exc})\n\n{_verifier_tail(log)}")
        return base

    def _uprobe(self, program, fn: str, target: str, ret: bool) -> None:
        lib, sym = target.split(":", 1)
        m = self.module
        before = set(m.uprobe_fds)
        kind = "uretprobe" if ret else "uprobe"
        with capture_output() as log:
            try:
                (m.attach_uretprobe if ret else m.attach_uprobe)(name=lib.encode(), sym=sym.encode(),
                                                                   fn_name=fn.encode())
                err = None
            except Exception as exc:
                err = exc
        if err is not None:
            text = log[0] if log else ""
            if "processed " in text and " insns" in text:
                raise self._classify(text, err) from err
            raise ProbeAttachError(f"custom probe {self.config.name}: could not attach {kind} {fn} to {target}: "
                                   f"{err}. {UPROBE_HINT}") from None
        for ev in set(m.uprobe_fds) - before:
            program.add_link(CallbackLink(lambda ev=ev: m.detach_uprobe_event(ev), kind, target, fn, "uprobe"))
        self.attached.append(f"{kind} {target} -> {fn}")

    def _perf_event(self, program, fn: str, event: str, period: int) -> None:
        ev = supported_event(self.config.name, fn, event)
        bcc = import_bcc()
        with capture_output() as log:
            try:
                f = self.module.load_func(fn.encode(), bcc.BPF.PERF_EVENT)
                err = None
            except Exception as exc:
                err = exc
        if err is not None:
            raise self._classify(log[0] if log else "", err) from err
        lib = bcc.libbcc.lib
        link = program.add_link(FdLink([], "perf_event", ev.name, fn, "perf event", closer=lib.bpf_close_perf_event_fd,
                                       period=int(period)))
        for cpu in online_cpus():
            fd = lib.bpf_attach_perf_event(ctypes.c_int(f.fd), ctypes.c_uint(ev.type), ctypes.c_uint(ev.config),
                                           ctypes.c_ulonglong(period), ctypes.c_ulonglong(0), ctypes.c_int(-1),
                                           ctypes.c_int(cpu), ctypes.c_int(-1))
            if fd < 0:
                raise ProbeAttachError(f"custom probe {self.config.name}: could not attach {fn} to {ev.name} on CPU "
                                       f"{cpu}: {ctypes.get_errno()}. Run `ebpftoolkit doctor`")
            link.fds.append(fd)
        self.attached.append(f"perf event {ev.name} every {period} -> {fn}")

    # -- tables ------------------------------------------------------------------
    def _find_tables(self) -> None:
        bcc = import_bcc()
        lib, m = bcc.libbcc.lib, self.module
        # libbcc's C API lists a module's tables; bcc's Python declares these two without types
        lib.bpf_num_tables.restype, lib.bpf_num_tables.argtypes = ctypes.c_ulonglong, [ctypes.c_void_p]
        lib.bpf_table_name.restype = ctypes.c_char_p
        lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_ulonglong]
        names = [lib.bpf_table_name(m.module, i).decode() for i in range(lib.bpf_num_tables(m.module))]
        infos = {n: map_info(m.get_table(n.encode()).map_fd) for n in names}
        # the module's own BTF: from a map it created (the pinned ones carry the session program's)
        btf_id = next((i.btf_id for n, i in infos.items() if i.btf_id and n not in ("ebt_state", "ebt_tracked")), 0)
        btf = Btf.from_kernel_id(btf_id) if btf_id else None
        for name in names:
            if name in _OWN:
                continue
            info, fd = infos[name], m.get_table(name.encode()).map_fd
            if info.type in (_RINGBUF, _PERF_ARRAY):
                fields = [lib.bpf_perf_event_field(m.module, name.encode(), i).decode().split("#", 1)[0]
                          for i in range(lib.bpf_perf_event_fields(m.module, name.encode()))]
                dtype = self._record_dtype(name, fields, btf)
                if dtype is None:
                    if info.type == _RINGBUF or submitted(self.config.source, name):
                        kind, call = ("ring buffer", "ringbuf_output") if info.type == _RINGBUF else \
                            ("perf event array", "perf_submit")
                        raise ProbeConfigError(
                            f"custom probe {self.config.name}: cannot tell the record type of {kind} {name} (no "
                            f"{name}.{call}(..., &var, ...) with a struct variable): pass records={{'{name}': "
                            "'struct event'} or a numpy dtype")
                    self.skipped[name] = "a perf event array that no perf_submit() writes to"
                    continue
                slot = self._rings.index(name) if name in self._rings else None
                lost = (lambda slot=slot: self._lost(slot)) if slot is not None else None
                if info.type == _RINGBUF:
                    reader = RingReader(fd, info.max_entries, dtype)
                else:   # perf_submit's failures are counted at the call: not the kernel's reports as well
                    reader = PerfReader(fd, dtype, kernel_lost=slot is None)
                self.streams.append((name, dtype, reader, lost))
            else:
                table, why = table_map(name, fd, info.type, info.key_size, btf, info.btf_key_type_id,
                                       info.btf_value_type_id)
                if table is None:
                    self.skipped[name] = why
                else:
                    self.maps[name] = table

    def _record_dtype(self, ring: str, fields: list[str], btf) -> np.dtype | None:
        given = self.config.record_dtype(ring)
        if given is not None:
            return given
        struct = self.config.record_struct(ring)
        try:
            if struct is not None:
                if btf is None:
                    raise ProbeConfigError(f"custom probe {self.config.name}: the module has no BTF to find struct "
                                           f"{struct} in: pass records={{'{ring}': numpy dtype}}")
                return btfmod.struct_dtype(btf, struct)
            if fields and btf is not None:
                type_id = btfmod.find_struct_with_members(btf, fields)
                if type_id is not None:
                    return btfmod.type_dtype(btf, type_id, f"the records of {ring}")
        except (BTFError, LibbpfError) as exc:
            raise ProbeConfigError(f"custom probe {self.config.name}: the records of {ring} cannot be decoded: {exc}. "
                                   f"Pass records={{'{ring}': numpy dtype}} to say how") from None
        return None

    def _lost(self, slot: int) -> int:      # the collector asks at every poll: the map is opened once
        if self.module is None:
            return 0
        if self._lost_map is None:
            self._lost_map = BpfMap(self.module.get_table(b"ebt_user_lost").map_fd, "ebt_user_lost", "u4", "u8")
        return self._lost_map.sum(slot)

    # -- exploring -------------------------------------------------------------
    def prog_fds(self) -> dict[str, int]:
        if self.module is None:
            raise ProbeStateError("the custom probe is not loaded")
        return {_s(n): f.fd for n, f in self.module.funcs.items()}

    def unattached(self) -> list[str]:
        if self.module is None:
            return []
        lib = import_bcc().libbcc.lib
        names = [lib.bpf_function_name(self.module.module, i).decode()
                 for i in range(lib.bpf_num_functions(self.module.module))]
        loaded = set(self.prog_fds())
        return [n for n in names if n not in loaded]

    def close(self) -> None:
        m, self.module = self.module, None
        if m is not None:
            m.cleanup()


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _verifier_tail(log: str) -> str:
    lines = log.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("bpf: Failed to load")), max(0, len(lines) - 60))
    return "\n".join(lines[start:])[-4000:]
