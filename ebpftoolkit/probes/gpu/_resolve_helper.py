"""Run in a separate process: find where API calls land inside drivers.

    python -I -S .../ebpftoolkit/probes/gpu/_resolve_helper.py gl|vulkan NAME...

Prints JSON {name: {"path": ..., "file_offset": ...}} for each name it could
resolve.  GL: creates a surfaceless EGL context and reads the current Mesa
dispatch table (the functions every GL call ends in, whichever stub the program
called), with the libglapi entry stub as fallback.  Vulkan: creates an instance
and a device on the first physical device and asks vkGetDeviceProcAddr, which
returns the driver's (ICD's) own functions.  ctypes only: no third-party imports.
"""
from __future__ import annotations

import ctypes as C
import json
import sys


def _where(addr: int) -> dict | None:
    if not addr:
        return None
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6 or not parts[5].startswith("/"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi:
                return {"path": parts[5], "file_offset": addr - lo + int(parts[2], 16)}
    return None


def resolve_gl(names):
    egl = C.CDLL("libEGL.so.1")
    glapi = C.CDLL("libglapi.so.0")
    egl.eglGetProcAddress.restype = C.c_void_p
    egl.eglGetProcAddress.argtypes = [C.c_char_p]
    get_platform_display = C.CFUNCTYPE(C.c_void_p, C.c_uint, C.c_void_p, C.c_void_p)(
        egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT"))
    dpy = get_platform_display(0x31DD, None, None)          # EGL_PLATFORM_SURFACELESS_MESA
    major, minor = C.c_int(), C.c_int()
    egl.eglInitialize.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p]
    if not dpy or not egl.eglInitialize(C.c_void_p(dpy), C.byref(major), C.byref(minor)):
        raise RuntimeError("no surfaceless EGL display")
    egl.eglBindAPI(0x30A2)                                   # EGL_OPENGL_API
    cfg, n = C.c_void_p(), C.c_int()
    egl.eglGetConfigs.argtypes = [C.c_void_p, C.c_void_p, C.c_int, C.c_void_p]
    egl.eglGetConfigs(C.c_void_p(dpy), C.byref(cfg), 1, C.byref(n))
    egl.eglCreateContext.restype = C.c_void_p
    egl.eglCreateContext.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p]
    ctx = egl.eglCreateContext(C.c_void_p(dpy), cfg, None, None)
    egl.eglMakeCurrent.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p]
    if not ctx or not egl.eglMakeCurrent(C.c_void_p(dpy), None, None, C.c_void_p(ctx)):
        raise RuntimeError("could not make a GL context current")
    glapi._glapi_get_dispatch.restype = C.POINTER(C.c_void_p)
    glapi._glapi_get_proc_offset.argtypes = [C.c_char_p]
    glapi._glapi_get_proc_offset.restype = C.c_int
    glapi._glapi_get_proc_address.argtypes = [C.c_char_p]
    glapi._glapi_get_proc_address.restype = C.c_void_p
    table = glapi._glapi_get_dispatch()
    out = {}
    for name in names:
        slot = glapi._glapi_get_proc_offset(name.encode())
        entry = {"driver": _where(table[slot]) if slot >= 0 else None,
                 "stub": _where(glapi._glapi_get_proc_address(name.encode()))}
        if entry["driver"] or entry["stub"]:
            out[name] = entry
    return out


class _AppInfo(C.Structure):
    _fields_ = [("sType", C.c_int), ("pNext", C.c_void_p), ("pApplicationName", C.c_char_p),
                ("applicationVersion", C.c_uint32), ("pEngineName", C.c_char_p), ("engineVersion", C.c_uint32),
                ("apiVersion", C.c_uint32)]


class _InstanceInfo(C.Structure):
    _fields_ = [("sType", C.c_int), ("pNext", C.c_void_p), ("flags", C.c_uint32), ("pApplicationInfo", C.c_void_p),
                ("enabledLayerCount", C.c_uint32), ("ppEnabledLayerNames", C.c_void_p),
                ("enabledExtensionCount", C.c_uint32), ("ppEnabledExtensionNames", C.c_void_p)]


class _QueueInfo(C.Structure):
    _fields_ = [("sType", C.c_int), ("pNext", C.c_void_p), ("flags", C.c_uint32), ("queueFamilyIndex", C.c_uint32),
                ("queueCount", C.c_uint32), ("pQueuePriorities", C.POINTER(C.c_float))]


class _DeviceInfo(C.Structure):
    _fields_ = [("sType", C.c_int), ("pNext", C.c_void_p), ("flags", C.c_uint32), ("queueCreateInfoCount", C.c_uint32),
                ("pQueueCreateInfos", C.c_void_p), ("enabledLayerCount", C.c_uint32), ("ppEnabledLayerNames", C.c_void_p),
                ("enabledExtensionCount", C.c_uint32), ("ppEnabledExtensionNames", C.c_void_p),
                ("pEnabledFeatures", C.c_void_p)]


def resolve_vulkan(names):
    vk = C.CDLL("libvulkan.so.1")
    # the newest API version the loader has, up to 1.3: with a 1.1 instance vkGetDeviceProcAddr returns
    # NULL for 1.2/1.3 core functions (vkCmdBeginRendering, vkCmdPipelineBarrier2, vkQueueSubmit2...)
    loader = C.c_uint32(1 << 22)
    if hasattr(vk, "vkEnumerateInstanceVersion"):
        vk.vkEnumerateInstanceVersion(C.byref(loader))
    version = min(loader.value & ~0xFFF, (1 << 22) | (3 << 12))
    app = _AppInfo(0, None, b"ebpftoolkit-resolve", 1, None, 0, version)
    inst_info = _InstanceInfo(1, None, 0, C.addressof(app), 0, None, 0, None)
    inst = C.c_void_p()
    if vk.vkCreateInstance(C.byref(inst_info), None, C.byref(inst)) != 0:
        raise RuntimeError("vkCreateInstance failed")
    count = C.c_uint32()
    vk.vkEnumeratePhysicalDevices(inst, C.byref(count), None)
    if not count.value:
        raise RuntimeError("no Vulkan physical device")
    phys = (C.c_void_p * count.value)()
    vk.vkEnumeratePhysicalDevices(inst, C.byref(count), phys)
    prio = C.c_float(1.0)
    q = _QueueInfo(2, None, 0, 0, 1, C.pointer(prio))
    dev = C.c_void_p()
    # with VK_KHR_swapchain where the driver has it, so the present/acquire entry points resolve too
    for exts in ([b"VK_KHR_swapchain"], []):
        ext_names = (C.c_char_p * max(len(exts), 1))(*exts)
        dev_info = _DeviceInfo(3, None, 0, 1, C.addressof(q), 0, None, len(exts), C.cast(ext_names, C.c_void_p) if exts else None, None)
        if vk.vkCreateDevice(C.c_void_p(phys[0]), C.byref(dev_info), None, C.byref(dev)) == 0:
            break
    else:
        raise RuntimeError("vkCreateDevice failed")
    vk.vkGetDeviceProcAddr.restype = C.c_void_p
    vk.vkGetDeviceProcAddr.argtypes = [C.c_void_p, C.c_char_p]
    out = {}
    for name in names:
        where = _where(vk.vkGetDeviceProcAddr(dev, name.encode()))
        if where:
            out[name] = {"driver": where}
    vk.vkDestroyDevice(dev, None)
    vk.vkDestroyInstance(inst, None)
    return out


def main(argv):
    api, names = argv[0], argv[1:]
    try:
        result = {"gl": resolve_gl, "vulkan": resolve_vulkan}[api](names)
        print(json.dumps({"ok": True, "result": result}))
    except Exception as exc:  # reported to the parent, which falls back and says why
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))


if __name__ == "__main__":
    main(sys.argv[1:])
