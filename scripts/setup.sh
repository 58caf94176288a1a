#!/usr/bin/env bash
# Prepare this machine and the project venv for ebpftoolkit.  Idempotent; run as root:
#   sudo scripts/setup.sh
# Extra Debian packages: EBPFTOOLKIT_EXTRA_APT="pkg1 pkg2" sudo -E scripts/setup.sh
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
say() { echo "setup: $*"; }
[ "$(id -u)" -eq 0 ] || { say "run as root: sudo scripts/setup.sh" >&2; exit 1; }

# 1. Debian packages
arch="$(dpkg --print-architecture)"
read -r -a extra <<< "${EBPFTOOLKIT_EXTRA_APT:-}"
# (libbpf1, which runtime/libbpf.py loads, comes with python3-bpfcc through libbpfcc; clang compiles the
# BPF objects of tests/unit/test_btf.py and, with libbpf-dev's bpf_helpers.h, users' libbpf-style CustomProbe sources)
pkgs=(python3-bpfcc bpfcc-tools bpftool "linux-headers-$arch" python3-venv strace linux-perf valgrind gcc make clang
      libbpf-dev bpftrace chromium chromium-driver fonts-dejavu-core "${extra[@]}")
# what the GPU API workloads need (OpenGL/Mesa, Vulkan/lavapipe, OpenCL/PoCL, Xvfb, apitrace):
# the PACKAGES list in workloads/gpu/Makefile, read without needing make
read -r -a gpu <<< "$(sed -n '/^PACKAGES *:=/,/^$/p' workloads/gpu/Makefile | sed 's/^PACKAGES *:=//; s/\\//g' | tr -s ' \n' ' ')"
pkgs+=("${gpu[@]}")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    say "apt packages already installed"
fi

# 2. kernel headers for BCC
scripts/setup-kernel-headers.sh

# 3. tracefs
if [ -e /sys/kernel/tracing/available_events ]; then
    say "tracefs mounted at /sys/kernel/tracing"
else
    mount -t tracefs nodev /sys/kernel/tracing
    say "mounted tracefs at /sys/kernel/tracing"
fi

# 4. venv that sees Debian's bcc (only the system python3 can import it)
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
    say "created .venv"
fi

# 5. editable install, redone only when pyproject.toml changed or the install is gone
stamp=.venv/.ebpftoolkit-installed
if [ ! -f pyproject.toml ]; then
    say "no pyproject.toml yet; skipping pip install"
else
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && .venv/bin/pip show -q ebpftoolkit >/dev/null 2>&1; then
        say "ebpftoolkit already installed in .venv"
    else
        say "pip install -e '.[dev]'"
        .venv/bin/pip install -q -e '.[dev]'
        echo "$want" > "$stamp"
    fi
fi

# 6. third-party CUDA runtimes as users get them: the pip wheel (libcudart.so.12, the copy PyTorch, JAX
#    and CuPy load) in a folder of its own, outside every linker path (tests/bpf/test_gpu_follow.py)
wheels=tests/.wheels
if [ -f "$wheels/nvidia/cuda_runtime/lib/libcudart.so.12" ]; then
    say "CUDA runtime wheel already in $wheels"
else
    say "pip install --target $wheels nvidia-cuda-runtime-cu12"
    .venv/bin/pip install -q --no-deps --target "$wheels" 'nvidia-cuda-runtime-cu12==12.*'
fi

.venv/bin/python -c 'import bcc' || { say "bcc is not importable from .venv" >&2; exit 1; }

# 7. what a traced GPU call costs on this machine (GpuTrace.overhead(), recordings): measured once per
#    kernel and CPU, about ten seconds; kept in ~/.cache/ebpftoolkit/calibration
.venv/bin/ebpftoolkit calibrate \
    || say "calibration failed (see above): GpuTrace uses the project's estimates until it works"
say "done; check the machine with: .venv/bin/ebpftoolkit doctor"
