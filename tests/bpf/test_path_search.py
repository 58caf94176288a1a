"""A program that runs a command through a PATH search (execvp tries each directory) shows one exec
that took N tries, not N-1 failures (issue 17, item 7): the tries stay in the table, marked
path_search, and are not drawn or counted as failures; checked against strace's execve log."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from support import bpf
from ebpftoolkit import ExecSnoop, Session
from ebpftoolkit.views import render_html
from ebpftoolkit.views.model import TraceModel

CHILD = "import subprocess\nsubprocess.run(['true'])\ntry:\n    subprocess.run(['no-such-program-xyz'])\n" \
        "except FileNotFoundError:\n    pass\n"


@bpf
def test_a_path_search_is_one_exec_with_its_tries(tmp_path):
    dirs = [str(tmp_path / f"empty{i}") for i in range(3)]
    for d in dirs:
        os.mkdir(d)
    env = dict(os.environ, PATH=":".join(dirs + ["/usr/bin", "/bin"]))
    with Session(ExecSnoop(), descendants_of="command") as s:
        s.run([sys.executable, "-c", CHILD], env=env, check=True)
    ex = s.tables["exec"]
    true = ex[ex["argv"].map(lambda a: list(a) == ["true"])]
    ok = true[true["retval"] == 0]
    assert len(ok) == 1 and int(ok["attempts"].iloc[0]) == 4                 # 3 empty dirs, then /usr/bin
    tries = true[true["retval"] != 0]
    assert tries["path_search"].all() and len(tries) == 3
    assert sorted(tries["filename"]) == sorted(f"{d}/true" for d in dirs)
    missing = ex[ex["argv"].map(lambda a: list(a) == ["no-such-program-xyz"])]
    assert len(missing) >= 5 and not missing["path_search"].any()          # never found: real failures
    assert missing["attempts"].isna().all()
    # strace, an independent tool, sees the same execve calls for `true`, ENOENT for each empty directory
    log = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(log), sys.executable, "-c", CHILD],
                   env=env, check=True)
    theirs = [ln for ln in log.read_text().splitlines() if re.search(r'execve\("[^"]*/true"', ln)]
    assert sum("ENOENT" in ln for ln in theirs) == len(tries) and sum("= 0" in ln for ln in theirs) == len(ok)
    # not drawn, not counted as failures
    model = TraceModel.from_recording(s.recording)
    failed = model.instants[model.instants["name"].str.startswith("exec failed")]
    assert len(failed) == len(missing)
    html = render_html(s.recording)
    assert "PATH-search tries (not failures)" in html and "PATH search: ENOENT" in html
