"""Interaction times of the report's interactive timeline at 1M events, measured in headless chromium.

    .venv/bin/python benchmarks/timeline_browser.py [--events 1000000]

Writes the report of a session whose GPU table holds --events synthetic calls over 10 s (the
same shape as tests/unit/test_views.py's big session: random categories, threads, durations and
times, the hardest case for the file's size), opens it offline and times, in the page: the
decode of the packed events, then zooms from the whole recording down to 1 ms and back, a pan, and a
brush. Each time is from the range change to the second animation frame after the new glyphs were
set (so Bokeh has painted them). Printed next to the same interactions at 10k events (ratios in
this run: the machine's speed cancels). Target: interactions under 100 ms at 1M events.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "unit"), str(ROOT / "tests")]

from test_views import big_gpu_session  # noqa: E402

TIMED = """
const [a, b, done] = arguments, api = window.ebpftoolkitTimeline.last, before = api.shown().renders;
const t0 = performance.now();
api.zoom(a, b);
(function wait() {
  if (api.shown().renders === before) return requestAnimationFrame(wait);
  requestAnimationFrame(() => requestAnimationFrame(() => done([performance.now() - t0, api.shown()])));
})();
"""


def browser(tmp: Path):
    from selenium import webdriver
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for f in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1000",
              "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp / 'chromium'}"):
        opts.add_argument(f)
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))
    d.set_script_timeout(120)
    return d


def measure(n: int, tmp: Path) -> dict:
    rec = big_gpu_session(n)
    page = tmp / f"report_{n}.html"
    t = time.perf_counter()
    rec.to_html(page)
    out = {"events": n, "report MB": page.stat().st_size / 1e6, "write s": time.perf_counter() - t}
    d = browser(tmp)
    try:
        t = time.perf_counter()
        d.get(page.as_uri())
        while not d.execute_script("return !!(window.ebpftoolkitTimeline && window.ebpftoolkitTimeline.last)"):
            time.sleep(0.02)
        out["open to first draw s"] = time.perf_counter() - t
        x0, x1 = d.execute_script("return window.ebpftoolkitTimeline.last.range()")
        mid = (x0 + x1) / 2
        times, agg = [], []
        for width in [x1 - x0, 1.0, 0.1, 0.01, 0.001, 0.01, 0.1, 1.0, x1 - x0] * 3:
            ms, shown = d.execute_async_script(TIMED, mid - width / 2, mid + width / 2)
            times.append(ms)
            agg.append(shown["aggregated"])
        pans = [d.execute_async_script(TIMED, mid + k * 0.05, mid + k * 0.05 + 0.1)[0] for k in range(10)]
        t = time.perf_counter()
        d.execute_script("window.ebpftoolkitTimeline.last.brush(arguments[0], arguments[1])", mid, mid + 0.05)
        out["brush 50 ms ms"] = (time.perf_counter() - t) * 1e3
        out["zoom median ms"] = statistics.median(times)
        out["zoom max ms"] = max(times)
        out["pan median ms"] = statistics.median(pans)
        out["views aggregated"] = f"{sum(agg)}/{len(agg)}"
    finally:
        d.quit()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    n = ap.parse_args().events
    with tempfile.TemporaryDirectory() as tmp:
        small, big = measure(10_000, Path(tmp)), measure(n, Path(tmp))
    print(f"{'':24} {'10k events':>12} {f'{n} events':>16} {'ratio':>8}")
    for k in small:
        a, b = small[k], big[k]
        if isinstance(a, str):
            print(f"{k:24} {a:>12} {b:>16}")
        else:
            print(f"{k:24} {a:12.2f} {b:16.2f} {b / a if a else float('nan'):8.2f}")


if __name__ == "__main__":
    main()
