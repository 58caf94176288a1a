"""Check that this machine can run ebpftoolkit, and say how to fix what is missing.

``doctor()`` prints a table and returns a :class:`DoctorReport`.  Every check asks the
runtime (``ebpftoolkit.runtime``: privilege, tracefs, kernel headers, perf events, the
bpf syscall), so the doctor and the loader always agree.  No bcc import here except in
the "bcc python" check itself.
"""
from __future__ import annotations

import ctypes
import errno
import html
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .runtime.abi import BPF_MAP_CREATE, bpf
from .runtime.headers import kernel_headers_status
from .runtime.perf import hardware_pmu_available, software_events_available
from .runtime.privilege import ROOT_FIX, privilege
from .runtime.tracefs import find_tracefs

__all__ = ["Check", "DoctorReport", "doctor", "check", "CHECKS", "TRACEPOINTS"]

TRACEPOINTS = ("syscalls/sys_enter_execve", "syscalls/sys_exit_execve",
               "syscalls/sys_enter_execveat", "syscalls/sys_exit_execveat",
               "sched/sched_process_exec", "sched/sched_process_exit", "sched/sched_process_fork")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def get(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @staticmethod
    def _status(c: Check) -> str:
        return "ok" if c.ok else ("FAIL" if c.required else "absent (optional)")

    def __str__(self) -> str:
        w_name = max([len("check")] + [len(c.name) for c in self.checks])
        w_stat = max([len("status")] + [len(self._status(c)) for c in self.checks])
        lines = [f"{'check':<{w_name}}  {'status':<{w_stat}}  detail",
                 f"{'-' * w_name}  {'-' * w_stat}  {'-' * 6}"]
        for c in self.checks:
            lines.append(f"{c.name:<{w_name}}  {self._status(c):<{w_stat}}  {c.detail}")
            pad = " " * (w_name + w_stat + 4)
            lines += [f"{pad}{'     ' if i else 'fix: '}{fix}"
                      for i, fix in enumerate(c.fix.splitlines())]
        lines.append("ready: ebpftoolkit can run here" if self.ok
                     else "NOT READY: fix the FAIL rows above")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(c.name)}</td><td>{e(self._status(c))}</td><td>{e(c.detail)}</td>"
            f"<td><pre style='margin:0'>{e(c.fix)}</pre></td></tr>" for c in self.checks)
        return ("<table><thead><tr><th>check</th><th>status</th><th>detail</th><th>fix</th>"
                f"</tr></thead><tbody>{rows}</tbody></table>"
                f"<p>{'ready' if self.ok else 'NOT READY'}</p>")


def _check_root() -> Check:
    p = privilege()
    return Check("root", p.ok, p.detail, p.fix)


def _check_map(name: str, map_type: int, key: int, value: int, entries: int, fix: str) -> Check:
    attr = (ctypes.c_uint32 * 32)(map_type, key, value, entries)  # union bpf_attr, 128 bytes
    try:
        os.close(bpf(BPF_MAP_CREATE, attr))
        err = 0
    except OSError as exc:
        err = exc.errno or errno.EINVAL
    if not err:
        return Check(name, True, f"BPF_MAP_CREATE of map type {map_type} worked")
    return Check(name, False, f"BPF_MAP_CREATE (type {map_type}) failed: {os.strerror(err)}",
                 ROOT_FIX if err in (errno.EPERM, errno.EACCES) else fix)


def _check_bpf() -> Check:
    knob = Path("/proc/sys/kernel/unprivileged_bpf_disabled")
    if not knob.exists():
        return Check("bpf syscall", False, f"{knob} missing: kernel built without BPF",
                     "use a kernel with CONFIG_BPF_SYSCALL=y")
    return _check_map("bpf syscall", 2, 4, 4, 1, "use a kernel with CONFIG_BPF_SYSCALL=y")


def _check_btf() -> Check:
    p = Path("/sys/kernel/btf/vmlinux")
    ok = os.access(p, os.R_OK)
    return Check("btf", ok, f"{p} is readable" if ok else f"{p} missing or unreadable",
                 "" if ok else "use a kernel built with CONFIG_DEBUG_INFO_BTF=y, and run as root")


def _check_bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when libbcc is missing
        return Check("bcc python", False, f"import bcc failed with {sys.executable}: {exc}",
                     "sudo apt-get install -y python3-bpfcc, and create the venv from the "
                     "system Python: /usr/bin/python3 -m venv --system-site-packages .venv")
    return Check("bcc python", True, f"bcc {getattr(bcc, '__version__', '?')} from "
                 f"{Path(bcc.__file__).parent}")


def _tracefs_check(name: str, rels, fix: str, required: bool = True, mount=False) -> Check:
    """Check that tracefs is mounted and holds the files ``rels``."""
    path, detail, mount_fix = find_tracefs(mount)
    if path is None or not rels:
        return Check(name, path is not None, detail, mount_fix, required)
    missing = [r for r in rels if not os.path.exists(path / r)]
    if missing:
        return Check(name, False, "missing: " + ", ".join(missing), fix, required)
    what = rels[0] if len(rels) == 1 else f"all {len(rels)}"
    return Check(name, True, f"{what} present under {path}", "", required)


def _check_kprobes() -> Check:
    c = _tracefs_check("kprobes", ["kprobe_events"], "optional: only for kprobe-based tools; "
                       "rebuild the kernel with CONFIG_KPROBES=y CONFIG_KPROBE_EVENTS=y", False)
    if c.detail.startswith("missing"):
        c.detail = ("CONFIG_KPROBES is off; ebpftoolkit does not need kprobes "
                    "(it uses tracepoints and uprobes)")
    return c


def _perf_check(name: str, probe, fix: str, required: bool = True) -> Check:
    ok, detail = probe()
    return Check(name, ok, detail, "" if ok else fix, required)


def _check_own_programs() -> Check:
    """What CustomProbe's libbpf flavours need: clang, bpftool (vmlinux.h, inspection), libbpf's headers."""
    import shutil
    missing = [tool for tool in ("clang", "bpftool") if shutil.which(tool) is None and
               not os.access(f"/usr/sbin/{tool}", os.X_OK)]
    if not os.path.exists("/usr/include/bpf/bpf_helpers.h"):
        missing.append("bpf/bpf_helpers.h (libbpf-dev)")
    if missing:
        return Check("libbpf programs", False, "missing: " + ", ".join(missing) + "; CustomProbe with BCC C still "
                     "works", "apt-get install clang bpftool libbpf-dev", required=False)
    return Check("libbpf programs", True, "clang, bpftool and libbpf's headers: CustomProbe.from_libbpf_source and "
                 "from_object work", "", required=False)


CHECKS = {
    "root": _check_root, "bpf syscall": _check_bpf, "btf": _check_btf,
    "tracefs": lambda: _tracefs_check("tracefs", [], "", mount=True),
    "bcc python": _check_bcc,
    "kernel headers": lambda: Check("kernel headers", *kernel_headers_status()),
    "tracepoints": lambda: _tracefs_check(
        "tracepoints", [f"events/{t}" for t in TRACEPOINTS],
        "use a kernel with CONFIG_FTRACE_SYSCALLS=y (syscalls/*) and CONFIG_TRACEPOINTS=y"),
    "uprobes": lambda: _tracefs_check("uprobes", ["uprobe_events"],
                                      "use a kernel with CONFIG_UPROBE_EVENTS=y"),
    "ring buffer": lambda: _check_map(
        "ring buffer", 27, 0, 0, 4096,  # BPF_MAP_TYPE_RINGBUF
        f"needs Linux >= 5.8 (running {platform.uname().release}): upgrade the kernel"),
    "kprobes": _check_kprobes,
    "libbpf programs": _check_own_programs,
    "hardware PMU": lambda: _perf_check(
        "hardware PMU", hardware_pmu_available, "optional: run on bare metal or enable PMU "
        "passthrough in the hypervisor (e.g. QEMU -cpu host,pmu=on); ebpftoolkit uses "
        "software events instead", required=False),
    "software perf events": lambda: _perf_check(
        "software perf events", software_events_available, "use a kernel with "
        f"CONFIG_PERF_EVENTS=y; as non-root: {ROOT_FIX}, or sysctl kernel.perf_event_paranoid=1"),
}


def check(name: str) -> Check:
    """Run one check by its name (see ``CHECKS``)."""
    return CHECKS[name]()


def doctor(file=None) -> DoctorReport:
    """Run every check, print the table to ``file`` (stdout by default), return the report."""
    report = DoctorReport([fn() for fn in CHECKS.values()])
    print(report, file=file or sys.stdout)
    return report
