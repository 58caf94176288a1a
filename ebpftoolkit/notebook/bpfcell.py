"""``%%bpf NAME``: the cell's body is your own BPF program; ``%%ebpf --probe NAME`` then traces a cell with it.

    %%bpf mine --uprobe on_alloc=c:malloc
    BPF_HASH(calls, u32, u64);
    int on_alloc(struct pt_regs *ctx) { ... }

The body is BCC C by default, libbpf-style C with ``--libbpf`` (compiled with clang -target bpf),
or empty with ``--object PATH``.  The program is compiled and loaded once right away, so a
compile error or a verifier rejection shows here, with the line and the verifier's message,
and then unloaded; the probe is bound to ``NAME`` (``mine.source``, ``mine.dump_xlated()``).
A thin layer over :class:`~ebpftoolkit.CustomProbe`.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import warnings

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

from ..errors import EbpfToolkitError
from ..runtime.cache import cache_dir
from ..runtime.privilege import privilege
from .parsers import _raising, parse

__all__ = ["BpfMagics", "defined_probes", "custom_probe", "bpf_parser"]

#: probes defined by %%bpf in this kernel: name -> CustomProbe (%%ebpf --probe NAME takes a copy)
_DEFINED: dict[str, object] = {}
_FUNC_TARGET = re.compile(r"^([A-Za-z_]\w*)=(\S+:\S+)$")
_FUNC_EVENT = re.compile(r"^([A-Za-z_]\w*)=([\w-]+):(\d+)$")


def defined_probes() -> dict:
    return dict(_DEFINED)


def custom_probe(name: str):
    """A fresh copy of the probe ``%%bpf NAME`` defined (UsageError when there is none)."""
    p = _DEFINED.get(name)
    if p is None:
        known = ", ".join(sorted(_DEFINED)) or "none yet"
        raise UsageError(f"--probe {name}: no such probe: define it with a `%%bpf {name}` cell first "
                         f"(defined: {known})")
    return p.copy()


def bpf_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%bpf NAME", description="The cell is your own BPF program (BCC C unless "
                                "--libbpf or --object): compiled and loaded once to check it, bound to NAME; trace "
                                "a cell with it by `%%ebpf --probe NAME`.")
    p.add_argument("name", help="the probe's name (its tables are NAME.MAP)")
    p.add_argument("--uprobe", action="append", default=[], metavar="FUNC=LIB:SYMBOL",
                   help="run FUNC at each call of SYMBOL in LIB (a path, or a name such as c)")
    p.add_argument("--uretprobe", action="append", default=[], metavar="FUNC=LIB:SYMBOL", help="... at each return")
    p.add_argument("--perf-event", action="append", default=[], metavar="FUNC=EVENT:PERIOD",
                   help="run FUNC every PERIOD occurrences of a perf event, e.g. on_sample=cpu-clock:1000000")
    p.add_argument("--record", action="append", default=[], metavar="RING=STRUCT",
                   help="the record struct of a ring or perf buffer (BCC C infers it)")
    p.add_argument("--histogram", action="append", default=[], metavar="MAP", help="show MAP as log2 buckets")
    p.add_argument("--object", metavar="PATH", help="load this BPF object (built with clang -target bpf -g)")
    p.add_argument("--libbpf", action="store_true", help="the body is libbpf-style C: compile it with clang")
    p.add_argument("--no-check", action="store_true", help="do not load the program now (no root needed)")
    return _raising(p)


def _pairs(items, pattern, what):
    out = {}
    for it in items:
        m = pattern.match(it)
        if not m:
            raise UsageError(f"%%bpf: {what} takes {pattern.pattern!r}-shaped values such as on_alloc=c:malloc, "
                             f"got {it!r}")
        out[m.group(1)] = m.group(2) if m.lastindex == 2 else (m.group(2), int(m.group(3)))
    return out


def _build(args, body: str):
    from ..probes.custom import CustomProbe
    kw = dict(name=args.name, uprobes=_pairs(args.uprobe, _FUNC_TARGET, "--uprobe"),
              uretprobes=_pairs(args.uretprobe, _FUNC_TARGET, "--uretprobe"),
              perf_events=_pairs(args.perf_event, _FUNC_EVENT, "--perf-event"),
              records=dict(r.split("=", 1) for r in args.record if "=" in r), histograms=tuple(args.histogram))
    if len(kw["records"]) != len(args.record):
        raise UsageError("%%bpf: --record takes RING=STRUCT such as events=event")
    if args.object:
        if body.strip():
            raise UsageError("%%bpf --object PATH loads that object: leave the cell's body empty")
        return CustomProbe.from_object(args.object, **kw)
    if not body.strip():
        raise UsageError("%%bpf: the cell's body is the BPF C program (or use --object PATH)")
    if args.libbpf:
        folder = cache_dir() / "cells"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{args.name}-{hashlib.sha256(body.encode()).hexdigest()[:12]}.bpf.c"
        path.write_text(body)
        return CustomProbe.from_libbpf_source(path, **kw)
    return CustomProbe(body, **kw)


@magics_class
class BpfMagics(Magics):

    @cell_magic
    def bpf(self, line: str, cell: str):
        """Define your own BPF program as a probe (see ``%%bpf -h``); trace with it by ``%%ebpf --probe NAME``."""
        __tracebackhide__ = True
        args = parse(bpf_parser(), line)
        if args is None:
            return None
        try:
            probe = _build(args, cell)
        except EbpfToolkitError as exc:
            raise UsageError(f"%%bpf {args.name}: {type(exc).__name__}: {exc}") from None
        if not args.no_check:
            p = privilege()
            if not p.ok:
                raise UsageError(f"%%bpf {args.name}: not checked, not defined: {p.detail}. Loading BPF needs root "
                                 f"(fix: {p.fix}), or pass --no-check to define it without loading")
            self._check(probe)
        _DEFINED[args.name] = probe
        self.shell.user_ns[args.name] = probe
        return None

    def _check(self, probe) -> None:
        """Load a copy for a moment: compile errors and verifier rejections are said here, not at trace time."""
        from ..session import Session
        trial = probe.copy()
        try:
            with warnings.catch_warnings():      # the trial's empty tables are no news
                warnings.simplefilter("ignore")
                with Session(trial, descendants_of="command") as s:
                    d = trial.details()
        except EbpfToolkitError as exc:
            raise UsageError(f"%%bpf {probe.name}: {type(exc).__name__}: {exc}") from None
        parts = [f"attached to {'; '.join(d['attached']) or 'nothing'}"]
        if d["streams"]:
            parts.append("records: " + ", ".join(d["streams"]))
        if d["maps"]:
            parts.append("maps: " + ", ".join(f"{probe.name}.{m}" for m in d["maps"]))
        notes = "".join(f"\n  note: {n}" for n in s.recording.metadata.notes if "handed none" not in n)
        print(f"custom probe {probe.name}: compiled, loaded and unloaded ({'; '.join(parts)}); "
              f"bound to `{probe.name}`. Trace a cell with it: %%ebpf --probe {probe.name}{notes}")
