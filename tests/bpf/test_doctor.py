"""Real (unmocked) checks of the machine doctor; the CI machine runs them as root."""
from __future__ import annotations

import importlib
import io
import os

import pytest

from ebpftoolkit.errors import NotRootError
from ebpftoolkit.runtime.headers import kernel_headers_fix, kernel_headers_status
from ebpftoolkit.runtime.perf import hardware_pmu_available, software_events_available
from ebpftoolkit.runtime.privilege import require_privilege
from ebpftoolkit.runtime.tracefs import ensure_tracefs

# the package exports a doctor() function of the same name, so fetch the module itself
d = importlib.import_module("ebpftoolkit.doctor")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="doctor checks need root")

REQUIRED_OK = ["root", "bpf syscall", "btf", "tracefs", "kernel headers", "bcc python",
               "tracepoints", "uprobes", "ring buffer", "software perf events"]


@pytest.fixture(scope="module")
def report():
    return d.doctor(file=io.StringIO())


@pytest.mark.parametrize("name", REQUIRED_OK)
def test_required_checks_pass(report, name):
    c = report.get(name)
    assert c.ok, f"{name}: {c.detail} / fix: {c.fix}"
    assert c.required and c.fix == ""


def test_report_is_ok(report):
    assert report.ok
    assert [c.name for c in report.checks] == list(d.CHECKS)


def test_kprobes_absent_but_optional(report):
    c = report.get("kprobes")
    assert not c.ok and not c.required
    assert "CONFIG_KPROBES is off" in c.detail
    assert c.fix


def test_what_libbpf_programs_need_is_here(report):
    c = report.get("libbpf programs")           # setup installs clang, bpftool and libbpf-dev
    assert c.ok and not c.required and "from_libbpf_source" in c.detail, c.detail


def test_hardware_pmu_absent_but_optional(report):
    c = report.get("hardware PMU")
    assert not c.ok and not c.required
    assert "no virtual PMU" in c.detail
    assert hardware_pmu_available() == (False, c.detail)


def test_software_events_available():
    ok, detail = software_events_available()
    assert ok, detail


def test_get_unknown_name(report):
    with pytest.raises(KeyError):
        report.get("no such check")


def test_str_is_a_table_naming_every_check(report):
    text = str(report)
    for name in d.CHECKS:
        assert name in text
    assert "absent (optional)" in text and "FAIL" not in text


def test_doctor_prints_the_table():
    out = io.StringIO()
    rep = d.doctor(file=out)
    assert out.getvalue().strip() == str(rep).strip()


def test_html_escapes():
    rep = d.DoctorReport([d.Check("<b>x</b>", False, "a & b", "run <cmd>", True)])
    html_text = rep._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in html_text and "a &amp; b" in html_text
    assert "run &lt;cmd&gt;" in html_text and "<b>x</b>" not in html_text
    assert not rep.ok


def test_ensure_tracefs():
    path = ensure_tracefs()
    assert (path / "available_events").is_file()


def test_require_root_passes_as_root():
    require_privilege()
    assert issubclass(NotRootError, PermissionError)


def test_check_by_name():
    assert d.check("btf").ok
    with pytest.raises(KeyError):
        d.check("nope")


def test_kernel_headers_status_for_running_kernel():
    ok, detail, fix = kernel_headers_status()
    assert ok and fix == "" and "/build" in detail


def test_kernel_headers_fix_for_missing_debian_kernel():
    ok, detail, fix = kernel_headers_status("0.0.1-nonexistent-amd64")
    assert not ok and "missing" in detail
    assert "ln -sfn" in fix and "/lib/modules/0.0.1-nonexistent-amd64/build" in fix


def test_kernel_headers_fix_for_wsl():
    release = "5.15.153.1-microsoft-standard-WSL2"
    ok, _, fix = kernel_headers_status(release)
    assert not ok
    assert "WSL2-Linux-Kernel" in fix and "modules_prepare" in fix
    assert "linux-msft-wsl-5.15.153.1" in fix and "/proc/config.gz" in fix
    assert f"/lib/modules/{release}/build" in fix
    assert fix == kernel_headers_fix(release)
