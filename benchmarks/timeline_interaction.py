"""How long the interactive timeline takes per interaction on a 1M-event session.

    .venv/bin/python benchmarks/timeline_interaction.py [--events 1000000]

Builds a session from tests/data/sessions/gpu_pmu (a real recording) whose GPU
table is repeated and spread out to --events rows, then times the widget's
build, zooms, a cursor move and a reset (no browser: the time is what the kernel
spends producing the new image).  Target: <= 200 ms per interaction.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ebpftoolkit import Recording  # noqa: E402
from ebpftoolkit.views import TimelineWidget  # noqa: E402


def big_session(n: int) -> Recording:
    s = Recording.load(ROOT / "tests" / "data" / "sessions" / "gpu_pmu")
    g = s.tables["gpu"]
    big = pd.concat([g] * (n // len(g) + 1), ignore_index=True).iloc[:n].copy()
    span = (g["ts"].max() - g["ts"].min()).value * 10
    big["ts"] = g["ts"].min() + pd.to_timedelta(np.sort(np.random.default_rng(0).random(n)) * span, unit="ns")
    s.tables["gpu"] = big
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    n = ap.parse_args().events
    s = big_session(n)
    t = time.perf_counter()
    w = TimelineWidget(s)
    rows = [("build the widget", time.perf_counter() - t)]
    T = w.data.duration
    steps = [("zoom to the first half", lambda: w.zoom(0, T / 2)),
             ("zoom to 0.1% of the session", lambda: w.zoom(T / 4, T / 4 + T / 1000)),
             ("move the cursor", lambda: setattr(w.cursor, "value", T / 4 + T / 2000)),
             ("toggle a category", lambda: setattr(next(iter(w.toggles.values())), "value", False)),
             ("reset zoom", lambda: w.zoom(0, T))]
    for name, fn in steps:
        t = time.perf_counter()
        fn()
        rows.append((name, time.perf_counter() - t))
    print(f"timeline widget, session with {len(s.tables['gpu']):,} GPU calls "
          f"({'aggregated' if w.plot.aggregated else 'every call drawn'} at full view)\n")
    for name, sec in rows:
        print(f"{name:32} {sec * 1000:8.0f} ms")
    worst = max(sec for name, sec in rows[1:])
    print(f"slowest interaction: {worst * 1000:.0f} ms (target <= 200 ms)")


if __name__ == "__main__":
    main()
