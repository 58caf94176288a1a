"""classify_compile_error (runtime/compile.py) on real compiler and verifier output.

The clang logs are made here, by running clang on bad C (``clang -target bpf -c -x c -``);
BCC's own compile uses the same clang front end and prints the same diagnostics.  Logs
that need the kernel are fixtures captured once from real BCC runs (tests/unit/data/*.log,
each says on its first line how it was made and on its second what BCC raised):

- verifier_reject.log: as root, a program the verifier rejects (ctx read at a variable
  offset).  The kernel answers EACCES, so the log says "Permission denied": that must be
  a ProbeCompileError, never a NotRootError.
- not_root.log: the same kind of program loaded as user nobody: "Operation not permitted".
- headers_missing.log: as root with /lib/modules hidden in a private mount namespace.

No root needed to run these tests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ebpftoolkit.errors import EbpfToolkitError, KernelHeadersError, NotRootError, ProbeCompileError
from ebpftoolkit.runtime.compile import classify_compile_error
from ebpftoolkit.runtime.privilege import ROOT_FIX

DATA = Path(__file__).resolve().parent / "data"
BCC_COMPILE_FAILED = Exception("Failed to compile BPF module <text>")   # what bcc.BPF raises for a compile error


def clang_log(source: str) -> str:
    """What clang prints compiling ``source`` for the BPF target (it must fail)."""
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang is not installed (apt-get install -y clang)")
    res = subprocess.run([clang, "-target", "bpf", "-c", "-x", "c", "-", "-o", "/dev/null"], input=source,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0, "the bad C compiled"
    return res.stdout + res.stderr


def fixture(name: str) -> tuple[str, Exception]:
    """(log, the exception BCC raised) of a captured fixture."""
    lines = (DATA / name).read_text().splitlines(keepends=True)
    assert lines[0].startswith("# Made ") and lines[1].startswith("# exception: ")
    return "".join(lines[2:]), Exception(lines[1][len("# exception: "):].rstrip("\n"))


def only(err: Exception, cls: type) -> None:
    """``err`` is exactly of the typed error ``cls`` (none of the other two)."""
    assert isinstance(err, EbpfToolkitError)
    others = {KernelHeadersError, ProbeCompileError, NotRootError} - {cls}
    assert type(err) is cls, f"{type(err).__name__}: {err}"
    assert not isinstance(err, tuple(others))


# -- clang's own output -------------------------------------------------------------
def test_syntax_error_is_a_compile_error_with_clangs_message():
    log = clang_log("int f(void) { return 1 }\n")
    assert "error: expected ';' after return statement" in log
    err = classify_compile_error(log, BCC_COMPILE_FAILED)
    only(err, ProbeCompileError)
    msg = str(err)
    assert "did not compile or load" in msg
    assert "Failed to compile BPF module <text>" in msg          # BCC's exception
    assert "expected ';' after return statement" in msg          # and what clang said, to fix the C


@pytest.mark.parametrize("header", ["linux/nosuch.h", "asm/nosuch.h", "uapi/linux/nosuch.h"])
def test_missing_kernel_header_is_a_kernel_headers_error_that_says_how_to_fix(header):
    log = clang_log(f"#include <{header}>\nint f(void) {{ return 1; }}\n")
    assert f"fatal error: '{header}' file not found" in log
    err = classify_compile_error(log, BCC_COMPILE_FAILED)
    only(err, KernelHeadersError)
    msg = str(err)
    assert "ebpftoolkit doctor" in msg
    assert "setup-kernel-headers" in msg
    assert os.uname().release in msg
    assert f"'{header}' file not found" in msg                   # the log itself is kept


def test_missing_header_of_the_program_itself_is_a_compile_error():
    log = clang_log('#include "my_probe_helpers.h"\nint f(void) { return 1; }\n')
    assert "file not found" in log
    only(classify_compile_error(log, BCC_COMPILE_FAILED), ProbeCompileError)


def test_long_clang_log_keeps_its_end():
    """clang stops after 20 errors with a summary line: the message keeps the end of a long log."""
    name = "a_rather_long_function_name_" * 6
    log = clang_log("".join(f"int {name}{i}(void) {{ return {i} }}\n" for i in range(60)))
    assert len(log) > 4000 and "too many errors emitted" in log
    msg = str(classify_compile_error(log, BCC_COMPILE_FAILED))
    assert "too many errors emitted" in msg and "errors generated" in msg
    assert len(msg) < len(log)                                   # bounded, not the whole log


def test_syntax_error_near_the_word_permission_is_still_a_compile_error():
    log = clang_log("int f(void) { int permission_bits = ; return 1; }\n")
    assert "error: expected expression" in log
    only(classify_compile_error(log, BCC_COMPILE_FAILED), ProbeCompileError)


# -- captured BCC runs -------------------------------------------------------------
def test_verifier_rejection_is_a_compile_error_not_a_root_error():
    log, exc = fixture("verifier_reject.log")
    assert "Permission denied" in log and "Permission denied" in str(exc)   # what makes it tricky
    err = classify_compile_error(log, exc)
    only(err, ProbeCompileError)
    assert not isinstance(err, (NotRootError, PermissionError))
    msg = str(err)
    assert "verifier rejected" in msg
    assert "variable ctx access var_off=(0x0; 0xffffffff) disallowed" in msg   # the verifier's reason
    assert "processed 6 insns" in msg
    assert "sudo" not in msg


def test_verifier_rejection_without_bccs_permission_line_is_still_the_verifier():
    log, exc = fixture("verifier_reject.log")
    body = "".join(line for line in log.splitlines(keepends=True) if "Permission denied" not in line)
    only(classify_compile_error(body, exc), ProbeCompileError)


def test_unprivileged_load_is_a_not_root_error_that_says_how_to_fix():
    log, exc = fixture("not_root.log")
    assert "Operation not permitted" in log
    err = classify_compile_error(log, exc)
    only(err, NotRootError)
    assert isinstance(err, PermissionError)
    msg = str(err)
    assert "sudo" in msg and ROOT_FIX in msg                    # the one fix the toolkit gives everywhere
    assert "Operation not permitted" in msg


def test_bcc_without_kernel_headers_is_a_kernel_headers_error():
    log, exc = fixture("headers_missing.log")
    assert "Unable to find kernel headers" in log
    err = classify_compile_error(log, exc)
    only(err, KernelHeadersError)
    msg = str(err)
    assert "ebpftoolkit doctor" in msg and "setup-kernel-headers" in msg
    assert "chdir(/lib/modules/" in msg


@pytest.mark.parametrize("line", [
    "Unable to find kernel headers. Try rebuilding kernel with CONFIG_IKHEADERS=m (module)",
    "chdir(/lib/modules/6.1.0-9-amd64/build): No such file or directory"])
def test_each_headers_line_alone_is_enough(line):
    only(classify_compile_error(line + "\n", BCC_COMPILE_FAILED), KernelHeadersError)


def test_empty_log_is_a_compile_error_with_the_exception():
    err = classify_compile_error("", RuntimeError("something odd in libbcc"))
    only(err, ProbeCompileError)
    assert "something odd in libbcc" in str(err)
