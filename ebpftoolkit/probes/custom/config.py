"""CustomProbe's configuration: the user's program (BCC C text, or a libbpf object or source file)
and how to attach and read it, as plain data (saved with the recording, so a report says what ran)."""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

import numpy as np

from ...errors import ProbeConfigError
from ..config import ProbeConfig

__all__ = ["CustomConfig", "FLAVOURS", "RESERVED_NAMES", "record_spec"]

FLAVOURS = ("bcc", "object", "libbpf_source")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TARGET = re.compile(r"^[^:\s]+:[^:\s]+$")
#: probe names that are tables of the shipped probes (a custom probe's tables are NAME.MAP)
RESERVED_NAMES = ("processes", "execs", "gpu", "pmu", "pmu_samples", "syscalls", "syscall_counts", "tracking")


def record_spec(value, where: str) -> tuple:
    """``"struct event"`` / ``"event"`` (a BTF type) -> ("btf", "event"); a numpy dtype -> ("dtype", descr)."""
    if isinstance(value, str):
        name = value.strip().removeprefix("struct ").strip()
        if not _IDENT.match(name):
            raise ProbeConfigError(f"{where}: {value!r} is not a struct name such as 'struct event'")
        return ("btf", name)
    try:
        dt = np.dtype(value)
    except TypeError:
        raise ProbeConfigError(f"{where}: give a struct name ('struct event') or a numpy dtype, got {value!r}") from None
    if dt.names is None or dt.hasobject:
        raise ProbeConfigError(f"{where}: a record dtype must be a structured numpy dtype without objects, got {dt}")
    return ("dtype", tuple(_tuple(x) for x in dt.descr))


def _tuple(x):
    return tuple(_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _pairs(name: str, value, check_target: bool) -> tuple:
    if value is None:
        return ()
    items = value.items() if isinstance(value, dict) else value
    try:       # {fn: target} or {fn: (event, period)}; saved as (fn, target) / (fn, event, period)
        items = [(it[0], it[1] if len(it) == 2 else tuple(it[1:])) for it in items]
        pairs = tuple((str(k), str(v)) if not isinstance(v, (tuple, list)) else (str(k), *v) for k, v in items)
    except (TypeError, ValueError, IndexError):
        raise ProbeConfigError(f"{name} must be a dict such as {{'on_alloc': 'c:malloc'}}") from None
    for fn, *rest in pairs:
        if not _IDENT.match(fn):
            raise ProbeConfigError(f"{name}: {fn!r} is not a C function name")
        if check_target and not (len(rest) == 1 and _TARGET.match(rest[0])):
            raise ProbeConfigError(f"{name}[{fn!r}] must be 'LIBRARY:SYMBOL' such as 'c:malloc' or "
                                   f"'/usr/bin/python3:main', got {':'.join(map(str, rest))!r}")
    return pairs


@dataclass(frozen=True)
class CustomConfig(ProbeConfig):
    """``name``: the probe's name (its tables are ``NAME.MAP``); ``flavour``: "bcc" (``source`` is BCC C),
    "object" (``path`` is a BPF object built with clang -target bpf -g) or "libbpf_source" (``path`` is
    libbpf-style C that ebpftoolkit compiles); ``uprobes``/``uretprobes``: (function, "LIB:SYMBOL");
    ``perf_events``: (function, perf event name, period); ``records``: (ring or perf buffer, record
    spec); ``histograms``: maps shown as log2 buckets; ``cflags``: extra compiler flags."""

    kind = "CustomProbe"
    name: str = "custom"
    flavour: str = "bcc"
    source: str = ""
    path: str = ""
    uprobes: tuple = ()
    uretprobes: tuple = ()
    perf_events: tuple = ()
    records: tuple = ()
    histograms: tuple = ()
    cflags: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not _IDENT.match(self.name) or keyword.iskeyword(self.name):
            raise ProbeConfigError(f"name must be an identifier such as 'mine', got {self.name!r}")
        if self.name in RESERVED_NAMES:
            raise ProbeConfigError(f"name {self.name!r} is a table of the shipped probes: choose another")
        if self.flavour not in FLAVOURS:
            raise ProbeConfigError(f"flavour must be one of {', '.join(FLAVOURS)}, got {self.flavour!r}")
        if self.flavour == "bcc" and (not isinstance(self.source, str) or not self.source.strip()):
            raise ProbeConfigError("CustomProbe needs the BPF C as a string, e.g. CustomProbe(C, name='mine')")
        if self.flavour != "bcc" and (not isinstance(self.path, str) or not self.path):
            raise ProbeConfigError(f"a {self.flavour} CustomProbe needs a file path")
        object.__setattr__(self, "uprobes", _pairs("uprobes", self.uprobes, True))
        object.__setattr__(self, "uretprobes", _pairs("uretprobes", self.uretprobes, True))
        perf = _pairs("perf_events", self.perf_events, False)
        for fn, *rest in perf:
            if len(rest) != 2 or not isinstance(rest[0], str) or isinstance(rest[1], bool) \
                    or not isinstance(rest[1], int) or rest[1] <= 0:
                raise ProbeConfigError(f"perf_events[{fn!r}] must be (event name, period) such as "
                                       f"('cpu-clock', 1_000_000), got {tuple(rest)!r}")
        object.__setattr__(self, "perf_events", perf)
        recs = self.records.items() if isinstance(self.records, dict) else self.records
        fixed = []
        for item in recs:
            m, spec = item[0], item[1:] if len(item) > 2 else item[1]
            if not isinstance(m, str) or not _IDENT.match(m):
                raise ProbeConfigError(f"records: {m!r} is not a map name")
            fixed.append((m, spec if isinstance(spec, tuple) and spec and spec[0] in ("btf", "dtype")
                          else record_spec(spec, f"records[{m!r}]")))
        object.__setattr__(self, "records", tuple(fixed))
        hist = (self.histograms,) if isinstance(self.histograms, str) else tuple(self.histograms)
        if not all(isinstance(h, str) and _IDENT.match(h) for h in hist):
            raise ProbeConfigError(f"histograms must be map names, got {self.histograms!r}")
        object.__setattr__(self, "histograms", hist)
        flags = (self.cflags,) if isinstance(self.cflags, str) else tuple(self.cflags)
        if not all(isinstance(f, str) for f in flags):
            raise ProbeConfigError(f"cflags must be strings such as '-DMAX=4', got {self.cflags!r}")
        object.__setattr__(self, "cflags", flags)

    def record_dtype(self, ring: str) -> np.dtype | None:
        """The numpy dtype the user gave for ``ring``, if a dtype (None: a BTF name or nothing)."""
        for m, (kind, value) in self.records:
            if m == ring and kind == "dtype":
                return np.dtype([tuple(_list_shape(x) for x in f) for f in value])
        return None

    def record_struct(self, ring: str) -> str | None:
        for m, (kind, value) in self.records:
            if m == ring and kind == "btf":
                return value
        return None


def _list_shape(x):
    return tuple(x) if isinstance(x, list) else x
