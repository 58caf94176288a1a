"""Compiling BPF C with BCC, and saying what went wrong when it does not compile or load."""
from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile

from ..errors import BccMissingError, KernelHeadersError, NotRootError, ProbeCompileError
from .headers import kernel_headers_fix
from .privilege import ROOT_FIX

__all__ = ["import_bcc", "compile_module", "compile_module_with_log", "classify_compile_error", "capture_output"]


def import_bcc():
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        raise BccMissingError(
            f"the bcc Python bindings cannot be imported ({exc}). On Debian/Ubuntu: "
            "apt-get install python3-bpfcc, and create your virtualenv from the system "
            "python with --system-site-packages (scripts/setup.sh does both)"
        ) from None
    return bcc


@contextlib.contextmanager
def capture_output():
    """Collect what libbcc/clang write to file descriptors 1 and 2 while compiling."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            box: list[str] = []
            yield box
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace"))


def classify_compile_error(log: str, exc: Exception) -> Exception:
    """The typed error for a failed BCC compile/load, from clang's and the verifier's output."""
    low = log.lower()
    missing_header = "fatal error" in low and "file not found" in low and any(
        d in low for d in ("linux/", "asm/", "uapi/"))
    if "unable to find kernel headers" in low or "chdir(/lib/modules" in low or missing_header:
        return KernelHeadersError(
            f"BCC could not find kernel headers for this kernel ({os.uname().release}). "
            "Run `ebpftoolkit doctor` for the exact fix; here:\n" + kernel_headers_fix() + "\n" + log[-2000:])
    if re.search(r":\d+:\d+: error: ", log):              # clang's diagnostics (the source lines are echoed)
        return ProbeCompileError(f"the BPF program did not compile or load (clang: fix the C): {exc}\n{log[-4000:]}")
    if "processed " in low and " insns" in low:           # the verifier's log: it rejected the program
        return ProbeCompileError(f"the kernel's BPF verifier rejected the program: {exc}\n{log[-4000:]}")
    if "permission" in low or "operation not permitted" in low:
        return NotRootError(f"the kernel refused to load the BPF program: {ROOT_FIX}.\n" + log[-2000:])
    return ProbeCompileError(f"the BPF program did not compile or load: {exc}\n{log[-4000:]}")


@functools.lru_cache(maxsize=None)
def _bpf_class(base):
    """``bcc.BPF`` without the load and attach of ``TRACEPOINT_PROBE`` functions in its constructor:
    done after it returns, so that a program the verifier refuses leaves an object to clean up (BCC's
    constructor would raise with the module's maps and the programs attached before it still held)."""
    return type("BPF", (base,), {"_trace_autoload": lambda self: None})


def _release(module) -> None:
    import atexit
    try:
        module.cleanup()
    except Exception:
        pass
    atexit.unregister(module.cleanup)


def compile_module(text: str, cflags=()):
    """``bcc.BPF(text=...)``: the compiled and loaded module, or the typed error of why not."""
    return compile_module_with_log(text, cflags)[0]


def compile_module_with_log(text: str, cflags=(), debug: int = 0, classify=classify_compile_error):
    """(module, what libbcc and clang printed); ``debug``: BCC's debug flags (DEBUG_PREPROCESSOR, 0x4,
    prints the source as BCC rewrote it); ``classify(log, exc)`` makes the error raised on failure."""
    bcc = import_bcc()
    with capture_output() as log:
        module = None
        try:
            module = _bpf_class(bcc.BPF)(text=text.encode(), cflags=list(cflags), debug=debug)
            bcc.BPF._trace_autoload(module)
            err = None
        except Exception as exc:  # BCC raises bare Exception for compile/verifier failures
            err = exc
            if module is not None:   # compiled, a program refused: free its maps and what it attached
                _release(module)
    if err is not None:
        raise classify(log[0] if log else "", err) from err
    return module, log[0] if log else ""
