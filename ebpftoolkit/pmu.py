"""Perf events: names, what this machine can count, and simulated cache misses.

The name table follows ``perf list``: hardware events (``cycles``...), hardware
cache events (``L1-dcache-load-misses``...), software events (``page-faults``...)
and raw PMU codes ``r<hex>`` (``r01c2``: PERF_TYPE_RAW, config 0x01c2).
:func:`available_events` asks the kernel (``perf_event_open``) for each, so it
agrees with ``perf stat -e EVENT``.  Where hardware counters are missing (a VM
without a virtual PMU), :func:`simulate_cache_misses` gives cachegrind's
*simulated* cache misses per function instead.  No bcc import here.
"""
from __future__ import annotations

import ctypes
import difflib
import errno
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import PmuUnsupportedError, ProbeConfigError

__all__ = ["PerfEvent", "EVENTS", "ALIASES", "resolve_event", "resolve_events", "perf_event_open",
           "event_support", "available_events", "require_supported", "online_cpus", "possible_cpus",
           "simulate_cache_misses", "parse_cachegrind_out", "CACHEGRIND_EVENTS"]

PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_HW_CACHE, PERF_TYPE_RAW = 0, 1, 3, 4
TYPE_NAMES = {PERF_TYPE_HARDWARE: "hardware", PERF_TYPE_SOFTWARE: "software",
              PERF_TYPE_HW_CACHE: "hw_cache", PERF_TYPE_RAW: "raw"}
HARDWARE_TYPES = (PERF_TYPE_HARDWARE, PERF_TYPE_HW_CACHE, PERF_TYPE_RAW)
SOFTWARE_EVENTS = ("cpu-clock", "task-clock", "page-faults", "minor-faults", "major-faults",
                   "context-switches", "cpu-migrations")

_HW = {"cycles": 0, "instructions": 1, "cache-references": 2, "cache-misses": 3, "branch-instructions": 4,
       "branch-misses": 5, "bus-cycles": 6, "stalled-cycles-frontend": 7, "stalled-cycles-backend": 8,
       "ref-cycles": 9}
_SW = {"cpu-clock": 0, "task-clock": 1, "page-faults": 2, "context-switches": 3, "cpu-migrations": 4,
       "minor-faults": 5, "major-faults": 6, "alignment-faults": 7, "emulation-faults": 8}
# hw cache events: id | op << 8 | result << 16 (perf's names, as in `perf list cache`)
_CACHES = {"L1-dcache": 0, "L1-icache": 1, "LLC": 2, "dTLB": 3, "iTLB": 4, "branch": 5, "node": 6}
_OPS = {"load": 0, "store": 1, "prefetch": 2}
_CACHE_OPS = {"L1-dcache": _OPS, "L1-icache": {"load": 0}, "LLC": _OPS, "dTLB": {"load": 0, "store": 1},
              "iTLB": {"load": 0}, "branch": {"load": 0}, "node": {"load": 0, "store": 1, "prefetch": 2}}

EVENTS: dict[str, tuple[int, int]] = {}
EVENTS.update({n: (PERF_TYPE_HARDWARE, c) for n, c in _HW.items()})
EVENTS.update({n: (PERF_TYPE_SOFTWARE, c) for n, c in _SW.items()})
for _cache, _ops in _CACHE_OPS.items():
    for _op, _opid in _ops.items():
        _base = _CACHES[_cache] | _opid << 8
        EVENTS[f"{_cache}-{_op}s"] = (PERF_TYPE_HW_CACHE, _base)
        EVENTS[f"{_cache}-{_op}-misses"] = (PERF_TYPE_HW_CACHE, _base | 1 << 16)

ALIASES = {"cpu-cycles": "cycles", "branches": "branch-instructions", "idle-cycles-frontend":
           "stalled-cycles-frontend", "idle-cycles-backend": "stalled-cycles-backend", "faults": "page-faults",
           "cs": "context-switches", "migrations": "cpu-migrations"}
_RAW = re.compile(r"^r([0-9a-fA-F]{1,16})$")


@dataclass(frozen=True)
class PerfEvent:
    name: str      # canonical perf name (or r<hex>)
    type: int      # PERF_TYPE_*
    config: int

    @property
    def kind(self) -> str:
        return TYPE_NAMES[self.type]

    @property
    def hardware(self) -> bool:
        return self.type in HARDWARE_TYPES


def resolve_event(name: str) -> PerfEvent:
    """``"cs"`` -> PerfEvent("context-switches", PERF_TYPE_SOFTWARE, 3); unknown names raise ProbeConfigError."""
    if not isinstance(name, str):
        raise ProbeConfigError(f"an event is a perf event name such as 'page-faults', got {name!r}")
    m = _RAW.match(name)
    if m:
        return PerfEvent(f"r{m[1].lower()}", PERF_TYPE_RAW, int(m[1], 16))
    canon = ALIASES.get(name, name)
    if canon not in EVENTS:
        near = difflib.get_close_matches(name, list(EVENTS) + list(ALIASES), n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ProbeConfigError(f"unknown perf event {name!r}{hint}; known: ebpftoolkit.pmu.EVENTS, "
                               "or a raw PMU code such as r01c2")
    return PerfEvent(canon, *EVENTS[canon])


def resolve_events(names) -> list[PerfEvent]:
    if isinstance(names, str):
        names = [names]
    events = [resolve_event(n) for n in names]
    if not events:
        raise ProbeConfigError("give at least one event, e.g. ['page-faults', 'context-switches']")
    dup = {e.name for e in events if sum(x.name == e.name for x in events) > 1}
    if dup:
        raise ProbeConfigError(f"each event once, got {sorted(dup)} more than once")
    return events


# -- perf_event_open ----------------------------------------------------------
class _PerfEventAttr(ctypes.Structure):   # struct perf_event_attr, PERF_ATTR_SIZE_VER8 (128 bytes)
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
                ("_rest", ctypes.c_uint8 * 64)]


_ATTR_DISABLED, _ATTR_EXCLUDE_KERNEL, _ATTR_EXCLUDE_HV = 1 << 0, 1 << 5, 1 << 6
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
_PERF_FLAG_FD_CLOEXEC = 8
_libc = None


def perf_event_open(type: int, config: int, pid: int = 0, cpu: int = -1, *, disabled: bool = False,
                    exclude_kernel: bool = False) -> int:
    """Open a counting perf event and return its fd (the caller closes it); OSError on failure."""
    global _libc
    nr = _NR_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"perf_event_open: unknown syscall number on {platform.machine()}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    attr = _PerfEventAttr(type=type, size=ctypes.sizeof(_PerfEventAttr), config=config)
    attr.flags = (_ATTR_DISABLED if disabled else 0) | (_ATTR_EXCLUDE_KERNEL | _ATTR_EXCLUDE_HV if exclude_kernel
                                                        else 0)
    fd = _libc.syscall(ctypes.c_long(nr), ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                       ctypes.c_int(-1), ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno() or errno.EINVAL
        raise OSError(err, os.strerror(err))
    return fd


_UNSUPPORTED = (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL)
_DENIED = (errno.EACCES, errno.EPERM)


def event_support(event: PerfEvent | str) -> tuple[bool, str]:
    """(available, reason) for counting ``event`` in this process, like ``perf stat`` would."""
    ev = resolve_event(event) if isinstance(event, str) else event
    try:
        os.close(perf_event_open(ev.type, ev.config, disabled=True))
        return True, "ok"
    except OSError as exc:
        first = exc
    if first.errno in _DENIED:          # perf falls back to user space only; so do we
        try:
            os.close(perf_event_open(ev.type, ev.config, disabled=True, exclude_kernel=True))
            paranoid = Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
            return True, f"user space only (perf_event_paranoid={paranoid}; root counts the kernel too)"
        except OSError as exc:
            first = exc
    name = errno.errorcode.get(first.errno, str(first.errno))
    why = f"perf_event_open failed: {name} ({first.strerror})"
    if ev.hardware and first.errno in _UNSUPPORTED:
        why += "; " + _hw_cause()
    return False, why


def _hw_cause() -> str:
    from .doctor import hardware_pmu_available
    if not hardware_pmu_available()[0]:
        return "this machine exposes no hardware PMU: a VM without a virtual PMU / PMU passthrough"
    return "this CPU's PMU (or the hypervisor's virtual PMU) does not provide this event"


def available_events(events=None) -> pd.DataFrame:
    """One row per event (all of :data:`EVENTS` by default): event, type, config, available, reason."""
    evs = [resolve_event(e) for e in events] if events is not None else [PerfEvent(n, *tc) for n, tc in EVENTS.items()]
    rows = []
    for ev in evs:
        ok, why = event_support(ev)
        rows.append((ev.name, ev.kind, ev.config, ok, why))
    return pd.DataFrame(rows, columns=["event", "type", "config", "available", "reason"])


def require_supported(events: list[PerfEvent]) -> None:
    """Raise :class:`PmuUnsupportedError` naming every event of ``events`` this machine cannot count."""
    bad = [(ev, why) for ev in events for ok, why in [event_support(ev)] if not ok]
    if not bad:
        return
    names = ", ".join(ev.name for ev, _ in bad)
    hw = [ev for ev, _ in bad if ev.hardware]
    lines = [f"cannot count {names} on this machine:"] + [f"  {ev.name}: {why}" for ev, why in bad]
    if hw:
        lines.append("Fix: run on bare metal, or enable PMU passthrough in the hypervisor (QEMU/KVM: "
                     "-cpu host,pmu=on; cloud: an instance type that exposes the PMU); "
                     "`ebpftoolkit doctor` shows the 'hardware PMU' row.")
    lines.append("Alternatives here: software events (" + ", ".join(SOFTWARE_EVENTS) + "), or simulated "
                 "cache misses per function with cachegrind: PmuCounters.cachegrind(argv) / "
                 "ebpftoolkit.pmu.simulate_cache_misses(argv). ebpftoolkit.pmu.available_events() lists "
                 "what works.")
    raise PmuUnsupportedError("\n".join(lines), [ev.name for ev, _ in bad])


def _cpu_list(path: str) -> list[int]:
    cpus = []
    for part in Path(path).read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def online_cpus() -> list[int]:
    return _cpu_list("/sys/devices/system/cpu/online")


def possible_cpus() -> list[int]:
    return _cpu_list("/sys/devices/system/cpu/possible")


# -- cachegrind ---------------------------------------------------------------
CACHEGRIND_EVENTS = ["Ir", "I1mr", "ILmr", "Dr", "D1mr", "DLmr", "Dw", "D1mw", "DLmw"]


def simulate_cache_misses(argv, *, cwd=None, timeout: float | None = None, cache_options=(),
                          out_file=None) -> pd.DataFrame:
    """Run ``argv`` under valgrind's cachegrind and return *simulated* cache counts per function.

    Columns: source ("cachegrind"), file, function, then Ir, I1mr, ILmr (instruction reads, L1 and
    last-level misses), Dr, D1mr, DLmr (data reads), Dw, D1mw, DLmw (data writes).  These come from
    valgrind's cache model, not from hardware counters: ``df.attrs`` holds the simulated cache
    geometry (``desc``), the command, valgrind's stderr and the return code.  ``cache_options``:
    extra cachegrind flags such as ``["--D1=32768,8,64", "--LL=8388608,16,64"]``.
    """
    import shutil
    import subprocess
    import tempfile
    from .errors import TargetError
    if isinstance(argv, (str, bytes)) or not argv:
        raise TargetError("argv must be a non-empty list such as ['./prog', 'arg'] (not a string)")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        from .errors import ValgrindMissingError
        raise ValgrindMissingError("valgrind is not installed, and simulated cache misses need its cachegrind "
                                   "tool: apt-get install -y valgrind (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="ebt-cachegrind-") as tmp:
        out = Path(out_file) if out_file is not None else Path(tmp) / "cachegrind.out"
        cmd = [valgrind, "--tool=cachegrind", "--cache-sim=yes", f"--cachegrind-out-file={out}",
               *cache_options, "--", *map(os.fsdecode, argv)]
        try:
            res = subprocess.run(cmd, cwd=cwd, timeout=timeout, capture_output=True, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            raise TargetError(f"{argv[0]!r} under cachegrind ran past timeout={timeout}s (cachegrind slows "
                              "programs 20-100x: raise the timeout or shorten the run)") from None
        if not out.is_file():
            raise TargetError(f"cachegrind wrote no results for {argv[0]!r} (exit {res.returncode}):\n"
                              f"{res.stderr[-2000:]}")
        df = parse_cachegrind_out(out)
    df.attrs.update(returncode=res.returncode, stderr=res.stderr)
    return df


def parse_cachegrind_out(path) -> pd.DataFrame:
    """A cachegrind output file -> one row per (file, function), counts summed over source lines."""
    attrs = {"simulated": True, "desc": [], "cmd": None}
    events: list[str] | None = None
    totals: dict[tuple[str, str], list[int]] = {}
    fl = fn = "???"
    cur = None
    with open(path, errors="replace") as f:
        for line in f:
            if line[:1].isdigit():
                if cur is None:
                    raise ProbeConfigError(f"{path}: a count line before any fn= line; not a cachegrind file?")
                counts = line.split()[1:]
                for i, c in enumerate(counts):
                    cur[i] += int(c)
            elif line.startswith("fn="):
                fn = line[3:].rstrip("\n")
                cur = totals.setdefault((fl, fn), [0] * len(events or CACHEGRIND_EVENTS))
            elif line.startswith("fl="):
                fl = line[3:].rstrip("\n")
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("desc:"):
                attrs["desc"].append(line[5:].strip())
            elif line.startswith("cmd:"):
                attrs["cmd"] = line[4:].strip()
    if events is None:
        raise ProbeConfigError(f"{path} has no 'events:' line: not a cachegrind output file")
    missing = [e for e in CACHEGRIND_EVENTS if e not in events]
    if missing:
        raise ProbeConfigError(f"{path} lacks {missing}: run cachegrind with --cache-sim=yes")
    rows = [(fl_, fn_, *vals) for (fl_, fn_), vals in totals.items()]
    df = pd.DataFrame(rows, columns=["file", "function", *events])
    df.insert(0, "source", "cachegrind")
    df = df[["source", "file", "function", *CACHEGRIND_EVENTS]].astype({e: "int64" for e in CACHEGRIND_EVENTS})
    df = df.sort_values("Ir", ascending=False, kind="stable").reset_index(drop=True)
    df.attrs.update(attrs)
    return df
