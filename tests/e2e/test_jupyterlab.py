"""The quick-start notebook in a real JupyterLab, in headless Debian chromium, as a person would use it.

Starts JupyterLab on 127.0.0.1 (no token), opens a copy of notebooks/01_quickstart.ipynb,
runs all cells from the Run menu, waits for them, checks that no cell failed and that
the %%ebpf cell's status label and interactive timeline widget rendered, and keeps
screenshots under test-artifacts/ (gitignored).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support import bpf, leftover_attachments

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency: pip install -e '.[dev]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="needs Debian's chromium and chromium-driver (scripts/setup.sh installs them)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """User settings: no news/update pop-ups, every cell in the DOM (no windowing), no autosave."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                            "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }
    for rel, data in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(data))


@pytest.fixture
def jupyterlab(tmp_path):
    """(base URL, notebook folder): JupyterLab serving a copy of the quick-start notebook."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "01_quickstart.ipynb", work)
    _settings(tmp_path / "settings")
    port = _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
         "--ServerApp.password=", f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "jupyterlab.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not start:\n" + \
                (tmp_path / "jupyterlab.log").read_text()[-3000:]
            time.sleep(0.3)
        yield base, work
    finally:
        proc.send_signal(signal.SIGTERM)         # the server shuts its kernels down
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the server we started (kernels included)
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


KERNEL_RUN = """
const code = arguments[0], done = arguments[arguments.length - 1];
const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
const f = k.requestExecute({code: code, silent: false, store_history: false});
let out = "";
f.onIOPub = m => { const t = m.header.msg_type;
  if (t === "stream") out += m.content.text;
  if (t === "error") out += "ERROR " + m.content.ename + ": " + m.content.evalue; };
f.done.then(() => done(out), e => done("ERROR " + e));
"""


def kernel(d, code: str) -> str:
    """Run code in the notebook's kernel (as a cell would, without adding one); its printed text."""
    out = d.execute_async_script(KERNEL_RUN, code)
    assert "ERROR" not in out, out
    return out


def check_interactive_timeline(d, state) -> None:
    """The notebook's `tl = traced.timeline()` cell: Bokeh drew it in the page, the mouse wheel zooms it,
    and a range brushed in the browser comes back to Python as tl.selection, row for row."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    uid = kernel(d, "print(tl.parts.uid)").strip()
    api = f"window.ebpftoolkitTimeline && window.ebpftoolkitTimeline['{uid}']"
    WebDriverWait(d, 60).until(lambda d: d.execute_script(f"return !!({api})"))
    shown = d.execute_script(f"return {api}.shown()")
    assert shown["n"] > 0 and shown["glyphs"] > 0, shown
    x0, x1 = d.execute_script(f"return {api}.range()")
    d.execute_script(f"{api}.view().el.scrollIntoView({{block: 'center'}})")
    time.sleep(0.5)
    px, py = d.execute_script(f"return {api}.pixel(arguments[0], 0.5)", (x0 + x1) / 2)
    ActionChains(d).scroll_from_origin(ScrollOrigin.from_viewport(int(px), int(py)), 0, -300).perform()
    WebDriverWait(d, 10).until(lambda d: d.execute_script(f"return {api}.range()")[1] -
                               d.execute_script(f"return {api}.range()")[0] < 0.9 * (x1 - x0))
    d.execute_script(f"{api}.zoom(arguments[0], arguments[1])", x0, x1)
    d.execute_script(f"{api}.brush(arguments[0], arguments[1])", x0 - 1, x1 + 1)
    info = d.execute_script(f"return {api}.info()")
    n = int(re.search(r"(\d+) events", info).group(1))
    assert n > 0, info

    def back(d):
        got = kernel(d, "print(len(tl.selection), len(tl.selected('exec')), "
                        "int((tl.selection['kind'] == 'exec').sum()))").split()
        return got if got and int(got[0]) == n else False
    got = WebDriverWait(d, 30, poll_frequency=1).until(back)
    assert int(got[1]) == int(got[2]) > 0, got      # the brushed execs are rows of traced.tables["exec"]
    out = d.execute_script(f"const v = {api}.view(); let e = v.el;"
                           "while (e && !(e.classList && e.classList.contains('jp-OutputArea-output')))"
                           " e = e.parentNode || e.host; return e")
    assert out is not None
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", out)
    time.sleep(0.5)
    out.screenshot(str(ARTIFACTS / "jupyterlab_timeline.png"))


CELL_STATES = """
const nb = window.jupyterapp.shell.currentWidget;
if (!nb || !nb.content || !nb.content.model) return null;
const cells = [];
for (const cell of nb.content.model.cells) {
  if (cell.type !== 'code') continue;
  cells.push({count: cell.executionCount, outputs: cell.outputs.toJSON().map(o => ({
      type: o.output_type, ename: o.ename || null, evalue: o.evalue || null,
      mimes: Object.keys(o.data || {}), text: o.text || (o.data && o.data['text/plain']) || ''}))});
}
return {cells: cells, kernel: nb.sessionContext.session && nb.sessionContext.session.kernel
        ? nb.sessionContext.session.kernel.status : null};
"""


@bpf
def test_quickstart_runs_in_jupyterlab_and_shows_the_timeline(jupyterlab, browser):
    base, work = jupyterlab
    ARTIFACTS.mkdir(exist_ok=True)
    d = browser
    d.get(f"{base}/lab/tree/01_quickstart.ipynb")
    wait = WebDriverWait(d, 120, poll_frequency=0.5)
    wait.until(lambda d: d.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                          "&& window.jupyterapp.shell.currentWidget.sessionContext)"))
    wait.until(lambda d: d.execute_script("return window.jupyterapp.shell.currentWidget.sessionContext"
                                          ".session?.kernel?.status") == "idle")

    # Run > Run All Cells, from the menu bar, as a person would
    d.find_element(By.XPATH, "//li[contains(@class,'lm-MenuBar-item')][.//div[text()='Run']]").click()
    item = WebDriverWait(d, 10).until(lambda d: d.find_element(
        By.XPATH, "//li[contains(@class,'lm-Menu-item')][.//div[contains(@class,'lm-Menu-itemLabel')]"
                  "[text()='Run All Cells']]"))
    item.click()

    def all_ran(d):
        s = d.execute_script(CELL_STATES)
        if not s or not s["cells"]:
            return False
        failed = [o for c in s["cells"] for o in c["outputs"] if o["type"] == "error"]
        if failed:
            return s              # stop waiting: report the error
        return s if all(c["count"] for c in s["cells"]) and s["kernel"] == "idle" else False

    try:
        state = WebDriverWait(d, 240, poll_frequency=1).until(all_ran)
    finally:
        d.save_screenshot(str(ARTIFACTS / "jupyterlab_quickstart_end.png"))
    errors = [(o["ename"], o["evalue"]) for c in state["cells"] for o in c["outputs"] if o["type"] == "error"]
    assert not errors, errors
    text = "\n".join(o["text"] if isinstance(o["text"], str) else "".join(o["text"])
                     for c in state["cells"] for o in c["outputs"])
    assert "ready: ebpftoolkit can run here" in text and "lost events: 0" in text
    assert re.search(r"^traced: \d+ execs?, \d+ process(?:es)? in \d+\.\d\d s", text, re.M), text   # %%ebpf's summary

    # the %%ebpf cell: its status label ended in "done:", and its timeline widget rendered a picture
    widget_mime = "application/vnd.jupyter.widget-view+json"
    magic_cell = next(c for c in state["cells"] if any((o["text"] if isinstance(o["text"], str)
                                                        else "".join(o["text"])).startswith("traced: ")
                                                       for o in c["outputs"]))
    assert sum(widget_mime in o["mimes"] for o in magic_cell["outputs"]) >= 1
    labels = d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-html")
    assert any(l.text.startswith("done after") for l in labels), [l.text for l in labels]
    assert sum(widget_mime in o["mimes"] for o in magic_cell["outputs"]) >= 2, "the %%ebpf cell showed no timeline"
    check_interactive_timeline(d, state)
    d.save_screenshot(str(ARTIFACTS / "jupyterlab_quickstart.png"))
    assert not leftover_attachments()
