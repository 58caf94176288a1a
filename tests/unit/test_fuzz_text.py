"""Random bytes from the kernel, as comm, filename and argv, through the whole path: the
records exactly as the BPF program lays them out -> ExecSnoop's decoder -> Recording ->
save -> load -> HTML report -> Chrome trace (dict and file) -> terminal line.

Nothing on that path may raise, the bytes must stay recoverable (up to the first NUL,
where the kernel's strings end), and nothing that reaches a browser, a trace viewer or a
terminal may carry a raw control character or a byte that is not UTF-8."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpftoolkit import Recording
from ebpftoolkit.commands.execsnoop import format_row
from ebpftoolkit.metadata import ProbeMeta, RecordingMetadata
from ebpftoolkit.probes.execsnoop.probe import TASK_EVENT, ExecSnoop
from ebpftoolkit.probes.execsnoop.tables import TASK_EVENTS
from ebpftoolkit.runtime.records import decode_str
from ebpftoolkit.views import render_html, to_chrome_trace

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])

#: bytes the way they come: anything, often cut inside a multi-byte character
_INTERESTING = [b"\xff", b"\xfe", b"\x1b[2J", b"\x07", b"\xe3\x82", "スクリプト".encode(), b"<script>", b"\\", b"\n", b"\0"]
kernel_bytes = st.one_of(st.binary(max_size=40),
                         st.lists(st.sampled_from(_INTERESTING), max_size=8).map(b"".join))


class _Clock:
    """ExecSnoop's tables need only ``to_wall``; boot time here is a fixed wall time."""
    T0 = pd.Timestamp("2026-12-01 12:00:00")

    def to_wall(self, ns):
        return self.T0 + pd.to_timedelta(np.asarray(ns, dtype=np.int64), unit="ns")


def _records(probe: ExecSnoop, rows):
    ex = np.zeros(len(rows), probe.exec_layout.dtype)
    tasks = np.zeros(2 * len(rows), TASK_EVENT.dtype)
    for i, (comm, filename, argv) in enumerate(rows):
        pid = 1000 + i
        ex[i]["ts"], ex[i]["ts_done"], ex[i]["pid"], ex[i]["tid"], ex[i]["ppid"] = 10 + i, 20 + i, pid, pid, 1
        ex[i]["comm"], ex[i]["filename"], ex[i]["argc"] = comm, filename, len(argv)
        for j, a in enumerate(argv):
            ex[i]["args"][j] = a
        for k, (typ, ts) in enumerate([(TASK_EVENTS["FORK"], 5 + i), (TASK_EVENTS["EXIT"], 500 + i)]):
            t = tasks[2 * i + k]
            t["ts"], t["type"], t["pid"], t["tid"], t["ppid"], t["comm"] = ts, typ, pid, pid, 1, comm
    return {"exec_events": ex, "exec_tasks": tasks}


def _kernel_string(b: bytes, size: int) -> bytes:
    """What the program sees of ``b`` in a char[size] field: cut, NUL-terminated."""
    return b[:size - 1].split(b"\0", 1)[0]


@FUZZ
@given(rows=st.lists(st.tuples(kernel_bytes, kernel_bytes, st.lists(kernel_bytes, max_size=4)), min_size=1, max_size=6))
def test_random_bytes_survive_decode_save_load_report_and_trace(tmp_path_factory, rows):
    probe = ExecSnoop(max_args=4, max_arg_len=32, filename_len=64)
    rows = [(_kernel_string(c, 16), _kernel_string(f, 64), [_kernel_string(a, 32) for a in argv])
            for c, f, argv in rows]
    tables = probe.make_tables(_records(probe, rows), _Clock())
    assert len(tables["exec"]) == len(rows)
    meta = RecordingMetadata(kernel="6.18", host="h", probes={"exec": ProbeMeta("ExecSnoop", probe.config, {})},
                             start=_Clock.T0, end=_Clock.T0 + pd.Timedelta(1, "s"))
    rec = Recording(tables, meta)

    back = Recording.load(rec.save(tmp_path_factory.mktemp("fuzz") / "r"))
    ex = back.tables["exec"].sort_values("pid").reset_index(drop=True)
    for (comm, filename, argv), got in zip(rows, ex.itertuples()):
        # the original bytes come back exactly
        assert got.comm.encode("utf-8", "surrogateescape") == comm
        assert got.filename.encode("utf-8", "surrogateescape") == filename
        assert [a.encode("utf-8", "surrogateescape") for a in got.argv] == argv
        assert got.comm == decode_str(comm)
    pd.testing.assert_frame_equal(back.tables["exec"], rec.tables["exec"])

    doc = render_html(back)
    assert "could not be drawn" not in doc, doc[doc.find("could not be drawn"):][:400]
    doc.encode("utf-8")                                       # no lone surrogate reaches the browser
    assert not any(ch in doc for ch in "\x1b\x07\x00")
    # markup from the traced programs stays text: as many tags as in the report of harmless names
    tame = {"exec": back.tables["exec"].assign(comm="x", filename="x", argv=[["x"]] * len(ex)),
            "processes": back.tables["processes"].assign(comm="x", parent_comm="x")}
    plain = render_html(Recording(tame, meta))
    for tag in ("<script", "<img", "<svg", "<a "):
        assert doc.count(tag) == plain.count(tag), tag

    trace = to_chrome_trace(back)
    json.dumps(trace, allow_nan=False, ensure_ascii=False).encode("utf-8")
    path = to_chrome_trace(back, tmp_path_factory.mktemp("trace") / "t.json")
    with open(path, encoding="utf-8") as f:                  # the file is valid UTF-8 JSON
        assert len(json.load(f)["traceEvents"]) >= len(rows)

    for r in ex.itertuples():
        line = format_row(SimpleNamespace(ts=r.ts, comm=r.comm, pid=r.pid, ppid=r.ppid, retval=r.retval,
                                          error=r.error, argv=r.argv, argv_truncated=r.argv_truncated))
        line.encode("utf-8")
        assert line.isprintable(), repr(line)
