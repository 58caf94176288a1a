"""A recording on disk: one Parquet file per table and ``metadata.json``.

Text captured from traced programs may hold bytes that are not UTF-8 (kept in memory
as surrogates, see ``runtime.records.decode_str``).  Parquet strings must be UTF-8, so
a text column is stored as UTF-8 text (what DuckDB, Polars or pyarrow read directly;
bytes that are not UTF-8 show as U+FFFD there) and, only where some value is not valid
UTF-8, a companion column ``__raw__<name>`` holds those values' original bytes, from
which :func:`load_recording` restores them exactly.

Saving is atomic: the folder is written under a temporary name beside the target and
renamed into place, so a failure (a full disk) leaves the previous folder or none.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import OutputError, SessionLoadError

__all__ = ["save_tables", "load_tables", "check_writable", "FORMAT_VERSION", "RAW_PREFIX"]

FORMAT_VERSION = 2          # 1: ebpftoolkit 0.1 (text stored as binary); 2: UTF-8 text + __raw__ columns
RAW_PREFIX = "__raw__"
_ENC = ("utf-8", "surrogateescape")


def _missing(v) -> bool:
    return v is None or (np.ndim(v) == 0 and not isinstance(v, (str, bytes)) and pd.isna(v))


def _is_text_list(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray)) and all(isinstance(x, str) for x in v)


def _valid(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _shown(s: str) -> str:
    return s.encode(*_ENC).decode("utf-8", "replace")


def _companion(df: pd.DataFrame, col: str) -> str:
    """A name for ``col``'s raw-bytes column that no column of ``df`` has."""
    name = RAW_PREFIX + str(col)
    while name in df.columns:
        name += "_"
    return name


def _text_kind(s: pd.Series) -> str | None:
    """How a column of text is kept: "str" (object), "list[str]", "string" / "str-dtype" (pandas'
    string dtype with pd.NA / NaN for missing); None when it is not text."""
    if isinstance(s.dtype, pd.StringDtype):
        return "string" if s.dtype.na_value is pd.NA else "str-dtype"
    if s.dtype != object:
        return None
    vals = [v for v in s if not _missing(v)]
    if vals and all(_is_text_list(v) for v in vals):
        return "list[str]"
    if all(isinstance(v, str) for v in vals):
        return "str"
    return None


def _encode(df: pd.DataFrame) -> tuple[pd.DataFrame, dict, dict]:
    """(the table as Parquet can hold it, codecs of its text columns, categories of its categoricals)."""
    out, codecs, cats = {}, {}, {}
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            c = s.cat.categories
            texts = [str(v) for v in c if isinstance(v, str)]
            as_codes = not all(_valid(v) for v in texts)        # pyarrow cannot hold them: keep the codes
            cats[col] = {"values": [str(v) for v in c], "ordered": bool(s.cat.ordered), "dtype": str(c.dtype),
                         "codes": as_codes}
            out[col] = s.cat.codes.astype(np.int32) if as_codes else s
            continue
        kind = _text_kind(s)
        if kind is None:
            out[col] = s
            continue
        if kind == "list[str]":
            py = [None if _missing(v) else list(v) for v in s]
            bad = [v is not None and not all(_valid(x) for x in v) for v in py]
            out[col] = pd.Series([None if v is None else [_shown(x) for x in v] for v in py], index=s.index,
                                 dtype=object)
            raw = [[x.encode(*_ENC) for x in v] if b else None for v, b in zip(py, bad)]
        else:
            py = [None if _missing(v) else str(v) for v in s]
            bad = [v is not None and not _valid(v) for v in py]
            out[col] = pd.Series([None if v is None else _shown(v) for v in py], index=s.index, dtype=object)
            raw = [v.encode(*_ENC) if b else None for v, b in zip(py, bad)]
        codecs[col] = {"kind": kind, "raw": None}
        if any(bad):
            codecs[col]["raw"] = name = _companion(df, col)
            out[name] = pd.Series(raw, index=s.index, dtype=object)
    return pd.DataFrame(out, index=df.index), codecs, cats


def _codec(col, codec, f: Path) -> dict:
    if isinstance(codec, str):                   # format 1: "str" / "list[str]", the whole column in bytes
        return {"kind": codec, "raw": None}
    if not isinstance(codec, dict) or codec.get("kind") not in ("str", "list[str]", "string", "str-dtype"):
        raise SessionLoadError(f"{f}: the codec of column {col!r} is not one this ebpftoolkit knows: {codec!r}")
    return codec


def _decode(df: pd.DataFrame, codecs: dict, version: int, f: Path) -> pd.DataFrame:
    for col, codec in codecs.items():
        codec = _codec(col, codec, f)
        if col not in df:
            raise SessionLoadError(f"{f}: column {col!r} is listed in the metadata but missing from the table")
        raw = df.pop(codec["raw"]) if codec.get("raw") in df else None
        text = df[col]
        if version == 1:        # everything was stored as bytes
            raw, text = df[col], None
        listed = codec["kind"] == "list[str]"
        try:
            vals = []
            for i in range(len(df)):
                r = raw.iat[i] if raw is not None else None
                if r is not None and not _missing(r):
                    vals.append([bytes(x).decode(*_ENC) for x in r] if listed else bytes(r).decode(*_ENC))
                    continue
                t = text.iat[i] if text is not None else None
                if _missing(t):
                    vals.append(None)
                elif listed:
                    if isinstance(t, (str, bytes)):
                        raise TypeError(f"a list was expected, got {type(t).__name__}")
                    vals.append([str(x) for x in t])
                else:
                    if not isinstance(t, str):
                        raise TypeError(f"text was expected, got {type(t).__name__}")
                    vals.append(t)
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            raise SessionLoadError(f"{f}: column {col!r} does not hold what its codec says "
                                   f"({codec['kind']}): {exc}") from None
        df[col] = pd.Series(vals, index=df.index, dtype=object)
        if codec["kind"] in ("string", "str-dtype"):
            df[col] = df[col].astype("string" if codec["kind"] == "string" else "str")
    return df


def _categories(df: pd.DataFrame, cats: dict, f: Path) -> pd.DataFrame:
    """Categorical columns get their saved categories back (Parquet keeps none for an empty column)."""
    for col, spec in cats.items():
        if col not in df:
            raise SessionLoadError(f"{f}: categorical column {col!r} is missing")
        if not isinstance(spec, dict) or not isinstance(spec.get("values"), list):
            raise SessionLoadError(f"{f}: the categories of column {col!r} are malformed: {spec!r}")
        try:
            values, dtype = pd.Index(spec["values"], dtype=object), str(spec.get("dtype", "object"))
            if dtype != "object" and not (spec.get("codes") and dtype in ("str", "string")):
                values = values.astype(dtype)       # numbers, timestamps... (text with surrogates stays object)
            if spec.get("codes"):
                codes = df[col].to_numpy()
                if not np.issubdtype(codes.dtype, np.integer) or (codes >= len(values)).any() or (codes < -1).any():
                    raise ValueError("codes out of range")
                df[col] = pd.Categorical.from_codes(codes, values, ordered=bool(spec.get("ordered")))
            else:
                df[col] = pd.Categorical(df[col].astype(object) if values.dtype == object else df[col],
                                         categories=values, ordered=bool(spec.get("ordered")))
        except (TypeError, ValueError) as exc:
            raise SessionLoadError(f"{f}: column {col!r} does not fit its categories ({exc})") from None
    return df


def _where(path: Path) -> tuple[Path, Path]:
    """(the folder the recording goes in, its temporary sibling)."""
    parent = path.absolute().parent
    return parent, parent / f".{path.name}.tmp-{os.getpid()}"


def _output_error(path: Path, exc: OSError, when: str) -> OutputError:
    why = exc.strerror or str(exc)
    fix = {errno.ENOSPC: "free some space or choose another disk",
           errno.EDQUOT: "free some space or choose another disk",
           errno.EROFS: "that file system is mounted read-only: choose a writable folder",
           errno.EACCES: "you may not write there: choose a folder you own",
           errno.EPERM: "you may not write there: choose a folder you own",
           errno.ENOENT: "that folder cannot be created there (is it in /proc or /sys?): choose a normal folder",
           errno.ENOTDIR: "a part of that path is a file, not a folder"}.get(exc.errno, "choose another folder")
    return OutputError(exc.errno or errno.EIO, f"cannot {when} {path}: {why}; {fix}")


def check_writable(path) -> Path:
    """Check, before anything is recorded, that a recording can be written to folder ``path``:
    the folder it goes in can be made and written (a test folder is made and removed there)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(errno.EEXIST, f"cannot write a recording to {path}: it exists and is not a folder; "
                                        "choose another path, or remove the file")
    if path.is_dir() and os.listdir(path) and not (path / "metadata.json").is_file():
        raise OutputError(errno.EEXIST, f"cannot write a recording to {path}: it is a folder that holds something "
                                        "else than a recording (it would be replaced); choose an empty or new folder")
    parent, tmp = _where(path)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        tmp.rmdir()
    except OSError as exc:
        raise _output_error(path, exc, "write a recording to") from None
    return path


def save_tables(path, tables: dict[str, pd.DataFrame], meta: dict, raw: dict | None = None) -> Path:
    """Write ``tables``, the JSON document ``meta`` (to which the format and codecs are added) and
    ``raw`` record arrays (``raw/<stream>.npy``, when a probe's records could not be decoded) to
    ``path``, atomically; OutputError (saying why and what to do) when it cannot be written."""
    path = Path(path)
    check_writable(path)
    parent, tmp = _where(path)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        codecs, categories = {}, {}
        for name, df in tables.items():
            enc, codecs[name], categories[name] = _encode(df)
            enc.to_parquet(tmp / f"{name}.parquet", index=False)
        if raw:
            (tmp / "raw").mkdir()
            for name, arr in raw.items():
                np.save(tmp / "raw" / f"{name}.npy", arr, allow_pickle=False)
        doc = dict(meta, format_version=FORMAT_VERSION, codecs=codecs, categories=categories, raw=sorted(raw or ()))
        (tmp / "metadata.json").write_text(json.dumps(doc, indent=2, default=_json_default))
        _replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _output_error(path, exc, "write the recording to") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _replace(tmp: Path, path: Path) -> None:
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder")
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "backslashreplace")
    return str(o)


def load_tables(path) -> tuple[dict[str, pd.DataFrame], dict, dict]:
    """(tables, metadata document, raw record arrays) of a saved recording; every problem is a
    SessionLoadError naming the file."""
    path = Path(path)
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise SessionLoadError(f"{path} is not a saved recording (no metadata.json); "
                               "save one with Session.save(path) or `ebpftoolkit record -o PATH`")
    try:
        doc = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SessionLoadError(f"{meta_file} is damaged ({exc}); record the session again") from None
    if not isinstance(doc, dict):
        raise SessionLoadError(f"{meta_file}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("format_version")
    if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
        raise SessionLoadError(f"{meta_file}: format_version {version!r} is not one this ebpftoolkit reads "
                               f"(1 or {FORMAT_VERSION}): load it with the version that saved it")
    names, codecs = doc.get("tables"), doc.get("codecs")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SessionLoadError(f"{meta_file}: 'tables' must be a list of table names")
    if not isinstance(codecs, dict) or not all(isinstance(v, dict) for v in codecs.values()):
        raise SessionLoadError(f"{meta_file}: 'codecs' must be an object of objects")
    cats = doc.get("categories") or {}
    if not isinstance(cats, dict) or not all(isinstance(v, dict) for v in cats.values()):
        raise SessionLoadError(f"{meta_file}: 'categories' must be an object of objects")
    tables = {}
    for name in names + ["_loss_windows"]:
        f = path / f"{name}.parquet"
        if not f.is_file():
            raise SessionLoadError(f"{f} is missing: the saved recording is incomplete")
        try:
            df = pd.read_parquet(f)
        except Exception as exc:        # pyarrow raises ArrowInvalid, OSError... on damaged files
            raise SessionLoadError(f"{f} is damaged ({type(exc).__name__}: {exc}); record the session again") from None
        tables[name] = _categories(_decode(df, codecs.get(name, {}), version, f), cats.get(name) or {}, f)
    raw, raw_names = {}, doc.get("raw") or []
    if not isinstance(raw_names, list) or not all(isinstance(n, str) for n in raw_names):
        raise SessionLoadError(f"{meta_file}: 'raw' must be a list of stream names")
    for name in raw_names:
        f = path / "raw" / f"{name}.npy"
        try:
            raw[str(name)] = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SessionLoadError(f"{f} is missing or damaged ({exc})") from None
    return tables, doc, raw
