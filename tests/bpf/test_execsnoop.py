"""ExecSnoop against real processes: BPF programs loaded for real, no mocks."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from support import bpf, our_bpf_programs
from ebpftoolkit import ExecSnoop, Session
from ebpftoolkit.errors import ProbeConfigError, ProbeStateError, TargetError


def rows(df, filename):
    return df[df["filename"] == filename]


@bpf
def test_process_tree_links_argv_exit_codes_lifetimes(record, tmp_exe):
    child = tmp_exe("child.sh", "#!/bin/sh\n/bin/sleep 0.2\nexit 3\n")
    s, res = record(["/bin/sh", "-c", f"{child}; /bin/true one two; exit 5"])
    assert res.returncode == 5
    df = s.tables["exec"]
    top = rows(df, "/bin/sh").iloc[0]
    assert top["argv"] == ["/bin/sh", "-c", f"{child}; /bin/true one two; exit 5"]
    assert top["retval"] == 0 and top["exit_code"] == 5 and top["ended_by"] == "exit"
    script = rows(df, str(child)).iloc[0]
    assert script["ppid"] == top["pid"]
    assert script["exit_code"] == 3
    sleep = rows(df, "/bin/sleep").iloc[0]
    assert sleep["ppid"] == script["pid"]
    assert sleep["argv"] == ["/bin/sleep", "0.2"]
    assert sleep["exit_code"] == 0 and pd.isna(sleep["exit_signal"])
    assert pd.Timedelta("0.2s") <= sleep["duration"] < pd.Timedelta("2s")
    assert sleep["lifetime"] >= sleep["duration"]
    assert script["lifetime"] >= sleep["lifetime"]
    true = rows(df, "/bin/true").iloc[0]
    assert true["argv"] == ["/bin/true", "one", "two"] and true["ppid"] == top["pid"]
    # timestamps are wall clock, in order, and inside the recording
    assert df["ts"].is_monotonic_increasing
    assert abs(top["ts"] - pd.Timestamp.now()) < pd.Timedelta("60s")
    procs = s.tables["processes"]
    assert set(procs["pid"]) >= {top["pid"], script["pid"], sleep["pid"], true["pid"]}
    assert procs.set_index("pid").loc[script["pid"], "ppid"] == top["pid"]
    assert s.lost["exec"] == 0


@bpf
def test_exit_by_signal(record):
    s, res = record(["/bin/sh", "-c", "/bin/sleep 5 & kill -KILL $!; wait"])
    sleep = rows(s.tables["exec"], "/bin/sleep")
    # the kill may land before or after the exec; when the exec happened, its end is the signal
    if len(sleep):
        assert sleep.iloc[0]["exit_signal"] == 9 and pd.isna(sleep.iloc[0]["exit_code"])
    procs = s.tables["processes"]
    assert (procs["exit_signal"] == 9).sum() == 1


@bpf
def test_awkward_argv(record):
    nonutf8 = b"caf\xe9\xff"
    argv = [b"/bin/true", b"with space", b"", nonutf8, b"tab\there"]
    s, _ = record(argv)
    r = rows(s.tables["exec"], "/bin/true").iloc[0]
    assert r["argv"][:3] == ["/bin/true", "with space", ""]
    assert os.fsencode(r["argv"][3]) == nonutf8          # surrogateescape round trip
    assert r["argv"][4] == "tab\there"
    assert not r["argv_truncated"]


@bpf
def test_thirty_arguments_truncated_by_default_and_kept_when_asked(record):
    argv = ["/bin/true"] + [f"a{i}" for i in range(29)]
    s, _ = record(argv)
    r = rows(s.tables["exec"], "/bin/true").iloc[0]
    assert r["argc"] == 20 and r["argv"] == argv[:20] and r["argv_truncated"]
    s, _ = record(argv, max_args=32)
    r = rows(s.tables["exec"], "/bin/true").iloc[0]
    assert r["argv"] == argv and not r["argv_truncated"]


@bpf
def test_four_kib_argument_truncated_and_flagged(record):
    big = "x" * 4096
    s, _ = record(["/bin/true", big, "after"])
    r = rows(s.tables["exec"], "/bin/true").iloc[0]
    assert r["argv"][1] == "x" * 127 and r["argv"][2] == "after"
    assert r["argv_truncated"]
    # exactly fitting is not truncation: 127 bytes + NUL
    s, _ = record(["/bin/true", "y" * 127])
    r = rows(s.tables["exec"], "/bin/true").iloc[0]
    assert r["argv"][1] == "y" * 127 and not r["argv_truncated"]


@bpf
def test_failed_execs_enoent_and_eacces(record, tmp_exe):
    noexec = tmp_exe("noexec", "#!/bin/sh\n", mode=0o644)
    s, _ = record([sys.executable, "-c", f"""
import os
for path in ("/nonexistent/prog", {str(noexec)!r}):
    try:
        os.execv(path, [path, "arg"])
    except OSError:
        pass
"""])
    df = s.tables["exec"]
    a = rows(df, "/nonexistent/prog").iloc[0]
    assert a["retval"] == -2 and a["error"] == "ENOENT" and a["argv"] == ["/nonexistent/prog", "arg"]
    b = rows(df, str(noexec)).iloc[0]
    assert b["retval"] == -13 and b["error"] == "EACCES"
    assert pd.isna(a["exit_code"]) and a["ended_by"] is None
    # failed_only keeps only these
    s2, _ = record(["/bin/sh", "-c", "/nonexistent/prog; /bin/true"], failed_only=True)
    assert (s2.tables["exec"]["retval"] < 0).all() and len(rows(s2.tables["exec"], "/nonexistent/prog")) == 1


@bpf
def test_burst_of_500_parallel_processes(record):
    s, _ = record(["/bin/sh", "-c", "i=0; while [ $i -lt 500 ]; do /bin/true burst $i & i=$((i+1)); done; wait"])
    df = rows(s.tables["exec"], "/bin/true")
    got = {int(a[2]) for a in df["argv"]}
    lost = s.lost["exec"]
    assert len(got) + lost >= 500
    assert got <= set(range(500))
    if lost == 0:
        assert got == set(range(500))
    assert (df["exit_code"] == 0).all() if lost == 0 else True


@bpf
def test_descendants_filter_excludes_outsiders():
    outsider = subprocess.Popen(["/bin/sh", "-c", "sleep 0.3; /bin/echo outsider-marker >/dev/null"])
    try:
        s = Session(ExecSnoop(), descendants_of="command")
        with s:
            s.run(["/bin/sh", "-c", "sleep 0.6; /bin/echo insider-marker"], capture_output=True)
        argvs = [" ".join(a) for a in s.tables["exec"]["argv"]]
        assert any("insider-marker" in a for a in argvs)
        assert not any("outsider-marker" in a for a in argvs)
    finally:
        outsider.wait()


@bpf
def test_descendants_of_pid_and_self_default():
    tree = subprocess.Popen(["/bin/sh", "-c", "read line; /bin/echo tree-$line >/dev/null"], stdin=subprocess.PIPE)
    other = subprocess.Popen(["/bin/sh", "-c", "read line; /bin/echo other-$line >/dev/null"], stdin=subprocess.PIPE)
    with ExecSnoop().start(descendants_of=tree.pid) as snoop:
        for p in (tree, other):
            p.communicate(b"go\n")
    argvs = [" ".join(a) for a in snoop.df["argv"]]
    assert "/bin/echo tree-go" in argvs and not any("other-" in a for a in argvs)
    # default: this process and its children
    with ExecSnoop() as snoop:
        subprocess.run(["/bin/true", "self-default"])
    assert ["/bin/true", "self-default"] in list(snoop.df["argv"])


@bpf
def test_uid_and_comm_filters(record):
    s, _ = record(["/bin/sh", "-c", "/bin/true a; /bin/echo b >/dev/null"], comm="^tru")
    assert set(s.tables["exec"]["comm"]) == {"true"}
    s, _ = record(["/bin/sh", "-c", "/bin/true a; setpriv --reuid=65534 /bin/true nobody"], uid=65534)
    df = s.tables["exec"]
    assert list(df["argv"]) == [["/bin/true", "nobody"]] and (df["uid"] == 65534).all()


@bpf
def test_live_dataframe_stop_keeps_data_and_cleanup():
    snoop = ExecSnoop()
    snoop.start()
    try:
        subprocess.run(["/bin/true", "live-1"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and ["/bin/true", "live-1"] not in list(snoop.df["argv"]):
            time.sleep(0.05)
        assert ["/bin/true", "live-1"] in list(snoop.df["argv"])      # read while running
        assert our_bpf_programs(), "programs should be loaded while running"
        assert "TRACEPOINT_PROBE(sched, sched_process_exec)" in snoop.source
        assert "exec_on_fork" in snoop.dump_xlated()
        subprocess.run(["/bin/true", "live-2"])
    finally:
        snoop.stop()
    assert {("live-1",), ("live-2",)} <= {tuple(a[1:]) for a in snoop.df["argv"]}
    assert snoop.lost == 0
    assert our_bpf_programs() == []
    with pytest.raises(ProbeStateError):
        snoop.stop()


@bpf
def test_keyboard_interrupt_detaches_and_keeps_data():
    s = Session(ExecSnoop())
    with pytest.raises(KeyboardInterrupt):
        with s:
            subprocess.run(["/bin/true", "before-interrupt"])
            raise KeyboardInterrupt
    assert not s.running and our_bpf_programs() == []
    assert ["/bin/true", "before-interrupt"] in list(s.tables["exec"]["argv"])


@bpf
def test_perf_buffer_transport_gives_the_same_rows(record):
    s, _ = record(["/bin/sh", "-c", "/bin/true p1; /bin/true p2"], session_kw={"transport": "perf"})
    assert s.metadata.transport == "perf"
    assert [a for a in s.tables["exec"]["argv"] if a[0] == "/bin/true"] == [["/bin/true", "p1"], ["/bin/true", "p2"]]


@bpf
def test_run_errors_are_typed():
    s = Session(ExecSnoop(), descendants_of="command")
    with s:
        with pytest.raises(TargetError, match="command not found"):
            s.run(["/definitely/not/here"])
        with pytest.raises(TargetError, match="not a string"):
            s.run("ls -l")
        ok = s.run(["/bin/true", "still-works"])
    assert ok.returncode == 0
    assert ["/bin/true", "still-works"] in list(s.tables["exec"]["argv"])


def test_bad_options_are_typed():
    with pytest.raises(ProbeConfigError):
        ExecSnoop(max_args=0)
    with pytest.raises(ProbeConfigError):
        ExecSnoop(max_arg_len="big")
    with pytest.raises(ProbeConfigError):
        ExecSnoop(comm="(")
    with pytest.raises(ProbeConfigError):
        Session()
    with pytest.raises(ProbeConfigError):
        Session(ExecSnoop(), descendants_of="everyone")
    with pytest.raises(ProbeStateError):
        ExecSnoop().df


@bpf
def test_execsnoop_and_syscall_trace_of_execve_in_one_session():
    """Both probe sys_enter_execve; one session compiles and attaches both, and they agree."""
    from ebpftoolkit import SyscallTrace
    s = Session(ExecSnoop(), SyscallTrace(["execve"], nargs=1), descendants_of="command")
    with s:
        s.run(["/bin/sh", "-c", "/bin/true a; /bin/echo b >/dev/null; /no/such/tool 2>/dev/null; exit 0"])
    execs, calls = s.tables["exec"], s.tables["syscalls"]
    assert len(execs) == 4 and (execs["retval"] == -2).sum() == 1          # sh, true, echo, the failed one
    assert len(calls) == len(execs) and set(calls["syscall"]) == {"execve"}
    assert sorted(calls["tid"]) == sorted(execs["tid"])                     # one process each, no threads
