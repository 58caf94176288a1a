"""IPython magics: ``%load_ext ebpftoolkit``.

* ``%%ebpf [record options]`` traces this kernel process and everything it starts
  while the cell runs, with exactly the options of ``ebpftoolkit record`` (plus
  ``--var``, ``--report``, ``--no-timeline``), then shows a one-line summary and
  the timeline, and binds the :class:`~ebpftoolkit.Session` to ``_ebpf``.
* ``%ebpf doctor`` / ``%ebpf attach PID [record options] [--seconds S]`` /
  ``%ebpf stop [NAME]``.
* ``%execsnoop [SECONDS] [filters]``: every exec on the machine for SECONDS, as a DataFrame.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.display import display

from ..analysis.answers import call_text, slowest_calls
from ..doctor import doctor
from ..errors import EbpfToolkitError
from ..options import exec_probe, probes_from_options
from ..runtime.privilege import privilege
from ..session import Session, program_text_for
from .bpfcell import BpfMagics, custom_probe
from .cell import run_cell
from .parsers import attach_parser, cell_parser, execsnoop_parser, parse
from .status import COMPILING, Status

__all__ = ["EbpfMagics", "load_ipython_extension", "unload_ipython_extension", "running_sessions", "cell_parser"]

#: sessions started by the magics and not stopped yet: name -> Session (``%unload_ext`` stops them)
_RUNNING: dict[str, object] = {}
_BACKGROUND: dict[str, tuple] = {}     # %ebpf attach without --seconds: name -> (options, start time)


def running_sessions() -> dict:
    """The sessions the magics started that are still tracing (variable name -> Session)."""
    return {k: s for k, s in _RUNNING.items() if s.running}


# -- helpers --------------------------------------------------------------------------------------------
def _root_problem() -> str | None:
    p = privilege()
    return None if p.ok else f"{p.detail}. Loading BPF programs needs root. Fix: {p.fix}"


def _probes(args):
    """The record command's probes; a configuration mistake is a usage error (no traceback)."""
    try:
        return probes_from_options(args) + [custom_probe(n) for n in getattr(args, "probe", [])]
    except EbpfToolkitError as exc:
        raise UsageError(f"{type(exc).__name__}: {exc}") from None


def _check_free(var: str) -> None:
    old = _RUNNING.get(var)
    if old is not None and getattr(old, "running", False):
        raise UsageError(f"{var} is still tracing: `%ebpf stop {var}` first, or pass --var NAME")


def _probes_unless_printing(args, descendants_of, refusal: str):
    """The probes to trace with, after the root check (its failure raised as ``refusal: why``); None when
    --ebpf asked only to print the generated BPF C, which needs no root and is printed here."""
    if not args.ebpf:
        problem = _root_problem()
        if problem:
            raise UsageError(f"{refusal}: {problem}")
    probes = _probes(args)
    if args.ebpf:
        print(program_text_for(probes, descendants_of))
        return None
    _check_free(args.var)
    return probes


def _wait(seconds: float) -> None:
    threading.Event().wait(max(seconds, 0.0))   # Ctrl-C (kernel interrupt) ends it


def _stop(session) -> None:
    """Stop a running session; a second Ctrl-C while stopping does not leave probes attached."""
    for _ in range(3):
        try:
            if session.running:
                session.stop()
            return
        except KeyboardInterrupt:
            continue


#: what one row of each table is (singular, plural), for the summary line; other tables say "rows"
ROW_NOUNS = {"exec": ("exec", "execs"), "processes": ("process", "processes"), "gpu": ("GPU call", "GPU calls"),
             "syscalls": ("syscall", "syscalls"), "pmu": ("PMU reading", "PMU readings"),
             "pmu_samples": ("PMU sample", "PMU samples")}


def _rows(name: str, n: int) -> str:
    one, many = ROW_NOUNS.get(name, (f"{name} row", f"{name} rows"))
    return f"{n} {one if n == 1 else many}"


def summary_line(session, seconds: float | None = None) -> str:
    """``3 execs, 5 processes in 1.23 s; lost events: 0``: every number is the length of a table
    (``session.tables``), named after what its rows are; with GPU calls, the slowest one (its time
    since the recording's start).  Lost events are the records the kernel dropped before they became rows."""
    tables = {k: v for k, v in session.tables.items() if not k.startswith("_")}
    rows = ", ".join(_rows(name, len(df)) for name, df in tables.items()) or "no table"
    lost = session.lost
    total = sum(lost.values())
    where = "" if not total else " (" + ", ".join(f"{k} {v}" for k, v in lost.items() if v) + \
        "; see .loss_windows)"
    dur = "" if seconds is None else f" in {seconds:.2f} s"
    gpu = tables.get("gpu")
    top = slowest_calls(gpu, 1) if gpu is not None else None
    slow = "" if top is None or top.empty else \
        f"; slowest call: {call_text(next(top.itertuples()), _first(session.metadata.start, gpu['ts'].min()))}"
    return f"{rows}{dur}{slow}; lost events: {total}{where}"


def _first(start, first_call):
    """Times are said from the session's start, or from its first call when one was made before the start
    was taken (a call in flight when ``%ebpf attach`` attached)."""
    return first_call if start is None or first_call < start else start


def show_timeline(session):
    """Display the interactive timeline; a view problem is said, and never loses the recording."""
    try:
        w = session.timeline()
    except Exception as exc:
        print(f"(timeline not shown: {type(exc).__name__}: {exc})")
        return None
    display(w)
    return w


def write_report(session, path) -> None:
    try:
        session.to_html(path)
    except Exception as exc:      # the report is extra: the recording and the timeline stay
        print(f"(report not written: {type(exc).__name__}: {exc})")
        return
    print(f"report written to {path}")


# -- the magics -----------------------------------------------------------------------------------------
@magics_class
class EbpfMagics(Magics):

    @line_cell_magic
    def ebpf(self, line: str = "", cell: str | None = None):
        """Trace with eBPF from a notebook.

        Cell magic -- trace this kernel process and everything it starts while the cell runs:

            %%ebpf [--exec] [--gpu [APIS]] [--pmu EVENTS] [--var NAME] [--report PATH] [--no-timeline] ...
            subprocess.run(["make", "-j2"])

        Shows a one-line summary and the timeline, binds the Session to ``_ebpf``
        (``--var``) -- also while the cell runs, so ``_ebpf.tables`` is live inside it.
        If the cell raises (or is interrupted), tracing stops, what was captured is
        kept, shown and bound, and the exception goes on.

        Line magic:

            %ebpf doctor                                   what this machine can trace, with fixes
            %ebpf attach PID [record options] --seconds 5  trace a running process's tree for 5 s
            %ebpf attach PID [record options]              ... in the background, until:
            %ebpf stop [NAME]                              stop background sessions (all, or NAME)
        """
        __tracebackhide__ = True     # IPython: the cell's traceback starts at the cell, not here
        if cell is not None:
            return self._cell(line, cell)
        tokens = line.split(None, 1)
        sub, rest = (tokens[0], tokens[1] if len(tokens) > 1 else "") if tokens else ("", "")
        if sub == "doctor":
            doctor()
            return None
        if sub == "attach":
            return self._attach(rest)
        if sub == "stop":
            return self._stop_background(rest.strip())
        if sub in ("-h", "--help", "help", ""):
            print(self.ebpf.__doc__)
            return None
        raise UsageError(f"%ebpf: unknown subcommand {sub!r}: use %ebpf doctor | attach PID ... | stop, "
                         "or %%ebpf [options] as a cell magic (see %ebpf?)")

    # -- %%ebpf -------------------------------------------------------------------------------------
    def _cell(self, line: str, cell: str):
        __tracebackhide__ = True
        args = parse(cell_parser(), line)
        if args is None:
            return None
        extra = args.command[1:] if args.command[:1] == ["--"] else args.command
        if extra:
            raise UsageError(f"%%ebpf traces the cell: unexpected arguments {shlex.join(extra)!r} (run the command "
                             "inside the cell, e.g. !make or subprocess.run([...]))")
        scope = None if args.system_wide else "self"
        probes = _probes_unless_printing(args, scope, "%%ebpf: not tracing, and the cell was NOT run")
        if probes is None:
            return None
        session = Session(*probes, descendants_of=scope)
        who = "every process on this machine" if scope is None else "this kernel and its children"
        status = Status(self.shell, "%%ebpf", COMPILING)
        self._start(session, status)
        self.shell.user_ns[args.var] = session
        _RUNNING[args.var] = session
        status.ticking(f"tracing {who} while the cell runs")
        t0 = time.monotonic()
        try:
            run_cell(self.shell, cell)
            if args.duration is not None:
                _wait(args.duration - (time.monotonic() - t0))
        except BaseException as exc:
            try:
                self._finish(session, args, status, time.monotonic() - t0, error=exc)
            except Exception as fin_exc:        # keep the cell's exception the one that is raised
                print(f"%%ebpf: while stopping: {type(fin_exc).__name__}: {fin_exc}", file=sys.stderr)
            raise
        self._finish(session, args, status, time.monotonic() - t0)
        return None

    def _start(self, session, status: Status) -> None:
        try:
            session.start()
        except EbpfToolkitError as exc:
            status.set(f"could not start: {exc}", "#c00")
            raise UsageError(f"could not start tracing ({type(exc).__name__}): {exc}") from None
        except BaseException:
            status.set("not started", "#c00")
            raise

    def _finish(self, session, args, status: Status, seconds: float | None,
                error: BaseException | None = None) -> None:
        try:
            status.set("stopping...")
            _stop(session)
        finally:
            if _RUNNING.get(args.var) is session:
                del _RUNNING[args.var]
        line = summary_line(session, seconds)
        lost = sum(session.lost.values())
        took = "" if seconds is None else f" after {seconds:.2f} s"
        if error is not None:
            status.final(f"stopped by {type(error).__name__}{took}; what was captured is in {args.var}", "#c00")
        else:
            status.final(f"done{took}" + (f", but {lost} events were lost" if lost else ""),
                         "#c00" if lost else "#1a6")
        print(f"{args.var}: {line}")
        if args.output:
            print(f"session written to {session.save(args.output)}")
        if args.report:
            write_report(session, args.report)
        if not args.no_timeline:
            show_timeline(session)

    # -- %ebpf attach / stop ------------------------------------------------------------------------
    def _attach(self, rest: str):
        tokens = rest.split(None, 1)
        if not tokens or not tokens[0].isdigit():
            raise UsageError("%ebpf attach PID [record options] [--seconds S]: give the pid of a running process, "
                             "e.g. %ebpf attach 1234 --gpu vulkan --seconds 5")
        pid = int(tokens[0])
        args = parse(attach_parser(), tokens[1] if len(tokens) > 1 else "")
        if args is None:
            return None
        if args.command or args.system_wide:
            raise UsageError("%ebpf attach traces PID and its descendants: it takes no command and no --system-wide")
        if not os.path.exists(f"/proc/{pid}"):
            raise UsageError(f"%ebpf attach: no process {pid} (is it still running? see `ps`)")
        probes = _probes_unless_printing(args, pid, "%ebpf attach: not tracing")
        if probes is None:
            return None
        session = Session(*probes, descendants_of=pid)
        status = Status(self.shell, "%ebpf", COMPILING)
        self._start(session, status)
        self.shell.user_ns[args.var] = session
        _RUNNING[args.var] = session
        seconds = args.seconds if args.seconds is not None else args.duration
        if seconds is None:
            status.set(f"tracing pid {pid} and its descendants in the background as {args.var}; "
                       f"`%ebpf stop {args.var}` to end", "#1a6")
            _BACKGROUND[args.var] = (args, time.monotonic())
            return None
        status.ticking(f"tracing pid {pid} and its descendants for {seconds:g} s")
        t0 = time.monotonic()
        try:
            _wait(seconds)
        except KeyboardInterrupt:
            pass                                     # Ctrl-C ends the wait early; keep what was captured
        self._finish(session, args, status, time.monotonic() - t0)
        return None

    def _stop_background(self, names: str):
        targets = names.split() or [k for k, s in _RUNNING.items() if s.running]
        if not targets:
            print("%ebpf stop: no session is tracing")
            return None
        for name in targets:
            session = _RUNNING.get(name)
            if session is None or not session.running:
                raise UsageError(f"%ebpf stop: {name!r} is not a running session; running: "
                                 f"{sorted(running_sessions()) or 'none'}")
            args, t0 = _BACKGROUND.pop(name, (None, None))
            if args is None:
                args = argparse.Namespace(var=name, output=None, report=None, no_timeline=False)
            seconds = None if t0 is None else time.monotonic() - t0
            self._finish(session, args, Status(self.shell, "%ebpf", f"stopping {name}..."), seconds)
        return None

    # -- %execsnoop ---------------------------------------------------------------------------------
    @line_magic
    def execsnoop(self, line: str = ""):
        """Every exec on this machine (or below -p PID) for SECONDS (default 10): returns the DataFrame.

            %execsnoop 10
            df = %execsnoop 5 --comm '^(cc|ld)' --failed
        """
        args = parse(execsnoop_parser(), line)
        if args is None:
            return None
        problem = _root_problem()
        if problem:
            raise UsageError(f"%execsnoop: not tracing: {problem}")
        session = Session(exec_probe(args), descendants_of=args.pid)
        status = Status(self.shell, "%execsnoop", COMPILING)
        self._start(session, status)
        key = f"execsnoop-{id(session)}"
        _RUNNING[key] = session
        where = "this machine" if args.pid is None else f"pid {args.pid} and its descendants"
        status.ticking(f"watching every exec on {where} for {args.seconds:g} s")
        t0 = time.monotonic()
        try:
            _wait(args.seconds)
        except KeyboardInterrupt:
            pass
        finally:
            status.set("stopping...")
            _stop(session)
            _RUNNING.pop(key, None)
        df = session.tables["exec"]
        lost = sum(session.lost.values())
        status.final(f"done: {len(df)} execs in {time.monotonic() - t0:.1f} s; lost events: {lost}",
                     "#c00" if lost else "#1a6")
        print(f"%execsnoop: {len(df)} execs in {time.monotonic() - t0:.1f} s; lost events: {lost}")
        return df


def _with_help(fn, parser: argparse.ArgumentParser) -> None:
    fn.__doc__ = (fn.__doc__ or "") + "\n" + parser.format_help()


_with_help(EbpfMagics.ebpf, cell_parser())
_with_help(EbpfMagics.execsnoop, execsnoop_parser())


# -- extension hooks --------------------------------------------------------------------------------------
def load_ipython_extension(ipython) -> None:
    ipython.register_magics(EbpfMagics)
    ipython.register_magics(BpfMagics)


def unload_ipython_extension(ipython) -> None:
    """Stop every session the magics started, then remove the magics."""
    for name, session in list(_RUNNING.items()):
        if session.running:
            print(f"ebpftoolkit: stopping {name} (the extension is being unloaded)")
            _stop(session)
        _RUNNING.pop(name, None)
    _BACKGROUND.clear()
    mm = ipython.magics_manager
    for kind, names in (("line", ("ebpf", "execsnoop")), ("cell", ("ebpf", "bpf"))):
        for n in names:
            mm.magics[kind].pop(n, None)
    mm.registry.pop("EbpfMagics", None)
    mm.registry.pop("BpfMagics", None)
