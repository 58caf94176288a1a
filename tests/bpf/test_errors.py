"""Typed errors a user can hit, provoked for real."""
from __future__ import annotations

import subprocess
import sys


from support import bpf

PY = [sys.executable, "-c"]
TRY_START = """
from ebpftoolkit import ExecSnoop
try:
    ExecSnoop().start()
except Exception as e:
    print(type(e).__name__ + ": " + str(e))
"""


def test_not_root_says_how_to_fix():
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *PY, TRY_START],
                         capture_output=True, text=True, timeout=60)
    assert res.stdout.startswith("NotRootError:"), res.stdout + res.stderr
    assert "sudo" in res.stdout and "CAP_BPF" in res.stdout


@bpf
def test_missing_kernel_headers_is_a_typed_error():
    # hide /lib/modules in a private mount namespace: BCC then finds no headers
    script = f"mount -t tmpfs none /lib/modules && exec {sys.executable} -c '{TRY_START}'"
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("KernelHeadersError:"), res.stdout + res.stderr
    assert "ebpftoolkit doctor" in res.stdout and "setup-kernel-headers.sh" in res.stdout


@bpf
def test_session_cli_reports_typed_errors_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ebpftoolkit", "record", "-o", str(tmp_path / "x"), "--",
                          "/no/such/program"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "ebpftoolkit: error: command not found" in res.stderr and "Traceback" not in res.stderr


@bpf
def test_verifier_rejection_is_a_compile_error_not_a_root_error():
    """The verifier answers EACCES ("Permission denied"); as root that is a rejected program."""
    import pytest
    from ebpftoolkit.errors import NotRootError, ProbeCompileError
    from ebpftoolkit.runtime.program import BpfProgram
    text = ("TRACEPOINT_PROBE(syscalls, sys_enter_getpgid)\n"
            "{ return *(int *)((char *)args + bpf_get_prandom_u32()); }   /* variable context offset */\n")
    prog = BpfProgram(text, [], [], [])
    with pytest.raises(ProbeCompileError, match="verifier rejected") as info:
        prog.load()
    assert not isinstance(info.value, NotRootError)
