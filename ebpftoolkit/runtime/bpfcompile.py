"""Compiling libbpf-style BPF C (``prog.bpf.c`` with ``vmlinux.h`` and ``<bpf/bpf_helpers.h>``) with clang.

BCC compiles at load time against kernel headers that may belong to another kernel; a libbpf
object is compiled once, ahead of time, against ``vmlinux.h``, which bpftool writes from the
running kernel's BTF and so always matches it.  ``vmlinux_h()`` makes that header once per
kernel build (it is ~4 MB and takes a second), ``compile_bpf_source()`` runs the one clang
command every libbpf tool uses and turns clang's diagnostics into a ProbeCompileError whose
first line is the first error.  The result is loaded with :class:`.bpfobject.BpfObject`.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import BTFError, ProbeCompileError
from .cache import cache_dir
from .sources import bpf_src_dir

__all__ = ["vmlinux_h", "compile_bpf_source", "include_dir", "bpf_cflags"]

_VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
# platform.machine() -> the __TARGET_ARCH_* that <bpf/bpf_tracing.h> knows (PT_REGS_* macros)
_ARCH = {"x86_64": "x86", "i686": "x86", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390",
         "ppc64le": "powerpc", "ppc64": "powerpc", "riscv64": "riscv", "loongarch64": "loongarch",
         "mips64": "mips", "mips": "mips"}


def include_dir() -> Path:
    """The folder of ``ebpftoolkit.bpf.h``: ``bpf_src/``, beside the session's own ``common.h``."""
    return bpf_src_dir()


def _kernel_key() -> str:
    u = os.uname()
    return f"{u.release}-{hashlib.sha256(u.version.encode()).hexdigest()[:12]}"


def vmlinux_h() -> Path:
    """``vmlinux.h`` of the running kernel (every type of its BTF as C), made once per kernel build.

    Cached under the ebpftoolkit cache folder (runtime/cache.py) in a folder named after the kernel
    release and a hash of its build string, so that a kernel update makes a new one;
    EBPFTOOLKIT_NO_CACHE=1 writes it anew.  Put its folder on the include path (-I).
    """
    out = cache_dir() / "vmlinux" / _kernel_key() / "vmlinux.h"
    if out.is_file() and out.stat().st_size > 0 and not os.environ.get("EBPFTOOLKIT_NO_CACHE"):
        return out
    if not _VMLINUX_BTF.exists():
        raise BTFError(f"{_VMLINUX_BTF} does not exist: this kernel was built without CONFIG_DEBUG_INFO_BTF, "
                       "so there is no vmlinux.h to compile against; use a kernel with BTF (Debian's has it)")
    bpftool = shutil.which("bpftool") or next((p for p in ("/usr/sbin/bpftool", "/sbin/bpftool")
                                               if os.access(p, os.X_OK)), None)
    if bpftool is None:
        raise ProbeCompileError("bpftool is not installed: it writes vmlinux.h from the kernel's BTF. "
                                "Install it: apt-get install bpftool")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".vmlinux.", suffix=".h")
    try:
        with os.fdopen(fd, "wb") as f:
            res = subprocess.run([bpftool, "btf", "dump", "file", str(_VMLINUX_BTF), "format", "c"],
                                 stdout=f, stderr=subprocess.PIPE, timeout=300)
        if res.returncode != 0:
            raise ProbeCompileError(f"bpftool could not write vmlinux.h from {_VMLINUX_BTF}: "
                                    f"{res.stderr.decode(errors='replace').strip()}; run as root, and check "
                                    "`bpftool btf dump file /sys/kernel/btf/vmlinux format c` by hand")
        os.replace(tmp, out)    # atomic: a concurrent compile sees the old file or the whole new one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def bpf_cflags(source_dir: Path | None = None) -> list[str]:
    """The flags of every libbpf-style compile: target, debug info (BTF and line info: the verifier's
    errors then name source lines), the architecture for bpf_tracing.h, and the include path
    (vmlinux.h, the source's own folder, ebpftoolkit.bpf.h)."""
    arch = _ARCH.get(platform.machine(), platform.machine())
    flags = ["-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{arch}", f"-I{vmlinux_h().parent}"]
    if source_dir is not None:
        flags.append(f"-I{source_dir}")
    return flags + [f"-I{include_dir()}"]


def _first_error(diagnostics: str) -> str:
    for line in diagnostics.splitlines():
        if ": error: " in line or ": fatal error: " in line:
            return line.strip()
    lines = [line for line in diagnostics.splitlines() if line.strip()]
    return lines[0].strip() if lines else "clang failed without a message"


def compile_bpf_source(source, out=None, extra_cflags=()) -> Path:
    """``clang -O2 -g -target bpf ... -c source -o out``; returns ``out``.

    ``out`` defaults to a file in the cache folder named after the source and a hash of its content
    and flags.  It is compiled every time (headers the source includes may have changed; clang takes
    about a second), never taken stale from an earlier run.  clang's diagnostics go into the
    ProbeCompileError, the first error first.
    """
    source = Path(source)
    try:
        text = source.read_bytes()
    except OSError as e:
        raise ProbeCompileError(f"cannot read the BPF source {source}: {e.strerror}; pass the path of a "
                                ".bpf.c file") from None
    clang = shutil.which("clang")
    if clang is None:
        raise ProbeCompileError("clang is not installed: it compiles BPF C into BPF objects. "
                                "Install it: apt-get install clang")
    cmd = [clang, *bpf_cflags(source.resolve().parent), *map(str, extra_cflags)]
    if out is None:
        digest = hashlib.sha256(text + "\0".join(cmd).encode()).hexdigest()[:16]
        stem = source.name.removesuffix(".c").removesuffix(".bpf")
        out = cache_dir() / "bpfobj" / f"{stem}-{digest}.bpf.o"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd += ["-c", str(source), "-o", str(out)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise ProbeCompileError(f"clang took over 10 minutes on {source}: simplify the program "
                                f"(command: {' '.join(cmd)})") from None
    if res.returncode != 0:
        diag = res.stderr.strip() or res.stdout.strip()
        if "'bpf/" in diag and "file not found" in diag:
            diag += "\n(libbpf's headers are missing: apt-get install libbpf-dev)"
        raise ProbeCompileError(f"{_first_error(diag)}\nclang could not compile {source}: fix the C "
                                f"(all of clang's diagnostics below).\n{diag}\ncommand: {' '.join(cmd)}")
    return out
