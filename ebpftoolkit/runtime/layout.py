"""Record layouts defined once: a :class:`Layout` gives both the numpy dtype that decodes
the records and the C ``struct`` the BPF program is compiled with, so the two cannot
drift apart.  :func:`c_defines` does the same for flag values and other constants.

Fields are ``(name, type)`` or ``(name, type, dims)`` with a C integer type (``u8`` ...
``u64``, ``s8`` ... ``s64``) or ``char``; ``dims`` is an int or a tuple.  Members are
laid out as a C compiler lays out the struct (natural alignment, size rounded up to the
largest alignment).  A ``char`` array of several dimensions is one flat array in C (the
BPF code indexes it by hand) and an array of byte strings in numpy.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["Layout", "c_defines", "C_TYPES"]

C_TYPES = {"u8": "u1", "u16": "<u2", "u32": "<u4", "u64": "<u8", "s8": "i1", "s16": "<i2", "s32": "<i4",
           "s64": "<i8"}


class Layout:
    """A C struct named ``c_name`` with ``fields``: ``.dtype`` for numpy, ``.c_decl()`` for BPF C."""

    def __init__(self, c_name: str, fields: list[tuple]):
        self.c_name = c_name
        self.fields = [(f[0], f[1], _dims(f[2] if len(f) > 2 else ())) for f in fields]
        names, formats, offsets = [], [], []
        off, max_align = 0, 1
        for name, ctype, dims in self.fields:
            if ctype == "char":
                dt = np.dtype(f"S{dims[-1]}") if dims else np.dtype("S1")
                full = np.dtype((dt, dims[:-1])) if len(dims) > 1 else dt
                align = 1
            elif ctype in C_TYPES:
                dt = np.dtype(C_TYPES[ctype])
                full = np.dtype((dt, dims)) if dims else dt
                align = dt.alignment
            else:
                raise ValueError(f"{c_name}.{name}: unknown C type {ctype!r} (use {', '.join(C_TYPES)} or char)")
            off = (off + align - 1) // align * align
            names.append(name)
            formats.append(full)
            offsets.append(off)
            off += full.itemsize
            max_align = max(max_align, align)
        size = (off + max_align - 1) // max_align * max_align
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})

    def c_decl(self) -> str:
        """``struct c_name { ... };`` with the members in order (the compiler adds the same padding)."""
        lines = []
        for name, ctype, dims in self.fields:
            if ctype == "char" and len(dims) > 1:
                lines.append(f"    char {name}[{math.prod(dims)}];   /* {' x '.join(map(str, dims))} */")
            else:
                lines.append(f"    {ctype} {name}{''.join(f'[{d}]' for d in dims)};")
        return f"struct {self.c_name} {{\n" + "\n".join(lines) + "\n};\n"

    def __repr__(self) -> str:
        return f"<Layout struct {self.c_name}: {self.dtype.itemsize} bytes>"


def _dims(d) -> tuple[int, ...]:
    if d in ((), None):
        return ()
    return (int(d),) if isinstance(d, (int, np.integer)) else tuple(int(x) for x in d)


def c_defines(values: dict[str, int], prefix: str = "") -> str:
    """``#define PREFIXNAME value`` lines, so that C and Python share one set of constants."""
    return "".join(f"#define {prefix}{k} {v}\n" for k, v in values.items())
