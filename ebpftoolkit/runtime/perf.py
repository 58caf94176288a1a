"""Perf events: names, what this machine can count, and opening counters.

The name table follows ``perf list``: hardware events (``cycles``...), hardware
cache events (``L1-dcache-load-misses``...), software events (``page-faults``...)
and raw PMU codes ``r<hex>`` (``r01c2``: PERF_TYPE_RAW, config 0x01c2).
:func:`event_support` asks the kernel (``perf_event_open``) for each event, so it
agrees with ``perf stat -e EVENT``.
"""
from __future__ import annotations

import difflib
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import PmuUnsupportedError, ProbeConfigError
from .abi import (ATTR_DISABLED, ATTR_EXCLUDE_HV, ATTR_EXCLUDE_KERNEL, PERF_TYPE_HARDWARE, PERF_TYPE_HW_CACHE,
                  PERF_TYPE_RAW, PERF_TYPE_SOFTWARE, PerfEventAttr, perf_event_open)

__all__ = ["PerfEvent", "EVENTS", "ALIASES", "SOFTWARE_EVENTS", "resolve_event", "resolve_events", "open_counter",
           "event_support", "require_supported", "hardware_pmu_available", "software_events_available",
           "online_cpus", "possible_cpus", "CLOCK_EVENTS"]

TYPE_NAMES = {PERF_TYPE_HARDWARE: "hardware", PERF_TYPE_SOFTWARE: "software",
              PERF_TYPE_HW_CACHE: "hw_cache", PERF_TYPE_RAW: "raw"}
HARDWARE_TYPES = (PERF_TYPE_HARDWARE, PERF_TYPE_HW_CACHE, PERF_TYPE_RAW)
SOFTWARE_EVENTS = ("cpu-clock", "task-clock", "page-faults", "minor-faults", "major-faults",
                   "context-switches", "cpu-migrations")
CLOCK_EVENTS = ("cpu-clock", "task-clock")      # sample periods in ns

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
        raise ProbeConfigError(f"unknown perf event {name!r}{hint}; known: ebpftoolkit.runtime.perf.EVENTS, "
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


def open_counter(type: int, config: int, pid: int = 0, cpu: int = -1, *, disabled: bool = False,
                 exclude_kernel: bool = False) -> int:
    """Open a counting perf event and return its fd (the caller closes it); OSError on failure."""
    attr = PerfEventAttr(type=type, config=config)
    attr.flags = (ATTR_DISABLED if disabled else 0) | (ATTR_EXCLUDE_KERNEL | ATTR_EXCLUDE_HV if exclude_kernel
                                                       else 0)
    return perf_event_open(attr, pid, cpu)


_UNSUPPORTED = (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL)
_DENIED = (errno.EACCES, errno.EPERM)


def _probe(type: int, config: int) -> int:
    """0 when a disabled counter of this event opens in this process, else the errno."""
    try:
        os.close(open_counter(type, config, disabled=True))
        return 0
    except OSError as exc:
        return exc.errno or errno.EINVAL


def hardware_pmu_available() -> tuple[bool, str]:
    err = _probe(PERF_TYPE_HARDWARE, 0)      # cpu-cycles
    if not err:
        return True, "cpu-cycles counter opened"
    if err in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV):
        return False, ("hardware counters not supported: this VM exposes no virtual PMU "
                       "(hypervisor without PMU passthrough)")
    return False, f"perf_event_open(cycles) failed: {os.strerror(err)}"


def software_events_available() -> tuple[bool, str]:
    err = _probe(PERF_TYPE_SOFTWARE, 0)      # cpu-clock
    if not err:
        return True, "cpu-clock software event opened"
    return False, f"perf_event_open(cpu-clock) failed: {os.strerror(err)}"


def event_support(event: PerfEvent | str) -> tuple[bool, str]:
    """(available, reason) for counting ``event`` in this process, like ``perf stat`` would."""
    ev = resolve_event(event) if isinstance(event, str) else event
    err = _probe(ev.type, ev.config)
    if not err:
        return True, "ok"
    if err in _DENIED:          # perf falls back to user space only; so do we
        try:
            os.close(open_counter(ev.type, ev.config, disabled=True, exclude_kernel=True))
            paranoid = Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
            return True, f"user space only (perf_event_paranoid={paranoid}; root counts the kernel too)"
        except OSError as exc:
            err = exc.errno or errno.EINVAL
    why = f"perf_event_open failed: {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
    if ev.hardware and err in _UNSUPPORTED:
        why += "; " + ("this machine exposes no hardware PMU: a VM without a virtual PMU / PMU passthrough"
                       if not hardware_pmu_available()[0] else
                       "this CPU's PMU (or the hypervisor's virtual PMU) does not provide this event")
    return False, why


def require_supported(events: list[PerfEvent]) -> None:
    """Raise :class:`PmuUnsupportedError` naming every event of ``events`` this machine cannot count."""
    bad = [(ev, why) for ev in events for ok, why in [event_support(ev)] if not ok]
    if not bad:
        return
    names = ", ".join(ev.name for ev, _ in bad)
    lines = [f"cannot count {names} on this machine:"] + [f"  {ev.name}: {why}" for ev, why in bad]
    if any(ev.hardware for ev, _ in bad):
        lines.append("Fix: run on bare metal, or enable PMU passthrough in the hypervisor (QEMU/KVM: "
                     "-cpu host,pmu=on; cloud: an instance type that exposes the PMU); "
                     "`ebpftoolkit doctor` shows the 'hardware PMU' row.")
    lines.append("Alternatives here: software events (" + ", ".join(SOFTWARE_EVENTS) + "), or simulated "
                 "cache misses per function with cachegrind: "
                 "ebpftoolkit.probes.pmu.simulate_cache_misses(argv). "
                 "ebpftoolkit.probes.pmu.available_events() lists what works.")
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
