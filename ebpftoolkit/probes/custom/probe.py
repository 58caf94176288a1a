"""CustomProbe: the user's own BPF program as a probe, beside the shipped ones.

Three ways in: BCC C text (``CustomProbe(C)``), an object the user built with clang
(``CustomProbe.from_object``), or libbpf-style C that ebpftoolkit compiles
(``CustomProbe.from_libbpf_source``).  Whatever the way, the program is its own BPF object
(its names and line numbers stay the user's), shares the session's process filter
(``EBPF_TRACED()``) and recording switch, and its ring and perf buffers go through the
session's collector like the built-in streams: bulk reads, losses counted.  Tables:
``NAME.RING`` (one row per record, one column per field) and ``NAME.MAP`` (each map's
contents at stop; log2 histograms as buckets).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...runtime.clock import MonotonicClock
from ...runtime.progids import dump_xlated
from ...runtime.streams import StreamSpec
from ..standalone import StandaloneProbe
from .bcc_module import BccModule
from .config import CustomConfig
from .tables import log2_buckets, map_frame, plot_log2, records_frame

__all__ = ["CustomProbe"]


class CustomProbe(StandaloneProbe):
    """Your own BPF program (BCC C) as a probe: ``CustomProbe(C, name="mine")``.

    ``TRACEPOINT_PROBE``/``RAW_TRACEPOINT_PROBE`` functions attach themselves; ``uprobes`` and
    ``uretprobes`` map a function to ``"LIB:SYMBOL"`` (``{"on_alloc": "c:malloc"}``); ``perf_events``
    map a function to ``(event, period)`` (``{"on_sample": ("cpu-clock", 1_000_000)}``: every ms of
    CPU time).  ``records`` names a ring/perf buffer's record type when it cannot be inferred
    (``{"events": "struct event"}`` or a numpy dtype); ``histograms``: maps to show as log2
    buckets (``BPF_HISTOGRAM`` maps are).  In the C, ``EBPF_TRACED()`` is true for events of the
    session's processes while it records, ``EBPF_RECORDING()`` while it records.
    """

    name = "custom"

    def __init__(self, source: str, *, name: str = "custom", uprobes=None, uretprobes=None, perf_events=None,
                 records=None, histograms=(), cflags=()):
        self._init(CustomConfig(name=name, flavour="bcc", source=source, uprobes=uprobes or (),
                                uretprobes=uretprobes or (), perf_events=perf_events or (), records=records or (),
                                histograms=histograms, cflags=cflags))

    @classmethod
    def from_object(cls, path, *, name: str = "custom", records=None, uprobes=None, uretprobes=None,
                    perf_events=None, histograms=()) -> "CustomProbe":
        """A BPF object built with ``clang -O2 -g -target bpf -c prog.bpf.c -o prog.bpf.o``, loaded with
        libbpf; its ``SEC()``-declared programs attach themselves.  ``records`` names each ring or perf
        buffer's record struct (``{"events": "struct event"}``), found in the object's BTF."""
        return cls._with(CustomConfig(name=name, flavour="object", path=str(path), records=records or (),
                                      uprobes=uprobes or (), uretprobes=uretprobes or (),
                                      perf_events=perf_events or (), histograms=histograms))

    @classmethod
    def from_libbpf_source(cls, path, *, name: str = "custom", records=None, uprobes=None, uretprobes=None,
                           perf_events=None, histograms=(), cflags=()) -> "CustomProbe":
        """libbpf-style C (``#include "vmlinux.h"``, ``SEC(...)``), compiled here with clang -O2 -g -target bpf
        (vmlinux.h is made from the running kernel's BTF), then as :meth:`from_object`."""
        return cls._with(CustomConfig(name=name, flavour="libbpf_source", path=str(path), records=records or (),
                                      uprobes=uprobes or (), uretprobes=uretprobes or (),
                                      perf_events=perf_events or (), histograms=histograms, cflags=cflags))

    @classmethod
    def from_file(cls, path, *, name: str | None = None, records=None, **kw) -> "CustomProbe":
        """By the file: ``*.o`` an object (:meth:`from_object`); C with ``SEC(`` or ``vmlinux.h``/``bpf_helpers.h``
        libbpf-style (:meth:`from_libbpf_source`); other C is BCC C.  ``name``: the file's stem by default."""
        from pathlib import Path
        p = Path(path)
        name = name or p.name.split(".", 1)[0]
        if not p.is_file():
            from ...errors import ProbeConfigError
            raise ProbeConfigError(f"{p}: no such file (a BPF object built with clang -target bpf, or its C source)")
        if p.suffix == ".o":
            return cls.from_object(p, name=name, records=records, **kw)
        text = p.read_text(errors="replace")
        if any(k in text for k in ("SEC(", "vmlinux.h", "bpf/bpf_helpers.h")):
            return cls.from_libbpf_source(p, name=name, records=records, **kw)
        return cls(text, name=name, records=records, **kw)

    def copy(self) -> "CustomProbe":
        """The same program, not yet part of any session (each traced notebook cell takes one)."""
        return self._with(self.config)

    @classmethod
    def _with(cls, config: CustomConfig) -> "CustomProbe":
        p = cls.__new__(cls)
        p._init(config)
        return p

    def _init(self, config: CustomConfig) -> None:
        super().__init__(config)
        self.name = config.name
        self.table_names = ()
        self._tree = True
        self._backend = self._new_backend()
        self._specs: list[StreamSpec] = []

    def _new_backend(self):
        if self.config.flavour == "bcc":
            return BccModule(self.config)
        from .object_module import ObjectModule
        return ObjectModule(self.config)

    # -- the session's hooks ---------------------------------------------------
    def prepare(self, scope) -> None:
        if self._backend.loaded_once:
            self._backend = self._new_backend()
            self._specs = []
        self._tree = scope is not None
        self._backend.prepare(self._tree)

    def bpf_text(self) -> str:
        return ""     # nothing in the session's own program: the user's is its own object

    def streams(self) -> list[StreamSpec]:
        return list(self._specs)

    def setup(self, program) -> None:
        from ...session import EBT_TRACK_MAX
        self._backend.load(program, self._tree, EBT_TRACK_MAX)
        for ring, dtype, reader, lost in self._backend.streams:
            spec = StreamSpec(f"{self.name}.{ring}", dtype)
            program.adopt_stream(spec, reader, lost)
            self._specs.append(spec)
        self.table_names = tuple(s.name for s in self._specs) + tuple(f"{self.name}.{m}" for m in self._backend.maps)

    def snapshot(self, program) -> dict[str, np.ndarray]:
        out = {}
        for name, m in self._backend.maps.items():
            items = m.items()
            vshape = (m.ncpus,) if m.percpu else ()
            dt = np.dtype([("key", m.key_dtype), ("value", m.value_dtype, vshape)])
            arr = np.zeros(len(items), dt)
            for i, (k, v) in enumerate(items):
                arr[i] = (k, v)
            out[f"{self.name}.{name}"] = arr
        return out

    def make_tables(self, records, clock: MonotonicClock) -> dict[str, pd.DataFrame]:
        tables = {}
        for spec in self._specs:
            tables[spec.name] = records_frame(records.get(spec.name, np.empty(0, spec.dtype)), clock)
        for name in self._backend.maps:
            key = f"{self.name}.{name}"
            arr = records.get(key)
            if arr is None:
                continue
            df = map_frame(arr["key"], arr["value"], percpu=self._backend.maps[name].percpu)
            if name in self._backend.histograms and list(df.columns) == ["key", "value"]:
                df = log2_buckets(df)
            tables[key] = df
        return tables

    def details(self) -> dict:
        b = self._backend
        return {"flavour": self.config.flavour, "file": b.file, "attached": list(b.attached),
                "streams": {s.name: str(s.dtype) for s in self._specs},
                "maps": sorted(b.maps), "skipped_maps": dict(b.skipped), "not_attached": b.unattached()}

    def end_notes(self, tables) -> list[str]:
        b = self._backend
        notes = list(b.notes)
        if not b.attached:
            notes.append(f"custom probe {self.name}: none of its programs was attached (define TRACEPOINT_PROBE / "
                         "RAW_TRACEPOINT_PROBE functions or SEC() programs, or pass uprobes= / perf_events=)")
        for fn in b.unattached():
            notes.append(f"custom probe {self.name}: function {fn} was compiled but attached nowhere (name it in "
                         "uprobes=, uretprobes= or perf_events=)")
        for spec in self._specs:
            if spec.name in tables and not len(tables[spec.name]) and b.attached:
                notes.append(f"custom probe {self.name}: {spec.name} has no records: its programs "
                             f"({'; '.join(b.attached)}) handed none over in this session's scope")
        return notes

    # -- exploring -----------------------------------------------------------------
    @property
    def source(self) -> str:
        """The C as compiled (BCC: the user's text behind ebpftoolkit's short header; libbpf: the file)."""
        return self._backend.text or self._backend.preview_text(self._tree)

    def dump_xlated(self) -> str:
        """The kernel's translated instructions of this probe's programs (bpftool); a probe that is not
        loaded is loaded for the moment it takes, then unloaded."""
        if self._session is None or not self._session.running:
            import warnings
            from ...session import Session      # not loaded: load a copy for a moment (needs root)
            probe = self.copy()
            with warnings.catch_warnings():      # the moment's empty tables are no news
                warnings.simplefilter("ignore")
                with Session(probe, descendants_of="command"):
                    return dump_xlated(probe._backend.prog_fds())
        return dump_xlated(self._backend.prog_fds())

    def histogram(self, map_name: str) -> pd.DataFrame:
        """A map of this probe as log2 buckets (slot, low, high, count), from the session's tables."""
        df = self._require_session().tables[f"{self.name}.{map_name}"]
        return df if "slot" in df.columns else log2_buckets(df)

    def plot_histogram(self, map_name: str, ax=None):
        return plot_log2(self.histogram(map_name), f"{self.name}.{map_name}", ax)
