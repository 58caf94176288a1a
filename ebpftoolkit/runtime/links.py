"""Attachments as objects: every way a loaded BPF program is attached returns a :class:`Link`
whose ``close()`` detaches it (and is safe to call twice).

Uprobes with a BPF cookie let one program serve many attach points (BCC 0.26 attaches
one program per uprobe and offers no cookie): a uprobe perf event is opened directly
(the "uprobe" PMU: path and file offset in config1/config2) and linked to the program
with BPF_LINK_CREATE, carrying a 64-bit cookie read with bpf_get_attach_cookie()
(kernel 5.15+).  From kernel 6.6 a uprobe_multi link attaches every offset of one
file in a single link.  Detaching matters most: closing a uprobe perf event waits for
an RCU grace period (~50 ms here), one after another, so 134 attach points took 14 s
to detach; a multi link waits once.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

from .abi import BPF_LINK_CREATE, PerfEventAttr, bpf, perf_event_open
from .kernel import kernel_at_least

__all__ = ["Link", "FdLink", "CallbackLink", "attach_uprobe_multi", "attach_uprobe_cookie", "cookies_supported",
           "multi_supported", "BPF_TRACE_UPROBE_MULTI"]

_BPF_PERF_EVENT = 41
BPF_TRACE_UPROBE_MULTI = 48
_BPF_F_UPROBE_MULTI_RETURN = 1
FORCE_PERF_LINKS = False     # tests set it to exercise the one-link-per-point path on new kernels


class Link:
    """One attachment: ``kind`` (tracepoint, raw_tracepoint, uprobe, uretprobe, perf_event...),
    ``target``, the ``function`` attached, the ``mechanism`` used, and extra facts (``details``)."""

    def __init__(self, kind: str, target: str, function: str | None, mechanism: str, **details):
        self.kind, self.target, self.function, self.mechanism, self.details = kind, target, function, mechanism, details
        self.closed = False

    def describe(self) -> dict:
        return {"kind": self.kind, "target": self.target, "function": self.function, "mechanism": self.mechanism,
                **self.details}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()

    def _close(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.target} {self.function or ''}{' closed' if self.closed else ''}>"


class FdLink(Link):
    """An attachment held by file descriptors (links, perf events, raw tracepoints), closed with ``closer``."""

    def __init__(self, fds: list[int], kind, target, function, mechanism, closer=os.close, **details):
        super().__init__(kind, target, function, mechanism, **details)
        self.fds, self._closer = list(fds), closer

    def _close(self) -> None:
        for fd in self.fds:
            try:
                self._closer(fd)
            except OSError:
                pass


class CallbackLink(Link):
    """An attachment made and removed by BCC itself (TRACEPOINT_PROBE programs, BCC uprobes)."""

    def __init__(self, detach, kind, target, function, mechanism, **details):
        super().__init__(kind, target, function, mechanism, **details)
        self._detach = detach

    def _close(self) -> None:
        self._detach()


# -- uprobes with cookies ---------------------------------------------------------------------------
class _LinkCreate(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("bpf_cookie", ctypes.c_uint64), ("_rest", ctypes.c_uint8 * 32)]


class _MultiLinkCreate(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("path", ctypes.c_uint64), ("offsets", ctypes.c_uint64),
                ("ref_ctr_offsets", ctypes.c_uint64), ("cookies", ctypes.c_uint64), ("cnt", ctypes.c_uint32),
                ("uprobe_flags", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 36)]


def _uprobe_pmu_type() -> int:
    return int(Path("/sys/bus/event_source/devices/uprobe/type").read_text())


def cookies_supported() -> bool:
    """The uprobe PMU exists and the kernel is new enough for perf-event link cookies (5.15)."""
    try:
        _uprobe_pmu_type()
    except OSError:
        return False
    return kernel_at_least(5, 15)


def multi_supported() -> bool:
    """uprobe_multi links (kernel 6.6 and later)."""
    return not FORCE_PERF_LINKS and cookies_supported() and kernel_at_least(6, 6)


def attach_uprobe_multi(prog_fd: int, path: str, file_offsets: list[int], cookies: list[int], *,
                        retprobe: bool = False, pid: int = -1) -> int:
    """One link for every offset of ``path``; ``prog_fd`` must be loaded with expected attach type
    BPF_TRACE_UPROBE_MULTI.  Returns the link fd; closing it detaches them all."""
    n = len(file_offsets)
    path_buf = ctypes.create_string_buffer(os.fsencode(path))
    offsets = (ctypes.c_uint64 * n)(*file_offsets)
    cks = (ctypes.c_uint64 * n)(*cookies)
    link = _MultiLinkCreate(prog_fd=prog_fd, attach_type=BPF_TRACE_UPROBE_MULTI, path=ctypes.addressof(path_buf),
                            offsets=ctypes.addressof(offsets), cookies=ctypes.addressof(cks), cnt=n,
                            uprobe_flags=_BPF_F_UPROBE_MULTI_RETURN if retprobe else 0, pid=max(pid, 0))
    return bpf(BPF_LINK_CREATE, link)


def attach_uprobe_cookie(prog_fd: int, path: str, file_offset: int, cookie: int, *, retprobe: bool = False,
                         pid: int = -1) -> tuple[int, int]:
    """Attach ``prog_fd`` (a kprobe-type program) to ``path`` at ``file_offset``.

    Returns (link fd, perf event fd); closing both detaches.  ``pid`` -1 puts
    the breakpoint in every process that maps the file.
    """
    path_buf = ctypes.create_string_buffer(os.fsencode(path))
    attr = PerfEventAttr(type=_uprobe_pmu_type(), config=1 if retprobe else 0,
                         config1=ctypes.addressof(path_buf), config2=file_offset)
    pfd = perf_event_open(attr, pid, 0 if pid == -1 else -1)
    link = _LinkCreate(prog_fd=prog_fd, target_fd=pfd, attach_type=_BPF_PERF_EVENT, bpf_cookie=cookie)
    try:
        lfd = bpf(BPF_LINK_CREATE, link)
    except OSError:
        os.close(pfd)
        raise
    return lfd, pfd
