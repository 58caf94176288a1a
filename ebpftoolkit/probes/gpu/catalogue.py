"""The GPU API calls GpuTrace knows, as data: one row per call.

Add your own with :func:`add_call` (any library, any function)::

    from ebpftoolkit.probes.gpu import add_call
    add_call("mylib", "my_upload", library="libmy.so.1", category="copy_h2d", size="arg2")

Fields:
  api        opengl | vulkan | opencl | cuda | any name of yours
  name       the function's own name
  category   draw, dispatch, launch, frame, alloc, free, copy_h2d, copy_d2h, copy_d2d,
             copy (direction from an argument), submit, sync, other: one vocabulary for every
             API (a GL texture upload is copy_h2d, a glReadPixels copy_d2h, as for CUDA and
             OpenCL); add_call still takes the old "upload"/"download", as copy_h2d/copy_d2h,
             with a DeprecationWarning
  libraries  sonames to attach to by symbol (the executable too, for static CUDA)
  resolve    "symbol", or "driver": find the driver function behind the API's
             dispatch (every call path ends there, GetProcAddress pointers included)
  size       expression for the bytes involved, over arg0..arg8 (integer arguments
             in order, 7th on from the stack), deref (8 bytes read at entry, see
             deref), ret, out (the value written through out_arg), and gl_bytes(w, h, d,
             format, type); None when the call moves no bytes
  deref      (argument index, byte offset) to read 8 bytes from at entry
  out_arg    argument index of a pointer through which the call returns a handle
  handle     expression naming the allocation a call creates or frees (arg0, ret, out...)
  direction  expression giving a cudaMemcpyKind-style code, for category "copy"
  ret        return probe on by default (duration, return value): for GL and Vulkan, the TIMED
             categories and the buffer maps/unmaps; OpenCL and CUDA, every call; off for hot calls
  self_filter  drop calls the probed library makes to itself (off where the API's own
             entry point calls another entry point on purpose, e.g. CUDA launches)
  str_arg    argument index of a NUL-terminated string to record (up to 63 bytes, the gpu
             table's ``label``), e.g. a marker's name
"""
from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, replace

from ...errors import ProbeConfigError

__all__ = ["CallSpec", "CATALOGUE", "add_call", "calls_for", "CATEGORIES", "OLD_CATEGORIES"]

CATEGORIES = ("draw", "dispatch", "launch", "frame", "alloc", "free", "copy_h2d", "copy_d2h", "copy_d2d", "copy",
              "submit", "sync", "other")
#: names earlier versions used for GL/Vulkan host<->device copies, and what they are now
OLD_CATEGORIES = {"upload": "copy_h2d", "download": "copy_d2h"}


@dataclass(frozen=True)
class CallSpec:
    api: str
    name: str
    category: str
    libraries: tuple[str, ...] = ()
    resolve: str = "symbol"
    size: str | None = None
    deref: tuple[int, int] | None = None
    out_arg: int | None = None
    handle: str | None = None
    direction: str | None = None
    ret: bool = False
    self_filter: bool = True
    note: str = ""
    str_arg: int | None = None


GL = ("libGL.so.1", "libOpenGL.so.0")
VK = ("libvulkan.so.1",)
CL = ("libOpenCL.so.1",)
CUDART = ("libcudart.so",)      # matched as a prefix: libcudart.so.12, .13...
CUDA_DRV = ("libcuda.so.1",)


#: categories whose calls get a return probe by default: the host waits in them (copies it makes or
#: reads back, allocations, syncs, frames, submits), they are not made many times a frame, and the
#: duration answers "what was slow".  Draws, dispatches and state calls do not; neither do GPU-side
#: copies (copy_d2d) and Vulkan's vkCmd* calls, whose time is that of recording a command, not of the work.
TIMED = ("alloc", "free", "copy_h2d", "copy_d2h", "copy", "sync", "frame", "submit")


def _gl(name, category, size=None, **kw):
    return CallSpec("opengl", name, category, GL, "driver", size, ret=kw.pop("ret", category in TIMED), **kw)


def _vk(name, category, size=None, **kw):
    ret = kw.pop("ret", category in TIMED and not name.startswith("vkCmd"))
    return CallSpec("vulkan", name, category, VK, "driver", size, ret=ret, **kw)


def _cl(name, category, size=None, **kw):
    return CallSpec("opencl", name, category, CL, "symbol", size, ret=kw.pop("ret", True), **kw)


def _cu(name, category, size=None, libs=CUDART, **kw):
    return CallSpec("cuda", name, category, libs, "symbol", size, ret=kw.pop("ret", True),
                    self_filter=kw.pop("self_filter", False), **kw)


CATALOGUE: list[CallSpec] = [
    # OpenGL: calls land in the Mesa driver through its dispatch table
    _gl("glDrawArrays", "draw"), _gl("glDrawElements", "draw"), _gl("glDrawArraysInstanced", "draw"),
    _gl("glDrawElementsInstanced", "draw"), _gl("glDrawRangeElements", "draw"), _gl("glMultiDrawArrays", "draw"),
    _gl("glMultiDrawElements", "draw"), _gl("glDrawElementsBaseVertex", "draw"), _gl("glCallList", "draw"),
    _gl("glDispatchCompute", "dispatch"),
    _gl("glBufferData", "copy_h2d", "arg1"), _gl("glBufferSubData", "copy_h2d", "arg2"),
    _gl("glNamedBufferData", "copy_h2d", "arg1"), _gl("glNamedBufferSubData", "copy_h2d", "arg2"),
    _gl("glTexImage2D", "copy_h2d", "gl_bytes(arg3, arg4, 1, arg6, arg7)"),
    _gl("glTexSubImage2D", "copy_h2d", "gl_bytes(arg4, arg5, 1, arg6, arg7)"),
    _gl("glTexImage3D", "copy_h2d", "gl_bytes(arg3, arg4, arg5, arg7, arg8)"),
    _gl("glReadPixels", "copy_d2h", "gl_bytes(arg2, arg3, 1, arg4, arg5)"),
    _gl("glGetBufferSubData", "copy_d2h", "arg2"),
    _gl("glFinish", "sync"), _gl("glFlush", "sync"), _gl("glClear", "other"),
    # GLES/extension aliases (glMapBufferOES, glBlitFramebufferEXT...) share the core name's dispatch slot,
    # so the driver probe counts them under the core name; exported-symbol fallback catches the core name only
    _gl("glDrawArraysIndirect", "draw"), _gl("glDrawElementsIndirect", "draw"),
    _gl("glMultiDrawArraysIndirect", "draw"), _gl("glMultiDrawElementsIndirect", "draw"),
    _gl("glMapBuffer", "other", ret=True, note="the whole buffer; may wait for the GPU"),
    _gl("glMapBufferRange", "other", "arg2", ret=True, note="may wait for the GPU"),
    _gl("glUnmapBuffer", "other", ret=True), _gl("glFlushMappedBufferRange", "copy_h2d", "arg2"),
    _gl("glTexStorage2D", "alloc", note="bytes depend on the sized internal format, which gl_bytes does not know"),
    _gl("glTexStorage3D", "alloc", note="bytes depend on the sized internal format, which gl_bytes does not know"),
    _gl("glTexSubImage3D", "copy_h2d", note="no bytes: its type is the 10th argument, past the 9 recorded"),
    _gl("glCompressedTexImage2D", "copy_h2d", "arg6"), _gl("glCompressedTexSubImage2D", "copy_h2d", "arg7"),
    _gl("glCopyBufferSubData", "copy_d2d", "arg4"), _gl("glBlitFramebuffer", "copy_d2d"),
    _gl("glFenceSync", "other"), _gl("glClientWaitSync", "sync", ret=True),
    CallSpec("opengl", "glXSwapBuffers", "frame", ("libGLX.so.0",), ret=True,
             note="libGL.so.1's glXSwapBuffers forwards to libGLX.so.0's: probe only one"),
    CallSpec("opengl", "eglSwapBuffers", "frame", ("libEGL.so.1",), ret=True),
    # Vulkan: device-level calls land in the driver (ICD), whether through the loader or vkGetDeviceProcAddr
    _vk("vkCmdDraw", "draw"), _vk("vkCmdDrawIndexed", "draw"), _vk("vkCmdDrawIndirect", "draw"),
    _vk("vkCmdDrawIndexedIndirect", "draw"), _vk("vkCmdDispatch", "dispatch"), _vk("vkCmdDispatchIndirect", "dispatch"),
    _vk("vkQueueSubmit", "submit", ret=True), _vk("vkQueueSubmit2", "submit", ret=True),
    _vk("vkQueuePresentKHR", "frame", ret=True),
    _vk("vkAllocateMemory", "alloc", "deref", deref=(1, 16), out_arg=3, handle="out", ret=True),
    _vk("vkFreeMemory", "free", handle="arg1", ret=True),
    _vk("vkMapMemory", "other", "arg3", ret=True),
    _vk("vkCmdCopyBuffer", "copy_d2d", "where(arg3 == 1, deref, -1)", deref=(4, 16),
        note="bytes of the first region when there is exactly one; recorded into a command buffer"),
    _vk("vkCmdUpdateBuffer", "copy_h2d", "arg3"), _vk("vkCmdCopyBufferToImage", "copy_h2d"),
    _vk("vkCmdCopyImageToBuffer", "copy_d2h"),
    _vk("vkQueueWaitIdle", "sync", ret=True), _vk("vkDeviceWaitIdle", "sync", ret=True),
    _vk("vkWaitForFences", "sync", ret=True), _vk("vkAcquireNextImageKHR", "other", ret=True),
    _vk("vkCmdDrawIndirectCount", "draw"), _vk("vkCmdDrawIndexedIndirectCount", "draw"),
    _vk("vkCmdBeginRenderPass", "other"), _vk("vkCmdBeginRenderPass2", "other"), _vk("vkCmdBeginRendering", "other"),
    _vk("vkCmdPipelineBarrier", "sync", note="a GPU-side dependency recorded into a command buffer: no host wait"),
    _vk("vkCmdPipelineBarrier2", "sync", note="a GPU-side dependency recorded into a command buffer: no host wait"),
    _vk("vkCmdCopyImage", "copy_d2d"), _vk("vkCmdBlitImage", "copy_d2d"),
    _vk("vkCreateBuffer", "other", "deref", deref=(1, 24), out_arg=3, handle="out", ret=True,
        note="VkBufferCreateInfo.size; a buffer object, its memory comes from vkAllocateMemory"),
    _vk("vkCreateImage", "other", out_arg=3, handle="out", ret=True, note="size: vkGetImageMemoryRequirements"),
    _vk("vkBindBufferMemory", "other", handle="arg1", ret=True, note="handle: the buffer; the memory is arg2"),
    _vk("vkBindImageMemory", "other", handle="arg1", ret=True, note="handle: the image; the memory is arg2"),
    _vk("vkUnmapMemory", "other", ret=True),
    _vk("vkFlushMappedMemoryRanges", "copy_h2d", "where(arg1 == 1, deref, -1)", deref=(2, 32),
        note="bytes of the range when there is exactly one (VK_WHOLE_SIZE: none)"),
    # OpenCL: the ICD loader's exports (the system one and any bundled copy, e.g. pyopencl's)
    _cl("clCreateBuffer", "alloc", "arg2", handle="ret"), _cl("clReleaseMemObject", "free", handle="arg0"),
    _cl("clSVMAlloc", "alloc", "arg2", handle="ret"), _cl("clSVMFree", "free", handle="arg1"),
    _cl("clEnqueueWriteBuffer", "copy_h2d", "arg4"), _cl("clEnqueueReadBuffer", "copy_d2h", "arg4"),
    _cl("clEnqueueCopyBuffer", "copy_d2d", "arg5"), _cl("clEnqueueFillBuffer", "other", "arg5"),
    _cl("clEnqueueMapBuffer", "other", "arg5"),
    _cl("clEnqueueNDRangeKernel", "launch"), _cl("clEnqueueTask", "launch"),
    _cl("clFinish", "sync"), _cl("clFlush", "sync"), _cl("clWaitForEvents", "sync"),
    _cl("clEnqueueUnmapMemObject", "other"),
    # the *Rect and image calls take their region as a pointer to size_t[3]: no bytes from one 8-byte read
    _cl("clEnqueueReadBufferRect", "copy_d2h"), _cl("clEnqueueWriteBufferRect", "copy_h2d"),
    _cl("clEnqueueCopyBufferRect", "copy_d2d"), _cl("clEnqueueReadImage", "copy_d2h"),
    _cl("clEnqueueWriteImage", "copy_h2d"),
    _cl("clEnqueueSVMMemcpy", "copy", "arg4", note="SVM pointers: direction unknown"),
    _cl("clEnqueueSVMMap", "other", "arg4"),
    # CUDA runtime (shared libcudart, or linked statically into the executable)
    _cu("cudaMalloc", "alloc", "arg1", out_arg=0, handle="out"),
    _cu("cudaMallocManaged", "alloc", "arg1", out_arg=0, handle="out"),
    _cu("cudaMallocHost", "alloc", "arg1", out_arg=0, handle="out", note="pinned host memory"),
    _cu("cudaFree", "free", handle="arg0"), _cu("cudaFreeHost", "free", handle="arg0"),
    _cu("cudaMemcpy", "copy", "arg2", direction="arg3"), _cu("cudaMemcpyAsync", "copy", "arg2", direction="arg3"),
    _cu("cudaMemset", "other", "arg2"),
    _cu("cudaLaunchKernel", "launch", note="<<<>>> launches reach it through __cudaLaunchKernel"),
    _cu("cudaDeviceSynchronize", "sync"), _cu("cudaStreamSynchronize", "sync"),
    # not the _ptds/_ptsz exports a --default-stream per-thread build calls instead (their own names)
    _cu("cudaLaunchKernelExC", "launch", note="cudaLaunchKernelEx<<<>>> templates reach it"),
    _cu("cudaGraphLaunch", "launch"),
    _cu("cudaMallocAsync", "alloc", "arg1", out_arg=0, handle="out"), _cu("cudaFreeAsync", "free", handle="arg0"),
    # cudaMemcpyDefault (4) reported unknown: the decoder's default resolution reads dst/src from arg0/arg1
    _cu("cudaMemcpy2D", "copy", "arg4 * arg5", direction="where(arg6 == 4, -1, arg6)", note="width (bytes) * height"),
    _cu("cudaMemcpy2DAsync", "copy", "arg4 * arg5", direction="where(arg6 == 4, -1, arg6)"),
    _cu("cudaMemcpy3D", "copy", deref=(0, 152), direction="where((deref & 0xFFFFFFFF) == 4, -1, deref & 0xFFFFFFFF)",
        note="cudaMemcpy3DParms.kind; bytes need extent's three words: none"),
    _cu("cudaMemcpyPeer", "copy_d2d", "arg4"), _cu("cudaMemcpyPeerAsync", "copy_d2d", "arg4"),
    _cu("cudaMemsetAsync", "other", "arg2"),
    _cu("cudaEventRecord", "other"), _cu("cudaEventSynchronize", "sync"),
    _cu("cudaStreamCreate", "other", out_arg=0, handle="out", note="handle: the new stream"),
    _cu("cudaStreamWaitEvent", "other", note="the stream waits on the GPU, not the host"),
    # CUDA driver API (libcuda.so.1, only where a driver is installed)
    _cu("cuMemAlloc_v2", "alloc", "arg1", libs=CUDA_DRV, out_arg=0, handle="out", self_filter=True),
    _cu("cuMemFree_v2", "free", libs=CUDA_DRV, handle="arg0", self_filter=True),
    _cu("cuMemcpyHtoD_v2", "copy_h2d", "arg2", libs=CUDA_DRV, self_filter=True),
    _cu("cuMemcpyDtoH_v2", "copy_d2h", "arg2", libs=CUDA_DRV, self_filter=True),
    _cu("cuMemcpyDtoD_v2", "copy_d2d", "arg2", libs=CUDA_DRV, self_filter=True),
    _cu("cuLaunchKernel", "launch", libs=CUDA_DRV, self_filter=True),
    _cu("cuCtxSynchronize", "sync", libs=CUDA_DRV, self_filter=True),
    _cu("cuLaunchKernelEx", "launch", libs=CUDA_DRV, self_filter=True),
    _cu("cuGraphLaunch", "launch", libs=CUDA_DRV, self_filter=True),
    _cu("cuMemAllocAsync", "alloc", "arg1", libs=CUDA_DRV, out_arg=0, handle="out", self_filter=True),
    _cu("cuMemFreeAsync", "free", libs=CUDA_DRV, handle="arg0", self_filter=True),
    _cu("cuMemAllocManaged", "alloc", "arg1", libs=CUDA_DRV, out_arg=0, handle="out", self_filter=True),
    _cu("cuMemHostAlloc", "alloc", "arg1", libs=CUDA_DRV, self_filter=True,
        note="pinned host memory; no handle, else cudaMemcpyDefault resolution would take it for device memory"),
    _cu("cuMemcpyAsync", "copy", "arg2", libs=CUDA_DRV, direction="4", self_filter=True,
        note="unified addressing (dst arg0, src arg1): direction from the live allocations, as cudaMemcpyDefault"),
    _cu("cuMemcpyHtoDAsync_v2", "copy_h2d", "arg2", libs=CUDA_DRV, self_filter=True),
    _cu("cuMemcpyDtoHAsync_v2", "copy_d2h", "arg2", libs=CUDA_DRV, self_filter=True),
    _cu("cuStreamSynchronize", "sync", libs=CUDA_DRV, self_filter=True),
]

# ebpftoolkit's own markers: ebpftoolkit.mark(name) and `with ebpftoolkit.frame(name):` call these
# do-nothing functions of a tiny library built at first use (probes/gpu/marker.py); the name is recorded
# (str_arg: the label column) and frames="marker" makes them the frame boundaries
MARKER_API, MARKER_SONAME = "marker", "libebpftoolkit_marker.so.1"
MARK, FRAME_BEGIN, FRAME_END = "ebpftoolkit_mark", "ebpftoolkit_frame_begin", "ebpftoolkit_frame_end"
CATEGORIES = CATEGORIES + ("marker",)
CATALOGUE += [CallSpec(MARKER_API, name, "marker", (MARKER_SONAME,), str_arg=0, note=note) for name, note in (
    (MARK, "ebpftoolkit.mark(name)"), (FRAME_BEGIN, "entering `with ebpftoolkit.frame(name):`"),
    (FRAME_END, "leaving `with ebpftoolkit.frame(name):`"))]


EXPRESSION_NAMES = {f"arg{i}" for i in range(9)} | {"deref", "ret", "out"}
_FUNCTIONS = {"gl_bytes": 5, "where": 3}
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Name, ast.Load, ast.Constant, ast.Call,
          ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def check_expression(field: str, expr) -> None:
    """An add_call expression (``size``, ``handle``, ``direction``): integer arithmetic over arg0..arg8,
    deref, ret and out, with gl_bytes(w, h, d, format, type) and where(cond, a, b); ProbeConfigError else."""
    if expr is None:
        return
    if not isinstance(expr, str):
        raise ProbeConfigError(f"{field} must be an expression string such as 'arg2', got {expr!r}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ProbeConfigError(f"{field}={expr!r} is not an expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _NODES) or (isinstance(node, ast.Constant) and not isinstance(node.value, int)):
            raise ProbeConfigError(f"{field}={expr!r}: {type(node).__name__} is not allowed (integers, + - * // "
                                   "% & | << >> and comparisons only)")
        if isinstance(node, ast.Name) and node.id not in EXPRESSION_NAMES | set(_FUNCTIONS):
            raise ProbeConfigError(f"{field}={expr!r}: unknown name {node.id!r}; use arg0..arg8 (the integer "
                                   "arguments in order), deref, ret, out, gl_bytes(...) or where(...)")
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS
                                           or len(node.args) != _FUNCTIONS[node.func.id] or node.keywords):
            raise ProbeConfigError(f"{field}={expr!r}: only gl_bytes(w, h, d, format, type) and where(cond, a, b) "
                                   "can be called")


def add_call(api: str, name: str, *, library: str, category: str, size: str | None = None, **kw) -> CallSpec:
    """Teach GpuTrace a new call (kept for this process; see the module doc for fields)."""
    if not isinstance(api, str) or not api or not isinstance(name, str) or not name:
        raise ProbeConfigError("api and name must be non-empty strings, e.g. add_call('mylib', 'my_upload', ...)")
    if category in OLD_CATEGORIES:
        warnings.warn(f"category {category!r} is now {OLD_CATEGORIES[category]!r} (one vocabulary for every API); "
                      f"recorded as {OLD_CATEGORIES[category]!r}", DeprecationWarning, stacklevel=2)
        category = OLD_CATEGORIES[category]
    if category not in CATEGORIES:
        raise ProbeConfigError(f"category must be one of {', '.join(CATEGORIES)}")
    if any(c.api == api and c.name == name for c in CATALOGUE):
        raise ProbeConfigError(f"{api} {name} is already in the catalogue")
    check_expression("size", size)
    for field in ("handle", "direction"):
        check_expression(field, kw.get(field))
    for field in ("out_arg", "str_arg"):
        if kw.get(field) is not None and (isinstance(kw[field], bool) or kw[field] not in range(6)):
            raise ProbeConfigError(f"{field} must be an argument index 0-5, got {kw[field]!r}")
    spec = CallSpec(api, name, category, (library,), "symbol", size, **kw)
    CATALOGUE.append(spec)
    return spec


def calls_for(apis) -> list[CallSpec]:
    return [c for c in CATALOGUE if c.api in apis]


def with_returns(spec: CallSpec, on: bool) -> CallSpec:
    return replace(spec, ret=on)
