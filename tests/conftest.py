"""Shared fixtures, and the rule that BPF tests never skip in CI.

CI runs as root on a BPF-capable kernel, so a skipped probe test there means a
broken setup, not an unsupported machine: with CI set, any skip fails the run,
except tests marked ``hardware_pmu`` (allowed only when doctor reports the
hardware PMU absent).
"""
from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ebpftoolkit import ExecSnoop, Session

_skips: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skips.append((report.nodeid, str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""))


def _allowed_skip(nodeid: str, items_by_id) -> bool:
    item = items_by_id.get(nodeid)
    if item is None or item.get_closest_marker("hardware_pmu") is None:
        return False
    from ebpftoolkit.doctor import hardware_pmu_available
    return not hardware_pmu_available()[0]


def pytest_collection_modifyitems(session, config, items):
    config._ebt_items = {i.nodeid: i for i in items}


def leftover_attachments() -> list[str]:
    """Our BPF programs still loaded, and BCC-made uprobe/kprobe events still in tracefs."""
    left = our_bpf_programs()
    for name in ("uprobe_events", "kprobe_events"):
        f = Path("/sys/kernel/tracing") / name
        if f.exists():
            left += [l for l in f.read_text().splitlines() if "bcc_" in l]
    return left


def pytest_sessionfinish(session, exitstatus):
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.geteuid() == 0:
        left = leftover_attachments()
        if left:
            if tr:
                tr.write_line(f"attachments left behind after the tests: {left}", red=True)
            session.exitstatus = 1
    if not os.environ.get("CI"):
        return
    items = getattr(session.config, "_ebt_items", {})
    bad = [(n, why) for n, why in _skips if not _allowed_skip(n, items)]
    if bad:
        lines = ["", f"CI: {len(bad)} test(s) skipped; BPF tests must run in CI (root, BPF-capable kernel):"]
        lines += [f"  SKIPPED {n}: {why}" for n, why in bad]
        if tr:
            for line in lines:
                tr.write_line(line, red=True)
        session.exitstatus = 1


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF programs needs root")


def bpf(fn):
    """Mark a test as loading BPF for real."""
    return pytest.mark.bpf(needs_root(fn))


@pytest.fixture
def record():
    """record(argv, **probe_kw) -> (Session, CompletedProcess): trace one command from its first instruction."""

    def _record(argv, session_kw=None, **probe_kw):
        s = Session(ExecSnoop(**probe_kw), descendants_of="command", **(session_kw or {}))
        with s:
            res = s.run(argv, capture_output=True)
        return s, res

    return _record


@pytest.fixture
def tmp_exe(tmp_path):
    def _make(name: str, body: str, mode: int = 0o755) -> Path:
        p = tmp_path / name
        p.write_text(body)
        p.chmod(mode)
        return p
    return _make


def our_bpf_programs() -> list[str]:
    """Names of loaded BPF programs that belong to ebpftoolkit (bpftool's view of the kernel)."""
    out = subprocess.run([shutil.which("bpftool") or "bpftool", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    ours = ("exec_on_", "ebt_track_", "tracepoint__sy", "tracepoint__sc", "pmu_on_")
    return [line for line in out.splitlines() if any(f" name {o}" in line for o in ours)]


class HtmlTags(html.parser.HTMLParser):
    """Start tags (with attributes) and text of an HTML document, for report checks."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def own_bpf_and_perf_fds() -> list[str]:
    """BPF programs, maps and perf events this test process holds open (other processes may load theirs)."""
    kinds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("anon_inode:bpf-prog", "anon_inode:bpf-map", "anon_inode:[perf_event]")):
            kinds.append(target)
    return kinds
