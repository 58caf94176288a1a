"""What both flavours of custom probe say and check when they attach: one wording, one check."""
from __future__ import annotations

from ...errors import PmuUnsupportedError
from ...runtime.perf import PerfEvent, event_support, resolve_event

__all__ = ["UPROBE_HINT", "supported_event", "attach_configured"]

UPROBE_HINT = ("The library is a name as `ldconfig -p` lists it ('c' for libc) or a path, and the symbol must be "
               "in its symbol table (`nm -D FILE`)")


def supported_event(probe: str, fn: str, event: str) -> PerfEvent:
    """The perf event ``event`` for ``fn``, or PmuUnsupportedError saying what works here instead."""
    ev = resolve_event(event)
    ok, reason = event_support(ev)
    if not ok:
        raise PmuUnsupportedError(f"custom probe {probe}: perf event {ev.name} for {fn}: {reason}. Software events "
                                  "(cpu-clock, task-clock, page-faults) work everywhere; see "
                                  "ebpftoolkit.probes.pmu.available_events()", [ev.name])
    return ev


def attach_configured(module, program) -> None:
    """What the probe's configuration names (uprobes, uretprobes, perf events), through ``module``'s
    ``_uprobe(program, fn, target, ret)`` and ``_perf_event(program, fn, event, period)``: BCC or libbpf."""
    c = module.config
    for fn, target in c.uprobes:
        module._uprobe(program, fn, target, False)
    for fn, target in c.uretprobes:
        module._uprobe(program, fn, target, True)
    for fn, event, period in c.perf_events:
        module._perf_event(program, fn, event, period)
