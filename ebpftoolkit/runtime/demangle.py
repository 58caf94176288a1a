"""C++ symbol demangling, through the C++ runtime's ``abi::__cxa_demangle`` (the cxxfilt package).

``demangle("_ZN3foo3barEv.isra.0@plt")`` gives ``"foo::bar() [clone .isra.0]@plt"``,
what binutils' ``c++filt -i`` prints: GCC's clone suffixes (``.cold``,
``.isra.0``, ``.part.0``, ``.constprop.0``, ``.llvm.NNN``...) are understood by
libstdc++'s demangler itself, and a version or PLT suffix after ``@``
(``@plt``, ``@@GLIBCXX_3.4``) is kept as it is after the demangled name.
Standard abbreviations stay short (``std::string``, ``std::ostream``), where
plain ``c++filt`` (its verbose default) spells out
``std::basic_string<char, std::char_traits<char>, std::allocator<char> >``.
Anything that is not a mangled C++ name (``main``, ``_Zgarbage``, C names)
comes back unchanged; no input makes these functions raise.
"""
from __future__ import annotations

import functools
from typing import Iterable

import cxxfilt

__all__ = ["demangle", "demangle_many"]


def demangle(name: str) -> str:
    """The demangled form of a C++ symbol name, or ``name`` itself when it is not one."""
    if not isinstance(name, str) or not name.startswith("_Z") or "\0" in name:
        return name
    return _demangle(name)


@functools.lru_cache(maxsize=1 << 17)
def _demangle(name: str) -> str:
    base, at, suffix = name.partition("@")
    try:
        return cxxfilt.demangle(base) + at + suffix
    except Exception:   # cxxfilt.InvalidName (not valid mangling), LibraryNotFound (no C++ runtime), UnicodeError
        return name


def demangle_many(names: Iterable[str]) -> list[str]:
    """:func:`demangle` of each name, each distinct name demangled once."""
    done: dict[str, str] = {}
    out = []
    for name in names:
        try:
            out.append(done[name])
        except KeyError:
            out.append(done.setdefault(name, demangle(name)))
        except TypeError:   # an unhashable non-name: passed through like any other non-name
            out.append(name)
    return out
