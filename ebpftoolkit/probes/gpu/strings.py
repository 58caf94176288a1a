"""Strings read at a call's entry (CallSpec.str_arg: a marker's name; later a kernel's): a second
record type, so that the record every other call makes stays as it is.

gpu.bpf.c emits one ``gpu_string`` into its own ring (``gpu_strings``) for each entry of a call
with ``str_arg``, keyed by the entry record's own (ts, tid, point): the two are paired here.
"""
from __future__ import annotations

import numpy as np

from ...runtime.layout import Layout
from ...runtime.records import decode_str_array
from ...runtime.streams import StreamSpec

__all__ = ["STRING", "STRING_BYTES", "string_stream", "labels"]

STRING_BYTES = 64                      # read with bpf_probe_read_user_str: at most 63 bytes and the NUL
STRING = Layout("gpu_string", [("ts", "u64"), ("tid", "u32"), ("point", "u32"), ("str", "char", STRING_BYTES)])


def string_stream(ring_pages: int) -> StreamSpec:
    """The strings' ring: a quarter of the calls' (the records are 80 bytes, not 128: a program marking
    300,000 times a second loses none), no wake-ups of its own (the collector polls)."""
    return StreamSpec("gpu_strings", STRING.dtype, max(64, ring_pages // 4), wakeup="batch",
                      c_type="struct gpu_string")


def labels(ts: np.ndarray, tid: np.ndarray, point: np.ndarray, strings) -> np.ndarray:
    """The string recorded for each entry (its ts, tid, attach point), None where there is none."""
    out = np.full(len(ts), None, dtype=object)
    if strings is None or len(strings) == 0 or len(ts) == 0:
        return out
    # a dict, not a merge: the text may hold surrogates (non-UTF-8 bytes), which pandas' string dtype rejects
    text = decode_str_array(strings["str"])
    found = dict(zip(zip(strings["ts"].tolist(), strings["tid"].tolist(), strings["point"].tolist()), text))
    ts, tid, point = (np.asarray(a, np.int64) for a in (ts, tid, point))
    rows = np.flatnonzero(np.isin(point, np.unique(strings["point"].astype(np.int64))))   # calls with strings only
    for i, key in zip(rows.tolist(), zip(ts[rows].tolist(), tid[rows].tolist(), point[rows].tolist())):
        if key in found:
            out[i] = found[key]
    return out
