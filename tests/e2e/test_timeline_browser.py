"""The report's interactive timeline in headless Debian chromium, driven as a person would: the mouse
wheel zooms, a drag pans, hovering a call shows its tooltip, a brushed range lists its calls (the
same calls the recording's table has there), the Answers section's links move the timeline, and a
1M-call report decodes and switches from time bins to single calls as one zooms in."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from ebpftoolkit import Recording
from ebpftoolkit.views.timeline_pack import pack_timeline

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "sessions"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency: pip install -e '.[dev]'")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

API = "window.ebpftoolkitTimeline.last"
TOOLTIPS = """
const out = [];
function walk(root) { for (const el of root.querySelectorAll('*')) { if (el.shadowRoot) walk(el.shadowRoot);
  if (typeof el.className === 'string' && el.className.includes('bk-tooltip-content') && el.offsetParent !== null)
    out.push(el.innerText); } }
walk(document); return out;"""


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1300,1100"):
        opts.add_argument(flag)
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    d.set_script_timeout(60)
    try:
        yield d
    finally:
        d.quit()


def open_report(d, path: Path) -> None:
    d.get(path.as_uri())
    WebDriverWait(d, 60, poll_frequency=0.2).until(
        lambda d: d.execute_script("return !!(window.ebpftoolkitTimeline && window.ebpftoolkitTimeline.last"
                                   " && window.ebpftoolkitTimeline.last.shown())"))
    d.execute_script(f"{API}.view().el.scrollIntoView({{block: 'center'}})")
    time.sleep(0.3)


def rng(d):
    return d.execute_script(f"return {API}.range()")


def pointer(d, x, y):
    a = ActionChains(d)
    a.w3c_actions.pointer_action.move_to_location(int(x), int(y))
    return a


def test_report_timeline_zooms_pans_hovers_and_brushes(browser, tmp_path):
    d = browser
    rec = Recording.load(DATA / "gpu_pmu")
    page = tmp_path / "report.html"
    rec.to_html(page)
    open_report(d, page)
    assert d.execute_script("return !!document.querySelector('#timeline #timeline-view')")
    p = pack_timeline(rec)
    x0, x1 = rng(d)
    assert x0 == 0 and abs(x1 - p.duration_ns / 1e9) < 1e-9

    # wheel: zooms in around the pointer
    px, py = d.execute_script(f"return {API}.pixel(arguments[0], 1.5)", (x0 + x1) / 2)
    ActionChains(d).scroll_from_origin(ScrollOrigin.from_viewport(int(px), int(py)), 0, -400).perform()
    WebDriverWait(d, 10).until(lambda d: rng(d)[1] - rng(d)[0] < 0.8 * (x1 - x0))
    z0, z1 = rng(d)
    assert z0 < (x0 + x1) / 2 < z1

    # drag to the left: the view moves later in time, same width
    a = pointer(d, px, py)
    a.w3c_actions.pointer_action.pointer_down()
    a.w3c_actions.pointer_action.move_to_location(int(px) - 150, int(py))
    a.w3c_actions.pointer_action.pointer_up()
    a.perform()
    WebDriverWait(d, 10).until(lambda d: rng(d)[0] > z0)
    m0, m1 = rng(d)
    assert m1 - m0 == pytest.approx(z1 - z0, rel=1e-6)
    shown = d.execute_script(f"return {API}.shown()")
    assert shown["a"] == pytest.approx(m0) and shown["b"] == pytest.approx(m1)    # redrawn for the new range

    # hover: the longest call of the recording, zoomed to, shows its tooltip
    g = rec.tables["gpu"]
    c = g[g["duration_ns"].notna()].sort_values("duration_ns").iloc[-1]
    row = next(i for i, r in enumerate(p.rows)
               if r["pid"] == c["pid"] and r["tid"] == c["tid"] and r["what"] == c["category"])
    s = (c["ts"].value - p.t0_ns) / 1e9
    e = s + c["duration_ns"] / 1e9
    d.execute_script(f"{API}.zoom(arguments[0], arguments[1])", s, e)
    WebDriverWait(d, 10).until(lambda d: d.execute_script(f"return {API}.shown()")["b"] < e + (e - s))
    hx, hy = d.execute_script(f"return {API}.pixel(arguments[0], arguments[1])", (s + e) / 2, row + 0.5)
    pointer(d, hx, hy).perform()
    tips = WebDriverWait(d, 10).until(lambda d: d.execute_script(TOOLTIPS))
    assert any(c["call"] in t and c["category"] in t and str(c["pid"]) in t for t in tips), tips
    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / "report_timeline_hover.png"))

    # brush: the listing counts the calls the table has in that range, by category
    b0, b1 = s - 0.002, e + 0.002
    d.execute_script(f"{API}.brush(arguments[0], arguments[1])", b0, b1)
    info = d.execute_script(f"return {API}.info()")
    t = (g["ts"] - pd_ts(p.t0_ns)).dt.total_seconds()
    end = t + g["duration_ns"].fillna(0) / 1e9
    inside = g[(t <= b1) & (end >= b0)]
    for cat, n in inside["category"].value_counts().items():
        assert f"{cat} {n}" in info, (cat, n, info[:400])

    # a link of the Answers section moves the timeline to its call
    link = d.execute_script("return document.querySelector('a.tl-zoom')")
    assert link is not None
    start_ns, end_ns = (int(link.get_attribute(k)) for k in ("data-start-ns", "data-end-ns"))
    d.execute_script("arguments[0].click()", link)
    WebDriverWait(d, 10).until(lambda d: abs(rng(d)[0] - rng(d)[1]) < 2 * (end_ns - start_ns) / 1e9)
    a0, a1 = rng(d)
    assert a0 <= (start_ns - p.t0_ns) / 1e9 and a1 >= (end_ns - p.t0_ns) / 1e9
    assert not [m for m in d.get_log("browser") if m["level"] == "SEVERE"]


def pd_ts(ns):
    import pandas as pd
    return pd.Timestamp(ns)


def test_million_call_report_aggregates_then_shows_single_calls(browser, tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from test_views import big_gpu_session
    rec = big_gpu_session()
    page = tmp_path / "big.html"
    rec.to_html(page)
    size = page.stat().st_size
    print(f"\n1M-call report: {size / 1e6:.2f} MB")
    assert size <= 5_000_000
    d = browser
    open_report(d, page)
    shown = d.execute_script(f"return {API}.shown()")
    assert shown["aggregated"] and shown["n"] >= 1_000_000 and 0 < shown["glyphs"] < 20_000, shown
    x0, x1 = rng(d)
    d.execute_script(f"{API}.zoom(arguments[0], arguments[1])", x0 + 1.0, x0 + 1.02)
    WebDriverWait(d, 10).until(lambda d: not d.execute_script(f"return {API}.shown()")["aggregated"])
    shown = d.execute_script(f"return {API}.shown()")
    g = rec.tables["gpu"]
    t = (g["ts"] - pd_ts(pack_timeline_t0(rec))).dt.total_seconds().to_numpy()
    end = t + g["duration_ns"].fillna(0).to_numpy(float) / 1e9
    # above 250k events starts are kept to 64 ns and durations to 0.3 %: calls that close to an edge may go
    # either way
    slack = 64e-9 + 0.003 * (end - t)
    sure = int(((t <= shown["b"] - slack) & (end >= shown["a"] + slack)).sum())
    maybe = int(((t <= shown["b"] + slack) & (end >= shown["a"] - slack)).sum())
    # every call in view is drawn on its own (the process's lifetime bar and frame spans besides)
    assert sure <= shown["kinds"]["call"] <= maybe and shown["glyphs"] == shown["n"], (shown, sure, maybe)
    assert maybe - sure < 0.05 * sure
    assert re.search(r"\d+ events in view", d.execute_script(f"return {API}.info() + ' ' + "
                                                              "document.querySelector('.tl-readout').innerText"))
    d.save_screenshot(str(ARTIFACTS / "report_timeline_1m.png"))


def pack_timeline_t0(rec) -> int:
    from ebpftoolkit.views.model import span_ns
    return span_ns(rec)[0]
