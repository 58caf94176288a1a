"""Write the notebooks in notebooks/ from plain cell lists (outputs stay stripped in git).

Run: .venv/bin/python scripts/make_notebooks.py
"""
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parents[1] / "notebooks"

QUICKSTART = [
    ("md", "# ebpftoolkit quick start\n\nWhat this machine can trace, every process a command starts "
           "(ExecSnoop), and the process tree. Needs root."),
    ("code", "import subprocess\nimport ebpftoolkit\nfrom ebpftoolkit import ExecSnoop, Session\n"
             "from ebpftoolkit.analysis import process_tree, render_process_tree\n\nreport = ebpftoolkit.doctor()"),
    ("md", "## ExecSnoop: this notebook's children\n\nBy default a probe traces this kernel process and "
           "everything it starts. `snoop.df` is a DataFrame, readable while the probe runs."),
    ("code", "with ExecSnoop() as snoop:\n"
             "    subprocess.run([\"sh\", \"-c\", \"ls / >/dev/null; false; /nonexistent 2>/dev/null\"])\n"
             "snoop.df[[\"ts\", \"pid\", \"ppid\", \"comm\", \"filename\", \"argv\", \"retval\", \"error\", "
             "\"exit_code\", \"duration\"]]"),
    ("code", "print(\"lost events:\", snoop.lost)\nassert snoop.lost == 0"),
    ("md", "## A session that traces one command from its first instruction"),
    ("code", "s = Session(ExecSnoop(), descendants_of=\"command\")\nwith s:\n"
             "    result = s.run([\"sh\", \"-c\", \"for i in 1 2 3; do sh -c \\\"sleep 0.0$i\\\" & done; wait; exit 2\"])\n"
             "print(\"exit code:\", result.returncode)\nprint(s.summary())"),
    ("code", "tree = process_tree(s.tables[\"exec\"], s.tables[\"processes\"])\nprint(render_process_tree(tree))\ntree"),
    ("md", "## Save and load (no root needed to load)\n\nStopping a session gives a `Recording`: the tables, "
           "the loss counts and typed metadata (probe configurations, what was attached, the commands run)."),
    ("code", "import tempfile\nimport pandas as pd\nfrom ebpftoolkit import Recording\n"
             "folder = s.save(tempfile.mkdtemp() + \"/quickstart\")\n"
             "back = Recording.load(folder)\nassert back.tables[\"exec\"][\"argv\"].tolist() == s.tables[\"exec\"][\"argv\"].tolist()\n"
             "print(back.metadata.probes[\"exec\"].config)\n"
             "pd.DataFrame([a.to_dict() for a in back.metadata.attachments])"),
    ("md", "## The BPF side\n\n`snoop.source` is the C that was compiled; `dump_xlated()` (while running) is "
           "the kernel's translation of it."),
    ("code", "print(snoop.source[:1500])"),
    ("md", "## The `%%ebpf` magic\n\n`%load_ext ebpftoolkit` adds `%%ebpf`: it traces this kernel and everything it "
           "starts while the cell runs (the options are those of `ebpftoolkit record`), then shows a one-line "
           "summary and the interactive timeline, and binds the Session to `_ebpf` (or `--var NAME`). Also: "
           "`%ebpf doctor`, `%execsnoop 10` (every exec on the machine for 10 s, as a DataFrame) and "
           "`%ebpf attach PID --gpu vulkan --seconds 5`. `%%ebpf?` lists every option."),
    ("code", "%load_ext ebpftoolkit"),
    ("code", "%%ebpf --var traced\n"
             "subprocess.run([\"sh\", \"-c\", \"for i in 1 2 3; do ls / >/dev/null; done; sort /etc/hostname\"],\n"
             "               capture_output=True).returncode"),
    ("code", "assert sum(traced.lost.values()) == 0\n"
             "traced.tables[\"exec\"].query(\"retval == 0\")[[\"ts\", \"pid\", \"ppid\", \"comm\", \"argv\"]]"),
    ("code", "traced   # a Session shows itself as a summary table"),
    ("md", "## The timeline, interactive\n\n`traced.timeline()` is drawn by the browser (Bokeh): mouse wheel zooms "
           "in time, dragging pans, hovering shows a call, the box-select tool brushes a range and lists its events "
           "under the plot. What you brushed or clicked comes back to Python as `tl.selection` (and "
           "`tl.selected(\"exec\")`, the rows of a table)."),
    ("code", "tl = traced.timeline()\ntl"),
    ("code", "tl.selection   # empty until you brush a range or click a call above"),
]

# -- 02: GPU API calls of real programs ------------------------------------------------------
FIND_ROOT = ("from pathlib import Path\nimport ebpftoolkit\n"
             "# the repository (workloads/, tests/progs/): the notebook's folder or above, else the package's\n"
             "ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents, Path(ebpftoolkit.__file__).resolve().parents[1]]\n"
             "            if (p / \"workloads\" / \"gpu\" / \"Makefile\").is_file())")

GPU_API = [
    ("md", "# GPU API calls of real programs\n\n`GpuTrace` puts uprobes on the OpenGL, Vulkan, OpenCL and CUDA "
           "libraries a program uses and records one row per application call: API, call, category (draw, "
           "alloc, copy, frame...), bytes and direction, handles, return value, duration, frame number. Here: "
           "`workloads/gpu/build/gl_egl` (OpenGL through EGL, Mesa llvmpipe, no display needed) and "
           "`workloads/gpu/build/cl_vecadd` (OpenCL on PoCL). Each program prints its own call counts as JSON, "
           "so the trace can be checked against them. Needs root."),
    ("code", FIND_ROOT + "\nimport json, subprocess\n"
             "import matplotlib.pyplot as plt\n"
             "from ebpftoolkit import GpuTrace, Session\n"
             "from ebpftoolkit.analysis import gpu as ga\n\n"
             "W = ROOT / \"workloads\" / \"gpu\"\n"
             "subprocess.run([\"make\", \"-s\", \"-C\", str(W)], check=True)   # builds once; then a no-op\n"
             "B = W / \"build\""),
    ("md", "## Record both programs in one session\n\n`descendants_of=\"command\"`: only what `s.run` starts."),
    ("code", "s = Session(GpuTrace([\"opengl\", \"opencl\"]), descendants_of=\"command\")\n"
             "with s:\n"
             "    gl = s.run([str(B / \"gl_egl\"), \"--frames\", \"30\"], capture_output=True, check=True)\n"
             "    cl = s.run([str(B / \"cl_vecadd\"), \"--iters\", \"20\"], capture_output=True, check=True)\n"
             "own_gl, own_cl = (json.loads(r.stdout.decode().splitlines()[-1]) for r in (gl, cl))\n"
             "gpu = s.tables[\"gpu\"]\n"
             "print(s.summary())\n"
             "gpu[[\"ts\", \"pid\", \"comm\", \"api\", \"call\", \"category\", \"bytes\", \"direction\", "
             "\"retval\", \"duration_ns\", \"frame\"]].head(12)"),
    ("md", "The trace agrees with what the programs say they did. `GpuTrace.overhead()` lists every attach "
           "point (library, address, cost per call); calls with none (set-up calls such as `clSetKernelArg`) "
           "are not recorded."),
    ("code", "probed = set(s.probes[0].overhead()[\"call\"])\n"
             "counts = gpu.groupby(\"call\").size()\n"
             "check = {c: (int(counts.get(c, 0)), n) for own in (own_gl, own_cl) for c, n in own[\"calls\"].items()}\n"
             "for call, (traced, said) in sorted(check.items()):\n"
             "    print(f\"{call:<24} traced {traced:>4}   program says {said:>4}\" + (\"\" if call in probed else \"   (not probed)\"))\n"
             "assert all(t == n for c, (t, n) in check.items() if c in probed)"),
    ("md", "## Frames and draw calls (OpenGL)\n\n`ebpftoolkit.analysis.gpu.frames`: one row per frame "
           "(up to its `eglSwapBuffers`), with the frame time and the draw calls in it."),
    ("code", "fr = ga.frames(gpu[gpu[\"api\"] == \"opengl\"])\n"
             "print(f\"{len(fr)} frames, {fr['draws'].sum()} draw calls, median frame time \"\n"
             "      f\"{fr['frame_time'].median().total_seconds() * 1e3:.2f} ms\")\n"
             "fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3))\n"
             "a1.plot(fr[\"frame\"], fr[\"frame_time\"].dt.total_seconds() * 1e3, marker=\".\")\n"
             "a1.set(xlabel=\"frame\", ylabel=\"frame time (ms)\", title=\"gl_egl frame times\")\n"
             "a2.bar(fr[\"frame\"], fr[\"draws\"])\n"
             "a2.set(xlabel=\"frame\", ylabel=\"draw calls\", title=\"draw calls per frame\")\n"
             "plt.show()\n"
             "assert (fr[\"draws\"] == own_gl[\"draws_per_frame\"]).all()"),
    ("md", "## Bytes moved between host and device\n\nUploads (`glBufferData`, `glTexImage2D`, "
           "`clEnqueueWriteBuffer`...) are h2d, read-backs (`glReadPixels`, `clEnqueueReadBuffer`) d2h."),
    ("code", "moved = gpu[gpu[\"bytes\"].notna() & gpu[\"direction\"].notna()]\n"
             "by_call = moved.groupby([\"api\", \"call\", \"direction\"])[\"bytes\"].sum().astype(int)\n"
             "print(by_call.to_string())\n"
             "dm = ga.data_movement(gpu, \"20ms\")\n"
             "t = (dm.index - dm.index[0]).total_seconds()\n"
             "fig, ax = plt.subplots(figsize=(11, 3))\n"
             "bottom = 0\n"
             "for d in [\"h2d\", \"d2h\", \"d2d\"]:\n"
             "    ax.bar(t, dm[d] / 1e6, width=0.018, bottom=bottom, label=d, align=\"edge\")\n"
             "    bottom = bottom + dm[d] / 1e6\n"
             "ax.set(xlabel=\"s\", ylabel=\"MB per 20 ms\", title=\"bytes moved\"); ax.legend()\n"
             "plt.show()\n"
             "assert by_call.loc[(\"opencl\", \"clEnqueueWriteBuffer\", \"h2d\")] == own_cl[\"bytes\"][\"clEnqueueWriteBuffer\"]"),
    ("md", "## Outstanding device memory (OpenCL)\n\n`memory_timeline`: bytes allocated and not yet freed, "
           "after every allocation and free; `leaks`: allocations never freed."),
    ("code", "mem = ga.memory_timeline(gpu)\n"
             "cl_mem = mem[mem[\"api\"] == \"opencl\"]\n"
             "fig, ax = plt.subplots(figsize=(11, 3))\n"
             "ax.step((cl_mem[\"ts\"] - cl_mem[\"ts\"].iloc[0]).dt.total_seconds() * 1e3, cl_mem[\"outstanding\"] / 2**20,\n"
             "        where=\"post\", marker=\"o\")\n"
             "ax.set(xlabel=\"ms\", ylabel=\"MiB outstanding\", title=\"cl_vecadd: clCreateBuffer / clReleaseMemObject\")\n"
             "plt.show()\n"
             "print(\"peak:\", cl_mem[\"outstanding\"].max() / 2**20, \"MiB; at the end:\", cl_mem[\"outstanding\"].iloc[-1])\n"
             "assert cl_mem[\"outstanding\"].max() == own_cl[\"bytes\"][\"clCreateBuffer\"] and cl_mem[\"outstanding\"].iloc[-1] == 0\n"
             "ga.leaks(gpu[gpu[\"api\"] == \"opencl\"])"),
    ("md", "## Call latency\n\nDurations come from return probes (on by default for allocations, copies, "
           "syncs and frames)."),
    ("code", "ga.latency(gpu).sort_values(\"count\", ascending=False).head(15)"),
    ("code", "print(\"lost events:\", sum(s.lost.values()))\nassert sum(s.lost.values()) == 0"),
]

# -- 03: PMU counters and (simulated) cache misses ------------------------------------------
PMU = [
    ("md", "# PMU counters and cache misses\n\n`PmuCounters` counts perf events per task (read at every "
           "context switch and on a timer), so a program's counts come as a time series. Hardware events "
           "(cycles, cache misses) need a hardware PMU; this VM has none, so cache misses come from "
           "valgrind's cachegrind instead: **simulated**, and labelled so. Needs root."),
    ("code", FIND_ROOT + "\nimport subprocess, tempfile\n"
             "import matplotlib.pyplot as plt\n"
             "from ebpftoolkit import PmuCounters, Session\n"
             "from ebpftoolkit.probes.pmu import available_events, simulate_cache_misses\n"
             "from ebpftoolkit.analysis.pmu import pmu_timeseries, pmu_totals\n\n"
             "progs = Path(tempfile.mkdtemp())\n"
             "for name in (\"pmu_work\", \"cache_pattern\"):\n"
             "    subprocess.run([\"gcc\", \"-O2\", \"-g\", \"-o\", str(progs / name), "
             "str(ROOT / \"tests\" / \"progs\" / f\"{name}.c\")], check=True)"),
    ("md", "## What this machine can count\n\n`available_events()` asks the kernel (`perf_event_open`) for "
           "every event, as `perf stat -e EVENT` would."),
    ("code", "ev = available_events()\n"
             "print(ev.groupby(\"type\")[\"available\"].agg([\"sum\", \"size\"]).rename(columns={\"sum\": \"available\", \"size\": \"known\"}))\n"
             "HARDWARE = bool(ev.set_index(\"event\").loc[\"cache-misses\", \"available\"])\n"
             "print(\"hardware cache-miss counter:\", \"yes\" if HARDWARE else \"no (\" + ev.set_index(\"event\").loc[\"cache-misses\", \"reason\"] + \")\")\n"
             "ev[ev[\"type\"] == \"software\"]"),
    ("md", "## Software events over time, for a real program\n\n`tests/progs/pmu_work.c` maps and touches "
           "20000 pages in 200 rounds, sleeping 1 ms after each (a page fault per page, a context switch per "
           "round), then spins 200 ms."),
    ("code", "s = Session(PmuCounters([\"page-faults\", \"context-switches\", \"task-clock\"], interval=\"10ms\"),\n"
             "            descendants_of=\"command\")\n"
             "res = s.run([str(progs / \"pmu_work\"), \"20000\", \"200\", \"200\"], capture_output=True, check=True)\n"
             "print(res.stdout.decode().strip())\n"
             "pmu = s.tables[\"pmu\"]\n"
             "mine = pmu[pmu[\"comm\"] == \"pmu_work\"]\n"
             "pmu_totals(mine, by=\"comm\")"),
    ("code", "ts = pmu_timeseries(mine, \"20ms\", by=\"comm\")\n"
             "wide = ts.pivot_table(index=\"ts\", columns=\"event\", values=\"value\", aggfunc=\"sum\", fill_value=0, observed=True)\n"
             "t = (wide.index - wide.index[0]).total_seconds()\n"
             "fig, axes = plt.subplots(3, 1, figsize=(11, 6), sharex=True)\n"
             "for ax, event, scale, unit in zip(axes, [\"page-faults\", \"context-switches\", \"task-clock\"], [1, 1, 1e6],\n"
             "                                  [\"faults\", \"switches\", \"ms of CPU\"]):\n"
             "    ax.bar(t, wide[event] / scale, width=0.018, align=\"edge\")\n"
             "    ax.set_ylabel(f\"{unit} / 20 ms\"); ax.set_title(event, loc=\"left\", fontsize=9)\n"
             "axes[-1].set_xlabel(\"s since the first sample\")\n"
             "fig.suptitle(\"pmu_work 20000 200 200: software perf events (counted, not sampled)\")\n"
             "plt.show()\n"
             "tot = mine.groupby(\"event\", observed=True)[\"value\"].sum()\n"
             "assert tot[\"page-faults\"] >= 20000 and tot[\"context-switches\"] >= 200"),
    ("md", "## Cache misses\n\n`tests/progs/cache_pattern.c` has a cache-hostile loop (`hostile`: a large "
           "stride over 64 MiB) and a cache-friendly one (`friendly`: sequential over 16 KiB), with the same "
           "number of loads. With a hardware PMU, PmuCounters counts `cache-misses` for real; without one, "
           "`simulate_cache_misses` runs the program under cachegrind, a cache **simulator**, and gives misses "
           "per function."),
    ("code", "if HARDWARE:\n"
             "    hw = Session(PmuCounters([\"cache-misses\", \"cache-references\"]), descendants_of=\"command\")\n"
             "    hw.run([str(progs / \"cache_pattern\"), \"5000000\"], check=True, capture_output=True)\n"
             "    print(\"measured (hardware PMU):\")\n"
             "    print(pmu_totals(hw.tables[\"pmu\"], by=\"comm\").to_string())\n"
             "else:\n"
             "    print(\"no hardware PMU on this machine: the chart below is simulated by cachegrind, not measured\")\n"
             "sim = simulate_cache_misses([str(progs / \"cache_pattern\"), \"1000000\"], timeout=300)\n"
             "f = sim.groupby(\"function\")[[\"Dr\", \"D1mr\", \"DLmr\"]].sum().loc[[\"hostile\", \"friendly\"]]\n"
             "f"),
    ("code", "fig, ax = plt.subplots(figsize=(8, 3))\n"
             "x = range(len(f))\n"
             "ax.bar([i - 0.2 for i in x], f[\"D1mr\"], width=0.4, label=\"L1 data read misses\")\n"
             "ax.bar([i + 0.2 for i in x], f[\"DLmr\"], width=0.4, label=\"last-level data read misses\")\n"
             "ax.set_xticks(list(x), [f\"{fn}()\\n{int(dr):,} loads\" for fn, dr in f[\"Dr\"].items()])\n"
             "ax.set_ylabel(\"misses\"); ax.legend()\n"
             "ax.set_title(\"SIMULATED cache misses (valgrind cachegrind; \" + (\"hardware counts above\" if HARDWARE else \"this VM has no hardware PMU\") + \")\")\n"
             "plt.show()\n"
             "print(\"simulated cache:\", \"; \".join(sim.attrs[\"desc\"]))\n"
             "assert f.loc[\"hostile\", \"D1mr\"] > 10 * max(f.loc[\"friendly\", \"D1mr\"], 1)"),
    ("code", "print(\"lost events:\", sum(s.lost.values()))\nassert sum(s.lost.values()) == 0"),
]

# -- 04: save, load, report, Chrome trace -----------------------------------------------------
REPORTS = [
    ("md", "# Save, load, HTML report, Chrome trace\n\nRecord `workloads/demo.sh` (a process tree, then a real "
           "OpenGL and a real OpenCL program) with three probes, save it, load it back (loading needs no root), "
           "and turn it into a self-contained HTML report and a Chrome trace (for `ui.perfetto.dev` or "
           "`chrome://tracing`)."),
    ("code", "%matplotlib inline\n" + FIND_ROOT + "\nimport json, subprocess, tempfile\n"
             "from ebpftoolkit import ExecSnoop, GpuTrace, PmuCounters, Session\n"
             "from ebpftoolkit.views import static_timeline\n\n"
             "subprocess.run([\"make\", \"-s\", \"-C\", str(ROOT / \"workloads\" / \"gpu\")], check=True)\n"
             "out = Path(tempfile.mkdtemp(prefix=\"ebpftoolkit-reports-\"))"),
    ("code", "s = Session(ExecSnoop(), GpuTrace([\"opengl\", \"opencl\"]), "
             "PmuCounters([\"page-faults\", \"context-switches\"], interval=\"10ms\"),\n"
             "            descendants_of=\"command\")\n"
             "with s:\n"
             "    s.run([str(ROOT / \"workloads\" / \"demo.sh\")], capture_output=True, check=True)\n"
             "print(s.summary())\n"
             "s"),
    ("md", "## Save and load"),
    ("code", "folder = s.save(out / \"demo\")\n"
             "print(sorted(p.name for p in Path(folder).iterdir()))\n"
             "back = Session.load(folder)\n"
             "for name, df in s.tables.items():\n"
             "    assert len(back.tables[name]) == len(df), name\n"
             "back"),
    ("md", "## The timeline, as a static figure\n\n(`back.timeline()` is the interactive version.)"),
    ("code", "static_timeline(back)"),
    ("md", "## HTML report\n\nOne file with the tables, charts and environment (no network needed to view it)."),
    ("code", "report = out / \"demo.html\"\n"
             "back.to_html(report)\n"
             "text = report.read_text()\n"
             "print(f\"{report}: {len(text) / 1e6:.2f} MB\")\n"
             "assert text.lstrip().lower().startswith(\"<!doctype html\") and \"glDrawArrays\" in text"),
    ("md", "## Chrome trace"),
    ("code", "trace = back.to_chrome_trace(out / \"demo.trace.json\")\n"
             "events = json.loads(Path(trace).read_text())[\"traceEvents\"]\n"
             "print(f\"{trace}: {len(events)} trace events\")\n"
             "import collections\n"
             "collections.Counter(e[\"ph\"] for e in events)"),
    ("code", "print(\"lost events:\", sum(back.lost.values()))\nassert sum(back.lost.values()) == 0"),
]

# -- 05: your own BPF programs ------------------------------------------------------------------
BCC_COUNTER = r"""struct event { u32 pid; u32 n; u64 ts; char comm[16]; };
BPF_RINGBUF_OUTPUT(events, 256);        // 256 pages: one row per event
BPF_HASH(counts, u32, u64);             // a table at stop
BPF_HISTOGRAM(sizes);                   // log2 buckets at stop

TRACEPOINT_PROBE(syscalls, sys_enter_read) {
    if (!EBPF_TRACED())                 // the session's processes, while it records
        return 0;
    struct event e = {};
    e.pid = bpf_get_current_pid_tgid() >> 32;
    e.n = args->count;
    e.ts = bpf_ktime_get_ns();          // a u64 called ts becomes wall time
    bpf_get_current_comm(&e.comm, sizeof(e.comm));
    events.ringbuf_output(&e, sizeof(e), 0);
    counts.increment(e.pid);
    sizes.increment(bpf_log2l(args->count));
    return 0;
}
"""

LIBBPF_SOURCE = r"""#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "ebpftoolkit.bpf.h"

struct event { __u32 pid; __u32 fd; __u64 ts; };
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 22); } closes SEC(".maps");
EBPF_RECORD(closes, struct event);      // the ring's record type, for ebpftoolkit

SEC("tracepoint/syscalls/sys_enter_close")
int on_close(struct trace_event_raw_sys_enter *ctx)
{
    if (!EBPF_TRACED())
        return 0;
    struct event *e = EBPF_RINGBUF_RESERVE(&closes, sizeof(*e));   /* a full ring's refusals counted */
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->fd = ctx->args[0];
    e->ts = bpf_ktime_get_ns();
    bpf_ringbuf_submit(e, 0);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""

CUSTOM = [
    ("md", "# Your own BPF programs\n\n`CustomProbe` runs a BPF program you wrote beside the shipped probes, in the "
           "same session: it shares the session's process filter (`EBPF_TRACED()` in the C) and recording switch, "
           "its ring buffers go through the session's collector (bulk reads, losses counted at each call), and "
           "you get DataFrames: `NAME.RING` (one row per record, one column per field) and `NAME.MAP` (each "
           "map at stop; log2 histograms as buckets). Three ways in: BCC C text, libbpf-style C that "
           "ebpftoolkit compiles with clang, or an object you built. Needs root."),
    ("md", "## BCC C\n\nEvery `read()` of the commands this session runs: its size, as records, a per-process "
           "count and a log2 histogram. Record types are inferred as BCC does and decoded from the program's BTF."),
    ("code", "import os, subprocess, sys\nfrom ebpftoolkit import CustomProbe, ExecSnoop, Session\n\n"
             "BCC_C = r\"\"\"" + BCC_COUNTER + "\"\"\"\n"
             "reads = CustomProbe(BCC_C, name=\"reads\")\n"
             "with Session(reads, ExecSnoop(), descendants_of=\"command\") as s:\n"
             "    sort = s.run([\"sort\", \"/etc/services\"], capture_output=True)\n"
             "    cat = s.run([\"cat\", \"/etc/services\", \"/etc/protocols\"], capture_output=True)\n"
             "print(s.summary())\ns.tables[\"reads.events\"].head()"),
    ("md", "Checked against strace, which sees the same `read()` calls of the same command:"),
    ("code", "ev = s.tables[\"reads.events\"]\n"
             "pids = {c.argv[0]: c.pid for c in s.recording.metadata.commands}\n"
             "log = subprocess.run([\"strace\", \"-f\", \"-e\", \"trace=read\", \"-o\", \"/dev/stdout\", \"-qq\", \"cat\", "
             "\"/etc/services\", \"/etc/protocols\"], capture_output=True, text=True).stdout\n"
             "theirs = sum(1 for line in log.splitlines() if line.startswith(\"read(\") or \" read(\" in line)\n"
             "ours = int((ev[\"pid\"] == pids[\"cat\"]).sum())\n"
             "print(f\"cat's read() calls: traced {ours}, strace says {theirs}\")\n"
             "assert ours == theirs\n"
             "s.tables[\"reads.counts\"]"),
    ("code", "print(\"lost events:\", sum(s.lost.values()))\nassert sum(s.lost.values()) == 0\n"
             "reads.plot_histogram(\"sizes\");"),
    ("md", "`reads.source` is the C as compiled (a short header, then your lines, numbered as you wrote them: "
           "clang's and the verifier's errors name them); `reads.dump_xlated()` is the kernel's translation."),
    ("code", "try:\n"
             "    # a map lookup used without checking it found something: the verifier refuses it\n"
             "    bad = CustomProbe(BCC_C.replace(\"counts.increment(e.pid);\", \"u64 *c = counts.lookup(&e.pid); e.ts = *c;\"), "
             "name=\"bad\")\n"
             "    Session(bad, descendants_of=\"command\").start()\n"
             "except Exception as exc:\n"
             "    print(type(exc).__name__ + \":\", str(exc).splitlines()[0])"),
    ("md", "## libbpf-style C\n\n`vmlinux.h` (made from the running kernel's BTF), `SEC()` programs and BTF maps, "
           "as libbpf tools are written. Include `ebpftoolkit.bpf.h` for `EBPF_TRACED()`, counted "
           "`EBPF_RINGBUF_RESERVE`/`OUTPUT` and `EBPF_RECORD(ring, type)`; ebpftoolkit compiles it with "
           "`clang -O2 -g -target bpf` and loads it with libbpf."),
    ("code", "import tempfile\nfrom pathlib import Path\n"
             "work = Path(tempfile.mkdtemp())\n"
             "src = work / \"closes.bpf.c\"\n"
             "src.write_text(r\"\"\"" + LIBBPF_SOURCE + "\"\"\")\n"
             "closes = CustomProbe.from_libbpf_source(src, name=\"closes\")\n"
             "with Session(closes, descendants_of=\"command\") as s2:\n"
             "    out = s2.run([sys.executable, \"-c\", \"import os\\nfd = os.open('/dev/null', os.O_RDONLY)\\n"
             "for _ in range(250): os.dup2(fd, 100); os.close(100)\\nprint(os.getpid())\"], capture_output=True, text=True)\n"
             "py = int(out.stdout)\n"
             "mine = s2.tables[\"closes.closes\"].query(\"pid == @py and fd == 100\")\n"
             "print(f\"close(100) calls: traced {len(mine)} program says 250\")\n"
             "assert len(mine) == 250\n"
             "print(\"lost events:\", sum(s2.lost.values()))\nmine.tail()"),
    ("md", "## An object you built\n\nThe same C, built by hand: the flags are those `ebpftoolkit` uses "
           "(`bpf_cflags()`: the target, `-g` for BTF and line info, `vmlinux.h`'s folder, `ebpftoolkit.bpf.h`'s)."),
    ("code", "from ebpftoolkit.runtime.bpfcompile import bpf_cflags\n"
             "cmd = [\"clang\", *bpf_cflags(), \"-c\", str(src), \"-o\", str(work / \"closes.bpf.o\")]\n"
             "print(\" \".join(cmd))\nsubprocess.run(cmd, check=True)\n"
             "obj = CustomProbe.from_object(work / \"closes.bpf.o\", name=\"obj\")\n"
             "with Session(obj, descendants_of=\"command\") as s3:\n"
             "    s3.run([\"ls\", \"-R\", \"/usr/share/doc/bash\"], capture_output=True)\n"
             "print(obj.details()[\"attached\"])\n"
             "print(\"lost events:\", sum(s3.lost.values()))\ns3.tables[\"obj.closes\"].groupby(\"pid\").size()"),
    ("md", "What is inside: the object's BTF (where `struct event`, the ring's record type, was found) and the "
           "kernel's translation of the loaded program, both through bpftool."),
    ("code", "btf = subprocess.run([\"bpftool\", \"btf\", \"dump\", \"file\", str(work / \"closes.bpf.o\")],\n"
             "                     capture_output=True, text=True, check=True).stdout\n"
             "start = btf.rindex(\"\\n\", 0, btf.index(\"STRUCT 'event'\")) + 1\nprint(btf[start:].split(\"\\n[\")[0])\n"
             "print(obj.dump_xlated()[:700])"),
    ("md", "## In notebook cells: `%%bpf` and `%%ebpf --probe`\n\n`%%bpf NAME` compiles and checks a BCC program at "
           "once (errors name your line) and binds the probe to `NAME`; `%%ebpf --probe NAME` traces a cell with it. "
           "On the command line: `ebpftoolkit record --probe-file prog.bpf.c -- CMD`."),
    ("code", "%load_ext ebpftoolkit"),
    ("code", "%%bpf getppid\nBPF_HASH(calls, u32, u64);\nTRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n"
             "    if (!EBPF_TRACED())\n        return 0;\n    u32 pid = bpf_get_current_pid_tgid() >> 32;\n"
             "    calls.increment(pid);\n    return 0;\n}"),
    ("code", "%%ebpf --probe getppid --var traced --no-timeline\nfor _ in range(123):\n    os.getppid()"),
    ("code", "n = int(traced.tables[\"getppid.calls\"].set_index(\"key\")[\"value\"].get(os.getpid(), 0))\n"
             "print(f\"getppid calls in the cell: traced {n} program says 123\")\nassert n == 123"),
    ("md", "`%%bpf NAME --libbpf` takes libbpf-style C as the body (`--object PATH` loads an object instead):"),
    ("code", "%%bpf closes2 --libbpf\n" + LIBBPF_SOURCE.rstrip("\n")),
]


def build(cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    for i, cell in enumerate(nb.cells):     # stable ids: regenerating gives the same files
        cell["id"] = f"cell-{i:02d}"
    return nb


def main():
    HERE.mkdir(exist_ok=True)
    for name, cells in (("01_quickstart", QUICKSTART), ("02_gpu_api", GPU_API), ("03_pmu_cache_misses", PMU),
                        ("04_reports", REPORTS), ("05_custom_probes", CUSTOM)):
        nbformat.write(build(cells), HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
