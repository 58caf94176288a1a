"""Uprobes with a BPF cookie: one BPF program serves many attach points.

BCC 0.26 attaches one program per uprobe and offers no cookie, so a probe with
a hundred attach points needed a hundred compiled wrappers (about 15 ms of
clang time each).  Here a uprobe perf event is opened directly (the "uprobe"
PMU: path and file offset in config1/config2) and linked to the program with
BPF_LINK_CREATE, carrying a 64-bit cookie that the program reads with
bpf_get_attach_cookie() (kernel 5.15 and later).

From kernel 6.6 a uprobe_multi link (BPF_TRACE_UPROBE_MULTI) attaches every
offset of one file in a single link, with a cookie each.  Detaching matters most:
closing a uprobe perf event waits for an RCU grace period (~50 ms here), one after
another, so 134 attach points took 14 s to detach; a multi link waits once.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from .kernel import kernel_at_least

__all__ = ["attach_uprobe_with_cookie", "attach_uprobe_multi", "cookies_supported", "multi_supported",
           "BPF_TRACE_UPROBE_MULTI"]

_NR = {"perf_event_open": 298, "bpf": 321}      # x86_64
_BPF_LINK_CREATE = 28
_BPF_PERF_EVENT = 41
BPF_TRACE_UPROBE_MULTI = 48
_BPF_F_UPROBE_MULTI_RETURN = 1
FORCE_PERF_LINKS = False     # tests set it to exercise the one-link-per-point path on new kernels
_PERF_FLAG_FD_CLOEXEC = 8
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Attr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
                ("_rest", ctypes.c_uint8 * 56)]


class _LinkCreate(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("bpf_cookie", ctypes.c_uint64), ("_rest", ctypes.c_uint8 * 32)]


class _MultiLinkCreate(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("path", ctypes.c_uint64), ("offsets", ctypes.c_uint64),
                ("ref_ctr_offsets", ctypes.c_uint64), ("cookies", ctypes.c_uint64), ("cnt", ctypes.c_uint32),
                ("uprobe_flags", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 36)]


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
    return _check(_libc.syscall(ctypes.c_long(_NR["bpf"]), ctypes.c_int(_BPF_LINK_CREATE), ctypes.byref(link),
                                ctypes.c_uint(ctypes.sizeof(link))), f"bpf(BPF_LINK_CREATE uprobe_multi {path})")


def _uprobe_pmu_type() -> int:
    return int(Path("/sys/bus/event_source/devices/uprobe/type").read_text())


def cookies_supported() -> bool:
    """The uprobe PMU exists and the kernel is new enough for perf-event link cookies (5.15)."""
    try:
        _uprobe_pmu_type()
    except OSError:
        return False
    return kernel_at_least(5, 15)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno() or errno.EINVAL
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def attach_uprobe_with_cookie(prog_fd: int, path: str, file_offset: int, cookie: int, *, retprobe: bool = False,
                              pid: int = -1) -> tuple[int, int]:
    """Attach ``prog_fd`` (a kprobe-type program) to ``path`` at ``file_offset``.

    Returns (link fd, perf event fd); closing both detaches.  ``pid`` -1 puts
    the breakpoint in every process that maps the file.
    """
    path_buf = ctypes.create_string_buffer(os.fsencode(path))
    attr = _Attr(type=_uprobe_pmu_type(), size=ctypes.sizeof(_Attr), config=1 if retprobe else 0,
                 config1=ctypes.addressof(path_buf), config2=file_offset)
    cpu = 0 if pid == -1 else -1
    pfd = _check(_libc.syscall(ctypes.c_long(_NR["perf_event_open"]), ctypes.byref(attr), ctypes.c_int(pid),
                               ctypes.c_int(cpu), ctypes.c_int(-1), ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC)),
                 f"perf_event_open(uprobe {path}:{file_offset:#x})")
    link = _LinkCreate(prog_fd=prog_fd, target_fd=pfd, attach_type=_BPF_PERF_EVENT, bpf_cookie=cookie)
    try:
        lfd = _check(_libc.syscall(ctypes.c_long(_NR["bpf"]), ctypes.c_int(_BPF_LINK_CREATE), ctypes.byref(link),
                                   ctypes.c_uint(ctypes.sizeof(link))), "bpf(BPF_LINK_CREATE)")
    except OSError:
        os.close(pfd)
        raise
    return lfd, pfd
