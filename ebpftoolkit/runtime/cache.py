"""A small JSON cache for facts that are slow to find and change only with the
system: kernel struct offsets from BTF, driver function addresses.

Entries carry the (size, mtime) of the files they were derived from and are
ignored when any of those changed.  Location: $XDG_CACHE_HOME/ebpftoolkit or
~/.cache/ebpftoolkit; EBPFTOOLKIT_NO_CACHE=1 turns it off.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["cached", "cache_dir"]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ebpftoolkit"


def _stamp(paths) -> dict[str, list[float]]:
    out = {}
    for p in paths:
        try:
            st = os.stat(p)
            out[str(p)] = [st.st_size, st.st_mtime]
        except OSError:
            out[str(p)] = [-1, -1]
    return out


def cached(kind: str, key, compute, depends_on=lambda value: ()):
    """``compute()`` once per ``key``; ``depends_on(value)`` lists the files the value came from."""
    if os.environ.get("EBPFTOOLKIT_NO_CACHE"):
        return compute()
    digest = hashlib.sha256(json.dumps([kind, key], sort_keys=True, default=str).encode()).hexdigest()[:24]
    f = cache_dir() / f"{kind}-{digest}.json"
    try:
        entry = json.loads(f.read_text())
        if _stamp(entry["files"]) == entry["files"]:
            return entry["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = compute()
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "files": _stamp(depends_on(value)), "value": value}))
        os.replace(tmp, f)
    except OSError:
        pass   # a read-only home is fine: just slower next time
    return value
