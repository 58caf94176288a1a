"""Helpers shared by the tests (fixtures live in conftest.py): paths, the BPF marker,
the leak guard's view of the kernel, an HTML tag parser, this process's BPF fds."""
from __future__ import annotations

import html.parser
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
DATA = TESTS / "data"
PROGS = TESTS / "progs"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF programs needs root")


def bpf(fn):
    """Mark a test as loading BPF for real."""
    return pytest.mark.bpf(needs_root(fn))


def our_bpf_programs() -> list[str]:
    """Loaded BPF programs that this test process's toolkit loaded (by program id) and are still there."""
    from ebpftoolkit.runtime.progids import LOADED_PROGRAM_IDS
    out = subprocess.run([shutil.which("bpftool") or "bpftool", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    left = []
    for line in out.splitlines():
        head = line.split(":", 1)[0]
        if head.isdigit() and int(head) in LOADED_PROGRAM_IDS:
            left.append(line)
    return left


def leftover_attachments(grace: float = 2.0) -> list[str]:
    """Our BPF programs still loaded, and BCC-made uprobe/kprobe events still in tracefs, ``grace``
    seconds after the last fd went (the kernel frees a program a moment after its last reference)."""
    deadline = time.monotonic() + grace
    while True:
        left = our_bpf_programs()
        for name in ("uprobe_events", "kprobe_events"):
            f = Path("/sys/kernel/tracing") / name
            if f.exists():
                left += [line for line in f.read_text().splitlines() if "bcc_" in line]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


class HtmlTags(html.parser.HTMLParser):
    """Start tags (with attributes) and text of an HTML document, for report checks."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def own_bpf_and_perf_fds() -> list[str]:
    """BPF programs, maps and perf events this test process holds open (other processes may load theirs)."""
    kinds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("anon_inode:bpf-prog", "anon_inode:bpf-map", "anon_inode:[perf_event]")):
            kinds.append(target)
    return kinds


class Bpftrace:
    """bpftrace counting uprobe hits on ``probes`` ({label: "file:function"}) while it runs, where the
    bpftrace predicate ``where`` holds (e.g. ``comm == "sort"``): an independent count of the same calls."""

    def __init__(self, probes: dict[str, str], where: str = ""):
        pred = f" /{where}/" if where else ""
        prog = " ".join(f"uprobe:{target}{pred} {{ @{label} = count(); }}" for label, target in probes.items())
        self.p = subprocess.Popen(["bpftrace", "-e", prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()                     # "Attaching N probes..."
        assert "Attaching" in line, line + self.p.stderr.read()
        time.sleep(0.3)

    def counts(self) -> dict[str, int]:
        """Stop it and return {label: hits} (a label never hit is left out, as bpftrace prints nothing)."""
        time.sleep(0.2)
        self.p.send_signal(signal.SIGINT)
        out, err = self.p.communicate(timeout=60)
        return {m[1]: int(m[2]) for m in re.finditer(r"@(\w+): (\d+)", out)}


def libc_path() -> str:
    """This machine's libc.so.6, as the dynamic linker's cache lists it."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    return re.search(r"libc\.so\.6 \(libc6,x86-64\) => (\S+)", out)[1]
