"""Which perf events this machine can count (the kernel is asked, as ``perf stat`` would)."""
from __future__ import annotations

import pandas as pd

from ...runtime.perf import EVENTS, PerfEvent, event_support, resolve_event

__all__ = ["available_events"]


def available_events(events=None) -> pd.DataFrame:
    """One row per event (every known event by default): event, type, config, available, reason."""
    evs = [resolve_event(e) for e in events] if events is not None else [PerfEvent(n, *tc) for n, tc in EVENTS.items()]
    rows = [(ev.name, ev.kind, ev.config, *event_support(ev)) for ev in evs]
    return pd.DataFrame(rows, columns=["event", "type", "config", "available", "reason"])
