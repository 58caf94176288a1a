"""A recording's metadata as typed plain data: where and how it was recorded, with which probes
and configurations, what was attached, which commands ran.

:meth:`RecordingMetadata.to_dict` / :meth:`RecordingMetadata.from_dict` are the JSON form
(``metadata.json``); ``from_dict`` also reads what earlier versions saved.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .errors import SessionLoadError
from .probes.config import ProbeConfig
from .probes.configs import config_from_dict
from .scope import Scope

__all__ = ["RecordingMetadata", "ProbeMeta", "Attachment", "CommandRun", "RunInfo"]


@dataclass
class Attachment:
    """One thing a probe's programs were attached to."""

    kind: str                      # tracepoint, raw_tracepoint, uprobe, uretprobe, perf_event, perf_event_array
    target: str
    function: str | None = None
    mechanism: str = ""
    details: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "Attachment":
        d = dict(d)
        target = d.pop("target", "")
        if isinstance(target, str) and target[:2] in ("b'", 'b"'):     # saved by ebpftoolkit 0.1
            target = target[2:-1]
        return cls(str(d.pop("kind", "")), str(target), d.pop("function", None), str(d.pop("mechanism", "") or ""),
                   d.pop("details", None) or d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class CommandRun:
    """A command :meth:`Session.run` started: its argv, pid and exit status."""

    argv: list[str]
    pid: int
    returncode: int | None = None


@dataclass
class ProbeMeta:
    """A probe of the recording: its kind (class name), configuration and what it found while preparing."""

    kind: str
    config: ProbeConfig | None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "config": self.config.to_dict() if self.config is not None else None,
                "details": self.details}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeMeta":
        kind = d.get("kind") or d.get("class") or ""
        if "config" in d:                       # format 2
            cfg, details = d.get("config") or {}, d.get("details") or {}
        else:                                   # format 1: {"class": ..., **config, [attach_points, notes]}
            cfg = {k: v for k, v in d.items() if k != "class"}
            details = {k: cfg.pop(k) for k in ("attach_points", "notes", "apis") if k in cfg}
        if not isinstance(cfg, dict) or not isinstance(details, dict):
            raise SessionLoadError(f"probe {kind!r}: config and details must be JSON objects")
        return cls(str(kind), config_from_dict(str(kind), cfg), details)


@dataclass
class RunInfo:
    """One run of a combined recording (a folder of recordings loaded as one)."""

    run: str
    host: str
    kernel: str
    start: pd.Timestamp | None
    end: pd.Timestamp | None


def _ts(v) -> pd.Timestamp | None:
    if v is None or v == "":
        return None
    try:
        return pd.Timestamp(v)
    except (ValueError, TypeError):
        raise SessionLoadError(f"{v!r} is not a timestamp") from None


def _iso(v: pd.Timestamp | None) -> str | None:
    return None if v is None else v.isoformat()


@dataclass
class RecordingMetadata:
    ebpftoolkit_version: str = ""
    kernel: str = ""
    host: str = ""
    python: str = ""
    transport: str = "ringbuf"
    scope: Scope = "self"
    probes: dict[str, ProbeMeta] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    btf_offsets: dict[str, int] = field(default_factory=dict)
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    load_seconds: float | None = None
    clock_offset_ns: int | None = None
    commands: list[CommandRun] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)
    #: pid -> its main thread's name, read at stop for the processes still running (a lane is named
    #: after its process, not after whichever thread happened to make an event)
    process_names: dict[int, str] = field(default_factory=dict)

    def config(self, probe: str) -> ProbeConfig | None:
        """The configuration of the recording's probe ``probe`` (a table name such as ``"pmu"``), if any."""
        p = self.probes.get(probe)
        return p.config if p is not None else None

    @property
    def duration(self) -> pd.Timedelta | None:
        return None if self.start is None or self.end is None else self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["probes"] = {k: v.to_dict() for k, v in self.probes.items()}
        d["attachments"] = [a.to_dict() for a in self.attachments]
        d["commands"] = [dataclasses.asdict(c) for c in self.commands]
        d["runs"] = [dict(dataclasses.asdict(r), start=_iso(r.start), end=_iso(r.end)) for r in self.runs]
        d["start"], d["end"] = _iso(self.start), _iso(self.end)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecordingMetadata":
        """From ``metadata.json`` (this version's form, or ebpftoolkit 0.1's); SessionLoadError when malformed."""
        if not isinstance(d, dict):
            raise SessionLoadError("metadata must be a JSON object")
        try:
            probes = d.get("probes") or {}
            if not isinstance(probes, dict):
                raise SessionLoadError("'probes' must be an object")
            out = cls(
                ebpftoolkit_version=str(d.get("ebpftoolkit_version", "")), kernel=str(d.get("kernel", "")),
                host=str(d.get("host", "")), python=str(d.get("python", "")),
                transport=str(d.get("transport") or "ringbuf"), scope=d.get("scope", "self"),
                probes={str(k): ProbeMeta.from_dict(v) for k, v in probes.items()},
                attachments=[Attachment.from_dict(a) for a in d.get("attachments") or []],
                btf_offsets={str(k): int(v) for k, v in (d.get("btf_offsets") or {}).items()},
                start=_ts(d.get("start")), end=_ts(d.get("end")),
                load_seconds=None if d.get("load_seconds") is None else float(d["load_seconds"]),
                clock_offset_ns=None if d.get("clock_offset_ns") is None else int(d["clock_offset_ns"]),
                commands=[CommandRun(list(map(str, c.get("argv") or [])), int(c.get("pid", 0)), c.get("returncode"))
                          for c in d.get("commands") or []],
                events={str(k): int(v) for k, v in (d.get("events") or {}).items()},
                notes=[str(n) for n in d.get("notes") or []],
                runs=[RunInfo(str(r["run"]), str(r.get("host", "")), str(r.get("kernel", "")), _ts(r.get("start")),
                              _ts(r.get("end"))) for r in d.get("runs") or []],
                process_names={int(k): str(v) for k, v in (d.get("process_names") or {}).items()})
        except SessionLoadError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            raise SessionLoadError(f"metadata is malformed: {type(exc).__name__}: {exc}") from None
        if out.scope is not None and not isinstance(out.scope, (str, int)):
            raise SessionLoadError(f"'scope' must be 'self', 'command', a pid or null, got {out.scope!r}")
        return out
