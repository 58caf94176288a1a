"""What one traced call costs on this machine: the costs ``ebpftoolkit calibrate``
(calibration.py) measured, cached per kernel and CPU model, or, where nothing was measured
yet, the estimates this project measured on its own VM, said to be estimates; and what the
tracing cost a recording's calls (calls x their attach point's cost).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from pathlib import Path

from ...runtime.cache import cache_dir

__all__ = ["costs", "tracing_cost_ms", "cache_file", "cpu_model", "ESTIMATES", "CALIBRATION_API"]

# on the project's VM (kernel 6.18, benchmarks/gpu_overhead.py part 0), used until measured here
ESTIMATES = {"emulated_us": 1.8, "single_stepped_us": 14.8, "return_us": 0.8}
CALIBRATION_API = "ebt_calibration"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def cache_file() -> Path:
    key = hashlib.sha256(f"{os.uname().release}|{os.uname().version}|{cpu_model()}".encode()).hexdigest()[:16]
    return cache_dir() / "calibration" / f"gpu-{key}.json"


def costs() -> dict:
    """The cost per call (us) of an emulated and a single-stepped attach point and of a return probe:
    measured here (``source``: "measured on ...") or the project's estimates (``source``: "estimated").
    Read again only when the cached file changes (every attach point's overhead() row asks)."""
    path = cache_file()
    try:
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (str(path), None, None)
    return dict(_read(stamp))


@functools.lru_cache(maxsize=4)
def _read(stamp) -> dict:
    try:
        measured = json.loads(Path(stamp[0]).read_text())
        if all(isinstance(measured.get(k), (int, float)) for k in ESTIMATES):
            return measured
    except (OSError, ValueError):
        pass
    return dict(ESTIMATES, source="estimated (not measured on this machine yet: run `ebpftoolkit calibrate`)")


def tracing_cost_ms(rows: list[dict], entries: dict[int, int]) -> float:
    """What the tracing itself cost the traced processes: calls per attach point (``entries``: point
    index -> entry records) times that point's cost per call (``rows``: GpuTrace.overhead() records)."""
    return round(sum(n * float(rows[i]["cost_per_call_us"]) for i, n in entries.items() if i < len(rows)) / 1e3, 3)
