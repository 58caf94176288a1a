#!/usr/bin/env bash
# README command 1: set the machine up (idempotent), record the shipped workload
# (a process tree, an OpenGL and an OpenCL program) with exec snoop, GPU API
# tracing and software PMU counters, and write the result under runs/demo
# (tables, summary.txt, report.html, trace.json).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/setup.sh
make -s -C workloads/gpu
out="${1:-runs/demo}"
rm -rf "$out"
.venv/bin/ebpftoolkit doctor || true
.venv/bin/ebpftoolkit record --exec --gpu opengl,opencl --pmu page-faults,context-switches,cpu-clock \
    -o "$out" -- workloads/demo.sh
.venv/bin/python - "$out" <<'PY'
import sys
from ebpftoolkit import Session
from ebpftoolkit.analysis import process_tree, render_process_tree
from ebpftoolkit.analysis.gpu import frames, latency
from ebpftoolkit.analysis.pmu import pmu_totals

out = sys.argv[1]
s = Session.load(out)
ex, gpu, pmu = s.tables["exec"], s.tables["gpu"], s.tables["pmu"]
lines = [f"execs: {len(ex)} ({(ex['retval'] < 0).sum()} failed), processes: {len(s.tables['processes'])}, "
         f"GPU API calls: {len(gpu)}, PMU rows: {len(pmu)}, lost events: {s.lost}", "",
         "process tree:", render_process_tree(process_tree(ex, s.tables["processes"])), "",
         "GPU API calls (count, bytes, latency where measured):",
         latency(gpu).to_string(index=False), ""]
f = frames(gpu[gpu["api"] == "opengl"])
if len(f):
    ft = f["frame_time"].dropna().dt.total_seconds() * 1000
    lines += [f"OpenGL frames: {len(f)}, median frame time {ft.median():.2f} ms, "
              f"draw calls per frame {f['draws'].median():.0f}", ""]
lines += ["PMU totals per process (software events):", pmu_totals(pmu).to_string(), ""]
summary = "\n".join(lines)
open(f"{out}/summary.txt", "w").write(summary)
print(summary)
print(f"result: {out}/ (exec, processes, gpu and pmu tables as Parquet, metadata.json, summary.txt)")
PY
.venv/bin/ebpftoolkit report "$out" -o "$out/report.html"
.venv/bin/ebpftoolkit export --format chrome "$out" -o "$out/trace.json"
echo "report: $out/report.html (self-contained; open it in a browser), Chrome trace: $out/trace.json"
