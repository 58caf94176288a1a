"""ebpftoolkit.mark / ebpftoolkit.frame where nothing traces them: a plain call into the marker
library (built once per cache, for any user), harmless without a writable cache (a private copy)
or without a C compiler (a warning, then nothing).  Each case in a fresh interpreter: the library
is loaded once per process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROG = f"""
import json, sys, time, warnings
sys.path.insert(0, {str(ROOT)!r})
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import ebpftoolkit
    ebpftoolkit.mark("first")

    @ebpftoolkit.frame("decorated")
    def work(x):
        return x * 2

    with ebpftoolkit.frame("step") as f:
        ebpftoolkit.mark(b"raw bytes")
    try:
        ebpftoolkit.mark(3)
        bad = None
    except TypeError as exc:
        bad = str(exc)
    t = time.perf_counter()
    for _ in range(20000):
        ebpftoolkit.mark("x")
    ns = (time.perf_counter() - t) / 20000 * 1e9
from ebpftoolkit.probes.gpu import marker
maps = [line.split()[-1] for line in open("/proc/self/maps") if "libebpftoolkit_marker" in line]
print(json.dumps({{"work": work(21), "name": f.name.decode(), "bad": bad, "ns": ns, "maps": sorted(set(maps)),
                  "loaded": marker.load(), "warnings": [str(w.message) for w in caught]}}))
"""


def run(env):
    res = subprocess.run([sys.executable, "-c", PROG], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_marker_is_a_cheap_call_into_the_library_built_in_the_cache(tmp_path):
    out = run({"XDG_CACHE_HOME": str(tmp_path)})
    assert out["loaded"] and out["work"] == 42 and out["name"] == "step" and not out["warnings"]
    assert out["bad"] == "a marker's name is a str, got int"
    (lib,) = out["maps"]
    assert lib.startswith(str(tmp_path / "ebpftoolkit" / "marker")) and lib.endswith("libebpftoolkit_marker.so.1")
    assert out["ns"] < 20_000                    # ~400 ns here; a generous bound on a loaded machine
    again = run({"XDG_CACHE_HOME": str(tmp_path)})                 # built once: the same file
    assert again["maps"] == out["maps"]
    res = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True)
    assert "Library soname: [libebpftoolkit_marker.so.1]" in res.stdout      # what following matches it by


def test_without_a_writable_cache_a_private_copy(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "ebpftoolkit").write_text("a file where the cache folder would be")
    out = run({"XDG_CACHE_HOME": str(ro)})
    (lib,) = out["maps"]
    assert out["loaded"] and "ebpftoolkit-marker-" in lib and not out["warnings"]


def test_without_a_compiler_markers_do_nothing_and_say_so_once(tmp_path):
    out = run({"XDG_CACHE_HOME": str(tmp_path), "PATH": str(tmp_path / "empty")})
    assert not out["loaded"] and out["maps"] == [] and out["work"] == 42
    assert out["bad"] == "a marker's name is a str, got int"      # the same errors, traced or not, built or not
    assert len(out["warnings"]) == 1 and "no C compiler" in out["warnings"][0]
