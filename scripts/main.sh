#!/usr/bin/env bash
# README command 1: set the machine up (idempotent), record the shipped workload
# with ExecSnoop, and write the result under runs/demo.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/setup.sh
out="${1:-runs/demo}"
rm -rf "$out"
.venv/bin/ebpftoolkit doctor
.venv/bin/ebpftoolkit record --exec -o "$out" -- workloads/process_tree.sh || true
.venv/bin/python - "$out" <<'PY'
import sys
from ebpftoolkit import Session
from ebpftoolkit.analysis import process_tree, render_process_tree
s = Session.load(sys.argv[1])
tree = render_process_tree(process_tree(s.tables["exec"], s.tables["processes"]))
ex = s.tables["exec"]
summary = (f"execs: {len(ex)} ({(ex['retval'] < 0).sum()} failed), processes: {len(s.tables['processes'])}, "
           f"lost events: {sum(s.lost.values())}\n\nprocess tree:\n{tree}\n")
open(f"{sys.argv[1]}/summary.txt", "w").write(summary)
print(summary)
print(f"result: {sys.argv[1]}/ (exec.parquet, processes.parquet, metadata.json, summary.txt)")
PY
