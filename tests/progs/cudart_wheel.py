"""A program as PyTorch, JAX or CuPy are: it loads the CUDA runtime from a file of its own
(a pip wheel's libcudart.so.12, by path: no linker cache, no LD_LIBRARY_PATH), whenever it
likes (dlopen after --delay seconds), and calls it at once.  Prints what it called, as JSON.

usage: cudart_wheel.py LIBCUDART [--delay S] [--wait S] [--mallocs N]
(--wait: seconds between loading the library and the first call, to be attached to while running)
"""
import argparse
import ctypes
import json
import time

ap = argparse.ArgumentParser()
ap.add_argument("lib")
ap.add_argument("--delay", type=float, default=0.0)
ap.add_argument("--wait", type=float, default=0.0)
ap.add_argument("--mallocs", type=int, default=5)
a = ap.parse_args()
time.sleep(a.delay)
rt = ctypes.CDLL(a.lib)
if a.wait:
    print("loaded", flush=True)
    time.sleep(a.wait)
ptr = ctypes.c_void_p()
calls = {"cudaMalloc": 0, "cudaFree": 0, "cudaGetDeviceCount": 0}
rcs = []
for i in range(a.mallocs):            # the first call comes right after dlopen returns
    rcs.append(rt.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(4096 * (i + 1))))
    calls["cudaMalloc"] += 1
    rt.cudaFree(ptr)
    calls["cudaFree"] += 1
n = ctypes.c_int()
rt.cudaGetDeviceCount(ctypes.byref(n))
calls["cudaGetDeviceCount"] += 1
print(json.dumps({"calls": calls, "malloc_rc": rcs, "bytes": sum(4096 * (i + 1) for i in range(a.mallocs))}))
