"""PmuCounters' and PmuSampler's configurations."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import ProbeConfigError
from ..config import ProbeConfig, bool_option, int_option, power_of_two

__all__ = ["PmuConfig", "SamplerConfig", "MAX_EVENTS", "MIN_INTERVAL_NS", "MAX_DEPTH"]

MAX_EVENTS = 8
MIN_INTERVAL_NS = 100_000        # the kernel's cpu-clock floor is 10 us; below 100 us is all overhead
MAX_DEPTH = 127                  # kernel.perf_event_max_stack's default
MIN_CLOCK_PERIOD = 10_000        # ns: the kernel's hrtimer floor for cpu-clock


def _event_names(events) -> None:
    if not isinstance(events, tuple) or not events or not all(isinstance(e, str) and e for e in events):
        raise ProbeConfigError("events must be perf event names, e.g. ['page-faults', 'context-switches']")
    if len(events) > MAX_EVENTS:
        raise ProbeConfigError(f"at most {MAX_EVENTS} events per PmuCounters, got {len(events)}")
    if len(set(events)) != len(events):
        raise ProbeConfigError(f"each event once, got {list(events)}")


@dataclass(frozen=True)
class PmuConfig(ProbeConfig):
    """``events``: perf event names (canonical); ``interval_ns``: a running task's counts are also
    charged every this many ns (None: only at context switches and exits); ``ring_pages``."""

    kind = "PmuCounters"
    events: tuple[str, ...] = ()
    interval_ns: int | None = 10_000_000
    ring_pages: int = 1024

    def __post_init__(self):
        _event_names(self.events)
        if self.interval_ns is not None:
            int_option("interval_ns", self.interval_ns, MIN_INTERVAL_NS, 10**12)
        power_of_two("ring_pages", self.ring_pages)


@dataclass(frozen=True)
class SamplerConfig(ProbeConfig):
    """``event``: the perf event sampled (canonical name); ``period``: events between samples (ns of
    CPU time for cpu-clock/task-clock); ``stacks``: record user stacks of at most ``max_depth`` frames."""

    kind = "PmuSampler"
    event: str = "cpu-clock"
    period: int = 1_000_000
    stacks: bool = False
    max_depth: int = 32
    ring_pages: int = 1024

    def __post_init__(self):
        _event_names((self.event,))
        if isinstance(self.period, bool) or not isinstance(self.period, int) or not 0 < self.period < 1 << 63:
            raise ProbeConfigError(f"period must be a positive integer (events between samples), got {self.period!r}")
        if self.event in ("cpu-clock", "task-clock") and self.period < MIN_CLOCK_PERIOD:
            raise ProbeConfigError(f"{self.event} periods are in ns and at least {MIN_CLOCK_PERIOD} (10 us), "
                                   f"got {self.period}")
        bool_option("stacks", self.stacks)
        int_option("max_depth", self.max_depth, 1, MAX_DEPTH)
        power_of_two("ring_pages", self.ring_pages)
