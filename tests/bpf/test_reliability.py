"""Nothing captured is lost: hostile names, signals, bad output paths, full disks, bad options,
commands that cannot start, and what the CLI's exit status says.  Each case is run for real."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from support import bpf, our_bpf_programs
from ebpftoolkit import ExecSnoop, Recording, Session
from ebpftoolkit.errors import OutputError, ProbeConfigError, TargetError

CLI = [sys.executable, "-m", "ebpftoolkit"]


def cli(*args, **kw):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, timeout=120, **kw)


# -- text the kernel hands over ------------------------------------------------------------------------
@pytest.fixture
def hostile_names(tmp_path):
    """Scripts whose names the kernel cuts inside a multi-byte character (comm: 15 bytes) or that
    are not UTF-8 at all, and an argv with terminal control sequences."""
    names = ["aスクリプトテスト".encode(), b"bad\xff\xfename", "日本語のファイル名はとても長い".encode(), b"ctl\x1b[2Jname"]
    paths = []
    for n in names:
        p = os.path.join(os.fsencode(tmp_path), n)
        with open(p, "wb") as f:
            f.write(b"#!/bin/sh\nexit 0\n")
        os.chmod(p, 0o755)
        paths.append(p)
    return paths


@bpf
def test_names_that_are_not_utf8_survive_record_save_load_report_and_trace(hostile_names, tmp_path):
    script = b"; ".join(b"'" + p + b"' '\x1b]0;title\x07'" for p in hostile_names)
    out = tmp_path / "rec"
    res = cli("record", "--exec", "--max-arg-len", "2048", "-o", out, "--", "sh", "-c", os.fsdecode(script))
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    rec = Recording.load(out)
    ex = rec.tables["exec"]
    files = {os.fsencode(f) for f in ex["filename"]}
    assert set(hostile_names) <= files                                  # the exact bytes, back
    comms = {os.fsencode(c) for c in ex["comm"]}
    assert {os.path.basename(p)[:15] for p in hostile_names} <= comms   # cut where the kernel cut them
    argv = [os.fsencode(a) for a in ex.loc[ex["comm"] == "sh", "argv"].iloc[0]]
    assert argv[-1] == script
    # the Parquet files read as text elsewhere; the report and the trace are written and escaped
    assert cli("report", out, "-o", tmp_path / "r.html").returncode == 0
    doc = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "\x1b" not in doc and "\udcff" not in doc
    assert cli("export", out, "-o", tmp_path / "t.json").returncode == 0
    trace = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert any("bad" in json.dumps(e) for e in trace["traceEvents"])


@bpf
def test_execsnoop_escapes_control_characters_on_the_terminal(hostile_names):
    p = subprocess.Popen([*CLI, "execsnoop", "--duration", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.5)                                 # compiled and attached
    for path in hostile_names:
        subprocess.run([path, "arg\x1b[31mred\x07"], check=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err.decode(errors="replace")
    assert b"\x1b" not in out and b"\x07" not in out and b"\xff" not in out
    text = out.decode()
    assert "arg\\e[31mred\\a" in text and "bad\\xff\\xfename" in text


@bpf
def test_a_failing_live_listener_does_not_stop_the_recording():
    s = Session(ExecSnoop(), descendants_of="command")
    s.start()
    calls = []

    def broken(_probe, df):
        calls.append(len(df))
        raise RuntimeError("a bug in the listener")

    s.add_listener(broken)
    s.run(["sh", "-c", "/bin/true; sleep 0.3; /bin/true; sleep 0.3; /bin/true"])
    with pytest.warns(UserWarning, match="listener .* failed"):
        s.stop()
    ex = s.tables["exec"]
    assert (ex["filename"] == "/bin/true").sum() == 3 and len(calls) >= 1     # every exec kept
    assert any("a bug in the listener" in n for n in s.recording.metadata.notes)


# -- signals and exit statuses --------------------------------------------------------------------------
def _recorder(out: Path, *command):
    """`ebpftoolkit record` as a person's shell would start it (SIGINT not ignored)."""
    return subprocess.Popen([*CLI, "record", "--exec", "-o", str(out), "--", *command],
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_child(p: subprocess.Popen, pattern: str, timeout: float) -> int:
    """Until the recorder ``p`` has started its command and the command reached ``pattern``
    (a child of the recorder itself: the shell execs it)."""
    deadline = time.monotonic() + timeout
    while not (found := subprocess.run(["pgrep", "-P", str(p.pid), "-f", pattern], capture_output=True).stdout):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            pytest.fail(f"the recorder did not start {pattern} in {timeout} s (rc {p.wait()}): "
                        + p.communicate()[1].decode())
        time.sleep(0.1)
    return int(found.split()[0])


@bpf
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_record_saves_what_was_captured(tmp_path, sig, status):
    out = tmp_path / "rec"
    p = _recorder(out, "sh", "-c", "/bin/true first; exec sleep 60")
    child = _wait_for_child(p, "^sleep 60$", 60)
    time.sleep(0.3)
    t = time.monotonic()
    p.send_signal(sig)
    err = p.communicate(timeout=60)[1].decode()
    took = time.monotonic() - t
    assert p.returncode == status, err
    assert took < 10, took                                       # stops promptly: the command was stopped
    assert "what was captured is kept" in err
    rec = Recording.load(out)
    argvs = rec.tables["exec"]["argv"].tolist()
    assert ["/bin/true", "first"] in argvs and ["sleep", "60"] in argvs
    assert not Path(f"/proc/{child}").exists()                    # the command is not left running


@bpf
def test_a_second_ctrl_c_aborts_quickly_and_still_detaches(tmp_path):
    """Ctrl-C, then Ctrl-C again while the recorder is stopping (it is building the tables of
    thousands of execs and GPU uprobes are attached): it exits 130 at once, and nothing it
    attached stays behind (no uprobe event of its pid in tracefs, no program held by it)."""
    out = tmp_path / "rec"
    storm = "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done; exec sleep 60"
    p = subprocess.Popen([*CLI, "record", "--exec", "--gpu", "opengl", "-o", str(out), "--", "sh", "-c", storm],
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    child = _wait_for_child(p, "^sleep 60$", 120)
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1].decode()
    took = time.monotonic() - t
    assert p.returncode == 130, err
    assert took < 10, took
    assert "Traceback" not in err, err
    events = Path("/sys/kernel/tracing/uprobe_events")
    if events.exists():
        assert not [line for line in events.read_text().splitlines() if f"_{p.pid}_" in line]
    held = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True, check=True).stdout
    assert f"({p.pid})" not in held
    assert not Path(f"/proc/{child}").exists()                    # the command is not left running


@bpf
@pytest.mark.parametrize("command, status", [("exit 3", 3), ("kill -9 $$", 137), ("kill -TERM $$", 143),
                                             ("exit 0", 0)])
def test_exit_status_follows_the_traced_command(tmp_path, command, status):
    res = cli("record", "--exec", "-o", tmp_path / "r", "--", "sh", "-c", command)
    assert res.returncode == status, res.stderr.decode()
    assert Recording.load(tmp_path / "r").metadata.commands[0].returncode in (status, -(status - 128))


@bpf
def test_the_toolkits_path_search_is_not_recorded_as_failed_execs(record):
    s, res = record(["true"])                                    # a bare name: found on PATH here
    assert res.returncode == 0
    ex = s.tables["exec"]
    assert (ex["retval"] == 0).all(), ex[["filename", "retval"]]
    assert ex["filename"].tolist() == [shutil.which("true")] and ex["argv"].tolist() == [["true"]]


# -- output paths -------------------------------------------------------------------------------------
@bpf
def test_bad_output_paths_are_refused_before_tracing(tmp_path):
    existing = tmp_path / "a-file"
    existing.write_text("x")
    other = tmp_path / "not-a-recording"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for out, words in (("/proc/ebpftoolkit-test", "cannot be created there"), (existing, "not a folder"),
                       (other, "holds something else"), ("/sys/kernel/x", "may not write")):
        marker = tmp_path / "ran"
        res = cli("record", "--exec", "-o", out, "--", "sh", "-c", f"touch {marker}")
        err = res.stderr.decode()
        assert res.returncode == 1 and words in err and "Traceback" not in err, (out, err)
        assert not marker.exists()                                # nothing was traced or run
    assert existing.read_text() == "x" and (other / "keep.txt").read_text() == "mine"


@pytest.fixture
def small_disk(tmp_path):
    """A 600 kB tmpfs: a real file system that fills up."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@bpf
def test_a_full_disk_keeps_the_old_folder_and_the_cli_rescues_the_recording(record, small_disk, tmp_path):
    s, _ = record(["sh", "-c", "/bin/true"])
    first = s.save(small_disk / "rec")                           # fits
    before = sorted(p.name for p in first.iterdir())
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (600 * 1024 - sum(p.stat().st_size for p in first.iterdir()) - 8 * 4096))
    with pytest.raises(OutputError, match="No space left on device; free some space"):
        Recording(dict(s.tables, big=__import__("pandas").DataFrame({"x": range(200_000)})),
                  s.recording.metadata).save(small_disk / "rec")
    assert sorted(p.name for p in first.iterdir()) == before    # the old recording is intact
    assert [p.name for p in small_disk.iterdir() if p.name.startswith(".")] == []   # no half-written folder
    # the CLI: a recording that does not fit is saved to a temporary folder, which it names
    res = cli("record", "--exec", "-o", small_disk / "rec2", "--", "sh", "-c", "for i in $(seq 400); do /bin/true; done")
    err = res.stderr.decode()
    assert res.returncode == 1 and "No space left on device" in err and "saved to" in err, err
    rescue = Path(err.split("saved to ")[1].split(" instead")[0])
    assert len(Recording.load(rescue).tables["exec"]) >= 400
    shutil.rmtree(rescue)


@bpf
def test_a_read_only_mount_is_refused_before_tracing(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    try:
        res = cli("record", "--exec", "-o", ro / "rec", "--", "true")
        assert res.returncode == 1 and "read-only" in res.stderr.decode(), res.stderr
    finally:
        subprocess.run(["umount", str(ro)], check=True)


# -- bad options and commands: typed errors, nothing left attached ------------------------------------
def test_bad_session_options_are_typed_errors():
    with pytest.raises(ProbeConfigError, match="poll_interval"):
        Session(ExecSnoop(), poll_interval=-1)
    for pid in (-1, 0, 2**22 + 7):
        with pytest.raises(ProbeConfigError, match="descendants_of"):
            Session(ExecSnoop(), descendants_of=pid)
    with pytest.raises(ProbeConfigError, match="unknown name 'arg99'"):
        from ebpftoolkit.probes.gpu import add_call
        add_call("mylib", "f", library="/lib/x86_64-linux-gnu/libc.so.6", category="copy_h2d", size="arg99")


@bpf
def test_commands_that_cannot_start_are_typed_errors_and_detach(tmp_path):
    noshebang = tmp_path / "noshebang"
    noshebang.write_text("echo hi\n")
    noshebang.chmod(0o755)
    notexec = tmp_path / "notexec"
    notexec.write_text("#!/bin/sh\n")
    for argv, words in ((["x\0y"], "NUL"), ([str(noshebang)], "#!/bin/sh"), (["no-such-command-here"], "not found"),
                        ([str(notexec)], r"chmod \+x")):
        s = Session(ExecSnoop(), descendants_of="command")
        with pytest.raises(TargetError, match=words):
            s.run(argv)
        assert not s.running and not our_bpf_programs()           # refused before, or stopped and detached
    res = cli("record", "--exec", "--", noshebang)
    assert res.returncode == 1 and b"exec format error" in res.stderr and b"Traceback" not in res.stderr


# -- load ---------------------------------------------------------------------------------------------
@bpf
def test_whole_machine_recording_survives_an_unprivileged_users_hostile_file_names(tmp_path):
    """Root records the whole machine while another user runs programs with hostile names."""
    home = Path(tempfile.mkdtemp(prefix="ebt-hostile-"))       # under /tmp: the other user can work there
    home.chmod(0o777)
    out = tmp_path / "rec"
    p = subprocess.Popen([*CLI, "record", "--exec", "--system-wide", "--duration", "6", "-o", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(3)
    hostile = b"\xff\xfe\x1b[2J" + "スクリプト".encode()
    script = (b"cd " + os.fsencode(home) + b"; printf '#!/bin/sh\\nexit 0\\n' > '" + hostile + b"'; chmod +x '"
              + hostile + b"'; './" + hostile + b"'")
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", os.fsdecode(script)],
                   check=True)
    err = p.communicate(timeout=60)[1].decode(errors="replace")
    assert p.returncode == 0, err
    ex = Recording.load(out).tables["exec"]
    mine = ex[ex["uid"] == 65534]
    assert os.fsencode("./") + hostile in {os.fsencode(f) for f in mine["filename"]}
    shutil.rmtree(home)


@bpf
def test_exec_storm_with_a_small_ring_counts_every_loss(tmp_path):
    """About a minute at most: bursts of short processes through a 1-page ring; captured + lost = offered."""
    offered = 0
    for burst in (200, 1000, 3000):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = Session(ExecSnoop(ring_pages=1), descendants_of="command")
            with s:
                s.run(["sh", "-c", f"for i in $(seq {burst}); do /bin/true & done; wait"], timeout=120)
        ex = s.tables["exec"]
        seen = int((ex["filename"] == "/bin/true").sum())
        offered += burst
        assert seen + s.lost["exec"] >= burst, (burst, seen, s.lost)        # nothing vanished unseen
        assert seen <= burst
        if s.lost["exec"]:
            assert len(s.loss_windows) and s.loss_windows["lost"].sum() >= 1
    assert offered == 4200
