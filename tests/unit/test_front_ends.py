"""The package's front doors: a light import, `python -m ebpftoolkit`, probes that resolve nothing
until asked, an isolated driver-lookup helper, and the one privilege check's rules."""
from __future__ import annotations

import json
import subprocess
import sys

from ebpftoolkit.runtime.privilege import CAPABILITIES, privilege

HEAVY = ("numpy", "pandas", "pyarrow", "matplotlib", "bcc", "IPython", "elftools", "capstone")


def test_import_is_light():
    code = ("import sys, ebpftoolkit; print(sorted(m for m in %r if m in sys.modules)); "
            "print(sorted(ebpftoolkit.__all__))" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]", f"import ebpftoolkit pulled in {out[0]}"
    assert {"Session", "Recording", "ExecSnoop", "GpuTrace", "PmuCounters", "PmuSampler"} <= set(eval(out[1]))


def test_python_dash_m_is_the_command_line():
    res = subprocess.run([sys.executable, "-m", "ebpftoolkit", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for cmd in ("doctor", "record", "execsnoop", "report", "export"):
        assert cmd in res.stdout
    bad = subprocess.run([sys.executable, "-m", "ebpftoolkit", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage: ebpftoolkit" in bad.stderr


def test_repr_of_a_gpu_probe_resolves_nothing():
    from ebpftoolkit import GpuTrace
    g = GpuTrace(["opengl"])
    assert "GpuConfig" in repr(g) and "running" not in repr(g)
    g._repr_html_()
    assert g._points is None           # no helper process, no library search until prepare()/overhead()


def test_driver_lookup_helper_imports_only_the_standard_library():
    from ebpftoolkit.probes.gpu import resolve
    helper = resolve.Path(resolve.__file__).with_name("_resolve_helper.py")
    res = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", str(helper), "gl", "glDrawArrays"],
                         capture_output=True, text=True, timeout=60)
    imported = {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in HEAVY + ("ebpftoolkit",)}, imported
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["ok"], data                # a surfaceless EGL context on llvmpipe answered
    where = data["result"]["glDrawArrays"]["driver"]
    assert where["path"].endswith(".so") and where["file_offset"] > 0


def test_privilege_rules():
    caps = {n: 1 << b for n, b in CAPABILITIES.items()}
    assert privilege(euid=0).ok
    assert privilege(euid=1000, caps=caps["CAP_BPF"] | caps["CAP_PERFMON"], tracefs_readable=True).ok
    assert privilege(euid=1000, caps=caps["CAP_SYS_ADMIN"], tracefs_readable=True).ok     # stands for both
    for missing in ("CAP_BPF", "CAP_PERFMON"):
        p = privilege(euid=1000, caps=sum(v for n, v in caps.items() if n not in (missing, "CAP_SYS_ADMIN")),
                      tracefs_readable=True)
        assert not p.ok and missing in p.detail and "sudo" in p.fix, p
    p = privilege(euid=1000, caps=caps["CAP_BPF"] | caps["CAP_PERFMON"], tracefs_readable=False)
    assert not p.ok and "CAP_DAC_READ_SEARCH" in p.detail and "cap_dac_read_search" in p.fix
    assert privilege(euid=1000, caps=caps["CAP_BPF"] | caps["CAP_PERFMON"] | caps["CAP_DAC_READ_SEARCH"],
                     tracefs_readable=False).ok
    p = privilege(euid=1000, caps=0, tracefs_readable=True)
    assert not p.ok and "setcap" in p.fix
