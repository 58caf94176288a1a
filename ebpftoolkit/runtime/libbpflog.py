"""What libbpf prints, kept in full: its print callback, and a rejected load's error text.

libbpf reports a rejected program's verifier log through its print callback at WARN level, in
one message far longer than libbpf.py's 1 KiB line buffer, so the callback here formats every
message in full, at every level.  With ``clang -g`` the log carries source annotations
(``; <text> @ file.c:LINE``) and :func:`load_error` starts with the source line the verifier
stopped at.
"""
from __future__ import annotations

import contextlib
import ctypes
import platform
import re
from ctypes import c_void_p

from .libbpf import _PRINT_FN, _lib, _libc, _print_lock, strerror

__all__ = ["capture", "text", "load_error", "WARN", "INFO", "DEBUG"]

WARN, INFO, DEBUG = 0, 1, 2
_VA_LIST_SIZE = {"x86_64": 24, "aarch64": 32}.get(platform.machine())   # what va_copy copies
_ANNOTATION = re.compile(r"^; (.*) @ (\S+):(\d+)$")

_captured: list[tuple[int, str]] = []


@_PRINT_FN
def _on_print_all(level, fmt, ap):
    # va_list cannot be read twice: keep a copy (va_copy is a plain struct copy on x86-64 and arm64)
    # for the rare message longer than the first buffer (a verifier log can be megabytes).
    saved = ctypes.create_string_buffer(_VA_LIST_SIZE or 1)
    if _VA_LIST_SIZE:
        ctypes.memmove(saved, ap, _VA_LIST_SIZE)
    buf = ctypes.create_string_buffer(1 << 16)
    n = _libc.vsnprintf(buf, len(buf), fmt, ap)
    if n >= len(buf) and _VA_LIST_SIZE:
        buf = ctypes.create_string_buffer(n + 1)
        _libc.vsnprintf(buf, len(buf), fmt, ctypes.cast(saved, c_void_p))
    _captured.append((level, buf.value.decode(errors="replace").rstrip("\n")))
    return 0


@contextlib.contextmanager
def capture():
    """Everything libbpf prints meanwhile (all levels), as [(level, message)], filled on exit."""
    lib, out = _lib(), []
    with _print_lock:
        _captured.clear()
        old = lib.libbpf_set_print(ctypes.cast(_on_print_all, c_void_p))
        try:
            yield out
        finally:
            lib.libbpf_set_print(old)
            out.extend(_captured)
            _captured.clear()


def text(messages, max_level: int = INFO) -> str:
    return "\n".join(m for level, m in messages if level <= max_level)


def load_error(path: str, rc: int, said, sections: dict[str, str]) -> str:
    """The ProbeCompileError message of a failed bpf_object__load."""
    out = text(said, INFO)
    m = re.search(r"prog '([^']+)': -- BEGIN PROG LOAD LOG --\n(.*?)-- END PROG LOAD LOG --", out, re.S)
    if m is None:
        return (f"libbpf could not load {path}: {strerror(rc)}. Fix what libbpf says below (run as root; "
                f"a map or BTF the kernel refuses; a program type this kernel lacks).\n{out}")
    name, lines = m.group(1), m.group(2).splitlines()
    end = next((i for i in range(len(lines) - 1, -1, -1) if re.match(r"processed \d+ insns", lines[i])), len(lines))
    error = next((lines[i].strip() for i in range(end - 1, -1, -1) if lines[i].strip()), strerror(rc))
    at = next((i for i in range(end - 1, -1, -1) if lines[i] == error or lines[i].strip() == error), end)
    where = next((a for a in (_ANNOTATION.match(lines[i]) for i in range(at - 1, -1, -1)) if a), None)
    head = f"{where.group(2)}:{where.group(3)}: {where.group(1)}: {error}" if where else \
        f"program {name!r}: {error} (compile with clang -g to have the source line named)"
    return (f"{head}\nthe kernel's BPF verifier rejected program {name!r} (section {sections.get(name, '?')!r}) "
            f"of {path}: fix the C there (e.g. check a bpf_map_lookup_elem() result for NULL before use), "
            f"recompile and load again.  libbpf's output, the verifier log included:\n{out}")
