"""Save a Session to a folder (Parquet per table + metadata JSON) and load it back.

Text captured from traced programs may hold bytes that are not UTF-8 (kept as
surrogates, see ``decode_str``); Parquet strings must be UTF-8, so such columns
are stored as binary and decoded again on load.  Loading needs no root.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SessionLoadError

__all__ = ["save_session", "load_session", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_ENC = ("utf-8", "surrogateescape")


def _is_text_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _encode(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    out, codecs = df.copy(), {}
    for col in df.columns:
        if df[col].dtype != object:
            continue
        vals = df[col].dropna()
        if len(vals) and all(_is_text_list(v) for v in vals):
            out[col] = df[col].map(lambda v: None if v is None else [x.encode(*_ENC) for x in v])
            codecs[col] = "list[str]"
        elif len(vals) == 0 or all(isinstance(v, str) for v in vals):
            out[col] = df[col].map(lambda v: v.encode(*_ENC) if isinstance(v, str) else None)
            codecs[col] = "str"
    return out, codecs


def _decode(df: pd.DataFrame, codecs: dict[str, str]) -> pd.DataFrame:
    for col, codec in codecs.items():
        if codec == "list[str]":
            vals = [None if v is None else [bytes(x).decode(*_ENC) for x in v] for v in df[col]]
        else:
            vals = [None if v is None else bytes(v).decode(*_ENC) for v in df[col]]
        df[col] = pd.Series(vals, index=df.index, dtype=object)
    return df


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    return str(o)


def save_session(session, path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tables = dict(session.tables)
    tables["_loss_windows"] = session.loss_windows
    codecs = {}
    for name, df in tables.items():
        enc, codecs[name] = _encode(df)
        enc.to_parquet(path / f"{name}.parquet", index=False)
    meta = {"format_version": FORMAT_VERSION, "metadata": session.metadata, "lost": session.lost,
            "tables": sorted(n for n in tables if not n.startswith("_")), "codecs": codecs}
    (path / "metadata.json").write_text(json.dumps(meta, indent=2, default=_json_default))
    return path


def load_session(path):
    from .session import Session
    path = Path(path)
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise SessionLoadError(f"{path} is not a saved session (no metadata.json); "
                               "save one with Session.save(path) or `ebpftoolkit record -o PATH`")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise SessionLoadError(f"{meta_file} is damaged ({exc}); record the session again") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise SessionLoadError(f"{path} was saved in format {meta.get('format_version')}, this ebpftoolkit reads "
                               f"format {FORMAT_VERSION}: load it with the version that saved it")
    tables = {}
    for name in meta["tables"] + ["_loss_windows"]:
        f = path / f"{name}.parquet"
        if not f.is_file():
            raise SessionLoadError(f"{f} is missing: the saved session is incomplete")
        tables[name] = _decode(pd.read_parquet(f), meta["codecs"].get(name, {}))
    s = Session.__new__(Session)
    s.probes, s.program, s._collector, s._clock, s.running = [], None, None, None, False
    s.descendants_of = meta["metadata"].get("scope")
    s.transport = meta["metadata"].get("transport")
    s.metadata = meta["metadata"]
    s._loss_windows = tables.pop("_loss_windows")
    s._tables = tables
    s._lost = {k: int(v) for k, v in meta["lost"].items()}
    return s
