"""A process's lane is named after the process (its main thread), not after whichever thread made the
events (issue 17, item 7: a notebook kernel's lane was named "ZMQbg/IO/0")."""
from __future__ import annotations

import os
import threading
import time

from support import bpf
from ebpftoolkit import PmuSampler, Recording, Session, SyscallTrace
from ebpftoolkit.views.model import TraceModel


@bpf
def test_a_lane_is_named_after_the_main_thread_when_only_another_thread_traced(tmp_path):
    """CPU samples of this process (the notebook case) come only from a thread named "ZMQbg/IO/0" while
    the main thread waits: the lane is still named after the process."""
    def work():
        import ctypes
        ctypes.CDLL(None).prctl(15, b"ZMQbg/IO/0")       # PR_SET_NAME: this thread only
        t = time.thread_time() + 0.3
        while time.thread_time() < t:
            pass
    main = open(f"/proc/{os.getpid()}/comm").read().strip()
    with Session(PmuSampler("cpu-clock", 1_000_000)) as s:     # this process: the notebook case
        t = threading.Thread(target=work)
        t.start()
        t.join()
    sm = s.tables["pmu_samples"]
    mine = sm[(sm["pid"] == os.getpid()) & (sm["tid"] != os.getpid())]
    assert len(mine) >= 50 and "ZMQbg/IO/0" in set(mine["comm"])
    assert s.recording.metadata.process_names[os.getpid()] == main
    for rec in (s.recording, Recording.load(s.save(tmp_path / "r"))):       # and after a save and load
        m = TraceModel.from_recording(rec)
        assert m.process_names[os.getpid()] == main
        assert m.thread_names[(os.getpid(), int(mine["tid"].iloc[0]))] == "ZMQbg/IO/0"


@bpf
def test_syscalls_without_arguments_can_be_traced_with_nargs():
    """getppid and getpid record no arguments: asking for nargs=3 gives them 0s (it failed to attach)."""
    with Session(SyscallTrace(["getppid", "getpid", "write"], nargs=3), descendants_of="command") as s:
        s.run(["python3", "-c", "import os\nfor _ in range(5): os.getppid()\nos.getpid()\nprint('x')"],
              capture_output=True, check=True)
    sc = s.tables["syscalls"]
    g = sc[sc["syscall"] == "getppid"]
    assert len(g) >= 5 and (g[["arg0", "arg1", "arg2"]] == 0).all().all()
    w = sc[(sc["syscall"] == "write") & (sc["arg0"] == 1)]
    assert len(w) >= 1 and (w["arg2"] > 0).all()                  # its three arguments are read


def test_the_name_read_at_stop_wins_over_another_threads_events():
    """Without a row of the main thread, the lane used to take the last thread's comm."""
    import pandas as pd
    from ebpftoolkit.views.model import _names
    pmu = pd.DataFrame({"pid": [10, 10], "tid": [11, 12], "comm": ["ZMQbg/IO/0", "ZMQbg/IO/1"]})
    assert _names({"pmu_samples": pmu})[0][10] == "ZMQbg/IO/1"                       # what it was
    proc, thread = _names({"pmu_samples": pmu}, {10: "python3"})
    assert proc[10] == "python3" and thread[(10, 11)] == "ZMQbg/IO/0"
    main = pd.DataFrame({"pid": [10], "tid": [10], "comm": ["kernel"]})             # a main-thread row still wins
    assert _names({"pmu_samples": pd.concat([pmu, main])}, {10: "python3"})[0][10] == "kernel"
