"""ebpftoolkit.runtime.demangle against binutils' c++filt on real names (no root needed)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cxxfilt
import pytest
from hypothesis import given, settings, strategies as st

from ebpftoolkit.runtime import demangle as demangle_mod
from ebpftoolkit.runtime.demangle import demangle, demangle_many


def _libstdcxx() -> str:
    """The libstdc++ this process maps (cxxfilt loaded it to call __cxa_demangle)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if os.path.basename(path).startswith("libstdc++.so"):
            return os.path.realpath(path)
    raise AssertionError("libstdc++ is not mapped by this process")


@pytest.fixture(scope="module")
def real_names() -> list[str]:
    """Every mangled name libstdc++ exports, as nm -D prints them (with @@GLIBCXX_x version suffixes)."""
    out = subprocess.run(["nm", "-D", "--defined-only", _libstdcxx()], capture_output=True, text=True,
                         check=True).stdout
    names = [f[2] for f in (l.split() for l in out.splitlines()) if len(f) == 3 and f[2].startswith("_Z")]
    assert len(names) > 1000
    return names


def _cxxfilt(names: list[str], *flags: str) -> list[str]:
    out = subprocess.run(["c++filt", *flags], input="".join(n + "\n" for n in names), capture_output=True,
                         text=True, check=True).stdout
    return out.split("\n")[:-1]


def test_agrees_with_cxxfilt(real_names):
    """c++filt -i: the same output as __cxa_demangle; plain c++filt also spells out std::string and friends."""
    assert demangle_many(real_names) == _cxxfilt(real_names, "-i")


def test_agrees_with_cxxfilt_on_suffixed_names(real_names):
    """GCC clone suffixes and @plt on real names, the way they appear in .symtab and in perf's PLT entries."""
    bases = [n.split("@")[0] for n in real_names[:200]]
    names = [b + s for b in bases for s in (".cold", ".isra.0", ".part.0.cold", ".constprop.0", "@plt",
                                           ".isra.0@plt", ".llvm.1234567")]
    ours = demangle_many(names)
    assert ours == _cxxfilt(names, "-i")
    assert all(o != n for o, n in zip(ours, names))


def test_examples():
    assert demangle("_ZN3foo3barEv") == "foo::bar()"
    assert demangle("_ZN3foo3barEv.isra.0@plt") == "foo::bar() [clone .isra.0]@plt"
    assert demangle("_ZNKSs4sizeEv@@GLIBCXX_3.4") == "std::string::size() const@@GLIBCXX_3.4"
    assert demangle("_ZTV3Foo") == "vtable for Foo"


@pytest.mark.parametrize("name", ["main", "malloc", "_start", "__libc_start_main", "PyEval_EvalFrameDefault",
                                  "", "_", "_Z", "Z3foov", "foo@plt", "memcpy@@GLIBC_2.14", "_RNvC5hello4main"])
def test_unmangled_unchanged(name):
    assert demangle(name) == name
    assert demangle_many([name]) == [name]


@pytest.mark.parametrize("name", ["_Zgarbage", "_Z3foo3", "_ZNxyz", "_Z1", "_ZZ", "_Z3foov.", "_Z3foov..",
                                  "_ZN3foo3barEv.Foo", "_Z3foov\0", "_Z\0_Z3foov", "_Z\udcff", "_Z3fo\u00e9v",
                                  "_Z" + "N" * 5000, "_Z1fI" + "1AI" * 10000 + "i" + "E" * 10000 + "Ev"])
def test_garbage_unchanged(name):
    assert demangle(name) == name


def test_no_cxx_runtime(monkeypatch):
    """cxxfilt defers 'no libstdc++ found' to each call: the name comes back unchanged."""
    def missing(name, external_only=True):
        raise cxxfilt.LibraryNotFound("Cannot find any of libraries: ('stdc++', 'c++')")
    monkeypatch.setattr(demangle_mod.cxxfilt, "demangle", missing)
    demangle_mod._demangle.cache_clear()
    try:
        assert demangle("_Z3foov") == "_Z3foov"
    finally:
        demangle_mod._demangle.cache_clear()


def test_demangle_many_demangles_each_distinct_name_once(monkeypatch):
    calls = []
    real = demangle_mod.cxxfilt.demangle
    monkeypatch.setattr(demangle_mod.cxxfilt, "demangle", lambda n: calls.append(n) or real(n))
    demangle_mod._demangle.cache_clear()
    try:
        names = ["_Z3foov", "main", "_Z3barv"] * 1000 + [None]
        assert demangle_many(iter(names)) == ["foo()", "main", "bar()"] * 1000 + [None]
        assert sorted(calls) == ["_Z3barv", "_Z3foov"]
        assert demangle_many(["_Z3foov"]) == ["foo()"] and len(calls) == 2   # still cached across calls
    finally:
        demangle_mod._demangle.cache_clear()


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    assert isinstance(demangle(text), str)
    assert demangle_many([text, text]) == [demangle(text)] * 2


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("_ZNKESIJPRVcivl0123456789.@SaSbSsTtfoba"), max_size=60))
def test_random_mangled_looking_text_never_raises(text):
    out = demangle("_Z" + text)
    assert isinstance(out, str) and out
