"""The IPython magics (%load_ext ebpftoolkit), driven through a real IPython InteractiveShell.

IPython keeps global state (one shell per process, registered magics, the
display publisher), so every test runs its cells in a fresh Python subprocess:
HARNESS reads a JSON list of cells on stdin, runs each with ``shell.run_cell``
and prints, per cell, whether it succeeded, the exception it raised, what it
printed and which rich outputs it displayed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support import bpf, leftover_attachments

ROOT = Path(__file__).resolve().parents[2]

HARNESS = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

cells = json.load(sys.stdin)
shell = InteractiveShell.instance()
shell.run_line_magic("colors", "nocolor")
out = []
for src in cells:
    with capture_output() as cap:
        r = shell.run_cell(src, store_history=True)
    err = r.error_in_exec or r.error_before_exec
    out.append({"success": r.success, "error": type(err).__name__ if err else None,
                "stdout": cap.stdout, "stderr": cap.stderr,
                "displays": [sorted(o.data) for o in cap.outputs],
                "texts": [o.data.get("text/plain", "") for o in cap.outputs]})
print("HARNESS-RESULT " + json.dumps(out))
"""


def run_cells(cells, *, as_user: int | None = None, timeout: float = 240, env: dict | None = None):
    """Run ``cells`` in a fresh IPython shell (in a subprocess); one result dict per cell."""
    cmd = [sys.executable, "-c", HARNESS]
    e = dict(os.environ, **(env or {}))
    cwd = None
    if as_user is not None:
        home = tempfile.mkdtemp(prefix="ebt-magics-")
        os.chmod(home, 0o777)
        cmd = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups", *cmd]
        e.update(HOME=home, IPYTHONDIR=f"{home}/.ipython", MPLCONFIGDIR=f"{home}/.mpl")
        cwd = home
    res = subprocess.run(cmd, input=json.dumps(cells), capture_output=True, text=True, timeout=timeout, env=e,
                         cwd=cwd)
    lines = [l for l in res.stdout.splitlines() if l.startswith("HARNESS-RESULT ")]
    assert res.returncode == 0 and lines, f"harness failed (rc {res.returncode}):\n{res.stdout[-3000:]}\n" \
                                          f"{res.stderr[-3000:]}"
    return json.loads(lines[-1][len("HARNESS-RESULT "):])


def values(result) -> dict:
    """The dict a cell printed as ``VALUES {...}``."""
    for line in result["stdout"].splitlines():
        if line.startswith("VALUES "):
            return json.loads(line[len("VALUES "):])
    raise AssertionError(f"the cell printed no VALUES line:\n{result['stdout']}\n{result['stderr']}")


LOAD = "%load_ext ebpftoolkit"


# -- no BPF: parsing, help, refusals -----------------------------------------------------------------
def test_options_are_the_record_commands_plus_the_notebook_ones():
    from ebpftoolkit.notebook.magics import EbpfMagics, cell_parser
    from ebpftoolkit.options import record_parser

    rec = {a.dest for a in record_parser()._actions}
    cell = {a.dest for a in cell_parser()._actions}
    assert cell - rec == {"var", "report", "no_timeline", "probe"} and rec <= cell
    args = cell_parser().parse_args(["--gpu", "vulkan", "--pmu", "page-faults,context-switches", "--interval",
                                     "5ms", "--var", "run1", "--report", "r.html", "--no-timeline"])
    assert (args.gpu, args.pmu, args.interval, args.var, args.report, args.no_timeline) == \
        ("vulkan", "page-faults,context-switches", "5ms", "run1", "r.html", True)
    d = cell_parser().parse_args([])
    assert (d.var, d.report, d.no_timeline, d.exec_, d.gpu, d.pmu) == ("_ebpf", None, False, False, None, None)
    doc = EbpfMagics.ebpf.__doc__
    assert "usage: %%ebpf" in doc and "--gpu-returns" in doc and "--no-timeline" in doc   # the parser's help


def test_usage_errors_and_help_need_no_root():
    r = run_cells([LOAD,
                   "%%ebpf --bogus\nprint('CELL-RAN-MARK')",
                   "%%ebpf -- make\nprint('CELL-RAN-MARK')",
                   "%%ebpf --pmu no-such-event\nprint('CELL-RAN-MARK')",
                   "%ebpf frobnicate",
                   "%%ebpf --help\nprint('CELL-RAN-MARK')",
                   "%ebpf attach notapid",
                   "%execsnoop --help"])
    assert r[0]["success"]
    for i in (1, 2, 3, 4, 6):
        assert r[i]["error"] == "UsageError" and "CELL-RAN-MARK" not in r[i]["stdout"], r[i]
    assert "unrecognized arguments: --bogus" in r[1]["stderr"] + r[1]["stdout"]
    assert "run the command inside the cell" in r[2]["stderr"] + r[2]["stdout"]
    assert "unknown perf event 'no-such-event'" in r[3]["stderr"] + r[3]["stdout"]
    assert r[5]["success"] and "usage: %%ebpf" in r[5]["stdout"] and "CELL-RAN-MARK" not in r[5]["stdout"]
    assert r[7]["success"] and "usage: %execsnoop" in r[7]["stdout"]


def test_ebpf_option_prints_the_program_and_does_not_run_the_cell():
    r = run_cells([LOAD, "%%ebpf --ebpf --pmu page-faults\nprint('CELL-RAN-MARK')"])
    assert r[1]["success"] and "CELL-RAN-MARK" not in r[1]["stdout"]
    assert "ebpftoolkit BPF program" in r[1]["stdout"] and "probe pmu (PmuCounters)" in r[1]["stdout"]


def test_not_root_refuses_before_running_the_cell(tmp_path):
    if not Path("/usr/bin/setpriv").exists():
        pytest.skip("setpriv (util-linux) is needed to drop root")
    if os.geteuid() != 0:
        pytest.skip("this test drops root with setpriv; it already runs unprivileged")
    r = run_cells([LOAD,
                   "%%ebpf\nopen('ran-the-cell', 'w').write('x')",
                   "%execsnoop 1",
                   "%ebpf attach 1 --seconds 1",
                   "import os; print('VALUES', __import__('json').dumps({'ran': os.path.exists('ran-the-cell'), "
                   "'bound': '_ebpf' in dir(), 'euid': os.geteuid()}))"], as_user=65534)
    assert r[0]["success"]
    for cell in r[1:4]:
        text = cell["stdout"] + cell["stderr"]
        assert cell["error"] == "UsageError", cell
        assert "needs root" in text and "run with sudo" in text, text      # says so, with the fix
    assert "the cell was NOT run" in r[1]["stdout"] + r[1]["stderr"]
    assert values(r[4]) == {"ran": False, "bound": False, "euid": 65534}


# -- for real --------------------------------------------------------------------------------------------
@bpf
def test_cell_is_traced_and_the_session_bound(tmp_path):
    report = tmp_path / "r.html"
    r = run_cells([
        LOAD,
        "%%ebpf --var run1 --no-timeline\n"
        "import subprocess\n"
        "subprocess.run(['sh', '-c', 'ls / > /dev/null; true'])\n"
        "live = run1.running                           # bound while the cell runs\n"
        "6 * 7",
        "import json\n"
        "ex = run1.tables['exec']\n"
        "print('VALUES', json.dumps({'running': run1.running, 'live': live, 'argv': ex['argv'].tolist(),\n"
        "      'ppids': sorted(set(ex['ppid'])), 'me': __import__('os').getpid(),\n"
        "      'lost': sum(run1.lost.values()), 'html': run1._repr_html_(),\n"
        "      'rows': {k: len(v) for k, v in run1.tables.items()}}))",
        f"%%ebpf --pmu page-faults --report {report}\n"
        "import subprocess\n"
        "subprocess.run(['true'])",
        "print('VALUES', json.dumps({'tables': sorted(_ebpf.tables), 'probes': [p.name for p in _ebpf.probes]}))",
    ])
    assert all(c["success"] for c in r), r
    cell = r[1]
    # status while compiling/attaching and while tracing, then the one-line summary
    assert "compiling and attaching" in cell["stdout"] and "tracing this kernel and its children" in cell["stdout"]
    line = re.search(r"^run1: (\d+) execs?, (\d+) process(?:es)? in \d+\.\d\d s; lost events: 0$", cell["stdout"], re.M)
    assert line, cell["stdout"]
    assert re.search(r"Out\[\d+\]: 42$", cell["stdout"], re.M)    # the cell's last expression is displayed
    v = values(r[2])
    assert v["rows"] == {"exec": int(line[1]), "processes": int(line[2])}     # the numbers are the tables' rows
    assert v["running"] is False and v["live"] is True and v["lost"] == 0
    assert ["sh", "-c", "ls / > /dev/null; true"] in v["argv"] and ["ls", "/"] in v["argv"]
    assert v["me"] in v["ppids"]                       # children of this (kernel) process
    assert "<table" in v["html"] and "recorded" in v["html"] and "exec" in v["html"]
    # --pmu adds PmuCounters (ExecSnoop only when asked), the timeline is shown, --report is written
    assert values(r[4]) == {"tables": ["pmu"], "probes": ["pmu"]}
    timeline = [d for d in r[3]["displays"] if "application/vnd.jupyter.widget-view+json" in d]
    assert timeline or "timeline skipped" in r[3]["stdout"], r[3]
    assert f"report written to {report}" in r[3]["stdout"]
    assert report.read_text().lstrip().lower().startswith("<!doctype html")
    assert not leftover_attachments()


@bpf
def test_cell_exception_keeps_the_data_and_is_reraised():
    r = run_cells([
        LOAD,
        "%%ebpf --var failed --no-timeline\n"
        "import subprocess\n"
        "subprocess.run(['sh', '-c', 'echo before the error > /dev/null'])\n"
        "raise ValueError('the cell failed')\n"
        "print('NOT ' + 'REACHED')",
        "import json\n"
        "print('VALUES', json.dumps({'running': failed.running,\n"
        "      'argv': failed.tables['exec']['argv'].tolist()}))",
    ])
    cell = r[1]
    assert not cell["success"] and cell["error"] == "ValueError"          # re-raised
    assert "the cell failed" in cell["stdout"] and "NOT REACHED" not in cell["stdout"]
    assert re.search(r"^failed: \d+ execs?, \d+ process(?:es)? in .*lost events: 0$", cell["stdout"], re.M)   # captured
    assert cell["stdout"].count("Traceback") <= 1 and cell["stdout"].count("ValueError: the cell failed") == 1
    v = values(r[2])
    assert v["running"] is False
    assert ["sh", "-c", "echo before the error > /dev/null"] in v["argv"]
    assert not leftover_attachments()


@bpf
def test_keyboard_interrupt_stops_tracing_and_keeps_the_data():
    r = run_cells([
        LOAD,
        "%%ebpf --var stopped --no-timeline\n"
        "import os, signal, subprocess, threading, time\n"
        "subprocess.run(['true'])\n"
        "threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()   # Ctrl-C / kernel interrupt\n"
        "time.sleep(60)\n"
        "print('NOT ' + 'REACHED')",
        "import json\n"
        "print('VALUES', json.dumps({'running': stopped.running, 'argv': stopped.tables['exec']['argv'].tolist(),\n"
        "      'lost': sum(stopped.lost.values())}))",
    ])
    cell = r[1]
    assert cell["error"] == "KeyboardInterrupt" and "NOT REACHED" not in cell["stdout"]
    assert re.search(r"^stopped: \d+ execs?, \d+ process(?:es)? in 0\.\d\d s", cell["stdout"], re.M)   # ~0.5 s, not 60
    v = values(r[2])
    assert v == {"running": False, "argv": v["argv"], "lost": 0} and ["true"] in v["argv"]
    assert not leftover_attachments()


@bpf
def test_unload_stops_running_sessions():
    r = run_cells([
        LOAD,
        # a background attach to a process tree, and a %%ebpf cell that unloads the extension itself
        "import subprocess, time\n"
        "p = subprocess.Popen(['sh', '-c', 'while :; do /bin/true; sleep 0.05; done'])\n"
        "time.sleep(0.2)",
        "%ebpf attach {p.pid} --var bg --no-timeline",
        "from ebpftoolkit.notebook import running_sessions\n"
        "import json; print('VALUES', json.dumps({'running': sorted(running_sessions()), 'bg': bg.running}))",
        "%%ebpf --var inner --no-timeline\n"
        "time.sleep(0.3)\n"
        "get_ipython().run_line_magic('unload_ext', 'ebpftoolkit')\n"
        "still = inner.running",
        "print('VALUES', json.dumps({'running': sorted(running_sessions()), 'bg': bg.running, 'inner': inner.running,\n"
        "      'still': still, 'execs': int((bg.tables['exec']['comm'] == 'true').sum())}))\n"
        "p.kill(); p.wait()",
        "%ebpf doctor",
        LOAD,
        "%ebpf attach {p.pid} --var again",       # p is gone: a clear error
    ])
    assert r[2]["success"], r[2]
    assert "in the background as bg" in r[2]["stdout"]
    assert values(r[3]) == {"running": ["bg"], "bg": True}
    assert r[4]["success"], r[4]
    assert "stopping bg" in r[4]["stdout"] and "stopping inner" in r[4]["stdout"]
    v = values(r[5])
    assert v["running"] == [] and not v["bg"] and not v["inner"] and not v["still"] and v["execs"] > 0
    assert r[6]["error"] == "UsageError"                 # the magics are gone
    assert r[7]["success"]
    assert r[8]["error"] == "UsageError" and "no process" in r[8]["stdout"] + r[8]["stderr"]
    assert not leftover_attachments()


@bpf
def test_attach_for_seconds_and_stop():
    r = run_cells([
        LOAD,
        "import subprocess, time, json\n"
        "p = subprocess.Popen(['sh', '-c', 'while :; do /bin/true; sleep 0.05; done'])\n"
        "time.sleep(0.2)",
        "%ebpf attach {p.pid} --seconds 1 --var att --no-timeline",
        "print('VALUES', json.dumps({'running': att.running, 'pids': sorted(set(att.tables['exec']['ppid'])),\n"
        "      'comms': sorted(set(att.tables['exec']['comm'])), 'p': p.pid}))",
        "%ebpf attach {p.pid} --var bg2 --no-timeline",
        "time.sleep(0.5)",
        "%ebpf stop bg2",
        "print('VALUES', json.dumps({'running': bg2.running, 'n': len(bg2.tables['exec'])})); p.kill(); p.wait()",
        "%ebpf stop",
    ])
    assert all(c["success"] for c in r), r
    assert "tracing pid" in r[2]["stdout"] and re.search(r"^att: \d+ execs?, \d+ process(?:es)? in 1\.\d\d s", r[2]["stdout"], re.M)
    v = values(r[3])
    assert not v["running"] and v["pids"] == [v["p"]] and {"true", "sleep"} <= set(v["comms"])
    bg2 = re.search(r"^bg2: (\d+) execs?, \d+ process(?:es)? in \d+\.\d\d s", r[6]["stdout"], re.M)
    v = values(r[7])
    assert not v["running"] and v["n"] > 0 and bg2 and int(bg2[1]) == v["n"]
    assert "no session is tracing" in r[8]["stdout"]
    assert not leftover_attachments()


@bpf
def test_execsnoop_watches_the_whole_machine_and_returns_a_dataframe(tmp_path):
    marker = tmp_path / "not-a-child-of-the-shell.sh"
    marker.write_text("#!/bin/sh\nexit 0\n")
    marker.chmod(0o755)
    # a process that is *not* a descendant of the IPython process: started by this test, outside it
    outside = subprocess.Popen(["sh", "-c", f"for i in $(seq 100); do {marker}; sleep 0.1; done"])
    try:
        r = run_cells([LOAD,
                       "df = %execsnoop 3",
                       "import json; print('VALUES', json.dumps({'type': type(df).__name__, "
                       "'files': df['filename'].tolist(), 'cols': list(df.columns)}))"])
    finally:
        outside.kill()
        outside.wait()
    assert all(c["success"] for c in r), r
    assert "watching every exec on this machine for 3 s" in r[1]["stdout"]
    assert "lost events: 0" in r[1]["stdout"]
    v = values(r[2])
    assert v["type"] == "DataFrame" and {"ts", "pid", "ppid", "comm", "argv", "retval"} <= set(v["cols"])
    assert v["files"].count(str(marker)) >= 10        # ~30 in 3 s, none of them the shell's children


@bpf
def test_ebpf_doctor():
    r = run_cells([LOAD, "%ebpf doctor"])
    assert r[1]["success"] and "ready: ebpftoolkit can run here" in r[1]["stdout"]
    assert "bpf syscall" in r[1]["stdout"]


@bpf
def test_attach_gpu_vulkan_to_a_running_program():
    res = subprocess.run(["make", "-C", str(ROOT / "workloads" / "gpu")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    vk = ROOT / "workloads" / "gpu" / "build" / "vk_compute"
    r = run_cells([
        LOAD,
        f"import subprocess, time, json\np = subprocess.Popen([{str(vk)!r}, '--iters', '10000000'], "
        "stdout=subprocess.DEVNULL)\ntime.sleep(1.0)",
        "%ebpf attach {p.pid} --gpu vulkan --seconds 2 --var vk --no-timeline",
        "g = vk.tables['gpu']\n"
        "print('VALUES', json.dumps({'alive': p.poll() is None, 'pids': sorted(set(g['pid'])), 'p': p.pid,\n"
        "      'apis': sorted(set(g['api'])), 'calls': g.groupby('call').size().to_dict(), 'rows': len(g),\n"
        "      'slowest': g.loc[g['duration_ns'].idxmax(), 'call'], 'max_ns': int(g['duration_ns'].max())}))\n"
        "p.kill(); p.wait()",
    ])
    assert all(c["success"] for c in r), r
    v = values(r[3])
    # the summary line: the GPU table's rows, and its slowest call (vkQueueWaitIdle has a return probe by default)
    line = re.search(r"^vk: (\d+) GPU calls in 2\.\d\d s; slowest call: (\w+) ([\d.]+) (us|ms|s) \(vk_compute "
                     r"\d+, at [\d.]+ s\); lost events: 0$", r[2]["stdout"], re.M)
    assert line, r[2]["stdout"]
    assert int(line[1]) == v["rows"] and line[2] == v["slowest"]
    assert abs(float(line[3]) * {"us": 1e3, "ms": 1e6, "s": 1e9}[line[4]] - v["max_ns"]) <= 0.01 * v["max_ns"]
    assert v["alive"] and v["pids"] == [v["p"]] and v["apis"] == ["vulkan"]
    # every iteration submits once and waits once (the loader's exported half, see workloads/gpu/README.md)
    assert v["calls"]["vkQueueSubmit"] > 10 and abs(v["calls"]["vkQueueSubmit"] - v["calls"]["vkQueueWaitIdle"]) <= 1
    assert not leftover_attachments()


@bpf
def test_session_and_probe_html(tmp_path, record):
    s, _ = record(["sh", "-c", "true"])
    html = s._repr_html_()
    for want in ("recorded", "exec", "processes", "rows", "lost events", "duration", s.metadata.kernel):
        assert want in html, want
    assert "color:#c00" not in html                     # nothing lost: nothing red
    probe_html = s.probes[0]._repr_html_()
    assert "ExecSnoop" in probe_html and "recorded" in probe_html and "max_args" in probe_html
    # a saved session whose exec probe lost events: the count shows in red
    folder = s.save(tmp_path / "saved")
    meta = json.loads((folder / "metadata.json").read_text())
    meta["lost"]["exec"] = 7
    (folder / "metadata.json").write_text(json.dumps(meta))
    from ebpftoolkit import Session
    html = Session.load(folder)._repr_html_()
    assert "color:#c00;font-weight:bold'>7<" in html and "recorded" in html


BPF_CELL = """%%bpf mine
struct ev { u32 pid; u32 n; };
BPF_RINGBUF_OUTPUT(events, 64);
BPF_HASH(counts, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if (!EBPF_TRACED())
        return 0;
    struct ev e = {.pid = bpf_get_current_pid_tgid() >> 32, .n = 1};
    events.ringbuf_output(&e, sizeof(e), 0);
    counts.increment(e.pid);
    return 0;
}
"""


@bpf
def test_bpf_cell_defines_a_probe_that_traces_cells():
    """%%bpf compiles and checks the program at once (a verifier rejection names the line), binds the
    probe; %%ebpf --probe traces cells with it beside ExecSnoop, twice, with exact counts."""
    r = run_cells([
        LOAD,
        BPF_CELL,
        "%%bpf broken\nBPF_HASH(c, u32, u64);\nTRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n"
        "    u32 k = 1;\n    u64 *v = c.lookup(&k);\n    return *v;\n}\n",
        "%%ebpf --probe nosuch\nprint('CELL-RAN-MARK')",
        "%%ebpf --probe mine --exec --var t1 --no-timeline\nimport os, subprocess\n"
        "for _ in range(321): os.getppid()\nsubprocess.run(['/bin/true'])",
        "%%ebpf --probe mine --var t2 --no-timeline\nfor _ in range(55): os.getppid()",
        "import json\nprint('VALUES', json.dumps({'t1': sorted(t1.tables), 'n1': int((t1.tables['mine.events']['pid']"
        " == os.getpid()).sum()), 'c1': int(t1.tables['mine.counts'].set_index('key')['value'].get(os.getpid(), 0)),"
        " 'n2': len(t2.tables['mine.events']), 'true': int((t1.tables['exec']['filename'] == '/bin/true').sum()),"
        " 'kind': type(mine).__name__, 'src': 'BPF_RINGBUF_OUTPUT(events, 64)' in mine.source,"
        " 'xlated': 'tracepoint__syscalls__sys_enter_getppid' in mine.dump_xlated()}))",
    ])
    assert r[1]["success"], r[1]
    assert "custom probe mine: compiled, loaded and unloaded" in r[1]["stdout"]
    assert "mine.counts" in r[1]["stdout"] and "records: mine.events" in r[1]["stdout"]
    assert not r[2]["success"] and r[2]["error"] == "UsageError"
    assert "broken.bpf.c:5: the kernel's BPF verifier rejected the program at `return *v;`" in r[2]["stderr"] + \
        r[2]["stdout"]
    assert not r[3]["success"] and "CELL-RAN-MARK" not in r[3]["stdout"]
    assert "define it with a `%%bpf nosuch` cell" in r[3]["stderr"] + r[3]["stdout"]
    assert r[4]["success"] and r[5]["success"], (r[4], r[5])
    v = values(r[6])
    assert v == {"t1": ["exec", "mine.counts", "mine.events", "processes"], "n1": 321, "c1": 321, "n2": 55,
                 "true": 1, "kind": "CustomProbe", "src": True, "xlated": True}
    assert not leftover_attachments()
