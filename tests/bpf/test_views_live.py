"""A report of a million real syscalls (the views at scale on a live recording; root)."""
from __future__ import annotations

import subprocess

import pytest

from support import ROOT, bpf
from ebpftoolkit import Session, SyscallTrace


def assert_self_contained(doc: str) -> None:
    import re
    low = re.sub(r"(?is)<script\b.*?</script>", "", doc).lower()     # outside the timeline's inline scripts
    assert "<script" not in low and "http://" not in low.replace("http://www.w3.org", "") and "https://" not in low


@bpf
@pytest.mark.filterwarnings("ignore::ebpftoolkit.session.LostEventsWarning")
def test_report_of_a_million_real_syscalls(tmp_path):
    storm = tmp_path / "storm"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(storm), str(ROOT / "benchmarks" / "src" / "storm.c")],
                   check=True)
    s = Session(SyscallTrace(["getpgid"]), descendants_of="command")
    s.run([str(storm), "1000000"], input=b"go\n", capture_output=True, check=True)
    n = len(s.tables["syscalls"]) + s.lost["syscalls"]
    assert n >= 1_000_000
    out = tmp_path / "storm.html"
    s.to_html(out)
    size = out.stat().st_size
    print(f"\nreport size, {len(s.tables['syscalls']):,} real syscalls: {size / 1e6:.3f} MB")
    doc = out.read_text()
    assert size <= 5_000_000 and "Aggregated:" in doc and "getpgid" in doc
    assert_self_contained(doc)
