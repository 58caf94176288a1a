"""What both flavours of custom probe say and check when they attach: one wording, one check."""
from __future__ import annotations

from ...errors import PmuUnsupportedError
from ...runtime.perf import PerfEvent, event_support, resolve_event

__all__ = ["UPROBE_HINT", "supported_event"]

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
