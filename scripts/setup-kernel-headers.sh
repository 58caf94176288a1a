#!/usr/bin/env bash
# Point /lib/modules/$(uname -r)/{build,source} at Debian's newest installed kernel
# headers, so BCC can compile BPF programs on a kernel that has no headers package.
# Idempotent; run as root.  (Install the headers first: apt-get install linux-headers-amd64)
set -euo pipefail

say() { echo "setup: $*"; }
rel="$(uname -r)"
mod="/lib/modules/$rel"

have_headers() {
    [ -d "$mod/build/include" ] || return 1
    [ -d "$mod/build/include/generated" ] && return 0
    for d in "$mod"/build/arch/*/include/generated; do [ -d "$d" ] && return 0; done
    return 1
}

if have_headers; then
    say "kernel headers: $mod/build -> $(readlink -f "$mod/build")"
    exit 0
fi
if [[ "$rel" == *microsoft* ]]; then
    say "WSL2 kernel $rel has no headers package; build a prepared WSL2-Linux-Kernel tree" >&2
    say "(make modules_prepare) and link $mod/build and $mod/source to it: see 'ebpftoolkit doctor'" >&2
    exit 1
fi
[ "$(id -u)" -eq 0 ] || { say "kernel headers: run as root (sudo $0)" >&2; exit 1; }

arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
build="$(find /usr/src -maxdepth 1 -regextype posix-extended \
           -regex "/usr/src/linux-headers-[0-9.]+-[0-9]+-$arch" | sort -V | tail -n 1)"
if [ -z "$build" ]; then
    say "no /usr/src/linux-headers-*-$arch; run: apt-get install linux-headers-$arch" >&2
    exit 1
fi
common="${build%-"$arch"}-common"
[ -d "$common" ] || { say "$common is missing (it comes with $(basename "$build"))" >&2; exit 1; }
for link in "$mod/build" "$mod/source"; do
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        say "$link exists and is not a symlink; move it away first" >&2
        exit 1
    fi
done

mkdir -p "$mod"
ln -sfn "$build" "$mod/build"
ln -sfn "$common" "$mod/source"
say "kernel headers: linked $mod/build -> $build, $mod/source -> $common"
