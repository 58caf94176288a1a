"""Record layouts and bulk decoding helpers shared by all probes."""
from __future__ import annotations

import numpy as np

__all__ = ["c_struct_dtype", "decode_str", "decode_str_array"]


def c_struct_dtype(fields: list[tuple]) -> np.dtype:
    """A numpy dtype laid out like the C struct with these members (natural alignment)."""
    names, formats, offsets = [], [], []
    off = 0
    max_align = 1
    for name, fmt in fields:
        dt = np.dtype(fmt)
        align = dt.base.alignment if dt.base.kind != "S" else 1
        off = (off + align - 1) // align * align
        names.append(name)
        formats.append(dt)
        offsets.append(off)
        off += dt.itemsize
        max_align = max(max_align, align)
    size = (off + max_align - 1) // max_align * max_align
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})


def decode_str(b: bytes) -> str:
    """Kernel bytes -> str; bytes that are not UTF-8 survive as surrogates (``surrogateescape``)."""
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def decode_str_array(arr: np.ndarray) -> np.ndarray:
    """A numpy ``S`` array -> object array of str (decoded once per distinct value)."""
    if len(arr) == 0:
        return np.empty(0, dtype=object)
    uniq, inv = np.unique(arr, return_inverse=True)
    dec = np.array([decode_str(u) for u in uniq], dtype=object)
    return dec[inv]
