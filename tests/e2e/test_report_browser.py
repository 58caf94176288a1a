"""The HTML report in a real browser: headless Debian chromium, offline.

Screenshots and the reports themselves are kept in test-artifacts/ (gitignored).
Chromium is told to resolve no host at all, so a report that needed the network
would show holes; the DOM is dumped after loading to check figures and escaping.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from support import HtmlTags  # noqa: E402

from ebpftoolkit import Session  # noqa: E402
from ebpftoolkit.views import render_html  # noqa: E402

ROOT = Path(__file__).parents[2]
DATA = Path(__file__).parents[1] / "data" / "sessions"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
XSS = "<script>alert(1)</script>"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)})


def dump_dom(tmp_path: Path, page: Path) -> HtmlTags:
    res = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert res.returncode == 0 and "<body" in res.stdout, res.stderr[-2000:]
    dom = HtmlTags()
    dom.feed(res.stdout)
    return dom


def screenshot(tmp_path: Path, page: Path, png: Path, height: int = 4000) -> Image.Image:
    png.unlink(missing_ok=True)
    res = chromium(tmp_path, f"--screenshot={png}", f"--window-size=1280,{height}", page.as_uri())
    assert res.returncode == 0 and png.is_file(), res.stderr[-2000:]
    return Image.open(png).convert("RGB")


def report(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / f"report_{name}.html"
    render_html(Session.load(DATA / name), out)
    return out


def test_report_renders_in_chromium(tmp_path):
    page = report("gpu_pmu")
    dom = dump_dom(tmp_path, page)
    imgs = [a for t, a in dom.tags if t == "img"]
    assert len(imgs) >= 6 and all(a["src"].startswith("data:image/") for a in imgs)
    assert not [t for t, _a in dom.tags if t in ("link", "iframe")]
    assert not [a for t, a in dom.tags if t == "script" and "src" in a]    # the timeline's scripts are inline
    for tag, attrs in dom.tags:                          # nothing that could load from elsewhere
        for k in ("src", "href"):
            assert k not in attrs or attrs[k].startswith(("data:", "#")), (tag, attrs[k][:80])
    assert "Environment and probe mechanisms" in dom.text and "Timeline" in dom.text
    img = screenshot(tmp_path, page, ARTIFACTS / "report_gpu_pmu.png")
    assert img.size == (1280, 4000)
    px = np.asarray(img, dtype=np.int16)
    assert px.std() > 20                                  # not blank
    assert (px.min(axis=2) < 200).mean() > 0.03           # a fair share of the page is drawn on
    # the figures were decoded and painted: the timeline's grey lifetime bars and blue draw calls are on screen
    grey = (np.abs(px - [176, 176, 176]).max(axis=2) <= 3).sum()
    blue = (np.abs(px - [31, 119, 180]).max(axis=2) <= 6).sum()
    assert grey > 2000 and blue > 50, (grey, blue)


def test_report_shows_traced_html_as_text_in_chromium(tmp_path):
    page = report("xss")
    dom = dump_dom(tmp_path, page)
    assert not [a for t, a in dom.tags if t == "script" and "src" in a]    # only the timeline's inline scripts
    assert not [a for t, a in dom.tags if t == "img" and a.get("src", "").startswith("x")]   # no <img src=x>
    assert any(XSS in c for c in dom.text)               # the name appears as text
    assert any("<img src=x onerror=alert(2)>" in c for c in dom.text)
    img = screenshot(tmp_path, page, ARTIFACTS / "report_xss.png", height=2400)
    assert np.asarray(img).std() > 20


def test_lost_events_banner_is_visible_in_chromium(tmp_path):
    page = report("lossy")
    dom = dump_dom(tmp_path, page)
    assert any(a.get("id") == "lost-alert" for _t, a in dom.tags)
    img = screenshot(tmp_path, page, ARTIFACTS / "report_lossy.png", height=1200)
    px = np.asarray(img, dtype=np.int16)[:600]
    red_bg = (np.abs(px - [253, 236, 234]).max(axis=2) <= 3).sum()   # the banner's background, near the top
    assert red_bg > 20_000, red_bg
