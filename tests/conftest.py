"""Shared fixtures, the test order (unit tests first), and two rules of the suite:

- BPF tests never skip in CI: CI runs as root on a BPF-capable kernel, so a skipped
  probe test there means a broken setup.  With CI set, any skip fails the run, except
  tests marked ``hardware_pmu`` (allowed only when doctor reports the hardware PMU absent).
- Nothing the toolkit loaded outlives the run: every BPF program id the toolkit loaded
  in this process (``runtime.program.LOADED_PROGRAM_IDS``) must be gone at the end.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))     # tests/support.py

from support import leftover_attachments  # noqa: E402

_skips: list[tuple[str, str]] = []
_verdict: list[str] = []
_ORDER = {"unit": 0, "bpf": 1, "e2e": 2}


def pytest_runtest_logreport(report):
    if report.skipped:
        _skips.append((report.nodeid, str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""))


def _allowed_skip(nodeid: str, items_by_id) -> bool:
    item = items_by_id.get(nodeid)
    if item is None or item.get_closest_marker("hardware_pmu") is None:
        return False
    from ebpftoolkit.runtime.perf import hardware_pmu_available
    return not hardware_pmu_available()[0]


def pytest_collection_modifyitems(session, config, items):
    """Unit tests (tests/unit: no root, fast) run first, then the BPF tests, then the front ends."""
    items.sort(key=lambda i: _ORDER.get(Path(str(i.fspath)).parent.name, 3))
    config._ebt_items = {i.nodeid: i for i in items}


def pytest_sessionfinish(session, exitstatus):
    if os.geteuid() == 0 and "ebpftoolkit.runtime.program" in sys.modules:
        left = leftover_attachments()
        if left:
            _verdict.append(f"attachments left behind after the tests: {left}")
            session.exitstatus = 1
    if not os.environ.get("CI"):
        return
    items = getattr(session.config, "_ebt_items", {})
    bad = [(n, why) for n, why in _skips if not _allowed_skip(n, items)]
    if bad:
        _verdict.append(f"CI: {len(bad)} test(s) skipped; BPF tests must run in CI (root, BPF-capable kernel):")
        _verdict.extend(f"  SKIPPED {n}: {why}" for n, why in bad)
        session.exitstatus = 1


def pytest_unconfigure(config):
    """Why the run failed although no test did: printed last, below pytest's summary, where a
    CI log's tail shows it."""
    if _verdict:
        print("\n".join(["", "the run FAILS (whatever the test counts above say):", *_verdict]), file=sys.stderr)


@pytest.fixture
def record():
    """record(argv, **probe_kw) -> (Session, CompletedProcess): trace one command from its first instruction."""
    from ebpftoolkit import ExecSnoop, Session

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
