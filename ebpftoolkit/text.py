"""Text captured from traced programs, made safe to show.

Names and arguments come from other programs: they may hold bytes that are not UTF-8
(kept as surrogates, see ``runtime.records.decode_str``) and control characters (an
argv can carry ESC sequences that would repaint a terminal).  :func:`printable` escapes
both the way ``ls -b`` does, so what is shown is exact and harmless.
"""
from __future__ import annotations

__all__ = ["printable"]

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\x1b": "\\e"}


def printable(s) -> str:
    """``s`` with non-UTF-8 bytes as ``\\xNN``, control characters escaped (``\\e``, ``\\n``, ``\\x07``...)
    and backslashes doubled; other text unchanged."""
    s = str(s)
    if s.isprintable() and "\\" not in s:
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= o <= 0xDCFF:          # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif not ch.isprintable():
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        else:
            out.append(ch)
    return "".join(out)
