"""What every probe has: a frozen configuration, BPF text, record streams, decoding into DataFrames.

A probe knows how to build its BPF C and how to turn its raw records into tables;
it knows nothing about plots and nothing about scope (which processes are traced is
the :class:`~ebpftoolkit.Session`'s one ``descendants_of`` value).  This is the protocol
the Session drives; :class:`~ebpftoolkit.probes.standalone.StandaloneProbe` adds running
a probe on its own (``with ExecSnoop() as p``), in a private one-probe Session.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..errors import ProbeStateError
from ..runtime.clock import MonotonicClock
from ..runtime.program import RawTracepoint
from ..runtime.streams import StreamSpec
from ..scope import SELF, Scope, describe_scope
from .config import ProbeConfig

if TYPE_CHECKING:
    from ..runtime.program import BpfProgram
    from ..session import Session

__all__ = ["Probe", "ProbeConfig", "SELF"]


class Probe:
    #: name of the probe's main table in ``Session.tables``
    name: ClassVar[str] = "probe"
    #: every table the probe makes
    table_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ProbeConfig):
        self.config = config
        self._session: "Session | None" = None
        self._own_session: "Session | None" = None

    # -- what the runtime needs (override) ------------------------------
    def prepare(self, scope: Scope) -> None:
        """Called by the session before it builds the program: find what to attach to (GPU libraries...)."""

    def streams(self) -> list[StreamSpec]:
        raise NotImplementedError

    def raw_tracepoints(self) -> list[RawTracepoint]:
        return []

    def uprobes(self) -> list:
        """Uprobes to attach (``runtime.program.Uprobe``), after the program is loaded."""
        return []

    def btf_members(self) -> dict[str, tuple[str, str]]:
        """``{"MACRO": ("struct", "member")}``: kernel offsets the BPF C reads."""
        return {}

    def bpf_text(self) -> str:
        """This probe's BPF C: its configuration as #define lines, its record structs, its source."""
        raise NotImplementedError

    def setup(self, program: "BpfProgram") -> None:
        """Called once the program is loaded, before recording starts (open counters, fill maps)."""

    def on_records(self, stream: str, records: np.ndarray) -> None:
        """Called in the collector thread with each new batch of raw records (override to use)."""

    def snapshot(self, program: "BpfProgram") -> dict[str, np.ndarray]:
        """Records kept in maps rather than streams (in-kernel aggregates), read now."""
        return {}

    def lost_counters(self) -> list[str]:
        """Per-CPU counter maps (besides the streams') that count what this probe dropped."""
        return []

    def details(self) -> dict:
        """What the probe found while preparing and recording (attach points, notes), stored in the metadata."""
        return {}

    def end_notes(self, tables: dict[str, pd.DataFrame]) -> list[str]:
        """What the user must hear about the finished recording (why a table is empty...): each note
        goes into the metadata, a warning, the summary and the report."""
        return []

    def make_tables(self, records: dict[str, np.ndarray], clock: MonotonicClock) -> dict[str, pd.DataFrame]:
        raise NotImplementedError

    def decode(self, stream: str, records: np.ndarray, clock: MonotonicClock) -> pd.DataFrame:
        """Decode one batch of records of ``stream`` (for live output)."""
        return self.make_tables({s.name: (records if s.name == stream else np.empty(0, s.dtype))
                                 for s in self.streams()}, clock)[self.name]

    def _require_session(self) -> "Session":
        if self._session is None:
            raise ProbeStateError(f"{type(self).__name__} has not been started: use `with {type(self).__name__}() as p:` "
                                  "or p.start(), or add it to a Session")
        return self._session

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """This probe's tables (live while running)."""
        s = self._require_session()
        return {k: v for k, v in s.tables.items() if k in self.table_names}

    @property
    def df(self) -> pd.DataFrame:
        """The main table, live while the probe runs."""
        return self._require_session().tables[self.name]

    def as_pandas_dataframe(self) -> pd.DataFrame:
        return self.df

    @property
    def lost(self) -> int:
        """Events dropped so far (kernel and user space); 0 in normal use."""
        return self._require_session().lost.get(self.name, 0)

    def _state(self) -> str:
        s = self._session
        return "running" if s is not None and s.running else ("recorded" if s is not None else "idle")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state()} {self.config}>"

    def _repr_html_(self) -> str:
        """Jupyter: the probe's kind, state, scope, rows, lost events (red when non-zero) and configuration."""
        e = html.escape
        s = self._session
        items = [("state", self._state())]
        lost = None
        if s is not None:
            items.append(("scope", describe_scope(s.descendants_of)))
            try:
                items.append(("rows", ", ".join(f"{k}: {len(v):,}" for k, v in self.tables.items())))
                lost = self.lost
            except Exception as exc:     # a display must never raise
                items.append(("rows", f"{type(exc).__name__}: {exc}"))
        for k, v in self.config.to_dict().items():
            if isinstance(v, (list, tuple, dict)) and len(v) > 8:
                v = f"{len(v)} items"
            text = repr(v)
            items.append((k, text if len(text) <= 120 else text[:117] + "..."))
        body = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in items)
        if lost is not None:
            style = " style='color:#c00;font-weight:bold'" if lost else ""
            body += f"<tr><th style='text-align:left'>lost events</th><td{style}>{lost}</td></tr>"
        return (f"<table class='ebpftoolkit-probe'><caption style='text-align:left'><b>{e(type(self).__name__)}"
                f"</b> (table <code>{e(self.name)}</code>)</caption><tbody>{body}</tbody></table>")
