#!/bin/sh
# The main job's workload: a small, fixed process tree (subshells, a pipeline,
# parallel jobs, a failed exec, a non-zero exit) to record with ExecSnoop.
set -u
echo "workload: building a process tree"
ls / > /dev/null
( cd /tmp && /bin/echo "subshell in $(pwd)" > /dev/null )
printf 'c\nb\na\n' | sort | head -n 1 > /dev/null
for i in 1 2 3 4; do
    sh -c "sleep 0.0$i; /bin/true job $i" &
done
wait
/nonexistent/command 2> /dev/null || echo "workload: a failed exec, as planned"
sh -c 'exit 3' || echo "workload: a child exited with $?"
sleep 0.1
echo "workload: done"
