"""The kernel's system-call interface, defined once: syscall numbers per architecture,
``bpf()``, ``perf_event_open()`` and ``struct perf_event_attr``.

Everything in ebpftoolkit that makes one of these calls goes through here (the
loader, the typed maps, uprobe links, perf counters, the doctor).  Calls return
the kernel's result or raise ``OSError`` with its errno; nothing here decides what
an error means to the user.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform

__all__ = ["SYSCALL_NR", "syscall_nr", "libc", "syscall", "bpf", "perf_event_open", "PerfEventAttr",
           "BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM",
           "BPF_MAP_GET_NEXT_KEY", "BPF_OBJ_GET_INFO_BY_FD", "BPF_LINK_CREATE", "PERF_FLAG_FD_CLOEXEC",
           "PERF_TYPE_HARDWARE", "PERF_TYPE_SOFTWARE", "PERF_TYPE_TRACEPOINT", "PERF_TYPE_HW_CACHE",
           "PERF_TYPE_RAW", "ATTR_DISABLED", "ATTR_EXCLUDE_KERNEL", "ATTR_EXCLUDE_HV", "check_fd"]

#: system call numbers, per ``platform.machine()``
SYSCALL_NR = {
    "x86_64": {"bpf": 321, "perf_event_open": 298},
    "aarch64": {"bpf": 280, "perf_event_open": 241},
}

# bpf(2) commands (include/uapi/linux/bpf.h)
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_GET_NEXT_KEY = 0, 1, 2, 3, 4
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_CREATE = 28

# perf_event_open(2)
PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT, PERF_TYPE_HW_CACHE, PERF_TYPE_RAW = 0, 1, 2, 3, 4
PERF_FLAG_FD_CLOEXEC = 8
ATTR_DISABLED, ATTR_EXCLUDE_KERNEL, ATTR_EXCLUDE_HV = 1 << 0, 1 << 5, 1 << 6

_libc = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        _libc = lib
    return _libc


def syscall_nr(name: str) -> int:
    """The number of system call ``name`` on this architecture (OSError ENOSYS when unknown)."""
    nr = SYSCALL_NR.get(platform.machine(), {}).get(name)
    if nr is None:
        raise OSError(errno.ENOSYS, f"{name}: no known system call number on {platform.machine()}")
    return nr


def syscall(name: str, *args) -> int:
    """``syscall(nr, *args)``: the result, or OSError with the errno when it is negative."""
    ret = libc().syscall(ctypes.c_long(syscall_nr(name)), *args)
    return check_fd(ret, name)


def check_fd(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno() or errno.EINVAL
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def bpf(cmd: int, attr: ctypes.Structure | ctypes.Array) -> int:
    """``bpf(cmd, &attr, sizeof(attr))``."""
    return syscall("bpf", ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` up to ``sig_data``: PERF_ATTR_SIZE_VER7, 128 bytes (kernel 5.13+
    reads it whole; older kernels accept it as long as the fields they do not know are zero)."""

    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
                ("branch_sample_type", ctypes.c_uint64), ("sample_regs_user", ctypes.c_uint64),
                ("sample_stack_user", ctypes.c_uint32), ("clockid", ctypes.c_int32),
                ("sample_regs_intr", ctypes.c_uint64), ("aux_watermark", ctypes.c_uint32),
                ("sample_max_stack", ctypes.c_uint16), ("_reserved_2", ctypes.c_uint16),
                ("aux_sample_size", ctypes.c_uint32), ("_reserved_3", ctypes.c_uint32),
                ("sig_data", ctypes.c_uint64)]


assert ctypes.sizeof(PerfEventAttr) == 128


def perf_event_open(attr: PerfEventAttr, pid: int = 0, cpu: int = -1, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """Open a perf event; returns its fd (the caller closes it)."""
    attr.size = ctypes.sizeof(PerfEventAttr)
    return syscall("perf_event_open", ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                   ctypes.c_int(group_fd), ctypes.c_ulong(flags))
