#!/usr/bin/env python3
"""Turn `apitrace dump` output into {"call": count} JSON (an oracle for GL tracers).

  apitrace_counts.py TRACE.trace            # runs apitrace dump itself
  apitrace dump --verbose T.trace | apitrace_counts.py -
  apitrace_counts.py T.trace --check workload.json   # compare with a workload's
      "calls" dict (the JSON line printed by build/gl_glx or build/gl_egl);
      exit 1 on any mismatch

Counting rules: one count per dumped call line "<callno> <name>(...)".  Calls
apitrace inserted itself (suffix "// fake", e.g. glViewport/glScissor after the
first glXMakeCurrent) are skipped.  We dump with --verbose so calls apitrace
hides by default (glXGetProcAddressARB, glGetString, glGetError...) are counted
too.  The dump runs with --multiline=false so string arguments can't split lines.
"""
import argparse
import collections
import json
import re
import subprocess
import sys

LINE = re.compile(r"^(\d+) (?:@\S+ )?([A-Za-z_][A-Za-z0-9_]*)\(")


def count_calls(lines):
    counts = collections.Counter()
    for line in lines:
        m = LINE.match(line)
        if m and not line.rstrip().endswith("// fake"):
            counts[m.group(2)] += 1
    return dict(sorted(counts.items()))


def dump_lines(trace):
    if trace == "-":
        return sys.stdin
    out = subprocess.run(["apitrace", "dump", "--color=never", "--verbose", "--multiline=false",
                          "--arg-names=false", trace],
                         check=True, stdout=subprocess.PIPE, text=True, errors="replace").stdout
    return out.splitlines()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", help="trace file, or - to read `apitrace dump` text from stdin")
    ap.add_argument("--only", help="comma-separated call names to keep")
    ap.add_argument("--check", help="file holding a workload JSON line; compare its 'calls'")
    args = ap.parse_args()
    counts = count_calls(dump_lines(args.trace))
    if args.only:
        keep = args.only.split(",")
        counts = {k: counts.get(k, 0) for k in keep}
    print(json.dumps(counts, separators=(",", ":")))
    if args.check:
        with open(args.check) as f:
            want = next(json.loads(l) for l in f if l.lstrip().startswith("{"))["calls"]
        diff = {k: {"workload": v, "apitrace": counts.get(k, 0)}
                for k, v in want.items() if counts.get(k, 0) != v}
        print(json.dumps({"agree": not diff, "mismatch": diff}, separators=(",", ":")))
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
