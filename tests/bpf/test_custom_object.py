"""CustomProbe with libbpf-style C and with objects users build with clang (issue 15): real
programs traced, exact counts.

Oracles: the workload's own counts, bpftrace's count of the same uprobe in the same run, and
the CLI's saved recording read back.  Errors: clang's and the verifier's, located in the
user's lines; a record type missing from the object's BTF said with the way to fix it."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from support import Bpftrace, bpf, leftover_attachments, libc_path
from ebpftoolkit import CustomProbe, Recording, Session
from ebpftoolkit.errors import PmuUnsupportedError, ProbeAttachError, ProbeCompileError, ProbeConfigError
from ebpftoolkit.runtime.bpfcompile import include_dir, vmlinux_h
from ebpftoolkit.runtime.perf import hardware_pmu_available

HEAD = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n#include "ebpftoolkit.bpf.h"\n'

GETPPID = HEAD + r'''
struct event { __u32 pid; __u32 seq; __u64 ts; char comm[16]; };
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, RING_BYTES); } events SEC(".maps");
EBPF_RECORD(events, struct event);
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, __u32); __type(value, __u64); }
    counts SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    if (!EBPF_TRACED())
        return 0;
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    __u64 one = 1, *c = bpf_map_lookup_elem(&counts, &pid);
    __u64 seq = c ? *c : 0;
    if (c)
        __sync_fetch_and_add(c, 1);
    else
        bpf_map_update_elem(&counts, &pid, &one, BPF_ANY);
    struct event *e = EBPF_RINGBUF_RESERVE(&events, sizeof(*e));
    if (!e)
        return 0;
    e->pid = pid;
    e->seq = seq;
    e->ts = bpf_ktime_get_ns();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, 0);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
'''

CALLER = "import os, sys\nn = int(sys.argv[1])\nfor _ in range(n): os.getppid()\nprint(os.getpid(), n)"


def _source(tmp_path, text, name="getppid.bpf.c", ring=1 << 22) -> Path:
    p = tmp_path / name
    p.write_text(text.replace("RING_BYTES", str(ring)))
    return p


@bpf
def test_libbpf_source_records_and_maps_exactly_in_scope(tmp_path):
    """2000 getppid calls of a traced Python process: 2000 rows with its pid and seq 0..1999, the
    hash map says 2000; a process outside the session's scope, calling it meanwhile, is not seen."""
    p = CustomProbe.from_libbpf_source(_source(tmp_path, GETPPID), name="mine")
    with Session(p, descendants_of="command") as s:
        outside = subprocess.Popen([sys.executable, "-c", CALLER, "3000"], stdout=subprocess.PIPE, text=True)
        res = s.run([sys.executable, "-c", CALLER, "2000"], capture_output=True, text=True, check=True)
        outside_pid = int(outside.communicate(timeout=60)[0].split()[0])
    pid = int(res.stdout.split()[0])
    ev = s.tables["mine.events"]
    assert list(ev.columns) == ["pid", "seq", "ts", "comm"]
    assert (ev["pid"] == pid).all() and ev["seq"].tolist() == list(range(2000))
    assert set(ev["comm"]) == {Path(sys.executable).name[:15]}
    assert ev["ts"].is_monotonic_increasing and ev["ts"].iloc[0] >= s.metadata.start
    counts = dict(zip(s.tables["mine.counts"]["key"], s.tables["mine.counts"]["value"]))
    assert counts == {pid: 2000} and outside_pid not in counts
    assert s.lost["mine"] == 0
    det = s.recording.metadata.probes["mine"].details
    assert det["attached"] == ["tracepoint syscalls/sys_enter_getppid -> on_getppid"]
    assert det["flavour"] == "libbpf_source" and det["file"] == "getppid.bpf.c"
    assert "getppid.bpf.c" not in " ".join(s.metadata.notes)        # nothing to warn about
    assert not leftover_attachments()


@bpf
def test_whole_machine_scope_sees_every_process(tmp_path):
    p = CustomProbe.from_libbpf_source(_source(tmp_path, GETPPID), name="all")
    with Session(p) as s:
        out = subprocess.run([sys.executable, "-c", CALLER, "500"], capture_output=True, text=True, check=True)
    pid = int(out.stdout.split()[0])
    assert dict(zip(s.tables["all.counts"]["key"], s.tables["all.counts"]["value"]))[pid] == 500
    assert (s.tables["all.events"]["pid"] == pid).sum() == 500


@bpf
def test_a_full_ring_loses_records_that_are_counted_exactly(tmp_path):
    p = CustomProbe.from_libbpf_source(_source(tmp_path, GETPPID, ring=4096), name="small")
    with pytest.warns(Warning, match="lost"):
        with Session(p, descendants_of="command", poll_interval=0.5) as s:
            s.run([sys.executable, "-c", CALLER, "100000"], capture_output=True, check=True)
    got = len(s.tables["small.events"])
    assert got > 0 and s.lost["small"] > 0
    assert got + s.lost["small"] == 100000 == int(s.tables["small.counts"]["value"].sum())


MALLOC = HEAD + r'''
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096); __type(key, __u32); __type(value, __u64); }
    calls SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096); __type(key, __u32); __type(value, __u64); }
    big SEC(".maps");

static void bump(void *map, __u32 pid)
{
    __u64 one = 1, *n = bpf_map_lookup_elem(map, &pid);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        bpf_map_update_elem(map, &pid, &one, BPF_NOEXIST);
}

SEC("uprobe")
int BPF_KPROBE(on_malloc, __u64 size)
{
    if (!EBPF_TRACED())
        return 0;
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    bump(&calls, pid);
    if (size == 123457)
        bump(&big, pid);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
'''



@bpf
def test_object_built_by_the_user_against_bpftrace(tmp_path):
    """The user builds the object with clang as libbpf tools do; a uprobe on libc's malloc counts
    the traced sort's calls exactly as bpftrace counts the same uprobe in the same run, and 300
    calls of malloc(123457) from Python (the argument read with BPF_KPROBE)."""
    src = _source(tmp_path, MALLOC, "heap.bpf.c")
    obj = tmp_path / "heap.bpf.o"
    arch = {"x86_64": "x86", "aarch64": "arm64"}[platform.machine()]
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{arch}", f"-I{vmlinux_h().parent}",
                    f"-I{include_dir()}", "-c", str(src), "-o", str(obj)], check=True)
    libc = libc_path()
    data = tmp_path / "words"
    data.write_text("\n".join(f"{(i * 7919) % 100003:06d} line" for i in range(40000)))
    bt = Bpftrace({"n": f"{libc}:malloc"}, where='comm == "sort"')
    p = CustomProbe.from_object(obj, name="heap", uprobes={"on_malloc": "c:malloc"})
    with Session(p, descendants_of="command") as s:
        s.run(["sort", "-o", str(tmp_path / "sorted"), str(data)], check=True)
        py = s.run([sys.executable, "-c", "import ctypes, os\nlibc = ctypes.CDLL(None)\nlibc.malloc.restype = "
                    "ctypes.c_void_p\nfor _ in range(300): libc.malloc(123457)\nprint(os.getpid())"],
                   capture_output=True, check=True)
    theirs = bt.counts()["n"]
    sort_pid = next(c.pid for c in s.recording.metadata.commands if c.argv[0] == "sort")
    calls = dict(zip(s.tables["heap.calls"]["key"], s.tables["heap.calls"]["value"]))
    assert calls[sort_pid] == theirs > 0
    assert dict(zip(s.tables["heap.big"]["key"], s.tables["heap.big"]["value"])) == {int(py.stdout.split()[0]): 300}
    det = s.recording.metadata.probes["heap"].details
    assert det["attached"] == [f"uprobe {libc}:malloc -> on_malloc"] and det["not_attached"] == []
    assert not leftover_attachments()


@bpf
def test_cli_records_a_probe_file_and_saves_its_tables(tmp_path):
    src = _source(tmp_path, GETPPID, "pp.bpf.c")
    out = tmp_path / "rec"
    res = subprocess.run([sys.executable, "-m", "ebpftoolkit", "record", "--probe-file", str(src), "-o", str(out),
                          "--", sys.executable, "-c", CALLER, "777"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rec = Recording.load(out)
    pid = int(res.stdout.split()[0])
    assert (rec.tables["pp.events"]["pid"] == pid).sum() == 777
    assert dict(zip(rec.tables["pp.counts"]["key"], rec.tables["pp.counts"]["value"])) == {pid: 777}
    assert "exec" not in rec.tables            # only what was asked for


@bpf
def test_errors_name_the_users_line_and_the_fix(tmp_path):
    bad = GETPPID.replace("e->seq = seq;", "e->seq = sq;")
    line = bad.splitlines().index("    e->seq = sq;") + 1
    with pytest.raises(ProbeCompileError, match=rf"getppid\.bpf\.c:{line}:\d+: error: use of undeclared identifier 'sq'"):
        Session(CustomProbe.from_libbpf_source(_source(tmp_path, bad)), descendants_of="command").start()
    unchecked = GETPPID.replace("__u64 seq = c ? *c : 0;", "__u64 seq = *c;")
    line = unchecked.splitlines().index("    __u64 seq = *c;") + 1
    with pytest.raises(ProbeCompileError, match=rf"getppid\.bpf\.c:{line}: .*__u64 seq = \*c;.*invalid mem access"):
        Session(CustomProbe.from_libbpf_source(_source(tmp_path, unchecked)), descendants_of="command").start()
    untyped = GETPPID.replace("EBPF_RECORD(events, struct event);", "")
    with pytest.raises(ProbeConfigError, match=r"EBPF_RECORD\(events, struct event\)"):
        Session(CustomProbe.from_libbpf_source(_source(tmp_path, untyped)), descendants_of="command").start()
    with pytest.raises(ProbeConfigError, match=r"nope.*EBPF_RECORD"):
        Session(CustomProbe.from_libbpf_source(_source(tmp_path, untyped), records={"events": "struct nope"}),
                descendants_of="command").start()
    with pytest.raises(ProbeAttachError, match="no_such_function_xyz.*nm -D"):
        Session(CustomProbe.from_libbpf_source(_source(tmp_path, MALLOC, "heap.bpf.c"),
                                               uprobes={"on_malloc": "c:no_such_function_xyz"}),
                descendants_of="command").start()
    if not hardware_pmu_available()[0]:       # this VM: no hardware PMU (doctor says so)
        with pytest.raises(PmuUnsupportedError, match=r"cache-misses for on_malloc: .*Software events"):
            Session(CustomProbe.from_libbpf_source(_source(tmp_path, MALLOC, "heap.bpf.c"),
                                                   perf_events={"on_malloc": ("cache-misses", 1000)}),
                    descendants_of="command").start()
    with pytest.raises(ProbeConfigError, match="does not exist"):
        Session(CustomProbe.from_object(tmp_path / "missing.bpf.o"), descendants_of="command").start()
    assert not leftover_attachments()


MAPS = HEAD + r'''
#define MAP(kind, name, n, k, v) struct { __uint(type, kind); __uint(max_entries, n); __type(key, k); \
    __type(value, v); } name SEC(".maps")
struct pair { __u32 calls; __u32 last_tid; };
MAP(BPF_MAP_TYPE_ARRAY, arr, 4, __u32, struct pair);
MAP(BPF_MAP_TYPE_PERCPU_ARRAY, pca, 1, __u32, __u64);
MAP(BPF_MAP_TYPE_HASH, h, 64, __u32, __u64);
MAP(BPF_MAP_TYPE_PERCPU_HASH, ph, 64, __u32, __u64);
MAP(BPF_MAP_TYPE_LRU_HASH, lh, 64, __u32, __u64);
MAP(BPF_MAP_TYPE_LRU_PERCPU_HASH, lph, 64, __u32, __u64);

static void bump(void *map, __u32 key)
{
    __u64 one = 1, *n = bpf_map_lookup_elem(map, &key);
    if (n)
        *n += 1;
    else
        bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    if (!EBPF_TRACED())
        return 0;
    __u32 pid = bpf_get_current_pid_tgid() >> 32, one = 1, zero = 0;
    struct pair *p = bpf_map_lookup_elem(&arr, &one);
    if (p) {
        __sync_fetch_and_add(&p->calls, 1);
        p->last_tid = (__u32)bpf_get_current_pid_tgid();
    }
    __u64 *c = bpf_map_lookup_elem(&pca, &zero);
    if (c)
        *c += 1;
    __u64 *n = bpf_map_lookup_elem(&h, &pid);
    if (n)
        __sync_fetch_and_add(n, 1);
    else {
        __u64 first = 1;
        bpf_map_update_elem(&h, &pid, &first, BPF_NOEXIST);
    }
    bump(&ph, pid);
    bump(&lh, pid);
    bump(&lph, pid);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
'''


@bpf
def test_every_table_map_kind_reads_back_exactly(tmp_path):
    """array (struct values), per-CPU array, hash, per-CPU hash, LRU hash and LRU per-CPU hash: 900
    getppid calls of a single-threaded process, read back at stop (per-CPU values summed over CPUs)."""
    p = CustomProbe.from_libbpf_source(_source(tmp_path, MAPS, "maps.bpf.c"), name="m")
    with Session(p, descendants_of="command") as s:
        res = s.run([sys.executable, "-c", CALLER, "900"], capture_output=True, text=True, check=True)
    pid = int(res.stdout.split()[0])
    t = s.tables
    assert t["m.arr"]["key"].tolist() == [0, 1, 2, 3]
    assert t["m.arr"]["calls"].tolist() == [0, 900, 0, 0] and t["m.arr"]["last_tid"].tolist()[1] == pid
    assert t["m.pca"]["value"].tolist() == [900]
    for name in ("h", "ph", "lh", "lph"):
        assert dict(zip(t[f"m.{name}"]["key"], t[f"m.{name}"]["value"])) == {pid: 900}, name
    assert s.recording.metadata.probes["m"].details["maps"] == ["arr", "h", "lh", "lph", "pca", "ph"]


@bpf
def test_an_object_on_a_tracepoint_and_libbpf_source_on_a_uprobe(tmp_path):
    """The two flavours the other tests leave: a clang-built object's tracepoint, a libbpf source's
    uprobe, counted exactly against the workload's own numbers."""
    from ebpftoolkit.runtime.bpfcompile import compile_bpf_source
    obj = compile_bpf_source(_source(tmp_path, GETPPID), tmp_path / "getppid.bpf.o")
    tp = CustomProbe.from_object(obj, name="tp")
    up = CustomProbe.from_libbpf_source(_source(tmp_path, MALLOC, "heap.bpf.c"), name="up",
                                        uprobes={"on_malloc": "c:malloc"})
    with Session(tp, up, descendants_of="command") as s:
        a = s.run([sys.executable, "-c", CALLER, "1500"], capture_output=True, text=True, check=True)
        b = s.run([sys.executable, "-c", "import ctypes, os\nlibc = ctypes.CDLL(None)\nlibc.malloc.restype = "
                   "ctypes.c_void_p\nfor _ in range(444): libc.malloc(123457)\nprint(os.getpid())"],
                  capture_output=True, text=True, check=True)
    pa, pb = int(a.stdout.split()[0]), int(b.stdout.split()[0])
    assert (s.tables["tp.events"]["pid"] == pa).sum() == 1500
    assert dict(zip(s.tables["tp.counts"]["key"], s.tables["tp.counts"]["value"])) == {pa: 1500}
    assert dict(zip(s.tables["up.big"]["key"], s.tables["up.big"]["value"])) == {pb: 444}
    assert s.recording.metadata.probes["tp"].details["flavour"] == "object"
