"""The GPU API catalogue against this machine's real libraries and headers (no root, no BPF).

* every entry of the four APIs is a function its named library exports here (or is listed in
  ABSENT with the reason, and only while that library is missing);
* every size/handle/direction expression passes catalogue.check_expression and evaluates in the
  decoder (decode._eval) to one integer per call;
* every argument an entry reads (argN, deref, out_arg) exists in the C prototype, parsed from the
  real header, counted as x86-64 integer-register slots (a dim3 by value takes two), and no float
  or other by-value struct comes before it (it would move the integer arguments);
* CUDA names are the versioned exports the headers #define the API names to (cuMemAlloc -> _v2);
* names are unique, categories valid, per-frame command-buffer calls have no return probe;
* where the driver lookup helper works here: each driver-resolved entry lands on a driver
  function of its own, and GLES/extension aliases (glMapBufferOES...) on their core name's one.
"""
from __future__ import annotations

import ast
import functools
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebpftoolkit.errors import ProbeConfigError
from ebpftoolkit.probes.gpu import decode, resolve
from ebpftoolkit.probes.gpu.catalogue import CATALOGUE, CATEGORIES, EXPRESSION_NAMES, add_call, check_expression
from ebpftoolkit.runtime.elf import elf_file

APIS = ("opengl", "vulkan", "opencl", "cuda")
SPECS = [c for c in CATALOGUE if c.api in APIS]
CUDA_INC = "/usr/local/cuda/include"
HEADERS = {
    "opengl": ["/usr/include/GL/glcorearb.h", "/usr/include/GL/glext.h", "/usr/include/GL/gl.h",
               "/usr/include/GL/glx.h", "/usr/include/EGL/egl.h"],
    "vulkan": ["/usr/include/vulkan/vulkan_core.h"],
    "opencl": ["/usr/include/CL/cl.h"],
    "cuda": [f"{CUDA_INC}/cuda_runtime_api.h", f"{CUDA_INC}/cuda.h"],
}

# entries whose library is not on this machine: checked by name only while it is missing
_NO_DRIVER = "libcuda.so.1 comes with the NVIDIA driver, which this machine does not have (CUDA toolkit only)"
ABSENT = {name: _NO_DRIVER for name in (
    "cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyDtoD_v2", "cuLaunchKernel",
    "cuCtxSynchronize", "cuLaunchKernelEx", "cuGraphLaunch", "cuMemAllocAsync", "cuMemFreeAsync",
    "cuMemAllocManaged", "cuMemHostAlloc", "cuMemcpyAsync", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
    "cuStreamSynchronize")}

# GLES / extension names of catalogue entries (counted under the core name through the shared dispatch slot)
GL_ALIASES = {
    "glMapBuffer": ["glMapBufferOES", "glMapBufferARB"], "glUnmapBuffer": ["glUnmapBufferOES", "glUnmapBufferARB"],
    "glMapBufferRange": ["glMapBufferRangeEXT"], "glFlushMappedBufferRange": ["glFlushMappedBufferRangeEXT"],
    "glTexStorage2D": ["glTexStorage2DEXT"], "glTexStorage3D": ["glTexStorage3DEXT"],
    "glTexSubImage3D": ["glTexSubImage3DOES", "glTexSubImage3DEXT"],
    "glCompressedTexImage2D": ["glCompressedTexImage2DARB"],
    "glCompressedTexSubImage2D": ["glCompressedTexSubImage2DARB"],
    "glCopyBufferSubData": ["glCopyBufferSubDataNV"],
    "glBlitFramebuffer": ["glBlitFramebufferEXT", "glBlitFramebufferANGLE", "glBlitFramebufferNV"],
    "glMultiDrawArraysIndirect": ["glMultiDrawArraysIndirectEXT", "glMultiDrawArraysIndirectAMD"],
    "glMultiDrawElementsIndirect": ["glMultiDrawElementsIndirectEXT", "glMultiDrawElementsIndirectAMD"],
    "glFenceSync": ["glFenceSyncAPPLE"], "glClientWaitSync": ["glClientWaitSyncAPPLE"],
    "glDrawArraysInstanced": ["glDrawArraysInstancedARB", "glDrawArraysInstancedEXT"],
    "glDrawElementsInstanced": ["glDrawElementsInstancedARB", "glDrawElementsInstancedEXT"],
    "glBufferData": ["glBufferDataARB"], "glBufferSubData": ["glBufferSubDataARB"],
    "glTexImage3D": ["glTexImage3DOES", "glTexImage3DEXT"], "glDrawRangeElements": ["glDrawRangeElementsEXT"],
    "glMultiDrawArrays": ["glMultiDrawArraysEXT"], "glMultiDrawElements": ["glMultiDrawElementsEXT"],
    "glDrawElementsBaseVertex": ["glDrawElementsBaseVertexOES", "glDrawElementsBaseVertexEXT"],
    "glGetBufferSubData": ["glGetBufferSubDataARB"],
}

# calls recorded into command buffers many times a frame: an entry probe only, by default
HOT = {"vkCmdBeginRenderPass", "vkCmdBeginRenderPass2", "vkCmdBeginRendering", "vkCmdPipelineBarrier",
       "vkCmdPipelineBarrier2", "vkCmdDraw", "vkCmdDrawIndexed", "vkCmdDrawIndirect", "vkCmdDrawIndexedIndirect",
       "vkCmdDrawIndirectCount", "vkCmdDrawIndexedIndirectCount", "vkCmdDispatch", "vkCmdCopyImage", "vkCmdBlitImage",
       "glDrawArrays", "glDrawElements", "glDrawArraysIndirect", "glDrawElementsIndirect", "glBlitFramebuffer"}


def _id(spec) -> str:
    return f"{spec.api}:{spec.name}"


# -- libraries ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _exports(soname: str) -> tuple[tuple[str, frozenset], ...]:
    return tuple((p, frozenset(elf_file(p).functions)) for p in resolve.find_libraries(soname))


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_the_function_is_exported_by_its_library(spec):
    found = [(p, names) for so in spec.libraries for p, names in _exports(so)]
    if not found:
        assert spec.name in ABSENT, (f"none of {spec.libraries} is on this machine: list {spec.name} in ABSENT "
                                     "with the reason, or fix the soname")
        return
    having = [p for p, names in found if spec.name in names]
    assert having, f"{spec.name} is not exported by {[p for p, _ in found]}"


def test_absent_entries_are_catalogue_entries_named_for_a_missing_library():
    names = {c.name: c for c in SPECS}
    assert set(ABSENT) <= set(names), sorted(set(ABSENT) - set(names))
    for name in ABSENT:
        # listed as absent and the library is here after all: the export test checked it, nothing to do
        assert names[name].libraries, name


# -- expressions -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_expressions_are_accepted_by_the_catalogue_and_the_decoder(spec):
    n = 5
    rng = np.random.default_rng(0)
    cols = {k: rng.integers(0, 1 << 20, n, dtype=np.int64) for k in EXPRESSION_NAMES}
    for field in ("size", "handle", "direction"):
        expr = getattr(spec, field)
        if expr is None:
            continue
        check_expression(field, expr)
        names = {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}
        names -= {"gl_bytes", "where"}
        assert names <= EXPRESSION_NAMES, (field, expr)
        if "deref" in names:
            assert spec.deref is not None, f"{field}={expr!r} reads deref, but the entry reads none (deref=None)"
        if "out" in names:
            assert spec.out_arg is not None, f"{field}={expr!r} reads out, but the entry has no out_arg"
        value = decode._eval(expr, cols)             # a constant (a scalar) is broadcast over the calls
        assert value.dtype == np.int64 and np.broadcast_to(value, (n,)).shape == (n,), (field, expr, value)


def test_the_expression_check_still_refuses_unknown_names():
    with pytest.raises(ProbeConfigError):
        check_expression("size", "arg9")
    with pytest.raises(ProbeConfigError):
        check_expression("size", "__import__('os')")


def _direction(spec_name, **cols):
    spec = next(c for c in SPECS if c.name == spec_name)
    full = {k: np.zeros(5, dtype=np.int64) for k in EXPRESSION_NAMES}
    full.update({k: np.asarray(v, dtype=np.int64) for k, v in cols.items()})
    return decode._eval(spec.direction, full).tolist()


def test_memcpy_kinds():
    kinds = [0, 1, 2, 3, 4]
    # cudaMemcpyDefault (4) -> -1 ("unknown"): the decoder's default resolution reads dst/src from arg0/arg1,
    # but cudaMemcpy2D's source is arg2 and cudaMemcpy3D's pointers are in its struct
    assert _direction("cudaMemcpy2D", arg6=kinds) == [0, 1, 2, 3, -1]
    assert _direction("cudaMemcpy2DAsync", arg6=kinds) == [0, 1, 2, 3, -1]
    assert _direction("cudaMemcpy3D", deref=[k | (0xABCD << 32) for k in kinds]) == [0, 1, 2, 3, -1]
    assert _direction("cudaMemcpy", arg3=kinds) == kinds
    assert [decode.MEMCPY_KIND.get(k, "unknown") for k in (-1, 4)] == ["unknown", "default"]


# -- prototypes --------------------------------------------------------------------------------
_DECL = r"(?:APIENTRY|GLAPIENTRY|GL_APIENTRY|EGLAPIENTRY|CUDARTAPI|CUDAAPI|VKAPI_CALL|CL_API_CALL|extern\s+\w+\s*\**)"
_FLOATS = {"float", "double", "GLfloat", "GLdouble", "GLclampf", "GLclampd", "cl_float", "cl_double"}


@functools.lru_cache(maxsize=None)
def _header_text(api: str) -> str:
    return "\n".join(open(h).read() for h in HEADERS[api] if os.path.isfile(h))


def _params(api: str, name: str) -> list[str] | None:
    """The parameters of ``name``'s declaration in the API's headers, split at top-level commas."""
    text = _header_text(api)
    m = re.search(_DECL + r"\s+" + re.escape(name) + r"\s*\(", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    inner = re.sub(r"__dv\([^)]*\)", "", text[m.end(): i - 1])
    inner = re.sub(r"/\*.*?\*/", "", inner, flags=re.S)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [] if parts in ([""], ["void"]) else parts


def _slots(params: list[str]) -> list[str]:
    """x86-64 integer argument slots, in order: 'int' each, 'dim3' twice; 'float' and 'struct' mark a
    parameter that would move the integer arguments after it (not in integer registers, or unknown)."""
    out = []
    for p in params:
        words = re.findall(r"\w+", p)
        if "*" in p or "[" in p:
            out.append("int")
        elif "dim3" in words:
            out += ["int", "int"]               # 12 bytes, INTEGER class: two registers
        elif set(words) & _FLOATS:
            out.append("float")
        elif words and words[0] == "struct":
            out.append("struct")
        else:
            out.append("int")
    return out


def _prototype_name(spec) -> str:
    """The name declared in the header: versioned CUDA exports are declared unversioned and #defined."""
    if _params(spec.api, spec.name) is None:
        base = re.sub(r"_v\d+$", "", spec.name)
        if base != spec.name and re.search(rf"#define\s+{base}\s+.*\b{spec.name}\b", _header_text(spec.api)):
            return base
    return spec.name


def _used_args(spec) -> set[int]:
    text = " ".join(x for x in (spec.size, spec.handle, spec.direction) if x)
    used = {int(m) for m in re.findall(r"\barg(\d)\b", text)}
    return used | {a for a in ((spec.deref or (None,))[0], spec.out_arg) if a is not None}


def _check_index(api, name, index, what):
    params = _params(api, name)
    assert params is not None, f"no prototype of {name} in {HEADERS[api]}"
    slots = _slots(params)
    assert index < len(slots), f"{name} {what}: argument {index}, but {name}({', '.join(params)}) has " \
                               f"{len(slots)} integer argument slots"
    assert all(s == "int" for s in slots[:index + 1]), \
        f"{name} {what}: argument {index} follows a float or by-value struct ({slots[:index + 1]}): not positional"


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_arguments_read_exist_in_the_prototype(spec):
    if not any(os.path.isfile(h) for h in HEADERS[spec.api]):
        pytest.skip(f"no {spec.api} headers here")
    name = _prototype_name(spec)
    assert _params(spec.api, name) is not None, f"no prototype of {spec.name} in {HEADERS[spec.api]}"
    for index in sorted(_used_args(spec)):
        _check_index(spec.api, name, index, "reads")
    if spec.out_arg is not None:
        assert "*" in _params(spec.api, name)[spec.out_arg], f"{spec.name}: out_arg {spec.out_arg} is no pointer"


def test_the_prototype_parser():
    assert _params("cuda", "cudaMemcpy2D")[4:] == ["size_t width", "size_t height", "enum cudaMemcpyKind kind"]
    assert len(_params("cuda", "cudaMemcpy2DAsync")) == 8                     # __dv(0) default skipped
    assert _slots(_params("cuda", "cudaLaunchKernel")) == ["int"] * 8        # dim3 by value: two registers each
    assert len(_params("opencl", "clEnqueueReadBufferRect")) == 14
    assert len(_params("opengl", "glBlitFramebuffer")) == 10
    assert _params("cuda", "cuCtxSynchronize") == []
    assert _prototype_name(next(c for c in SPECS if c.name == "cuMemAlloc_v2")) == "cuMemAlloc"


def test_decoder_argument_tables_match_the_prototypes():
    """decode's per-call argument tables (streams, kernels, graphs), where it has them."""
    names = {c.name: c for c in SPECS}
    for table in ("STREAM_ARG", "KERNEL_ARG", "GRAPH_ARG"):
        for name, index in getattr(decode, table, {}).items():
            assert name in names, f"decode.{table} names {name}, which is not in the catalogue"
            _check_index(names[name].api, _prototype_name(names[name]), index, f"decode.{table}")


def test_cuda_names_are_the_versioned_exports():
    """cuda.h #defines many API names to versioned exports (cuMemAlloc -> cuMemAlloc_v2): the unversioned
    export is the old ABI, which programs built with today's headers never call."""
    text = _header_text("cuda")
    for spec in (c for c in SPECS if c.api == "cuda"):
        m = re.search(rf"#define\s+{spec.name}\s+(?:__CUDA_API_PT(?:DS|SZ)\()?({spec.name}_v\d+)\b", text)
        assert not m, f"{spec.name}: programs call {m.group(1)} (cuda.h: {m.group(0)!r})"


# -- the table itself --------------------------------------------------------------------------
def test_no_duplicates_and_valid_fields():
    counts = Counter((c.api, c.name) for c in CATALOGUE)
    assert not [k for k, n in counts.items() if n > 1]
    for c in SPECS:
        assert c.category in CATEGORIES, c
        assert c.resolve in ("symbol", "driver"), c
        assert c.libraries, c
        assert c.out_arg is None or c.out_arg in range(6), c          # the out pointer is saved from a register
        assert c.deref is None or (c.deref[0] in range(9) and c.deref[1] >= 0), c
        assert c.direction is None or c.category == "copy", f"{c.name}: direction only decides 'copy' calls"
        assert (c.handle == "out") == (c.out_arg is not None) or c.handle is None, c


def test_hot_calls_have_no_return_probe_by_default():
    hot = [c.name for c in SPECS if c.name in HOT and c.ret]
    assert not hot, hot


def test_calls_whose_duration_matters_have_a_return_probe_by_default():
    timed = """glBufferData glBufferSubData glTexImage2D glTexSubImage2D glReadPixels glGetBufferSubData glMapBuffer
    glMapBufferRange glUnmapBuffer glFlushMappedBufferRange glTexStorage2D glFinish glFlush glClientWaitSync
    glXSwapBuffers eglSwapBuffers vkQueueSubmit vkQueuePresentKHR vkAllocateMemory vkFreeMemory vkMapMemory
    vkUnmapMemory vkFlushMappedMemoryRanges vkQueueWaitIdle vkDeviceWaitIdle vkWaitForFences""".split()
    by_name = {c.name: c for c in SPECS}
    assert not [n for n in timed if not by_name[n].ret]
    untimed = [c.name for c in SPECS if c.ret and (c.category in ("draw", "dispatch") or c.name.startswith("vkCmd"))]
    assert not untimed, untimed            # hot, or recorded into a command buffer: the call's time is not the work's
    assert all(c.ret for c in SPECS if c.api in ("opencl", "cuda"))


def test_one_category_vocabulary_for_every_api():
    assert not {"upload", "download"} & set(CATEGORIES)
    for cat in ("copy_h2d", "copy_d2h"):          # a GL texture upload and a cudaMemcpy H2D are named alike
        assert {c.api for c in SPECS if c.category == cat} == set(APIS), cat


@pytest.mark.parametrize("old, new", [("upload", "copy_h2d"), ("download", "copy_d2h")])
def test_add_call_takes_the_old_names_as_the_new_ones_with_a_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is now '{new}'"):
        spec = add_call("vocab", f"f_{old}", library="/lib/x86_64-linux-gnu/libc.so.6", category=old)
    try:
        assert spec.category == new and spec in CATALOGUE
    finally:
        CATALOGUE.remove(spec)
    with pytest.raises(ProbeConfigError, match="copy_h2d, copy_d2h"):
        add_call("vocab", "g", library="/lib/x86_64-linux-gnu/libc.so.6", category="uploads")


def test_recordings_saved_with_the_old_names_load_with_the_new_ones():
    from ebpftoolkit.recording import Recording
    path = Path(__file__).parents[1] / "data" / "sessions" / "gpu_pmu"       # saved by ebpftoolkit 0.1
    saved = pd.read_parquet(path / "gpu.parquet")["category"]
    assert {"upload", "download"} <= set(saved)
    got = Recording.load(path).tables["gpu"]["category"]
    assert not {"upload", "download"} & set(got)
    assert (got == "copy_h2d").sum() == saved.isin(["upload", "copy_h2d"]).sum()
    assert (got == "copy_d2h").sum() == saved.isin(["download", "copy_d2h"]).sum()
    assert (got[~saved.isin(["upload", "download"])] == saved[~saved.isin(["upload", "download"])]).all()


def test_the_requested_calls_are_all_there():
    wanted = """glMapBuffer glMapBufferRange glUnmapBuffer glFlushMappedBufferRange glTexStorage2D glTexStorage3D
    glTexSubImage3D glCompressedTexImage2D glCompressedTexSubImage2D glCopyBufferSubData glBlitFramebuffer
    glDrawArraysIndirect glDrawElementsIndirect glMultiDrawArraysIndirect glMultiDrawElementsIndirect glFenceSync
    glClientWaitSync vkCmdBeginRenderPass vkCmdBeginRenderPass2 vkCmdBeginRendering vkCmdPipelineBarrier
    vkCmdPipelineBarrier2 vkCmdCopyImage vkCmdBlitImage vkCmdDrawIndirectCount vkCmdDrawIndexedIndirectCount
    vkCreateBuffer vkCreateImage vkBindBufferMemory vkBindImageMemory vkUnmapMemory vkFlushMappedMemoryRanges
    clEnqueueUnmapMemObject clEnqueueReadBufferRect clEnqueueWriteBufferRect clEnqueueCopyBufferRect
    clEnqueueReadImage clEnqueueWriteImage clEnqueueSVMMemcpy clEnqueueSVMMap cudaLaunchKernelExC cudaGraphLaunch
    cudaMallocAsync cudaFreeAsync cudaMemcpy2D cudaMemcpy2DAsync cudaMemcpy3D cudaMemcpyPeer cudaMemcpyPeerAsync
    cudaMemsetAsync cudaEventRecord cudaEventSynchronize cudaStreamCreate cudaStreamWaitEvent cuLaunchKernelEx
    cuGraphLaunch cuMemAllocAsync cuMemFreeAsync cuMemcpyAsync cuMemcpyHtoDAsync_v2 cuMemcpyDtoHAsync_v2
    cuMemAllocManaged cuMemHostAlloc cuStreamSynchronize""".split()
    have = {c.name for c in SPECS}
    assert not [n for n in wanted if n not in have]


# -- driver functions (the helper process the resolver runs) -----------------------------------
@functools.lru_cache(maxsize=None)
def _helper(api: str, names: tuple[str, ...]) -> dict:
    result, why = resolve._run_helper(api, names)
    if why:
        pytest.skip(f"{api} driver lookup does not work here: {why}")
    return {k: (v["driver"]["path"], v["driver"]["file_offset"]) for k, v in result.items() if v.get("driver")}


def _driver_names(api):
    return tuple(c.name for c in SPECS if c.api == api and c.resolve == "driver")


@pytest.mark.parametrize("api", ["opengl", "vulkan"])
def test_driver_entries_resolve_to_driver_functions_of_their_own(api):
    names = _driver_names(api)
    found = _helper(api, names)
    missing = set(names) - set(found)
    assert not missing, sorted(missing)      # Vulkan 1.2/1.3 core calls too: the helper asks for a 1.3 instance
    shared = [addrs for addrs in Counter(found.values()).items() if addrs[1] > 1]
    assert not shared, f"two entries on one driver function would count its calls twice: {shared}"


def test_gl_aliases_land_on_their_core_name_driver_function():
    names = tuple(sorted(set(GL_ALIASES) | {a for al in GL_ALIASES.values() for a in al}))
    found = _helper("opengl", names)
    compared = 0
    for core, aliases in GL_ALIASES.items():
        for alias in aliases:
            if alias in found and core in found:
                assert found[alias] == found[core], f"{alias} does not share {core}'s driver function"
                compared += 1
    assert compared >= 10, f"only {compared} aliases known to this driver"
