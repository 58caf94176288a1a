"""CustomProbe with BCC C that writes to a perf event array (BPF_PERF_OUTPUT / perf_submit): the
records are read through libbpf's perf_buffer (runtime/perfbuffer.py), exact counts, no losses.
Also PerfBufferReader's typed errors on a map that is not a perf event array, and after close."""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np
import pytest

from support import bpf, leftover_attachments
from ebpftoolkit import CustomProbe, Session
from ebpftoolkit.errors import ProbeConfigError, ProbeStateError
from ebpftoolkit.runtime.bpffs import BPFFS
from ebpftoolkit.runtime.libbpf import _lib
from ebpftoolkit.runtime.perfbuffer import PerfBufferReader

PERF = r'''
struct record {
    u32 pid;
    u64 n;
    char comm[16];
};
BPF_PERF_OUTPUT(events);
BPF_ARRAY(seq, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if (!EBPF_TRACED())
        return 0;
    u32 z = 0;
    u64 *n = seq.lookup(&z);
    if (!n)
        return 0;
    struct record rec = {};
    rec.pid = bpf_get_current_pid_tgid() >> 32;
    rec.n = __sync_fetch_and_add(n, 1);
    bpf_get_current_comm(&rec.comm, sizeof(rec.comm));
    events.perf_submit(args, &rec, sizeof(rec));
    return 0;
}
'''

CALLER = "import os, sys\nn = int(sys.argv[1])\nfor _ in range(n): os.getppid()\nprint(os.getpid(), n)"
N = 2000


@bpf
def test_a_full_perf_buffer_loses_records_that_are_counted_exactly():
    """A burst far larger than the perf buffers hold between two reads: every record is either read or
    counted lost at its perf_submit() (the kernel's own lost reports miss what is lost after the last
    sample that got through, so they are not what is counted)."""
    p = CustomProbe(PERF, name="burst")
    with pytest.warns(Warning, match="lost"):
        with Session(p, descendants_of="command", poll_interval=0.5) as s:
            s.run([sys.executable, "-c", CALLER, "300000"], capture_output=True, check=True)
    got = len(s.tables["burst.events"])
    assert got > 0 and s.lost["burst"] > 0
    assert got + s.lost["burst"] == 300000 == int(s.tables["burst.seq"]["value"].sum())


def _pinned_left() -> list[str]:
    return [p.name for p in BPFFS.iterdir() if p.name.startswith(f"ebpftoolkit-{os.getpid()}-")] \
        if BPFFS.is_dir() else []


@bpf
def test_perf_submit_records_exact_and_nothing_lost():
    """N getppid() calls of the traced child: N rows with its pid and comm, n running 0..N-1 (no record
    lost or doubled), the loss count 0, and nothing left attached or pinned afterwards."""
    p = CustomProbe(PERF, name="p")
    with Session(p, descendants_of="command") as s:
        res = s.run([sys.executable, "-c", CALLER, str(N)], capture_output=True, check=True)
    pid = int(res.stdout.split()[0])
    ev = s.tables["p.events"]
    assert list(ev.columns) == ["pid", "n", "comm"]
    assert len(ev) == N
    assert set(ev["pid"]) == {pid}
    assert sorted(ev["n"].tolist()) == list(range(N))        # per-CPU rings: in order within a CPU only
    assert set(ev["comm"]) == {os.path.basename(sys.executable)[:15]}
    assert s.lost["p"] == 0
    assert s.recording.metadata.events["p.events"] == N
    assert int(s.tables["p.seq"]["value"].sum()) == N
    assert not leftover_attachments() and not _pinned_left()


@bpf
def test_short_samples_are_counted_lost_never_misread():
    """perf_submit of 4 bytes of a 32-byte record: no rows (nothing decoded from a short sample), every
    sample counted in the loss count."""
    short = PERF.replace("events.perf_submit(args, &rec, sizeof(rec))", "events.perf_submit(args, &rec, 4)")
    with pytest.warns(Warning, match="lost"), pytest.warns(Warning, match="has no records"):
        with Session(CustomProbe(short, name="short"), descendants_of="command") as s:
            s.run([sys.executable, "-c", CALLER, "300"], capture_output=True, check=True)
    assert len(s.tables["short.events"]) == 0
    assert s.lost["short"] == 300 == int(s.tables["short.seq"]["value"].sum())


# No tiny-perf-buffer case: CustomProbe has no option for the perf buffer's size (bcc_module.py builds
# PerfReader(fd, dtype) with the default 64 pages per CPU), and a skipped BPF test fails CI (conftest.py).


def _map_create(map_type: int, key_size: int, value_size: int, entries: int) -> int:
    lib = _lib()
    lib.bpf_map_create.restype = ctypes.c_int
    lib.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                   ctypes.c_uint32, ctypes.c_void_p]
    fd = lib.bpf_map_create(map_type, b"ebt_test", key_size, value_size, entries, None)
    assert fd >= 0, os.strerror(-fd)
    return fd


@bpf
def test_reader_typed_errors():
    """Not a map, not a perf event array, pages not a power of two: ProbeConfigError saying what to pass;
    drain() after close(): ProbeStateError; close() twice is fine."""
    dt = np.dtype([("pid", "u4"), ("n", "u8")])
    r, w = os.pipe()
    try:
        with pytest.raises(ProbeConfigError, match="not a BPF map"):
            PerfBufferReader(r, 8, dt)
    finally:
        os.close(r)
        os.close(w)
    hash_fd = _map_create(1, 4, 4, 8)
    try:
        with pytest.raises(ProbeConfigError, match="not a perf event array"):
            PerfBufferReader(hash_fd, 8, dt)
    finally:
        os.close(hash_fd)
    perf_fd = _map_create(4, 4, 4, os.cpu_count() or 1)
    try:
        with pytest.raises(ProbeConfigError, match="power of two"):
            PerfBufferReader(perf_fd, 3, dt)
        reader = PerfBufferReader(perf_fd, 1, dt)
        assert len(reader.drain()) == 0 and reader.drain().dtype == dt and reader.lost == 0
        reader.close()
        reader.close()
        with pytest.raises(ProbeStateError, match="closed"):
            reader.drain()
        assert reader.lost == 0
    finally:
        os.close(perf_fd)
