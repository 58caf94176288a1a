"""PMU probes: perf event counters per task (PmuCounters), sampling with stacks (PmuSampler),
and simulated cache misses with cachegrind where the machine has no hardware PMU."""
from .config import PmuConfig, SamplerConfig

__all__ = ["PmuCounters", "PmuSampler", "PmuConfig", "SamplerConfig", "available_events", "simulate_cache_misses",
           "parse_cachegrind_out", "PMU_COLUMNS", "SAMPLE_COLUMNS"]

_LAZY = {"PmuCounters": "counters", "PMU_COLUMNS": "counters", "PmuSampler": "sampler", "SAMPLE_COLUMNS": "sampler",
         "available_events": "events", "simulate_cache_misses": "cachegrind", "parse_cachegrind_out": "cachegrind",
         "CACHEGRIND_EVENTS": "cachegrind"}


def __getattr__(name):          # the probes import the runtime: only when asked for
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
