"""Save/load round trips, the CLI, and packaging of the BPF sources."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from support import bpf
from ebpftoolkit import Session
from ebpftoolkit.errors import SessionLoadError

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ebpftoolkit"]


@bpf
def test_save_load_same_tables_and_dtypes(record, tmp_path):
    s, _ = record([b"/bin/sh", b"-c", b"/bin/true caf\xe9 'a b'; exit 2"])
    out = s.save(tmp_path / "run")
    assert (out / "metadata.json").is_file() and (out / "exec.parquet").is_file()
    back = Session.load(out)
    for name, df in s.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], df, check_dtype=True)
    assert back.lost == s.lost
    assert back.metadata.kernel == os.uname().release
    assert back.metadata.commands[0].returncode == 2
    kinds = {a.mechanism for a in back.metadata.attachments}
    assert kinds == {"tracepoint", "raw tracepoint"}       # no kprobes anywhere
    true = back.tables["exec"][back.tables["exec"]["filename"] == "/bin/true"].iloc[0]
    assert os.fsencode(true["argv"][1]) == b"caf\xe9"


def test_load_errors_are_typed(tmp_path):
    with pytest.raises(SessionLoadError, match="not a saved recording"):
        Session.load(tmp_path)
    (tmp_path / "metadata.json").write_text("{broken")
    with pytest.raises(SessionLoadError, match="damaged"):
        Session.load(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"format_version": 1, "tables": ["exec"], "codecs": {},
                                                        "metadata": {}, "lost": {}}))
    with pytest.raises(SessionLoadError, match="missing"):
        Session.load(tmp_path)


@bpf
def test_cli_record_writes_a_session(tmp_path):
    out = tmp_path / "build"
    res = subprocess.run(CLI + ["record", "--exec", "-o", str(out), "--", "/bin/sh", "-c", "/bin/true cli; exit 4"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 4, res.stderr           # the command's own exit code
    assert "Tracing" in res.stderr and f"session written to {out}" in res.stdout
    df = Session.load(out).tables["exec"]
    assert ["/bin/true", "cli"] in list(df["argv"])


@bpf
def test_cli_ebpf_flag_prints_the_program():
    res = subprocess.run(CLI + ["record", "--ebpf", "--", "true"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    assert "TRACEPOINT_PROBE(syscalls, sys_enter_execve)" in res.stdout
    assert "KPROBE" not in res.stdout and "kprobe__" not in res.stdout and "attach_kprobe" not in res.stdout


@bpf
def test_cli_execsnoop_live_lines(tmp_path):
    p = subprocess.Popen(CLI + ["execsnoop", "--duration", "8", "-o", str(tmp_path / "snoop")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait for the startup line, then start a process elsewhere on the machine
        line = p.stderr.readline()
        assert line.startswith("Tracing execs"), line
        subprocess.run(["/bin/sh", "-c", "/bin/true cli-execsnoop-marker"])
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    lines = [l for l in out.splitlines() if "cli-execsnoop-marker" in l]
    assert any(l.split()[1] == "true" for l in lines), out
    assert "lost events: 0" in err
    assert ["/bin/true", "cli-execsnoop-marker"] in list(Session.load(tmp_path / "snoop").tables["exec"]["argv"])


def test_cli_bad_input():
    res = subprocess.run(CLI + ["frobnicate"], capture_output=True, text=True)
    assert res.returncode == 2 and "usage" in res.stderr
    res = subprocess.run(CLI + ["record", "--exec"], capture_output=True, text=True)
    assert res.returncode != 0 and "give a command" in res.stderr


def test_wheel_ships_bpf_sources(tmp_path):
    res = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    wheel = next(tmp_path.glob("ebpftoolkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "ebpftoolkit").rglob("*.bpf.c")}
    assert len(sources) >= 5 and sources <= set(names), sources - set(names)     # every probe's BPF C
    assert "ebpftoolkit/bpf_src/common.h" in names and "ebpftoolkit/views/templates/report.html.j2" in names
