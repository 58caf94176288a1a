"""The interactive timeline's event columns as one compact blob, and back (``templates/timeline.js``
decodes the same layout in the browser).

What makes it small: start times delta-coded (and, above ``QUANTUM_ABOVE`` events, kept to
``QUANTUM_NS``); what an event looks like (row, category, name, kind, thread, bytes) stored once per
distinct combination, each event naming its combination; durations above ``QUANTUM_ABOVE`` events as
a log-scale code (128 steps per octave: within 0.3 %); source rows and frame numbers delta-coded; every
integer column split into byte planes (all low bytes, then the next...), which deflate packs far
better than interleaved bytes; each column zlib-compressed on its own, the lot base64-encoded.
"""
from __future__ import annotations

import base64
import zlib

import numpy as np

__all__ = ["encode", "decode", "QUANTUM_NS", "QUANTUM_ABOVE", "DUR_STEPS"]

QUANTUM_NS, QUANTUM_ABOVE = 64, 250_000
DUR_STEPS = 128                      # log-scale duration codes per octave
_LOOK = ("row", "cat", "name", "kind", "thread")
MAX_COMBOS = 65_000


def _planes(a: np.ndarray) -> bytes:
    k = a.dtype.itemsize
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<")).view(np.uint8).reshape(-1, k).T).tobytes()


def _unplanes(raw: bytes, c: dict) -> np.ndarray:
    k, n = c["size"], c["length"] // c["size"]
    u8 = np.frombuffer(raw, np.uint8, count=c["length"]).reshape(k, n)
    dt = np.dtype(("<i" if c["signed"] else "<u") + str(k))
    return np.ascontiguousarray(u8.T).view(dt).reshape(n)


def encode(ev: dict[str, np.ndarray]) -> tuple[str, list[dict], dict]:
    """(blob, layout, header fields) for events sorted by start."""
    n = len(ev["start"])
    quantum = QUANTUM_NS if n > QUANTUM_ABOVE else 1
    q = ev["start"] // quantum
    delta = np.diff(q, prepend=0).astype(np.uint64) if n else np.zeros(0, np.uint64)
    cols: dict[str, np.ndarray] = {"dstart": (delta & 0xFFFFFFFF).astype(np.uint32),
                                   "dstart_hi": (delta >> 32).astype(np.uint32)}
    dur = ev["dur"]
    log_dur = n > QUANTUM_ABOVE
    if log_dur:
        code = np.where(dur < 0, 0, 1 + np.rint(np.log2(np.maximum(dur, 0) + 1.0) * DUR_STEPS)).astype(np.uint16)
        cols["dcode"] = code
    else:
        d = np.maximum(dur, 0).astype(np.uint64)
        cols["dur_lo"] = (d & 0xFFFFFFFF).astype(np.uint32)
        cols["dur_hi"] = np.where(dur < 0, 0xFFFFFFFF, d >> 32).astype(np.uint32)
    look = np.stack([ev[k].astype(np.int64) for k in _LOOK], axis=1) if n else np.zeros((0, len(_LOOK)), np.int64)
    nbytes = ev["bytes"].astype(np.float64)
    with_bytes = np.concatenate([look, np.where(np.isnan(nbytes), -1, nbytes).astype(np.int64)[:, None]], axis=1)
    combos, idx = np.unique(with_bytes, axis=0, return_inverse=True) if n else (with_bytes, np.zeros(0, np.int64))
    bytes_in_combo = len(combos) <= MAX_COMBOS
    if not bytes_in_combo:
        combos, idx = np.unique(look, axis=0, return_inverse=True)
        cols["bytes"] = nbytes
    cols["combo"] = idx.reshape(-1).astype(np.uint32)
    src = ev["src"].astype(np.int64)
    dsrc = np.zeros(n, np.int64)
    for k in np.unique(ev["kind"]):        # each kind's rows mostly rise in time order: runs of 0
        sel = ev["kind"] == k
        dsrc[sel] = np.diff(src[sel], prepend=-1) - 1
    cols["dsrc"] = dsrc.astype(np.int32)
    cols["dframe"] = np.diff(ev["frame"].astype(np.int64), prepend=-1).astype(np.int32)
    packed, layout = bytearray(), []
    for name, a in cols.items():        # each column deflated on its own: ~25 % smaller than one stream
        data = a.astype("<f8").tobytes() if a.dtype.kind == "f" else _planes(a)
        z = zlib.compress(data, 9)
        layout.append({"name": name, "size": a.dtype.itemsize, "signed": a.dtype.kind == "i",
                       "float": a.dtype.kind == "f", "length": len(data), "zoffset": len(packed), "zlength": len(z)})
        packed += z
    combo_rows = [[int(v) for v in r[:len(_LOOK)]] + ([None if r[-1] < 0 else int(r[-1])] if bytes_in_combo else [])
                  for r in combos]
    header = {"quantum_ns": quantum, "log_dur": log_dur, "dur_steps": DUR_STEPS, "combos": combo_rows,
              "combo_fields": list(_LOOK) + (["bytes"] if bytes_in_combo else [])}
    return base64.b64encode(bytes(packed)).decode("ascii"), layout, header


def decode(blob: str, layout: list[dict], header: dict) -> dict[str, np.ndarray]:
    """The events back from the blob, as the browser decodes them."""
    packed = base64.b64decode(blob)
    col = {}
    for c in layout:
        raw = zlib.decompress(packed[c["zoffset"]:c["zoffset"] + c["zlength"]])
        col[c["name"]] = np.frombuffer(raw, "<f8") if c["float"] else _unplanes(raw, c)
    delta = col["dstart"].astype(np.int64) + (col["dstart_hi"].astype(np.int64) << 32)
    out = {"start": np.cumsum(delta) * header["quantum_ns"]}
    if header["log_dur"]:
        code = col["dcode"].astype(np.float64)
        out["dur"] = np.where(code == 0, -1, np.rint(np.exp2((code - 1) / header["dur_steps"]) - 1)).astype(np.int64)
    else:
        out["dur"] = np.where(col["dur_hi"] == 0xFFFFFFFF, -1,
                              col["dur_lo"].astype(np.int64) + (col["dur_hi"].astype(np.int64) << 32))
    combos = np.array([[(-1 if v is None else v) for v in r] for r in header["combos"]], np.int64).reshape(
        -1, len(header["combo_fields"]))
    picked = combos[col["combo"].astype(np.int64)] if len(combos) else np.zeros((0, len(header["combo_fields"])))
    for i, f in enumerate(header["combo_fields"]):
        out[f] = picked[:, i] if f != "bytes" else np.where(picked[:, i] < 0, np.nan, picked[:, i].astype(float))
    if "bytes" in col:
        out["bytes"] = col["bytes"]
    src = np.zeros(len(delta), np.int64)
    kind = out["kind"]
    for k in np.unique(kind):
        sel = kind == k
        src[sel] = np.cumsum(col["dsrc"][sel].astype(np.int64) + 1) - 1
    out["src"] = src
    out["frame"] = np.cumsum(col["dframe"].astype(np.int64)) + (-1)
    return out
