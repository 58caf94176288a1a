"""Kernel headers for BCC's run-time compile: are they there, and how to get them."""
from __future__ import annotations

import platform
import re
from pathlib import Path

__all__ = ["kernel_headers_status", "kernel_headers_fix"]

_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def kernel_headers_fix(release: str | None = None) -> str:
    release = release or platform.uname().release
    mod = f"/lib/modules/{release}"
    if "microsoft" in release.lower():
        tag = "linux-msft-wsl-" + release.split("-")[0]
        return (
            "WSL2 kernels have no headers package: build a prepared kernel tree.\n"
            f"git clone --depth 1 --branch {tag} https://github.com/microsoft/WSL2-Linux-Kernel\n"
            "cd WSL2-Linux-Kernel && zcat /proc/config.gz > .config "
            "&& make olddefconfig && make modules_prepare\n"
            f"sudo mkdir -p {mod} && sudo ln -sfn $PWD {mod}/build && sudo ln -sfn $PWD {mod}/source\n"
            "(BCC_KERNEL_SOURCE=<tree> is an alternative, but it did not work with Debian's "
            "BCC here: prefer the symlinks)")
    arch = _DEB_ARCH.get(platform.machine(), "amd64")
    vers = [m[1] for p in Path("/usr/src").glob("linux-headers-*")
            if (m := re.fullmatch(rf"linux-headers-([\d.]+-\d+)-{arch}", p.name))]
    if vers:
        ver = max(vers, key=lambda v: [int(n) for n in re.findall(r"\d+", v)])
        return (f"sudo mkdir -p {mod} && sudo ln -sfn /usr/src/linux-headers-{ver}-{arch} "
                f"{mod}/build && sudo ln -sfn /usr/src/linux-headers-{ver}-common {mod}/source\n"
                "(or run: sudo scripts/setup-kernel-headers.sh)")
    return (f"sudo apt-get install -y linux-headers-{arch}, then link them:\n"
            f"sudo mkdir -p {mod} && sudo ln -sfn /usr/src/linux-headers-<ver>-{arch} {mod}/build "
            f"&& sudo ln -sfn /usr/src/linux-headers-<ver>-common {mod}/source\n"
            "(or run: sudo scripts/setup-kernel-headers.sh, which does both)")


def kernel_headers_status(release: str | None = None) -> tuple[bool, str, str]:
    """(ok, what was found, fix)."""
    release = release or platform.uname().release
    build = Path(f"/lib/modules/{release}/build")
    generated = [build / "include/generated", *build.glob("arch/*/include/generated")]
    if (build / "include").is_dir() and any(g.is_dir() for g in generated):
        return True, f"{build} -> {build.resolve()}", ""
    what = "has no generated headers" if (build / "include").is_dir() else "is missing"
    return False, f"{build}/include {what}", kernel_headers_fix(release)
