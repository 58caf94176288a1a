"""Simulated cache misses per function with valgrind's cachegrind, for machines without a
hardware PMU (most VMs).  The counts come from cachegrind's cache model and are labelled so."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from ...errors import ProbeConfigError, TargetError, ValgrindMissingError

__all__ = ["simulate_cache_misses", "parse_cachegrind_out", "CACHEGRIND_EVENTS"]

CACHEGRIND_EVENTS = ["Ir", "I1mr", "ILmr", "Dr", "D1mr", "DLmr", "Dw", "D1mw", "DLmw"]


def simulate_cache_misses(argv, *, cwd=None, timeout: float | None = None, cache_options=(),
                          out_file=None) -> pd.DataFrame:
    """Run ``argv`` under valgrind's cachegrind and return *simulated* cache counts per function.

    Columns: source ("cachegrind"), file, function, then Ir, I1mr, ILmr (instruction reads, L1 and
    last-level misses), Dr, D1mr, DLmr (data reads), Dw, D1mw, DLmw (data writes).  These come from
    valgrind's cache model, not from hardware counters: ``df.attrs`` holds the simulated cache
    geometry (``desc``), the command, valgrind's stderr and the return code.  ``cache_options``:
    extra cachegrind flags such as ``["--D1=32768,8,64", "--LL=8388608,16,64"]``.
    """
    if isinstance(argv, (str, bytes)) or not argv:
        raise TargetError("argv must be a non-empty list such as ['./prog', 'arg'] (not a string)")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ValgrindMissingError("valgrind is not installed, and simulated cache misses need its cachegrind "
                                   "tool: apt-get install -y valgrind (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="ebt-cachegrind-") as tmp:
        out = Path(out_file) if out_file is not None else Path(tmp) / "cachegrind.out"
        cmd = [valgrind, "--tool=cachegrind", "--cache-sim=yes", f"--cachegrind-out-file={out}",
               *cache_options, "--", *map(os.fsdecode, argv)]
        try:
            res = subprocess.run(cmd, cwd=cwd, timeout=timeout, capture_output=True, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            raise TargetError(f"{argv[0]!r} under cachegrind ran past timeout={timeout}s (cachegrind slows "
                              "programs 20-100x: raise the timeout or shorten the run)") from None
        if not out.is_file():
            raise TargetError(f"cachegrind wrote no results for {argv[0]!r} (exit {res.returncode}):\n"
                              f"{res.stderr[-2000:]}")
        df = parse_cachegrind_out(out)
    df.attrs.update(returncode=res.returncode, stderr=res.stderr)
    return df


def parse_cachegrind_out(path) -> pd.DataFrame:
    """A cachegrind output file -> one row per (file, function), counts summed over source lines."""
    attrs = {"simulated": True, "desc": [], "cmd": None}
    events: list[str] | None = None
    totals: dict[tuple[str, str], list[int]] = {}
    fl = fn = "???"
    cur = None
    with open(path, errors="replace") as f:
        for line in f:
            if line[:1].isdigit():
                if cur is None:
                    raise ProbeConfigError(f"{path}: a count line before any fn= line; not a cachegrind file?")
                counts = line.split()[1:]
                for i, c in enumerate(counts):
                    cur[i] += int(c)
            elif line.startswith("fn="):
                fn = line[3:].rstrip("\n")
                cur = totals.setdefault((fl, fn), [0] * len(events or CACHEGRIND_EVENTS))
            elif line.startswith("fl="):
                fl = line[3:].rstrip("\n")
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("desc:"):
                attrs["desc"].append(line[5:].strip())
            elif line.startswith("cmd:"):
                attrs["cmd"] = line[4:].strip()
    if events is None:
        raise ProbeConfigError(f"{path} has no 'events:' line: not a cachegrind output file")
    missing = [e for e in CACHEGRIND_EVENTS if e not in events]
    if missing:
        raise ProbeConfigError(f"{path} lacks {missing}: run cachegrind with --cache-sim=yes")
    rows = [(fl_, fn_, *vals) for (fl_, fn_), vals in totals.items()]
    df = pd.DataFrame(rows, columns=["file", "function", *events])
    df.insert(0, "source", "cachegrind")
    df = df[["source", "file", "function", *CACHEGRIND_EVENTS]].astype({e: "int64" for e in CACHEGRIND_EVENTS})
    df = df.sort_values("Ir", ascending=False, kind="stable").reset_index(drop=True)
    df.attrs.update(attrs)
    return df
