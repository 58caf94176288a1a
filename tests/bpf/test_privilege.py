"""One privilege check: a real unprivileged user, created here, with and without the
capabilities; doctor and the loader must agree, and with the capabilities a recording works."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support import bpf

USER = "ebt-unpriv"
CAPS = "+bpf,+perfmon,+dac_read_search"
DOCTOR_AND_LOAD = """
import json
from ebpftoolkit.doctor import check
from ebpftoolkit import ExecSnoop
c = check("root")
try:
    p = ExecSnoop(); p.start(); p.stop(); loaded = "loaded"
except Exception as e:
    loaded = type(e).__name__ + ": " + str(e)
print(json.dumps({"doctor": c.ok, "detail": c.detail, "load": loaded}))
"""


@pytest.fixture(scope="module")
def user():
    """A real user with no privileges (made with useradd, removed afterwards) and a home it owns."""
    if not shutil.which("setpriv") or not shutil.which("useradd"):
        pytest.fail("setpriv and useradd (util-linux, passwd) are part of Debian's base system: the setup is broken")
    made = False
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        pw, made = pwd.getpwnam(USER), True
    home = Path(tempfile.mkdtemp(prefix="ebt-home-"))     # pytest's own tmp folders are root-only (0700)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    yield pw, home
    shutil.rmtree(home, ignore_errors=True)
    if made:
        subprocess.run(["userdel", USER], check=False)


def _as(user, argv, caps: bool, timeout=180):
    pw, home = user
    drop = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]
    if caps:
        drop += [f"--inh-caps={CAPS}", f"--ambient-caps={CAPS}"]
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    return subprocess.run(drop + argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=home)


@bpf
def test_without_capabilities_doctor_and_loader_both_refuse(user):
    res = _as(user, [sys.executable, "-c", DOCTOR_AND_LOAD], caps=False)
    out = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else pytest.fail(res.stderr)
    assert out["doctor"] is False and "not root" in out["detail"], out
    assert out["load"].startswith("NotRootError:") and "setpriv" in out["load"] and "CAP_BPF" in out["load"], out
    rec = _as(user, [sys.executable, "-m", "ebpftoolkit", "record", "--exec", "-o", str(user[1] / "r"), "--", "true"],
              caps=False)
    assert rec.returncode == 1 and "CAP_BPF" in rec.stderr and "Traceback" not in rec.stderr, rec.stderr
    assert not (user[1] / "r").exists()


@bpf
def test_with_capabilities_doctor_agrees_and_a_recording_works(user):
    res = _as(user, [sys.executable, "-c", DOCTOR_AND_LOAD], caps=True)
    out = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else pytest.fail(res.stderr)
    assert out == {"doctor": True, "detail": out["detail"], "load": "loaded"}, (out, res.stderr)
    assert "CAP_BPF" in out["detail"] and "CAP_PERFMON" in out["detail"]

    home = user[1]
    rec = _as(user, [sys.executable, "-m", "ebpftoolkit", "record", "--exec", "-o", str(home / "r"), "--",
                     "/bin/sh", "-c", "/bin/echo from-the-user; /bin/true"], caps=True)
    assert rec.returncode == 0, rec.stderr
    assert "from-the-user" in rec.stdout
    from ebpftoolkit import Recording
    ex = Recording.load(home / "r").tables["exec"]
    assert {"/bin/echo", "/bin/true"} <= set(ex["filename"]), ex[["filename", "argv"]]
    assert set(ex["uid"]) == {user[0].pw_uid}
