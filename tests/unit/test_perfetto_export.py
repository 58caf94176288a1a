"""The Perfetto export (views/perfetto_trace.py), read back with the ``perfetto`` package's own
protos: a hand-made recording slice by slice, random recordings against the TraceModel they
come from, chunked writing, and ``ebpftoolkit export --format perfetto``."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent

from recordings import T0, exec_table, gpu_table, pmu_table, process_table, recordings
from ebpftoolkit import Recording
from ebpftoolkit.analysis.gpu import frames
from ebpftoolkit.cli import main
from ebpftoolkit.metadata import ProbeMeta, RecordingMetadata
from ebpftoolkit.probes.pmu.config import PmuConfig
from ebpftoolkit.text import printable
from ebpftoolkit.views import TraceModel, to_perfetto
from ebpftoolkit.views import perfetto_trace
from ebpftoolkit.views.model import NAT

MS = 1_000_000
T0_NS = T0.value


def _value(d):
    if d.array_values:
        return [_value(x) for x in d.array_values]
    for f in ("int_value", "string_value", "bool_value", "uint_value", "double_value"):
        if d.HasField(f):
            return getattr(d, f)
    raise AssertionError(f"annotation without a value: {d}")


def parse(path) -> dict:
    """The trace at ``path`` as tracks and per-track slices, instants and counters, read with the
    package's ``Trace`` proto: interned names resolved, begin/end paired per track (so slices nest),
    every event on a described track, in time order, on one sequence that cleared its state first."""
    trace = Trace()
    trace.ParseFromString(Path(path).read_bytes())
    desc, names, cats, anns = {}, {}, {}, {}
    out = {"slices": [], "instants": [], "counters": []}
    stacks: dict[int, list] = {}
    last, cleared = None, False
    for p in trace.packet:
        assert p.trusted_packet_sequence_id == perfetto_trace.SEQUENCE_ID
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            assert d.uuid not in desc and (not d.HasField("parent_uuid") or d.parent_uuid in desc)
            desc[d.uuid] = d
            continue
        assert p.HasField("track_event"), p
        if p.sequence_flags & TraceProtoFlags.CLEARED:
            names, cats, anns, cleared = {}, {}, {}, True
        assert cleared and p.sequence_flags & TraceProtoFlags.NEEDS
        names.update((x.iid, x.name) for x in p.interned_data.event_names)
        cats.update((x.iid, x.name) for x in p.interned_data.event_categories)
        anns.update((x.iid, x.name) for x in p.interned_data.debug_annotation_names)
        te, ts = p.track_event, p.timestamp
        assert te.track_uuid in desc and (last is None or ts >= last), p
        last = ts
        where = _where(desc, te.track_uuid)
        if te.type == TrackEvent.TYPE_SLICE_END:
            assert stacks.get(where), f"an end without a begin on {where}"
            s = stacks[where].pop()
            s["end"] = ts
            out["slices"].append(s)
        elif te.type == TrackEvent.TYPE_COUNTER:
            out["counters"].append({"track": where, "ts": ts, "value": te.counter_value})
        else:
            ev = {"track": where, "ts": ts, "name": names[te.name_iid], "cats": [cats[i] for i in te.category_iids],
                  "args": {anns[d.name_iid]: _value(d) for d in te.debug_annotations}}
            if te.type == TrackEvent.TYPE_SLICE_BEGIN:
                stacks.setdefault(where, []).append(ev)
            else:
                assert te.type == TrackEvent.TYPE_INSTANT, p
                out["instants"].append(ev)
    assert not any(stacks.values()), "slices without an end"
    out["tracks"] = {_where(desc, u): d for u, d in desc.items()}
    return out


class TraceProtoFlags:
    CLEARED, NEEDS = 1, 2              # TracePacket.SequenceFlags


def _where(desc, uuid):
    """A track as ("process", pid), ("thread", pid, tid), (pid, child name) or ("ebpftoolkit", name)."""
    d = desc[uuid]
    if d.HasField("process"):
        return ("process", d.process.pid)
    if d.HasField("thread"):
        return ("thread", d.thread.pid, d.thread.tid)
    if not d.HasField("parent_uuid"):
        return ("ebpftoolkit", d.name)
    parent = desc[d.parent_uuid]
    return (parent.process.pid if parent.HasField("process") else parent.name, d.name)


def on(tr, track):
    """(start, end, name) of the slices on a track, in time order."""
    return sorted((s["ts"], s["end"], s["name"]) for s in tr["slices"] if s["track"] == track)


# -- a recording made by hand ---------------------------------------------------------------
def hand_made() -> Recording:
    rng = np.random.default_rng(0)
    at = lambda *ms: pd.Series([T0 + pd.Timedelta(int(x * MS), "ns") for x in ms])   # noqa: E731
    procs = process_table(rng, [100, 200], 10, False, 0.0)
    procs["comm"] = pd.Series(["app", "a\udcffb"], dtype=object)
    procs["start_ts"], procs["fork_ts"] = at(0, 1), at(0, 1)
    procs["exit_ts"] = [T0 + pd.Timedelta(10 * MS, "ns"), pd.NaT]
    procs["lifetime"] = procs["exit_ts"] - procs["start_ts"]
    ex = exec_table(rng, 2, 10, [100], False, 0.0)
    ex["ts"], ex["end_ts"] = at(0.5, 2), at(9, 2)
    ex["pid"], ex["tid"], ex["ppid"], ex["retval"] = [100, 200], [100, 200], [1, 100], [0, -2]
    ex["comm"] = pd.Series(["app", "a\udcffb"], dtype=object)
    ex["filename"] = pd.Series(["/usr/bin/app", "/nope"], dtype=object)
    ex["argv"] = pd.Series([["app", "-x\x1b"], ["nope"]], dtype=object)
    ex["error"] = pd.Series([None, "ENOENT"], dtype=object)
    calls = [  # tid, ms, duration ns, api, call, category
        (100, 1, 1000, "opengl", "glBufferData", "copy_h2d"),
        (100, 1.0005, 2000, "opengl", "glDrawArrays", "draw"),      # ends after the call it is in: clipped
        (101, 2, None, "opencl", "clFinish", "sync"),
        (100, 3, None, "opengl", "eglSwapBuffers", "frame"),
        (100, 4, 500, "opengl", "glDrawArrays", "draw"),
        (100, 5, None, "opengl", "eglSwapBuffers", "frame")]
    g = gpu_table(rng, len(calls), 10, [100], False, 0.0, True, False, True)
    g["ts"] = at(*[c[1] for c in calls])
    g["pid"], g["tid"] = 100, [c[0] for c in calls]
    g["comm"] = pd.Series(["app" if c[0] == 100 else "worker" for c in calls], dtype=object)
    g["duration_ns"] = pd.array([c[2] for c in calls], dtype="Int64")
    for i, col in enumerate(["api", "call", "category"], 3):
        g[col] = pd.Series([c[i] for c in calls], dtype=object)
    g["bytes"] = pd.array([4096, None, None, None, None, None], dtype="Int64")
    g["direction"] = pd.Series(["h2d", None, None, None, None, None], dtype=object)
    g["frame"] = pd.array([0, 0, 0, 0, 1, 1], dtype="Int64")
    pmu = pmu_table(rng, 4, 10, [100], False, ["page-faults", "cpu-clock"]).iloc[:4].copy()
    pmu["ts"] = at(0.1, 0.1, 12, 12)
    pmu["value"] = [5, 100, 3, 7]
    loss = pd.DataFrame({"start": at(6, 6.5), "end": at(7, 6.6), "probe": pd.Series(["gpu", "exec"], dtype=object),
                         "stream": pd.Series(["gpu_events", "exec_events"], dtype=object), "lost": [10, 2]})
    meta = RecordingMetadata(kernel="6.18", host="host", start=T0, end=T0 + pd.Timedelta(12 * MS, "ns"),
                             probes={"pmu": ProbeMeta("PmuCounters", PmuConfig(("page-faults", "cpu-clock"), 10 * MS))})
    return Recording({"processes": procs, "exec": ex, "gpu": g, "pmu": pmu}, meta, {"gpu": 10, "exec": 2}, loss)


def ns(ms) -> int:
    return T0_NS + int(ms * MS)


def test_a_hand_made_recording_track_by_track(tmp_path):
    tr = parse(to_perfetto(hand_made(), tmp_path / "t.pftrace"))
    t = tr["tracks"]
    assert t[("process", 100)].process.process_name == "app"
    assert t[("process", 200)].process.process_name == "a\\xffb"               # a non-UTF-8 byte, escaped
    assert t[("thread", 100, 101)].thread.thread_name == "worker"
    assert on(tr, ("process", 100)) == [(ns(0), ns(10), "process app"), (ns(0.5), ns(9), "app")]
    assert on(tr, ("process", 200)) == [(ns(1), ns(12), "process a\\xffb")]    # still running: to the end
    assert on(tr, ("thread", 100, 100)) == [(ns(1), ns(1) + 1000, "glBufferData"),
                                            (ns(1.0005), ns(1) + 1000, "glDrawArrays"),
                                            (ns(4), ns(4) + 500, "glDrawArrays")]
    assert on(tr, (100, "frames")) == [(ns(1), ns(3), "frame 0"), (ns(4), ns(5), "frame 1")]
    assert on(tr, ("ebpftoolkit", "ebpftoolkit")) == []
    assert on(tr, ("ebpftoolkit", "lost events: gpu")) == [(ns(6), ns(7), "lost 10 events (gpu)")]
    assert on(tr, ("ebpftoolkit", "lost events: exec")) == [(ns(6.5), ns(6.6), "lost 2 events (exec)")]
    assert len(tr["slices"]) == 10
    assert sorted((i["track"], i["ts"], i["name"]) for i in tr["instants"]) == [
        (("thread", 100, 100), ns(0.5), "exec app"), (("thread", 100, 100), ns(3), "eglSwapBuffers"),
        (("thread", 100, 100), ns(5), "eglSwapBuffers"), (("thread", 100, 101), ns(2), "clFinish"),
        (("thread", 200, 200), ns(2), "exec failed: ENOENT")]
    assert sorted((c["track"], c["ts"], c["value"]) for c in tr["counters"]) == [      # sums per 10 ms
        ((100, "cpu-clock"), ns(0), 100), ((100, "cpu-clock"), ns(10), 7),
        ((100, "page-faults"), ns(0), 5), ((100, "page-faults"), ns(10), 3)]
    assert t[(100, "page-faults")].HasField("counter")


def test_arguments_categories_and_clipping(tmp_path):
    tr = parse(to_perfetto(hand_made(), tmp_path / "t.pftrace"))
    by = {(s["name"], s["ts"]): s for s in tr["slices"] + tr["instants"]}
    up = by[("glBufferData", ns(1))]
    assert up["cats"] == ["gpu", "opengl", "copy_h2d"]
    assert up["args"] == {"bytes": 4096, "direction": "h2d", "frame": 0, "handle": up["args"]["handle"],
                          "retval": up["args"]["retval"]}
    assert "clipped" not in up["args"] and by[("glDrawArrays", ns(1.0005))]["args"]["clipped"] is True
    assert "clipped" not in by[("glDrawArrays", ns(4))]["args"]
    run = by[("app", ns(0.5))]
    assert run["cats"] == ["exec"] and run["args"]["argv"] == ["app", "-x\\e"] and run["args"]["ended_by"] == "exit"
    assert run["args"]["filename"] == "/usr/bin/app" and run["args"]["ppid"] == 1
    failed = by[("exec failed: ENOENT", ns(2))]
    assert failed["args"] == {"argv": ["nope"], "filename": "/nope", "ppid": 100, "retval": -2}
    assert by[("frame 0", ns(1))]["args"] == {"draws": 1, "dispatches": 0, "bytes_up": 4096, "bytes_down": 0,
                                              "calls": 4, "ended_by": "eglSwapBuffers"}
    assert by[("frame 1", ns(4))]["args"]["frame_time_ns"] == 2 * MS
    assert by[("lost 10 events (gpu)", ns(6))]["args"] == {"probe": "gpu", "stream": "gpu_events", "lost": 10}
    assert by[("process app", ns(0))]["cats"] == ["process"]
    assert "gpu 10" in tr["tracks"][("ebpftoolkit", "ebpftoolkit")].description


def test_chunks_concatenate_to_the_same_trace(tmp_path, monkeypatch):
    """The file is written a chunk of packets at a time: any chunk size gives the same trace."""
    rec = hand_made()
    whole = parse(to_perfetto(rec, tmp_path / "a.pftrace"))
    monkeypatch.setattr(perfetto_trace, "CHUNK", 3)
    small = to_perfetto(rec, tmp_path / "b.pftrace")
    assert parse(small) == whole
    assert small.read_bytes() == (tmp_path / "a.pftrace").read_bytes()


def _expected(m: TraceModel):
    """What the model says each track should hold: (track, start, name) of slices, (track, ts, name)
    of instants, with each slice's unclipped end."""
    slices, instants = Counter(), Counter()
    ends = {}
    for r in m.spans.itertuples(index=False):
        if r.start_ns == NAT:
            continue
        track = ("thread", r.pid, r.tid) if r.kind == "call" else ("process", r.pid)
        key = (track, int(r.start_ns), printable(r.name))
        slices[key] += 1
        ends.setdefault(key, []).append(m.end_ns if r.end_ns == NAT else max(int(r.end_ns), int(r.start_ns)))
    for r in m.instants.itertuples(index=False):
        if r.kind != "syscall":
            instants[(("thread", r.pid, r.tid), int(r.ts_ns), printable(r.name))] += 1
    return slices, instants, ends


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rec=recordings(max_rows=120))
def test_random_recordings_read_back_as_their_model(rec, tmp_path_factory):
    tr = parse(to_perfetto(rec, tmp_path_factory.mktemp("pf") / "t.pftrace"))
    m = TraceModel.from_recording(rec)
    slices, instants, ends = _expected(m)
    got = [s for s in tr["slices"] if s["track"][0] in ("process", "thread")]
    assert Counter((s["track"], s["ts"], s["name"]) for s in got) == slices
    for s in got:                                  # cut short only to nest, and then it says so
        full = ends[(s["track"], s["ts"], s["name"])]
        assert s["end"] <= max(full) and (s["end"] in full or s["args"].get("clipped") is True)
    assert Counter((i["track"], i["ts"], i["name"]) for i in tr["instants"]) == instants
    lost = [s for s in tr["slices"] if s["cats"] == ["lost"]]
    assert len(lost) == len(rec.loss_windows) and sum(s["args"]["lost"] for s in lost) == rec.loss_windows["lost"].sum()
    g = rec.tables.get("gpu")
    n_frames = 0
    if g is not None and len(g):
        fr = frames(g)                             # of the processes that ended a frame
        n_frames = fr["pid"].isin(fr.loc[fr["ended_by"].notna(), "pid"]).sum()
    assert sum(s["cats"] == ["frame"] for s in tr["slices"]) == n_frames
    pmu = Counter()
    for c in tr["counters"]:
        pmu[c["track"]] += c["value"]
    want = Counter()
    for (pid, ev), v in m.counters.groupby(["pid", "event"])["value"].sum().items():
        want[(pid, printable(ev))] += int(v)
    for (pid, name), n in m.instants[m.instants["kind"] == "syscall"].groupby(["pid", "name"]).size().items():
        want[(pid, f"syscalls: {printable(name)} per 10 ms")] += int(n)
    assert pmu == want
    names = {d.process.pid: d.process.process_name for d in tr["tracks"].values() if d.HasField("process")}
    assert all(names[p] == printable(m.process_names.get(p, str(p))) for p in names)


def test_a_recording_with_nothing_in_it(tmp_path):
    tr = parse(to_perfetto(Recording({}), tmp_path / "t.pftrace"))
    assert tr["slices"] == tr["instants"] == tr["counters"] == [] and list(tr["tracks"]) == [("ebpftoolkit",
                                                                                             "ebpftoolkit")]


def test_many_calls_are_written_in_order_and_complete(tmp_path):
    rng = np.random.default_rng(3)
    n = 60_000
    g = gpu_table(rng, n, 10**9, [100, 200], False, 0.3, True, True, True)
    rec = Recording({"gpu": g})
    tr = parse(to_perfetto(rec, tmp_path / "t.pftrace"))
    calls = [e for e in tr["slices"] + tr["instants"] if e["cats"][:1] == ["gpu"]]
    assert len(calls) == n
    assert sum(1 for s in tr["slices"] if s["cats"][:1] == ["gpu"]) == g["duration_ns"].notna().sum()


# -- the command line and the Session/Recording methods ---------------------------------------
def test_cli_export_perfetto(tmp_path, capsys):
    rec = hand_made()
    src = rec.save(tmp_path / "run")
    assert main(["export", "--format", "perfetto", str(src)]) == 0
    out = capsys.readouterr().out
    assert "trace written to" in out and "trace.pftrace" in out
    default = parse(Path(src) / "trace.pftrace")
    assert default == parse(rec.to_perfetto(tmp_path / "direct.pftrace"))
    assert main(["export", "--format", "perfetto", str(src), "-o", str(tmp_path / "x.pftrace")]) == 0
    assert parse(tmp_path / "x.pftrace") == default
    assert len(default["slices"]) == 10


def test_session_to_perfetto_writes_its_recording(tmp_path):
    from ebpftoolkit import ExecSnoop, Session
    s = Session(ExecSnoop())
    s.recording = hand_made()                     # as after stop
    assert parse(s.to_perfetto(tmp_path / "s.pftrace")) == parse(to_perfetto(s.recording, tmp_path / "r.pftrace"))
