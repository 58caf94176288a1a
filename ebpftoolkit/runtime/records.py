"""Decoding text from kernel records: bytes that are not UTF-8 survive (``surrogateescape``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["decode_str", "decode_str_array", "text_column"]


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


def text_column(values, index=None) -> pd.Series:
    """A text column as an object Series: pandas' own string dtype (pandas 3's default for text)
    rejects the surrogates that keep non-UTF-8 bytes, so text from the kernel never uses it."""
    return pd.Series(np.asarray(values, dtype=object) if not isinstance(values, pd.Series) else values.to_numpy(object),
                     index=index, dtype=object)
