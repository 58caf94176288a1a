"""Command line: ``ebpftoolkit doctor | record | execsnoop | report | export``.

The ``record`` parser is built by :func:`record_parser` so that the IPython
magics can share exactly the same options.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
from pathlib import Path

from .errors import EbpfToolkitError

__all__ = ["main", "record_parser"]

OVERHEAD_NOTE = ("Overhead: ExecSnoop costs a few microseconds per exec/fork/exit; "
                 "programs that start thousands of processes per second slow down measurably.")


def _add_exec_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exec snoop options")
    g.add_argument("--uid", type=int, help="only processes of this user id")
    g.add_argument("--comm", metavar="REGEX", help="only execs whose command name matches REGEX")
    g.add_argument("--failed", action="store_true", help="only failed execs")
    g.add_argument("--max-args", type=int, default=20, help="arguments captured per exec (default 20)")
    g.add_argument("--max-arg-len", type=int, default=128, help="bytes captured per argument (default 128)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ebpf", action="store_true", help="print the generated BPF C and exit")


def record_parser(prog: str = "ebpftoolkit record") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Record a command (or the whole machine) into a session folder.")
    p.add_argument("--exec", dest="exec_", action="store_true",
                   help="trace execs, forks and exits (the default when no other probe is chosen)")
    p.add_argument("--gpu", metavar="APIS", nargs="?", const="all",
                   help="trace GPU API calls: a comma list of opengl,vulkan,opencl,cuda (default: all present)")
    p.add_argument("--gpu-returns", choices=["default", "all", "none"], default="default",
                   help="return probes (durations, return values): default = allocations, copies, syncs, frames")
    p.add_argument("--pmu", metavar="EVENTS",
                   help="count perf events per task, e.g. cycles,cache-misses or page-faults,context-switches")
    p.add_argument("--interval", default="10ms", help="PMU time-series interval (default 10ms)")
    p.add_argument("--pmu-sample", metavar="EVENT[:PERIOD]",
                   help="sample a perf event: one row per PERIOD events (ns for cpu-clock/task-clock, default "
                        "1000000) with the function it hit, e.g. cpu-clock:1000000 (table pmu_samples)")
    p.add_argument("--stacks", action="store_true", help="with --pmu-sample: record the user stack of each sample")
    p.add_argument("-o", "--output", metavar="DIR", help="session folder to write (Parquet + metadata.json)")
    p.add_argument("--system-wide", action="store_true", help="trace every process, not only the command's tree")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="without a command: record this long")
    _add_exec_filters(p)
    _add_common(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...: the command to trace")
    return p


def _record_probes(args, command, descendants_of):
    """The probes `record` (and the %%ebpf magic) asked for, in a fixed order."""
    from .probes.gpu import GpuTrace
    from .probes.pmu import PmuCounters
    from .errors import ProbeConfigError
    probes = []
    if args.exec_ or not (args.gpu or args.pmu or args.pmu_sample):
        probes.append(_exec_probe(args, descendants_of))
    if args.gpu:
        apis = None if args.gpu == "all" else args.gpu
        binaries = [command[0]] if command and _is_elf(command[0]) else []
        probes.append(GpuTrace(apis, descendants_of=descendants_of, returns=args.gpu_returns, binaries=binaries))
    if args.pmu:
        events = [e.strip() for e in args.pmu.split(",") if e.strip()]
        probes.append(PmuCounters(events, interval=args.interval, descendants_of=descendants_of))
    if args.stacks and not args.pmu_sample:
        raise ProbeConfigError("--stacks goes with --pmu-sample EVENT[:PERIOD]")
    if args.pmu_sample:
        event, _, period = args.pmu_sample.strip().partition(":")
        try:
            period = int(period) if period.strip() else None
        except ValueError:
            raise ProbeConfigError(f"--pmu-sample takes EVENT[:PERIOD] with an integer period, e.g. "
                                   f"cpu-clock:1000000, got {args.pmu_sample!r}") from None
        probes.append(PmuCounters.sampler(event.strip(), period, stacks=args.stacks, descendants_of=descendants_of))
    return probes


def _is_elf(cmd: str) -> bool:
    import shutil
    path = cmd if os.sep in cmd else shutil.which(cmd)
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except (OSError, TypeError):
        return False


def _exec_probe(args, descendants_of):
    from .probes.execsnoop import ExecSnoop
    return ExecSnoop(descendants_of, uid=args.uid, comm=args.comm, failed_only=args.failed,
                     max_args=args.max_args, max_arg_len=args.max_arg_len)


def _cmd_record(argv) -> int:
    from .session import Session
    args = record_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and args.duration is None:
        raise SystemExit("ebpftoolkit record: give a command after --, or --duration SECONDS")
    scope = None if args.system_wide else ("command" if command else None)
    probes = _record_probes(args, command, None if scope is None else "self")
    session = Session(*probes, descendants_of=scope)
    if args.ebpf:
        from .session import build_program_text
        print(build_program_text(probes, scope is not None))
        return 0
    print(f"Tracing {'the whole machine' if scope is None else ' '.join(command)}... "
          f"{'Ctrl-C to end' if not command else ''}".rstrip(), file=sys.stderr)
    rc = 0
    with session:
        if command:
            rc = session.run(command).returncode
        else:
            _sleep_interruptibly(args.duration)
    print(session.summary())
    if args.output:
        out = session.save(args.output)
        print(f"session written to {out}")
    return rc


def _sleep_interruptibly(seconds):
    try:
        threading.Event().wait(seconds)
    except KeyboardInterrupt:
        pass


def _fmt_exec_row(r) -> str:
    args = shlex.join(r.argv) + (" ..." if r.argv_truncated else "")
    ret = str(r.retval) if r.retval == 0 else f"{r.retval} ({r.error})"
    return f"{r.ts:%H:%M:%S.%f}"[:-3] + f" {r.comm:<16} {r.pid:>7} {r.ppid:>7} {ret:>12}  {args}"


def _cmd_execsnoop(argv) -> int:
    from .session import Session
    p = argparse.ArgumentParser(prog="ebpftoolkit execsnoop", description="Print every exec on this machine, live.")
    p.add_argument("-p", "--pid", type=int, help="only this process and its descendants")
    p.add_argument("-o", "--output", metavar="DIR", help="also save the session to DIR when stopped")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS (default: Ctrl-C)")
    _add_exec_filters(p)
    _add_common(p)
    args = p.parse_args(argv)
    probe = _exec_probe(args, args.pid)
    session = Session(probe, descendants_of=args.pid)
    if args.ebpf:
        print(probe.source)
        return 0
    lock = threading.Lock()

    def show(_probe, df):
        with lock:
            for r in df.itertuples():
                print(_fmt_exec_row(r), flush=True)

    session.start()
    try:
        session.add_listener(show)
        print(f"Tracing execs{'' if args.pid is None else f' below pid {args.pid}'}... Ctrl-C to end.", file=sys.stderr)
        print(OVERHEAD_NOTE, file=sys.stderr)
        print(f"{'TIME':<12} {'COMM':<16} {'PID':>7} {'PPID':>7} {'RET':>12}  ARGS", flush=True)
        _sleep_interruptibly(args.duration if args.duration is not None else None)
    finally:
        session.stop()
    lost = session.lost
    print(f"{len(session.tables['exec'])} execs; lost events: {sum(lost.values())}", file=sys.stderr)
    if args.output:
        print(f"session written to {session.save(args.output)}", file=sys.stderr)
    return 0


def _cmd_doctor(argv) -> int:
    from .doctor import doctor
    argparse.ArgumentParser(prog="ebpftoolkit doctor", description="What this machine can trace.").parse_args(argv)
    return 0 if doctor().ok else 1


def _cmd_report(argv) -> int:
    from .session import Session
    p = argparse.ArgumentParser(prog="ebpftoolkit report",
                                description="Write a self-contained HTML report of a saved session (no root needed).")
    p.add_argument("session", metavar="SESSION_DIR", help="a session folder (ebpftoolkit record -o DIR)")
    p.add_argument("-o", "--output", metavar="FILE", help="HTML file to write (default: SESSION_DIR/report.html)")
    p.add_argument("--title", help="report title")
    p.add_argument("--max-rows", type=int, default=200, help="rows shown per table (default 200)")
    args = p.parse_args(argv)
    out = Path(args.output or Path(args.session) / "report.html")
    Session.load(args.session).to_html(out, title=args.title, max_rows=args.max_rows)
    print(f"report written to {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def _cmd_export(argv) -> int:
    from .session import Session
    p = argparse.ArgumentParser(prog="ebpftoolkit export", description="Export a saved session for other tools.")
    p.add_argument("--format", choices=["chrome"], default="chrome",
                   help="chrome: Trace Event Format JSON for chrome://tracing and ui.perfetto.dev (default)")
    p.add_argument("session", metavar="SESSION_DIR", help="a session folder (ebpftoolkit record -o DIR)")
    p.add_argument("-o", "--output", metavar="FILE", help="file to write (default: SESSION_DIR/trace.json)")
    args = p.parse_args(argv)
    out = Path(args.output or Path(args.session) / "trace.json")
    Session.load(args.session).to_chrome_trace(out)
    print(f"trace written to {out} ({out.stat().st_size / 1e6:.2f} MB); open it in ui.perfetto.dev or chrome://tracing")
    return 0


COMMANDS = {"doctor": _cmd_doctor, "record": _cmd_record, "execsnoop": _cmd_execsnoop, "report": _cmd_report,
            "export": _cmd_export}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: ebpftoolkit {doctor,record,execsnoop,report,export} [options]\n"
              "  doctor     check what this machine can trace, with fixes\n"
              "  record     record a command into a session folder: ebpftoolkit record --exec -o runs/r1 -- CMD\n"
              "  execsnoop  print every exec live (Ctrl-C to end)\n"
              "  report     HTML report of a session folder: ebpftoolkit report runs/r1 -o report.html\n"
              "  export     Chrome trace JSON of a session: ebpftoolkit export --format chrome runs/r1 -o trace.json",
              file=sys.stderr if argv else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except EbpfToolkitError as exc:
        print(f"ebpftoolkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
