#!/bin/sh
# The main job's workload: a small process tree (workloads/process_tree.sh), then a
# real OpenGL program (surfaceless EGL on llvmpipe) and a real OpenCL program (PoCL).
set -eu
here="$(dirname "$0")"
"$here/process_tree.sh"
"$here/gpu/build/gl_egl" --frames 60 > /dev/null
"$here/gpu/build/cl_vecadd" --iters 20 > /dev/null
echo "demo: done"
