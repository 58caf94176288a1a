"""A :class:`BpfProgram` is one compiled BPF module holding the programs of every probe in
a session (one compile per session), its attachments (:mod:`.links`), its typed maps
(:mod:`.maps`) and its record streams (:mod:`.transport`).

Loss is counted both in the kernel (a per-CPU counter next to every stream, bumped
when a record cannot be handed over) and in user space (perf-buffer lost samples,
malformed records).  This is the only place that holds a BCC module object.
"""
from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import ProbeAttachError, ProbeCompileError, ProbeConfigError, ProbeStateError
from .compile import compile_module, import_bcc
from .elf import elf_file
from .links import (BPF_TRACE_UPROBE_MULTI, CallbackLink, FdLink, Link, attach_uprobe_cookie, attach_uprobe_multi,
                    multi_supported)
from .maps import BpfMap
from .perf import online_cpus, open_counter
from .privilege import require_privilege
from .progids import LOADED_PROGRAM_IDS, dump_xlated, prog_id
from .signals import interrupts_deferred
from .streams import StreamSpec, unbatch
from .tracefs import ensure_tracefs
from .transport import TRANSPORTS

__all__ = ["RawTracepoint", "Uprobe", "BpfProgram"]



@dataclass(frozen=True)
class RawTracepoint:
    tracepoint: str
    fn_name: str
    last: bool = False   # attach after all others (e.g. the tracked-set cleanup on exit)


@dataclass(frozen=True)
class Uprobe:
    """A uprobe (or uretprobe) on ``path`` at ELF virtual address ``vaddr``."""

    path: str
    vaddr: int
    fn_name: str
    ret: bool = False
    pid: int = -1
    cookie: int | None = None   # attach with a BPF cookie (runtime/links.py) instead of through BCC


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno()) or "error"


class BpfProgram:
    """One compiled BPF module with its attachments and record streams."""

    def __init__(self, text: str, cflags: list[str], streams: list[StreamSpec],
                 raw_tracepoints: list[RawTracepoint], transport: str = "ringbuf", uprobes: list[Uprobe] = ()):
        if transport not in TRANSPORTS:
            raise ProbeConfigError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.text, self.cflags = text, list(cflags)
        self.streams = {s.name: s for s in streams}
        self.raw_tracepoints, self.uprobes = list(raw_tracepoints), list(uprobes)
        self.transport = transport
        self._transport = TRANSPORTS[transport]()
        self._module = None
        self.links: list[Link] = []          # detached by detach()
        self._counters: list[Link] = []      # perf counters read by the programs: closed by close()
        self._maps: dict[str, BpfMap] = {}
        self.detached = False
        self._flushed: set[str] = set()
        self._lock = threading.RLock()
        self._adopted: dict[str, tuple] = {}   # stream -> (reader, kernel-side lost counter): other objects' streams
        self._closers: list = []               # other BPF objects of the session (users' own), closed with this one

    @property
    def attachments(self) -> list[dict]:
        return [link.describe() for link in self.links + self._counters]

    # -- lifecycle ------------------------------------------------------
    def load(self) -> None:
        if self._module is not None:
            raise ProbeStateError("this BPF program is already loaded")
        require_privilege()
        ensure_tracefs()
        self._module = compile_module(self.text, self.cflags)
        try:
            for tp in list(self._module.tracepoint_fds):
                self._add(CallbackLink(lambda tp=tp: self._module.detach_tracepoint(tp), "tracepoint",
                                       tp.decode() if isinstance(tp, bytes) else str(tp), None, "tracepoint"))
            for r in [r for r in self.raw_tracepoints if not r.last] + [r for r in self.raw_tracepoints if r.last]:
                self._attach_raw(r)
            self._check_layouts()
            self._transport.open(self._module, self.streams, lambda name: self._module[name.encode()].map_fd)
            self._attach_uprobes()
            self._remember_ids()
        except BaseException:
            self.close()
            raise

    def _add(self, link: Link, counter: bool = False) -> Link:
        with self._lock:
            (self._counters if counter else self.links).append(link)
        return link

    def _remember_ids(self) -> None:
        for fn in self._module.funcs.values():
            try:
                LOADED_PROGRAM_IDS.add(prog_id(fn.fd))
            except (OSError, ProbeStateError):
                pass

    def _load_func(self, fn_name: str, prog_type: str, **kw):
        bcc = import_bcc()
        try:
            return self._module.load_func(fn_name.encode(), getattr(bcc.BPF, prog_type), **kw)
        except Exception as exc:
            raise ProbeCompileError(f"the verifier rejected {fn_name}: {exc}") from exc

    def _attach_raw(self, r: RawTracepoint) -> None:
        # BCC's attach_raw_tracepoint allows one program per tracepoint and module;
        # several probes of a session may share one, so attach through libbcc directly.
        fn = self._load_func(r.fn_name, "RAW_TRACEPOINT")
        fd = import_bcc().libbcc.lib.bpf_attach_raw_tracepoint(fn.fd, r.tracepoint.encode())
        if fd < 0:
            raise ProbeAttachError(f"could not attach {r.fn_name} to raw tracepoint {r.tracepoint} ({_errno_text()}). "
                                   "Run `ebpftoolkit doctor` to see what this kernel supports")
        self._add(FdLink([fd], "raw_tracepoint", r.tracepoint, r.fn_name, "raw tracepoint"))

    def _check_layouts(self) -> None:
        """A record whose numpy dtype disagrees with its C struct would decode garbage: refuse."""
        for spec in self.streams.values():
            if spec.c_type is not None:
                self.map(f"{spec.name}_layout", "u4", spec.dtype)   # raises on a size mismatch

    def attach_uprobes(self, uprobes: list[Uprobe]) -> list[Link]:
        """Attach more uprobes to the loaded program while it runs (libraries found during a session,
        processes a scoped probe follows); returns the links made."""
        with self._lock:
            if self._module is None or self.detached:
                raise ProbeStateError("the BPF program is not loaded, or already detached")
            self.uprobes += list(uprobes)
            before = len(self.links)
            self._attach_uprobes(list(uprobes))
            self._remember_ids()
            return self.links[before:]

    def _attach_uprobes(self, uprobes: list[Uprobe] | None = None) -> None:
        """Cookie uprobes go into one uprobe_multi link per (file, program, kind, process) where the
        kernel has them; the others one by one."""
        multi = multi_supported()
        groups: dict[tuple, list[Uprobe]] = {}
        for u in self.uprobes if uprobes is None else uprobes:
            if multi and u.cookie is not None:
                groups.setdefault((u.path, u.fn_name, u.ret, u.pid), []).append(u)
            else:
                self._attach_uprobe(u)
        for (path, fn_name, ret, pid), us in groups.items():
            fn = self._load_func(fn_name, "KPROBE", attach_type=BPF_TRACE_UPROBE_MULTI)
            elf = elf_file(path)
            try:
                fd = attach_uprobe_multi(fn.fd, path, [elf.vaddr_to_offset(u.vaddr) for u in us],
                                         [u.cookie for u in us], retprobe=ret, pid=pid)
            except OSError as exc:
                raise ProbeAttachError(
                    f"could not attach {len(us)} {'uretprobes' if ret else 'uprobes'} to {path} in one uprobe_multi "
                    f"link: {exc}. Check that `ebpftoolkit doctor` reports uprobes available") from exc
            self._add(FdLink([fd], "uretprobe" if ret else "uprobe", path, fn_name, "uprobe (multi link)",
                             addresses=[f"{u.vaddr:#x}" for u in us], **({"pid": pid} if pid > 0 else {})))

    def _attach_uprobe(self, u: Uprobe) -> None:
        kind, target = ("uretprobe" if u.ret else "uprobe"), f"{u.path}:{u.vaddr:#x}"
        try:
            if u.cookie is None:
                attach = self._module.attach_uretprobe if u.ret else self._module.attach_uprobe
                before = set(self._module.uprobe_fds)
                attach(name=u.path.encode(), addr=u.vaddr, fn_name=u.fn_name.encode(), pid=u.pid)
                for ev in set(self._module.uprobe_fds) - before:     # the uprobe event BCC made
                    self._add(CallbackLink(lambda ev=ev: self._module.detach_uprobe_event(ev),
                                           kind, target, u.fn_name, "uprobe"))
            else:
                fn = self._load_func(u.fn_name, "KPROBE")
                fds = attach_uprobe_cookie(fn.fd, u.path, elf_file(u.path).vaddr_to_offset(u.vaddr), u.cookie,
                                           retprobe=u.ret, pid=u.pid)
                self._add(FdLink(list(fds), kind, target, u.fn_name, "uprobe"))
        except ProbeCompileError:
            raise
        except Exception as exc:
            raise ProbeAttachError(
                f"could not attach {'a uretprobe' if u.ret else 'a uprobe'} to {u.path} at {u.vaddr:#x}: {exc}. "
                "Check that the file still exists and `ebpftoolkit doctor` reports uprobes available") from exc

    # -- other BPF objects of the session (users' own programs) -----------
    def add_link(self, link: Link) -> Link:
        """An attachment made by another BPF object of the session: detached with this program's own
        (so that nothing is produced after the last drain) and listed in its attachments."""
        return self._add(link)

    def adopt_stream(self, spec: StreamSpec, reader, kernel_lost=None) -> None:
        """Drain another object's stream with this program's: ``reader`` has ``drain()``, ``lost`` (user
        side) and ``close()``; ``kernel_lost()`` counts what the kernel side could not hand over."""
        with self._lock:
            if spec.name in self.streams:
                raise ProbeConfigError(f"two record streams are called {spec.name!r}")
            self.streams[spec.name] = spec
            self._adopted[spec.name] = (reader, kernel_lost)

    def add_closer(self, fn) -> None:   # fn() runs when this program closes, after the adopted streams
        self._closers.append(fn)

    def set_recording(self, on: bool) -> None:
        """Flip the programs' recording switch (``ebt_state`` in common.h)."""
        self.map("ebt_state", "u4", "u4").update(0, 1 if on else 0)

    def detach(self) -> None:
        """Stop every program from running; the maps stay readable for a last drain."""
        with self._lock, interrupts_deferred():
            if self._module is not None:
                self.set_recording(False)
            for link in self.links:
                link.close()
            self.detached = True

    def close(self) -> None:
        """Detach everything and free the maps.  Safe to call more than once."""
        with self._lock, interrupts_deferred():
            self._transport.close()
            for link in self.links + self._counters:
                link.close()
            for reader, _lost in self._adopted.values():
                reader.close()
            self._adopted.clear()
            closers, self._closers = self._closers, []
            for fn in closers:
                fn()
            self._maps.clear()
            if self._module is not None:
                try:
                    self._module.cleanup()
                finally:
                    self._module = None

    @property
    def loaded(self) -> bool:
        return self._module is not None

    # -- maps ------------------------------------------------------------
    def map(self, name: str, key, value) -> BpfMap:
        """Typed access to the program's map ``name`` (numpy dtypes of key and value, checked)."""
        if self._module is None:
            raise ProbeStateError("the BPF program is not loaded")
        m = self._maps.get(name)
        if m is None or m.key_dtype != np.dtype(key) or m.value_dtype != np.dtype(value):
            try:
                fd = self._module.get_table(name.encode()).map_fd
            except KeyError:
                raise ProbeStateError(f"the BPF program has no map {name!r}") from None
            m = self._maps[name] = BpfMap(fd, name, key, value)
        return m

    def counter(self, map_name: str) -> int:
        """Sum of a one-slot per-CPU counter map (e.g. ``ebt_tracked_lost``)."""
        return self.map(map_name, "u4", "u8").sum(0)

    # -- perf events (after load; probes call these from their setup hook) --
    def open_perf_array(self, map_name: str, ev_type: int, config: int, base: int = 0) -> int:
        """Open a counting perf event on every online CPU (pid -1) into the perf event
        array ``map_name`` at index ``base + cpu``, for ``bpf_perf_event_read_value``.

        The counters run until :meth:`close`; returns how many CPUs were opened.
        """
        table, cpus, fds = self.map(map_name, "u4", "u4"), online_cpus(), []
        link = self._add(FdLink(fds, "perf_event_array", f"type {ev_type} config {config:#x}", None, "perf event",
                                map=map_name, base=base, cpus=len(cpus)), counter=True)
        for cpu in cpus:
            try:
                fd = open_counter(ev_type, config, pid=-1, cpu=cpu)
            except OSError as exc:
                raise ProbeAttachError(
                    f"could not open perf event (type {ev_type}, config {config:#x}) on CPU {cpu} for "
                    f"{map_name}: {exc.strerror}. `ebpftoolkit doctor` and ebpftoolkit.probes.pmu.available_events() "
                    "show which events this machine has") from None
            link.fds.append(fd)
            table.update(base + cpu, fd)
        return len(cpus)

    def attach_perf_timer(self, fn_name: str, period_ns: int) -> None:
        """Run ``fn_name`` every ``period_ns`` of CPU time on every online CPU (a cpu-clock sampling event)."""
        self.attach_perf_event(fn_name, 1, 0, period_ns, label="cpu-clock")   # PERF_TYPE_SOFTWARE, cpu-clock

    def attach_perf_event(self, fn_name: str, ev_type: int, config: int, period: int,
                          label: str | None = None) -> int:
        """Run ``fn_name`` (a perf-event program) at every ``period``-th occurrence of the perf event
        (``ev_type``, ``config``) on every online CPU (pid -1, sampling mode; for cpu-clock and
        task-clock the period is in ns).  :meth:`detach` stops it; returns how many CPUs were opened."""
        label = label or f"type {ev_type} config {config:#x}"
        fn = self._load_func(fn_name, "PERF_EVENT")
        if not 0 <= config <= 0xFFFFFFFF:   # libbcc's bpf_attach_perf_event takes a 32-bit config
            raise ProbeAttachError(f"perf event config {config:#x} ({label}) does not fit in 32 bits: "
                                   "libbcc cannot attach a program to it")
        lib, cpus = import_bcc().libbcc.lib, online_cpus()
        period_key = "period_ns" if label in ("cpu-clock", "task-clock") else "period"
        link = self._add(FdLink([], "perf_event", label, fn_name, "perf event", closer=lib.bpf_close_perf_event_fd,
                                **{period_key: int(period), "cpus": len(cpus)}))
        for cpu in cpus:
            fd = lib.bpf_attach_perf_event(
                ctypes.c_int(fn.fd), ctypes.c_uint(ev_type), ctypes.c_uint(config), ctypes.c_ulonglong(int(period)),
                ctypes.c_ulonglong(0), ctypes.c_int(-1), ctypes.c_int(cpu), ctypes.c_int(-1))
            if fd < 0:
                raise ProbeAttachError(
                    f"could not attach {fn_name} to a {label} perf event on CPU {cpu} ({_errno_text()}). Run "
                    "`ebpftoolkit doctor` ('software perf events' must be ok) and see "
                    "ebpftoolkit.probes.pmu.available_events()")
            link.fds.append(fd)
        return len(cpus)

    def attach_tracepoint_fn(self, tracepoint: str, fn_name: str) -> None:
        """Attach ``fn_name`` to ``category:event`` with its own fd (BCC's ``attach_tracepoint``
        keeps one program per tracepoint and module; another probe may use the same one)."""
        category, _, event = tracepoint.partition(":")
        fn = self._load_func(fn_name, "TRACEPOINT")
        lib = import_bcc().libbcc.lib
        fd = lib.bpf_attach_tracepoint(fn.fd, category.encode(), event.encode())
        if fd < 0:
            raise ProbeAttachError(f"could not attach {fn_name} to tracepoint {tracepoint} ({_errno_text()}). "
                                   "Run `ebpftoolkit doctor`")
        self._add(FdLink([fd], "tracepoint", tracepoint, fn_name, "tracepoint", closer=lib.bpf_close_perf_event_fd))

    # -- reading --------------------------------------------------------
    def wait(self, timeout_s: float) -> None:
        """Block until a stream has data or ``timeout_s`` passes."""
        if self._module is not None:
            self._transport.wait(timeout_s)

    def drain(self, name: str) -> np.ndarray:
        spec = self.streams[name]
        if name in self._adopted:
            return self._adopted[name][0].drain()
        recs = self._transport.drain(name)
        if spec.kernel_batch and self.transport == "ringbuf":
            recs = unbatch(recs, spec)
            if self.detached and name not in self._flushed:
                self._flushed.add(name)       # nothing runs any more: take the partial batches
                recs = np.concatenate([recs, self._partial_batches(spec)])
        return recs

    def _partial_batches(self, spec: StreamSpec) -> np.ndarray:
        parts = self.map(f"{spec.name}_batch", "u4", spec.wire_dtype).lookup(0)
        return unbatch(parts, spec, partial=True) if parts is not None else np.empty(0, spec.dtype)

    def lost(self, name: str) -> int:
        """Records of stream ``name`` lost so far: kernel-side plus user-side."""
        if name in self._adopted:
            reader, kernel_lost = self._adopted[name]
            return int(reader.lost) + (int(kernel_lost()) if kernel_lost is not None and self._module is not None
                                       else 0)
        total = self._transport.lost(name)
        if self._module is not None:
            total += self.counter(f"{name}_lost")
        return total

    # -- exploring ------------------------------------------------------
    def function_names(self) -> list[str]:
        return [n.decode() if isinstance(n, bytes) else n for n in self._module.funcs] if self._module else []

    def dump_xlated(self) -> str:
        """The kernel's translated instructions of every loaded program (via bpftool)."""
        if self._module is None:
            raise ProbeStateError("load the probe first: the translated program exists only once loaded")
        return dump_xlated({(n.decode() if isinstance(n, bytes) else n): fn.fd for n, fn in self._module.funcs.items()})
