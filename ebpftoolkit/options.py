"""The probe options, defined once: the ``ebpftoolkit record`` command line and the notebook
magics parse the same flags and build the same probes from them."""
from __future__ import annotations

import argparse
import os
import shutil

from .errors import ProbeConfigError

__all__ = ["add_exec_filters", "add_probe_options", "record_parser", "probes_from_options", "exec_probe",
           "custom_probes"]


def add_exec_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exec snoop options")
    g.add_argument("--uid", type=int, help="only processes of this user id")
    g.add_argument("--comm", metavar="REGEX", help="only execs whose command name matches REGEX")
    g.add_argument("--failed", action="store_true", help="only failed execs")
    g.add_argument("--max-args", type=int, default=20, help="arguments captured per exec (default 20)")
    g.add_argument("--max-arg-len", type=int, default=128, help="bytes captured per argument (default 128)")


def add_probe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exec", dest="exec_", action="store_true",
                   help="trace execs, forks and exits (the default when no other probe is chosen)")
    p.add_argument("--gpu", metavar="APIS", nargs="?", const="all",
                   help="trace GPU API calls: a comma list of opengl,vulkan,opencl,cuda (default: all present)")
    p.add_argument("--gpu-returns", choices=["default", "all", "none"], default="default",
                   help="return probes (durations, return values): default = allocations, copies, syncs, frames")
    p.add_argument("--gpu-frames", metavar="BOUNDARY", default="swap/present",
                   help="what ends a frame: swap/present (default), marker (ebpftoolkit.frame blocks and "
                        "ebpftoolkit.mark in the program), or a comma list of calls, e.g. clFinish")
    p.add_argument("--pmu", metavar="EVENTS",
                   help="count perf events per task, e.g. cycles,cache-misses or page-faults,context-switches")
    p.add_argument("--interval", default="10ms", help="PMU time-series interval (default 10ms)")
    p.add_argument("--pmu-sample", metavar="EVENT[:PERIOD]",
                   help="sample a perf event: one row per PERIOD events (ns for cpu-clock/task-clock, default "
                        "1000000) with the function it hit, e.g. cpu-clock:1000000 (table pmu_samples)")
    p.add_argument("--stacks", action="store_true", help="with --pmu-sample: record the user stack of each sample")
    g = p.add_argument_group("your own BPF programs")
    g.add_argument("--probe-file", action="append", default=[], metavar="FILE",
                   help="add your own BPF program: BCC C (prog.c), libbpf-style C (prog.bpf.c, compiled here with "
                        "clang) or a BPF object (prog.bpf.o); its tables are NAME.MAP, NAME the file's stem")
    g.add_argument("--record", action="append", default=[], metavar="RING=STRUCT",
                   help="the record struct of a ring/perf buffer of --probe-file programs, e.g. events=event "
                        "(BCC C infers it; libbpf C says it with EBPF_RECORD(events, struct event))")
    add_exec_filters(p)
    p.add_argument("--ebpf", action="store_true", help="print the generated BPF C and exit")


def record_parser(prog: str = "ebpftoolkit record", parser: argparse.ArgumentParser | None = None):
    """``record``'s options (the magics add theirs to the same parser)."""
    p = parser or argparse.ArgumentParser(prog=prog)
    p.description = "Record a command (or the whole machine) into a recording folder."
    add_probe_options(p)
    p.add_argument("-o", "--output", metavar="DIR", help="recording folder to write (Parquet + metadata.json)")
    p.add_argument("--system-wide", action="store_true", help="trace every process, not only the command's tree")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="without a command: record this long")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...: the command to trace")
    return p


def exec_probe(args):
    from .probes.execsnoop import ExecSnoop
    return ExecSnoop(uid=args.uid, comm=args.comm, failed_only=args.failed, max_args=args.max_args,
                     max_arg_len=args.max_arg_len)


def _is_elf(cmd: str) -> bool:
    path = cmd if os.sep in cmd else shutil.which(cmd)
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except (OSError, TypeError):
        return False


def probes_from_options(args, command=None) -> list:
    """The probes the options ask for, in a fixed order (exec, gpu, pmu, pmu sampling)."""
    probes = []
    custom = custom_probes(getattr(args, "probe_file", []), getattr(args, "record", []))
    if args.exec_ or not (args.gpu or args.pmu or args.pmu_sample or custom or getattr(args, "probe", None)):
        probes.append(exec_probe(args))
    if args.gpu:
        from .probes.gpu import GpuTrace
        apis = None if args.gpu == "all" else args.gpu
        binaries = [command[0]] if command and _is_elf(command[0]) else []
        probes.append(GpuTrace(apis, returns=args.gpu_returns, binaries=binaries,
                               frames=getattr(args, "gpu_frames", "swap/present")))
    if args.pmu:
        from .probes.pmu import PmuCounters
        probes.append(PmuCounters([e.strip() for e in args.pmu.split(",") if e.strip()], interval=args.interval))
    if args.stacks and not args.pmu_sample:
        raise ProbeConfigError("--stacks goes with --pmu-sample EVENT[:PERIOD]")
    if args.pmu_sample:
        from .probes.pmu import PmuSampler
        event, _, period = args.pmu_sample.strip().partition(":")
        try:
            period = int(period) if period.strip() else None
        except ValueError:
            raise ProbeConfigError(f"--pmu-sample takes EVENT[:PERIOD] with an integer period, e.g. "
                                   f"cpu-clock:1000000, got {args.pmu_sample!r}") from None
        probes.append(PmuSampler(event.strip(), period, stacks=args.stacks))
    return probes + custom


def custom_probes(files, records) -> list:
    """``--probe-file`` programs with the ``--record RING=STRUCT`` types."""
    if records and not files:
        raise ProbeConfigError("--record RING=STRUCT goes with --probe-file FILE")
    recs = {}
    for r in records:
        ring, sep, struct = r.partition("=")
        if not sep or not ring.strip() or not struct.strip():
            raise ProbeConfigError(f"--record takes RING=STRUCT such as events=event, got {r!r}")
        recs[ring.strip()] = struct.strip()
    if not files:
        return []
    from .probes.custom import CustomProbe
    return [CustomProbe.from_file(f, records=recs) for f in files]
