"""The only module that talks to BCC: compile, attach, read, detach.

A :class:`BpfProgram` is one compiled BPF module holding the programs of every
probe in a session (one compile per session).  Its record streams are read in
bulk (see :mod:`.ringbuf`); loss is counted both in the kernel (a per-CPU
counter next to every stream, bumped when a record cannot be handed over) and
in user space (perf-buffer lost samples, malformed records).
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import (BccMissingError, KernelHeadersError, NotRootError, ProbeAttachError,
                      ProbeCompileError, ProbeStateError)
from .ringbuf import RingBufferReader
from .streams import StreamSpec, unbatch

__all__ = ["RawTracepoint", "Uprobe", "BpfProgram", "import_bcc"]


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
    cookie: int | None = None   # attach with a BPF cookie (runtime/uprobe_link.py) instead of through BCC


def import_bcc():
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        raise BccMissingError(
            f"the bcc Python bindings cannot be imported ({exc}). On Debian/Ubuntu: "
            "apt-get install python3-bpfcc, and create your virtualenv from the system "
            "python with --system-site-packages (scripts/setup.sh does both)"
        ) from None
    return bcc


@contextlib.contextmanager
def _capture_output():
    """Collect what libbcc/clang write to file descriptors 1 and 2 while compiling."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            box: list[str] = []
            yield box
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace"))


def _classify_compile_error(log: str, exc: Exception) -> Exception:
    low = log.lower()
    missing_header = "fatal error" in low and "file not found" in low and any(
        d in low for d in ("linux/", "asm/", "uapi/"))
    if "unable to find kernel headers" in low or "chdir(/lib/modules" in low or missing_header:
        return KernelHeadersError(
            "BCC could not find kernel headers for this kernel "
            f"({os.uname().release}). Run `ebpftoolkit doctor` for the exact fix; on Debian: "
            "apt-get install linux-headers-amd64 and link /lib/modules/$(uname -r)/build and "
            "/source to it (sudo scripts/setup-kernel-headers.sh).\n" + log[-2000:]
        )
    if "processed " in low and " insns" in low:           # the verifier's log: it rejected the program
        return ProbeCompileError(f"the kernel's BPF verifier rejected the program: {exc}\n{log[-4000:]}")
    if "permission" in low or "operation not permitted" in low:
        return NotRootError("the kernel refused to load the BPF program: run as root "
                            "(or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN).\n" + log[-2000:])
    return ProbeCompileError(f"the BPF program did not compile or load: {exc}\n{log[-4000:]}")


class BpfProgram:
    """One compiled BPF module with its attachments and record streams."""

    def __init__(self, text: str, cflags: list[str], streams: list[StreamSpec],
                 raw_tracepoints: list[RawTracepoint], transport: str = "ringbuf",
                 uprobes: list[Uprobe] = ()):
        if transport not in ("ringbuf", "perf"):
            raise ValueError("transport must be 'ringbuf' or 'perf'")
        self.text = text
        self.cflags = list(cflags)
        self.streams = {s.name: s for s in streams}
        self.raw_tracepoints = list(raw_tracepoints)
        self.uprobes = list(uprobes)
        self.transport = transport
        self.bpf = None
        self.attachments: list[dict] = []
        self._readers: dict[str, RingBufferReader] = {}
        self._perf_chunks: dict[str, list[bytes]] = {}
        self._perf_lost: dict[str, int] = {}
        self._epoll = None
        self._raw_fds: list[int] = []
        self._link_fds: list[int] = []         # uprobe links and their perf events (cookie uprobes)
        self._perf_prog_fds: list[int] = []    # perf events running a program (timers, tracepoints)
        self._perf_array_fds: list[int] = []   # counters in perf event arrays (open_perf_array)
        self.detached = False
        self._flushed: set[str] = set()
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------
    def load(self) -> None:
        if self.bpf is not None:
            raise ProbeStateError("this BPF program is already loaded")
        if os.geteuid() != 0:
            raise NotRootError("loading BPF programs needs root: run with sudo (or grant CAP_BPF, "
                               "CAP_PERFMON and CAP_SYS_ADMIN)")
        bcc = import_bcc()
        from ..doctor import ensure_tracefs
        ensure_tracefs()
        with _capture_output() as log:
            try:
                self.bpf = bcc.BPF(text=self.text.encode(), cflags=self.cflags)
                err = None
            except Exception as exc:  # BCC raises bare Exception for compile/verifier failures
                err = exc
        if err is not None:
            raise _classify_compile_error(log[0] if log else "", err) from err
        try:
            for tp in self.bpf.tracepoint_fds:
                self.attachments.append({"kind": "tracepoint", "target": tp, "mechanism": "tracepoint"})
            ordered = [r for r in self.raw_tracepoints if not r.last] + [r for r in self.raw_tracepoints if r.last]
            for r in ordered:
                self._attach_raw(bcc, r)
                self.attachments.append({"kind": "raw_tracepoint", "target": r.tracepoint, "function": r.fn_name,
                                         "mechanism": "raw tracepoint"})
            self._check_layouts()
            self._open_streams()
            self._attach_uprobes()
        except BaseException:
            self.close()
            raise

    def _attach_raw(self, bcc, r: RawTracepoint) -> None:
        # BCC's attach_raw_tracepoint allows one program per tracepoint and module;
        # several probes of a session may share one, so attach through libbcc directly.
        try:
            fn = self.bpf.load_func(r.fn_name.encode(), bcc.BPF.RAW_TRACEPOINT)
        except Exception as exc:
            raise ProbeCompileError(f"the verifier rejected {r.fn_name}: {exc}") from exc
        fd = bcc.libbcc.lib.bpf_attach_raw_tracepoint(fn.fd, r.tracepoint.encode())
        if fd < 0:
            raise ProbeAttachError(
                f"could not attach {r.fn_name} to raw tracepoint {r.tracepoint} "
                f"({os.strerror(ctypes.get_errno()) or 'error'}). Run `ebpftoolkit doctor` to see what this kernel supports")
        self._raw_fds.append(fd)

    def _check_layouts(self) -> None:
        """A record whose numpy dtype disagrees with its C struct would decode garbage: refuse."""
        for spec in self.streams.values():
            if spec.c_type is None:
                continue
            size = ctypes.sizeof(self.bpf.get_table(f"{spec.name}_layout".encode()).Leaf)
            if size != spec.dtype.itemsize:
                raise ProbeCompileError(f"stream {spec.name}: {spec.c_type} is {size} bytes in C but the decoder "
                                        f"expects {spec.dtype.itemsize}; fix the probe's dtype")

    def _attach_uprobes(self) -> None:
        """Cookie uprobes go into one uprobe_multi link per (file, program, kind) where the kernel
        has them; the others one by one."""
        from .uprobe_link import multi_supported
        multi = multi_supported()
        groups: dict[tuple, list[Uprobe]] = {}
        for u in self.uprobes:
            if multi and u.cookie is not None:
                groups.setdefault((u.path, u.fn_name, u.ret, u.pid), []).append(u)
            else:
                self._attach_uprobe(u)
        for (path, fn_name, ret, pid), us in groups.items():
            self._attach_uprobe_multi(path, fn_name, ret, pid, us)

    def _attach_uprobe_multi(self, path: str, fn_name: str, ret: bool, pid: int, us: list[Uprobe]) -> None:
        from .elf import elf_file
        from .uprobe_link import BPF_TRACE_UPROBE_MULTI, attach_uprobe_multi
        bcc = import_bcc()
        fn = self.bpf.load_func(fn_name.encode(), bcc.BPF.KPROBE, attach_type=BPF_TRACE_UPROBE_MULTI)
        elf = elf_file(path)
        try:
            fd = attach_uprobe_multi(fn.fd, path, [elf.vaddr_to_offset(u.vaddr) for u in us],
                                     [u.cookie for u in us], retprobe=ret, pid=pid)
        except OSError as exc:
            raise ProbeAttachError(
                f"could not attach {len(us)} {'uretprobes' if ret else 'uprobes'} to {path} in one uprobe_multi "
                f"link: {exc}. Check that `ebpftoolkit doctor` reports uprobes available") from exc
        with self._lock:
            self._link_fds.append(fd)
        for u in us:
            self.attachments.append({"kind": "uretprobe" if ret else "uprobe", "target": f"{path}:{u.vaddr:#x}",
                                     "function": fn_name, "mechanism": "uprobe (multi link)"})

    def _attach_uprobe(self, u: Uprobe) -> None:
        attach = self.bpf.attach_uretprobe if u.ret else self.bpf.attach_uprobe
        try:
            if u.cookie is None:
                attach(name=u.path.encode(), addr=u.vaddr, fn_name=u.fn_name.encode(), pid=u.pid)
            else:
                self._attach_uprobe_cookie(u)
        except Exception as exc:
            raise ProbeAttachError(
                f"could not attach {'a uretprobe' if u.ret else 'a uprobe'} to {u.path} at {u.vaddr:#x}: {exc}. "
                "Check that the file still exists and `ebpftoolkit doctor` reports uprobes available") from exc
        self.attachments.append({"kind": "uretprobe" if u.ret else "uprobe", "target": f"{u.path}:{u.vaddr:#x}",
                                 "function": u.fn_name, "mechanism": "uprobe"})

    def _attach_uprobe_cookie(self, u: Uprobe) -> None:
        from .elf import elf_file
        from .uprobe_link import attach_uprobe_with_cookie
        bcc = import_bcc()
        fn = self.bpf.load_func(u.fn_name.encode(), bcc.BPF.KPROBE)
        offset = elf_file(u.path).vaddr_to_offset(u.vaddr)
        fds = attach_uprobe_with_cookie(fn.fd, u.path, offset, u.cookie, retprobe=u.ret, pid=u.pid)
        with self._lock:
            self._link_fds.extend(fds)

    def _open_streams(self) -> None:
        if self.transport == "ringbuf":
            self._epoll = select.epoll()
            for name, spec in self.streams.items():
                fd = self.bpf[name.encode()].map_fd
                self._readers[name] = RingBufferReader(fd, spec.pages * mmap.PAGESIZE, spec.wire_dtype)
                self._epoll.register(fd, select.EPOLLIN)
            return
        for name, spec in self.streams.items():
            chunks = self._perf_chunks.setdefault(name, [])
            self._perf_lost[name] = 0
            size = spec.dtype.itemsize

            def on_event(_cpu, data, _size, chunks=chunks, size=size):
                chunks.append(ctypes.string_at(data, size))

            def on_lost(count, name=name):
                self._perf_lost[name] += count

            self.bpf[name.encode()].open_perf_buffer(on_event, page_cnt=spec.pages, lost_cb=on_lost)

    def set_recording(self, on: bool) -> None:
        """Flip the programs' recording switch (``ebt_state`` in common.h)."""
        table = self.bpf.get_table(b"ebt_state")
        table[table.Key(0)] = table.Leaf(1 if on else 0)

    def detach(self) -> None:
        """Stop every program from running; the maps stay readable for a last drain."""
        with self._lock:
            if self.bpf is not None:
                self.set_recording(False)
            for fd in self._link_fds:
                os.close(fd)
            self._link_fds.clear()
            for fd in self._raw_fds:
                os.close(fd)
            self._raw_fds.clear()
            self._close_perf_fds(self._perf_prog_fds)
            if self.bpf is not None:
                for tp in list(self.bpf.tracepoint_fds):
                    self.bpf.detach_tracepoint(tp)
                for ev in list(self.bpf.uprobe_fds):
                    self.bpf.detach_uprobe_event(ev)
            self.detached = True

    def close(self) -> None:
        """Detach everything and free the maps.  Safe to call more than once."""
        with self._lock:
            for r in self._readers.values():
                r.close()
            self._readers.clear()
            if self._epoll is not None:
                self._epoll.close()
                self._epoll = None
            for fd in self._raw_fds + self._link_fds:
                os.close(fd)
            self._raw_fds.clear()
            self._link_fds.clear()
            self._close_perf_fds(self._perf_prog_fds)
            self._close_perf_fds(self._perf_array_fds)
            if self.bpf is not None:
                try:
                    self.bpf.cleanup()
                finally:
                    self.bpf = None

    @property
    def loaded(self) -> bool:
        return self.bpf is not None

    # -- perf events (after load; probes call these from their setup hook) --
    def open_perf_array(self, map_name: str, ev_type: int, config: int, base: int = 0) -> int:
        """Open a counting perf event on every online CPU (pid -1) into the perf event
        array ``map_name`` at index ``base + cpu``, for ``bpf_perf_event_read_value``.

        The counters run until :meth:`close`; returns how many CPUs were opened.
        """
        from ..pmu import online_cpus, perf_event_open
        table = self.table(map_name)
        cpus = online_cpus()
        for cpu in cpus:
            try:
                fd = perf_event_open(ev_type, config, pid=-1, cpu=cpu)
            except OSError as exc:
                raise ProbeAttachError(
                    f"could not open perf event (type {ev_type}, config {config:#x}) on CPU {cpu} for "
                    f"{map_name}: {exc.strerror}. `ebpftoolkit doctor` and ebpftoolkit.pmu.available_events() "
                    "show which events this machine has") from None
            with self._lock:
                self._perf_array_fds.append(fd)
            table[table.Key(base + cpu)] = table.Leaf(fd)
        self.attachments.append({"kind": "perf_event_array", "target": f"type {ev_type} config {config:#x}",
                                 "map": map_name, "base": base, "cpus": len(cpus), "mechanism": "perf event"})
        return len(cpus)

    def attach_perf_timer(self, fn_name: str, period_ns: int) -> None:
        """Run ``fn_name`` (a perf-event program) every ``period_ns`` of CPU time on every online CPU:
        a cpu-clock software event in sampling mode.  :meth:`detach` stops it."""
        from ..pmu import PERF_TYPE_SOFTWARE
        self.attach_perf_event(fn_name, PERF_TYPE_SOFTWARE, 0, period_ns, label="cpu-clock")

    def attach_perf_event(self, fn_name: str, ev_type: int, config: int, period: int,
                          label: str | None = None) -> int:
        """Run ``fn_name`` (a perf-event program) at every ``period``-th occurrence of the perf event
        (``ev_type``, ``config``) on every online CPU (pid -1, sampling mode; for cpu-clock and
        task-clock the period is in ns).  :meth:`detach` stops it; returns how many CPUs were opened."""
        bcc = import_bcc()
        from ..pmu import online_cpus
        label = label or f"type {ev_type} config {config:#x}"
        try:
            fn = self.bpf.load_func(fn_name.encode(), bcc.BPF.PERF_EVENT)
        except Exception as exc:
            raise ProbeCompileError(f"the verifier rejected {fn_name}: {exc}") from exc
        if not 0 <= config <= 0xFFFFFFFF:   # libbcc's bpf_attach_perf_event takes a 32-bit config
            raise ProbeAttachError(f"perf event config {config:#x} ({label}) does not fit in 32 bits: "
                                   "libbcc cannot attach a program to it")
        cpus = online_cpus()
        for cpu in cpus:
            fd = bcc.libbcc.lib.bpf_attach_perf_event(
                ctypes.c_int(fn.fd), ctypes.c_uint(ev_type), ctypes.c_uint(config), ctypes.c_ulonglong(int(period)),
                ctypes.c_ulonglong(0), ctypes.c_int(-1), ctypes.c_int(cpu), ctypes.c_int(-1))
            if fd < 0:
                raise ProbeAttachError(
                    f"could not attach {fn_name} to a {label} perf event on CPU {cpu} "
                    f"({os.strerror(ctypes.get_errno()) or 'error'}). Run `ebpftoolkit doctor` "
                    "('software perf events' must be ok) and see ebpftoolkit.pmu.available_events()")
            with self._lock:
                self._perf_prog_fds.append(fd)
        period_key = "period_ns" if label in ("cpu-clock", "task-clock") else "period"
        self.attachments.append({"kind": "perf_event", "target": label, "function": fn_name,
                                 period_key: int(period), "cpus": len(cpus), "mechanism": "perf event"})
        return len(cpus)

    def attach_tracepoint_fn(self, tracepoint: str, fn_name: str) -> None:
        """Attach ``fn_name`` to ``category:event`` with its own fd (BCC's ``attach_tracepoint``
        keeps one program per tracepoint and module; another probe may use the same one).
        :meth:`detach` removes it."""
        bcc = import_bcc()
        category, _, event = tracepoint.partition(":")
        try:
            fn = self.bpf.load_func(fn_name.encode(), bcc.BPF.TRACEPOINT)
        except Exception as exc:
            raise ProbeCompileError(f"the verifier rejected {fn_name}: {exc}") from exc
        fd = bcc.libbcc.lib.bpf_attach_tracepoint(fn.fd, category.encode(), event.encode())
        if fd < 0:
            raise ProbeAttachError(f"could not attach {fn_name} to tracepoint {tracepoint} "
                                   f"({os.strerror(ctypes.get_errno()) or 'error'}). Run `ebpftoolkit doctor`")
        with self._lock:
            self._perf_prog_fds.append(fd)
        self.attachments.append({"kind": "tracepoint", "target": tracepoint, "function": fn_name,
                                 "mechanism": "tracepoint"})

    def _close_perf_fds(self, fds: list[int]) -> None:
        if fds:
            lib = import_bcc().libbcc.lib
            for fd in fds:
                lib.bpf_close_perf_event_fd(fd)   # disables the event, then closes the fd
            fds.clear()

    # -- reading --------------------------------------------------------
    def wait(self, timeout_s: float) -> None:
        """Block until a stream has data or ``timeout_s`` passes."""
        if self.transport == "ringbuf":
            ep = self._epoll
            if ep is not None:
                try:
                    ep.poll(timeout_s)
                except (OSError, ValueError):
                    pass
        elif self.bpf is not None:
            self.bpf.perf_buffer_poll(timeout=int(timeout_s * 1000))

    def drain(self, name: str) -> np.ndarray:
        spec = self.streams[name]
        if self.transport == "ringbuf":
            reader = self._readers.get(name)
            recs = reader.drain() if reader else np.empty(0, spec.wire_dtype)
            if spec.kernel_batch:
                recs = unbatch(recs, spec)
                if self.detached and name not in self._flushed:
                    self._flushed.add(name)       # nothing runs any more: take the partial batches
                    recs = np.concatenate([recs, self._partial_batches(spec)])
            return recs
        chunks = self._perf_chunks.get(name, [])
        if not chunks:
            return np.empty(0, spec.dtype)
        taken = len(chunks)
        raw = b"".join(chunks[:taken])
        del chunks[:taken]
        return np.frombuffer(raw, dtype=spec.dtype).copy()

    def _partial_batches(self, spec: StreamSpec) -> np.ndarray:
        table = self.bpf.get_table(f"{spec.name}_batch".encode())
        parts = [np.frombuffer(bytes(v), spec.wire_dtype, count=1) for v in table[table.Key(0)]]
        return unbatch(np.concatenate(parts), spec, partial=True) if parts else np.empty(0, spec.dtype)

    def lost(self, name: str) -> int:
        """Records of stream ``name`` lost so far: kernel-side plus user-side."""
        total = self._perf_lost.get(name, 0)
        reader = self._readers.get(name)
        if reader is not None:
            total += reader.malformed
        if self.bpf is not None:
            total += self.counter(f"{name}_lost")
        return total

    def counter(self, map_name: str) -> int:
        """Sum of a one-slot per-CPU counter map (e.g. ``ebt_tracked_lost``)."""
        table = self.bpf.get_table(map_name.encode())
        return sum(int(v) for v in table[table.Key(0)])

    def table(self, name: str):
        if self.bpf is None:
            raise ProbeStateError("the BPF program is not loaded")
        return self.bpf.get_table(name.encode())

    # -- exploring ------------------------------------------------------
    def function_names(self) -> list[str]:
        return list(self.bpf.funcs) if self.bpf is not None else []

    def dump_xlated(self) -> str:
        """The kernel's translated instructions of every loaded program (via bpftool)."""
        if self.bpf is None:
            raise ProbeStateError("load the probe first: the translated program exists only once loaded")
        out = []
        for name, fn in self.bpf.funcs.items():
            prog_id = _prog_id(fn.fd)
            try:
                res = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                                     capture_output=True, text=True, check=True)
            except FileNotFoundError:
                raise ProbeStateError("bpftool is not installed: apt-get install bpftool") from None
            except subprocess.CalledProcessError as exc:
                raise ProbeStateError(f"bpftool failed for {name}: {exc.stderr.strip()}") from None
            out.append(f"// program {name} (id {prog_id})\n{res.stdout}")
        return "\n".join(out)


def _prog_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        m = re.search(r"^prog_id:\s*(\d+)", f.read(), re.M)
    if not m:
        raise ProbeStateError("the kernel does not report program ids in fdinfo")
    return int(m.group(1))
