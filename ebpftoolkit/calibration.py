"""Measure what a traced GPU API call costs on this machine (``ebpftoolkit calibrate``).

Two do-nothing functions (probes/gpu/cal_lib.S: one whose first instruction the kernel emulates
in a uprobe, one it has to single-step) are called in a tight loop (cal_loop.c) untraced and
traced by GpuTrace, with and without a return probe, interleaved; the medians' differences are
the cost per call of each kind of attach point (the trap, GpuTrace's program and its record)
and of a return probe.  Cached per kernel and CPU model (probes/gpu/costs.py reads it for
``GpuTrace.overhead()`` and the recording).  Needs root, gcc and about ten seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
import warnings
from pathlib import Path

from .errors import ProbeNotSupportedError
from .probes.gpu.costs import CALIBRATION_API, cache_file, costs, cpu_model
from .runtime.cache import cache_dir

__all__ = ["calibrate"]


def _build() -> tuple[Path, Path]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise ProbeNotSupportedError("calibrating needs a C compiler: apt-get install gcc")
    here, out = Path(__file__).resolve().parent / "probes" / "gpu", cache_dir() / "calibration" / "build"
    out.mkdir(parents=True, exist_ok=True)
    lib, exe = out / "libebtcal.so", out / "cal_loop"
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(lib), str(here / "cal_lib.S")], check=True, capture_output=True)
    subprocess.run([gcc, "-O2", "-o", str(exe), str(here / "cal_loop.c"), f"-L{out}", "-lebtcal",
                    f"-Wl,-rpath,{out}"], check=True, capture_output=True)
    return lib, exe


def calibrate(repeat: int = 5, calls: int = 50_000, force: bool = False) -> dict:
    """Measure (or, unless ``force``, take from the cache) what a traced call costs here; see the module doc."""
    if not force:
        have = costs()
        if not str(have.get("source", "")).startswith("estimated"):
            return have
    from .probes.gpu.catalogue import CATALOGUE, add_call
    from .probes.gpu.probe import GpuTrace
    from .session import Session
    lib, exe = _build()
    specs = [add_call(CALIBRATION_API, f"cal_{k}", library=str(lib), category="other", ret=True) for k in ("push", "load")]
    ns: dict[str, list[float]] = {k: [] for k in ("push", "load", "push traced", "load traced", "push returns")}

    def loop(kind: str, session=None) -> float:
        argv = [str(exe), kind, str(calls)]
        res = session.run(argv, capture_output=True, text=True) if session else \
            subprocess.run(argv, capture_output=True, text=True)
        return float(res.stdout.split()[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # the sessions' own notes are no news here
            for _ in range(repeat):
                for kind in ("push", "load"):
                    ns[kind].append(loop(kind))
                for returns, names in (("none", ("push traced", "load traced")), ("all", ("push returns",))):
                    with Session(GpuTrace([CALIBRATION_API], returns=returns, follow=False), descendants_of="command") as s:
                        for name in names:
                            ns[name].append(loop(name.split()[0], s))
    finally:
        for spec in specs:
            CATALOGUE.remove(spec)
    med = {k: statistics.median(v) for k, v in ns.items()}
    out = {"emulated_us": round((med["push traced"] - med["push"]) / 1e3, 3),
           "single_stepped_us": round((med["load traced"] - med["load"]) / 1e3, 3),
           "return_us": round(max(0.0, med["push returns"] - med["push traced"]) / 1e3, 3),
           "source": f"measured on this machine ({cpu_model()}, kernel {os.uname().release}) on "
                     f"{time.strftime('%Y-%m-%d %H:%M')}, medians of {repeat} interleaved runs of {calls} calls",
           "untraced_ns": round(med["push"], 2)}
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)
    return out
