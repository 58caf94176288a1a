"""Check that this machine can run ebpftoolkit, and say how to fix what is missing.

``doctor()`` prints a table and returns a :class:`DoctorReport`; the helpers
(``ensure_tracefs``, ``require_root`` ...) serve the rest of the toolkit.  No bcc import here.
"""
from __future__ import annotations

import ctypes
import errno
import html
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NotRootError, TracefsError

__all__ = ["Check", "DoctorReport", "doctor", "check", "CHECKS", "TRACEPOINTS", "ensure_tracefs",
           "require_root", "kernel_headers_status", "kernel_headers_fix",
           "hardware_pmu_available", "software_events_available"]

TRACEPOINTS = ("syscalls/sys_enter_execve", "syscalls/sys_exit_execve",
               "syscalls/sys_enter_execveat", "syscalls/sys_exit_execveat",
               "sched/sched_process_exec", "sched/sched_process_exit", "sched/sched_process_fork")
TRACEFS_PATHS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
_SYSCALL_NR = {"x86_64": {"bpf": 321, "perf_event_open": 298},
               "aarch64": {"bpf": 280, "perf_event_open": 241}}
_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_CAP_BPF = 39
_TRACEFS_FIX = "sudo mount -t tracefs nodev /sys/kernel/tracing"
_ROOT_FIX = "run with sudo, or grant CAP_BPF,CAP_PERFMON,CAP_SYS_ADMIN to the Python interpreter"


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


def _try_fd(name: str, *args) -> int:
    """Make a raw fd-returning syscall, close the fd; return 0 on success, else errno."""
    nr = _SYSCALL_NR.get(platform.machine(), {}).get(name)
    if nr is None:
        return errno.ENOSYS
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(nr), *args)
    if fd < 0:
        return ctypes.get_errno() or errno.EINVAL
    os.close(fd)
    return 0


def _perf_event_open(ev_type: int, config: int) -> int:
    # struct perf_event_attr (128 bytes): u32 type, u32 size, u64 config, ..., u64 flags @40
    attr = (ctypes.c_uint64 * 16)(ev_type | 128 << 32, config, 0, 0, 0, 1)  # 1 = disabled
    return _try_fd("perf_event_open", attr, ctypes.c_int(0), ctypes.c_int(-1),
                   ctypes.c_int(-1), ctypes.c_ulong(8))  # pid 0, any cpu, FD_CLOEXEC


def hardware_pmu_available() -> tuple[bool, str]:
    err = _perf_event_open(0, 0)  # PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES
    if not err:
        return True, "cpu-cycles counter opened"
    if err in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV):
        return False, ("hardware counters not supported: this VM exposes no virtual PMU "
                       "(hypervisor without PMU passthrough)")
    return False, f"perf_event_open(cycles) failed: {os.strerror(err)}"


def software_events_available() -> tuple[bool, str]:
    err = _perf_event_open(1, 0)  # PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK
    if not err:
        return True, "cpu-clock software event opened"
    return False, f"perf_event_open(cpu-clock) failed: {os.strerror(err)}"


def _has_cap_bpf() -> bool:
    m = re.search(r"^CapEff:\s*([0-9a-f]+)", Path("/proc/self/status").read_text(), re.M)
    return bool(m and int(m[1], 16) >> _CAP_BPF & 1)


def require_root() -> None:
    if os.geteuid() != 0 and not _has_cap_bpf():
        raise NotRootError(f"loading BPF programs needs root: {_ROOT_FIX}")


def _find_tracefs(mount: bool) -> tuple[Path | None, str, str]:
    """(mount point or None, what was found, fix)."""
    for p in TRACEFS_PATHS:
        if os.path.exists(p / "available_events"):
            return p, f"mounted at {p}", ""
    if os.path.ismount(TRACEFS_PATHS[0]):
        return None, f"{TRACEFS_PATHS[0]} is mounted but not readable", _ROOT_FIX
    if not mount or os.geteuid() != 0:
        return None, "tracefs is not mounted", _TRACEFS_FIX
    res = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS_PATHS[0])],
                         capture_output=True, text=True)
    if res.returncode == 0 and os.path.exists(TRACEFS_PATHS[0] / "available_events"):
        return TRACEFS_PATHS[0], f"was not mounted; mounted it at {TRACEFS_PATHS[0]}", ""
    return None, f"not mounted, and mounting failed: {res.stderr.strip()}", _TRACEFS_FIX


def ensure_tracefs() -> Path:
    """Return the tracefs mount point, mounting it when not mounted and we are root."""
    path, detail, fix = _find_tracefs(mount=True)
    if path is None:
        raise TracefsError(f"tracefs: {detail}; fix: {fix}")
    return path


def kernel_headers_fix(release: str | None = None) -> str:
    release = release or platform.uname().release
    mod = f"/lib/modules/{release}"
    if "microsoft" in release.lower():
        tag = "linux-msft-wsl-" + release.split("-")[0]
        return (
            "WSL2 kernels have no headers package: build a prepared kernel tree.\n"
            f"git clone --depth 1 --branch {tag} https://github.com/microsoft/WSL2-Linux-Kernel\n"
            "cd WSL2-Linux-Kernel && zcat /proc/config.gz > .config "
            "&& make olddefconfig && make modules_prepare\n"
            f"sudo mkdir -p {mod} && sudo ln -sfn $PWD {mod}/build && sudo ln -sfn $PWD {mod}/source\n"
            "(BCC_KERNEL_SOURCE=<tree> is an alternative, but it did not work with Debian's "
            "BCC here: prefer the symlinks)")
    arch = _DEB_ARCH.get(platform.machine(), "amd64")
    vers = [m[1] for p in Path("/usr/src").glob("linux-headers-*")
            if (m := re.fullmatch(rf"linux-headers-([\d.]+-\d+)-{arch}", p.name))]
    if vers:
        ver = max(vers, key=lambda v: [int(n) for n in re.findall(r"\d+", v)])
        return (f"sudo mkdir -p {mod} && sudo ln -sfn /usr/src/linux-headers-{ver}-{arch} "
                f"{mod}/build && sudo ln -sfn /usr/src/linux-headers-{ver}-common {mod}/source\n"
                "(or run: sudo scripts/setup-kernel-headers.sh)")
    return (f"sudo apt-get install -y linux-headers-{arch}, then link them:\n"
            f"sudo mkdir -p {mod} && sudo ln -sfn /usr/src/linux-headers-<ver>-{arch} {mod}/build "
            f"&& sudo ln -sfn /usr/src/linux-headers-<ver>-common {mod}/source\n"
            "(or run: sudo scripts/setup-kernel-headers.sh, which does both)")


def kernel_headers_status(release: str | None = None) -> tuple[bool, str, str]:
    release = release or platform.uname().release
    build = Path(f"/lib/modules/{release}/build")
    generated = [build / "include/generated", *build.glob("arch/*/include/generated")]
    if (build / "include").is_dir() and any(g.is_dir() for g in generated):
        return True, f"{build} -> {build.resolve()}", ""
    what = "has no generated headers" if (build / "include").is_dir() else "is missing"
    return False, f"{build}/include {what}", kernel_headers_fix(release)


def _check_root() -> Check:
    euid = os.geteuid()
    ok = euid == 0 or _has_cap_bpf()
    detail = "running as root (euid 0)" if euid == 0 else f"euid {euid}, " + (
        "CAP_BPF effective" if ok else "no CAP_BPF")
    return Check("root", ok, detail, "" if ok else _ROOT_FIX)


def _check_map(name: str, map_type: int, key: int, value: int, entries: int, fix: str) -> Check:
    attr = (ctypes.c_uint32 * 32)(map_type, key, value, entries)  # union bpf_attr, 128 bytes
    err = _try_fd("bpf", ctypes.c_int(0), attr, ctypes.c_uint(128))  # BPF_MAP_CREATE
    if not err:
        return Check(name, True, f"BPF_MAP_CREATE of map type {map_type} worked")
    return Check(name, False, f"BPF_MAP_CREATE (type {map_type}) failed: {os.strerror(err)}",
                 _ROOT_FIX if err in (errno.EPERM, errno.EACCES) else fix)


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
    path, detail, mount_fix = _find_tracefs(mount)
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
    "hardware PMU": lambda: _perf_check(
        "hardware PMU", hardware_pmu_available, "optional: run on bare metal or enable PMU "
        "passthrough in the hypervisor (e.g. QEMU -cpu host,pmu=on); ebpftoolkit uses "
        "software events instead", required=False),
    "software perf events": lambda: _perf_check(
        "software perf events", software_events_available, "use a kernel with "
        f"CONFIG_PERF_EVENTS=y; as non-root: {_ROOT_FIX}, or sysctl kernel.perf_event_paranoid=1"),
}


def check(name: str) -> Check:
    """Run one check by its name (see ``CHECKS``)."""
    return CHECKS[name]()


def doctor(file=None) -> DoctorReport:
    """Run every check, print the table to ``file`` (stdout by default), return the report."""
    report = DoctorReport([fn() for fn in CHECKS.values()])
    print(report, file=file or sys.stdout)
    return report
