"""PMU probes: perf event counters per task (PmuCounters), sampling with stacks (PmuSampler),
and simulated cache misses with cachegrind where the machine has no hardware PMU."""
from .config import PmuConfig, SamplerConfig

__all__ = ["PmuCounters", "PmuSampler", "PmuConfig", "SamplerConfig", "available_events", "simulate_cache_misses",
           "parse_cachegrind_out", "PMU_COLUMNS", "SAMPLE_COLUMNS"]

def __getattr__(name):          # the probes import the runtime: only when asked for
    if name in ("PmuCounters", "PMU_COLUMNS"):
        from . import counters as mod
    elif name in ("PmuSampler", "SAMPLE_COLUMNS"):
        from . import sampler as mod
    elif name == "available_events":
        from . import events as mod
    elif name in ("simulate_cache_misses", "parse_cachegrind_out", "CACHEGRIND_EVENTS"):
        from . import cachegrind as mod
    else:
        raise AttributeError(name)
    return getattr(mod, name)
