"""GpuTrace records -> one row per API call (entries paired with their returns)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...analysis.gpu import assign_frames
from ...runtime.records import text_column
from .strings import labels

__all__ = ["calls_table", "GPU_COLUMNS", "gl_bytes", "MEMCPY_KIND"]

GPU_COLUMNS = ["ts", "pid", "tid", "comm", "api", "call", "category", "bytes", "direction", "handle",
               "duration_ns", "retval", "frame", "caller", "library", "mechanism", "kernel", "stream", "label"]

#: the argument holding the stream of an asynchronous CUDA call (x86-64: a dim3 takes two registers,
#: so cudaLaunchKernel's stream is its 8th integer argument; arguments 7-9 are read from the stack)
STREAM_ARG = {"cudaLaunchKernel": 7, "cudaMemcpyAsync": 4, "cudaMemsetAsync": 3, "cudaMallocAsync": 2,
              "cudaFreeAsync": 1, "cudaEventRecord": 1, "cudaStreamWaitEvent": 0, "cudaStreamSynchronize": 0,
              "cudaGraphLaunch": 1, "cuLaunchKernel": 8, "cuMemcpyAsync": 3, "cuMemcpyHtoDAsync_v2": 3,
              "cuMemcpyDtoHAsync_v2": 3, "cuStreamSynchronize": 0, "cuGraphLaunch": 1, "cudaMemcpy2DAsync": 7,
              "cudaMemcpyPeerAsync": 5, "cuMemAllocAsync": 2, "cuMemFreeAsync": 1}
#: the argument holding the host function a launch names (its symbol is the kernel's name)
KERNEL_ARG = {"cudaLaunchKernel": 0, "cudaLaunchKernelExC": 1}
#: launches of a graph: named by their graph handle
GRAPH_ARG = {"cudaGraphLaunch": 0, "cuGraphLaunch": 0}

MEMCPY_KIND = {0: "h2h", 1: "h2d", 2: "d2h", 3: "d2d", 4: "default"}

# GL pixel formats -> components, types -> bytes per component (packed types: bytes per pixel)
_GL_COMPONENTS = {0x1903: 1, 0x1906: 1, 0x1909: 1, 0x1902: 1, 0x1901: 1, 0x8D94: 1, 0x8227: 2, 0x190A: 2,
                  0x8228: 2, 0x1907: 3, 0x80E0: 3, 0x8D98: 3, 0x1908: 4, 0x80E1: 4, 0x8D99: 4, 0x84F9: 1}
_GL_TYPE_BYTES = {0x1400: 1, 0x1401: 1, 0x1402: 2, 0x1403: 2, 0x1404: 4, 0x1405: 4, 0x1406: 4, 0x140B: 2}
_GL_PACKED = {0x8035: 4, 0x8367: 4, 0x8363: 2, 0x8364: 2, 0x8033: 2, 0x8365: 2, 0x8034: 2, 0x8366: 2,
              0x8368: 4, 0x8036: 4, 0x84FA: 4, 0x8C3B: 4, 0x8C3E: 4, 0x8DAD: 8}


def gl_bytes(w, h, d, fmt, typ):
    """Bytes of a w x h x d image of GL ``fmt``/``typ``; -1 (unknown) for formats not in the tables."""
    w, h, d = (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF for x in (w, h, d))
    fmt, typ = (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF for x in (fmt, typ))
    comp = np.array([_GL_COMPONENTS.get(int(f), -1) for f in np.atleast_1d(fmt)], dtype=np.int64)
    size = np.array([_GL_PACKED.get(int(t), 0) or _GL_TYPE_BYTES.get(int(t), -1) for t in np.atleast_1d(typ)],
                    dtype=np.int64)
    packed = np.array([int(t) in _GL_PACKED for t in np.atleast_1d(typ)])
    bpp = np.where(packed, size, comp * size)
    ok = (comp > 0) & (size > 0)
    return np.where(ok, w * h * np.maximum(d, 1) * bpp, -1)


def _eval(expr: str, cols: dict) -> np.ndarray:
    ns = dict(cols, gl_bytes=gl_bytes, where=np.where)
    return np.asarray(eval(expr, {"__builtins__": {}}, ns), dtype=np.int64)  # catalogue expressions only


def calls_table(r: np.ndarray, points, clock, comm, kernel_name=None, strings=None,
                frames="swap/present") -> pd.DataFrame:
    """One row per call.  ``kernel_name(pid, address)``: the function at a host address of a
    process (the kernel a cudaLaunchKernel names), or None when unknown.  ``strings``: the
    gpu_strings records (the ``label`` column); ``frames``: what ends a frame (GpuConfig.frames)."""
    if len(r) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_DTYPES.items()})[GPU_COLUMNS]
    order = np.argsort(r["ts"], kind="stable")
    r, comm = r[order], np.asarray(comm, dtype=object)[order]
    is_ret = r["kind"] == 1
    e, ecomm, ret = r[~is_ret], comm[~is_ret], r[is_ret]
    df = pd.DataFrame({"_ts": e["ts"].astype(np.int64), "pid": e["pid"].astype(np.int64),
                       "tid": e["tid"].astype(np.int64), "comm": text_column(ecomm), "_point": e["point"].astype(np.int64),
                       "caller": e["caller"].astype(np.int64)})
    args = e["args"].astype(np.int64)
    # pair the k-th return of (tid, point) with its k-th entry
    df["_k"] = df.groupby(["tid", "_point"]).cumcount()
    rd = pd.DataFrame({"tid": ret["tid"].astype(np.int64), "_point": ret["point"].astype(np.int64),
                       "_rts": ret["ts"].astype(np.int64), "_rax": ret["args"][:, 0].astype(np.int64),
                       "_out": ret["deref"].astype(np.int64)})
    rd["_k"] = rd.groupby(["tid", "_point"]).cumcount()
    df = df.merge(rd, on=["tid", "_point", "_k"], how="left")
    n = len(df)
    api, call, cat, lib, mech = (np.empty(n, dtype=object) for _ in range(5))
    size = np.full(n, -1, dtype=np.int64)
    handle = np.full(n, -1, dtype=np.int64)
    kind = np.full(n, -1, dtype=np.int64)
    retval_ok = np.zeros(n, dtype=bool)
    stream = np.full(n, -1, dtype=np.int64)
    kernel = np.full(n, None, dtype=object)
    pids = df["pid"].to_numpy()
    for i, p in enumerate(points):
        m = (df["_point"] == i).to_numpy()
        if not m.any():
            continue
        s = p.spec
        api[m], call[m], cat[m], lib[m], mech[m] = s.api, s.name, s.category, p.path, p.mechanism
        cols = {f"arg{j}": args[m, j] for j in range(9)}
        cols.update(deref=e["deref"].astype(np.int64)[m], ret=df["_rax"].to_numpy()[m], out=df["_out"].to_numpy()[m])
        if s.size:
            size[m] = _eval(s.size, cols)
        if s.handle:
            handle[m] = _eval(s.handle, {k: np.nan_to_num(v, nan=-1).astype(np.int64) for k, v in cols.items()})
        if s.direction:
            kind[m] = _eval(s.direction, cols)
        retval_ok[m] = s.handle != "ret" and (s.api != "opengl" or s.name == "eglSwapBuffers")
        if s.api == "cuda" and s.name in STREAM_ARG:
            stream[m] = args[m, STREAM_ARG[s.name]]
        if s.category == "launch":
            if s.name in GRAPH_ARG:
                kernel[m] = [f"graph {a & 0xFFFFFFFFFFFFFFFF:#x}" for a in args[m, GRAPH_ARG[s.name]]]
            elif s.name in KERNEL_ARG and kernel_name is not None:
                names = {}                   # (pid, host function) -> name, looked up once each
                for j in np.flatnonzero(m):
                    key = (int(pids[j]), int(args[j, KERNEL_ARG[s.name]]))
                    if key not in names:
                        names[key] = kernel_name(*key) or "unknown"
                    kernel[j] = names[key]
            else:                            # driver-API launches, other APIs: never a guess
                kernel[m] = "unknown"
    has_ret = df["_rts"].notna().to_numpy()
    rax = df["_rax"].fillna(0).to_numpy(np.int64)
    out = pd.DataFrame({
        "ts": clock.to_wall(df["_ts"].to_numpy()),
        "pid": df["pid"], "tid": df["tid"], "comm": text_column(df["comm"]), "api": text_column(api),
        "call": text_column(call), "category": text_column(cat),
        "bytes": pd.array(np.where(size >= 0, size, 0), dtype="Int64"),
        "handle": pd.array(handle, dtype="Int64"),
        "duration_ns": pd.array((df["_rts"] - df["_ts"]).to_numpy(), dtype="Int64"),
        "retval": pd.array(rax.astype(np.int32).astype(np.int64), dtype="Int64"),
        "caller": df["caller"], "library": text_column(lib), "mechanism": text_column(mech),
        "kernel": text_column(kernel), "stream": pd.array(stream, dtype="Int64"),
        "label": text_column(labels(df["_ts"].to_numpy(), df["tid"].to_numpy(), df["_point"].to_numpy(), strings)),
    })
    out.loc[stream < 0, "stream"] = pd.NA
    out.loc[size < 0, "bytes"] = pd.NA
    out.loc[handle < 0, "handle"] = pd.NA
    out.loc[~(has_ret & retval_ok), "retval"] = pd.NA
    out.loc[~has_ret, "duration_ns"] = pd.NA
    out["direction"] = _directions(out, kind, args)
    resolved = (out["category"] == "copy") & out["direction"].isin(["h2d", "d2h", "d2d"])
    out.loc[resolved, "category"] = "copy_" + out.loc[resolved, "direction"]
    out["frame"] = assign_frames(out, frames)
    return out[GPU_COLUMNS]


def _directions(df: pd.DataFrame, kind: np.ndarray, args: np.ndarray) -> pd.Series:
    cat = df["category"].to_numpy(dtype=object)
    d = np.full(len(df), None, dtype=object)
    for c, name in (("copy_h2d", "h2d"), ("copy_d2h", "d2h"), ("copy_d2d", "d2d")):
        d[cat == c] = name
    copy = cat == "copy"
    d[copy] = [MEMCPY_KIND.get(int(k), "unknown") for k in kind[copy]]
    default = np.flatnonzero(copy & (d == "default"))
    if len(default):
        d[default] = _resolve_default(df, default, args)
    return pd.Series(d, index=df.index, dtype=object)


def _resolve_default(df: pd.DataFrame, rows, args: np.ndarray) -> list[str]:
    """cudaMemcpyDefault (and the like): decide h2d/d2h/d2d from the device allocations
    live in that process at the time (successful cudaMalloc*/cuMemAlloc calls not yet
    freed); 'unknown' when a pointer is in none of them and the process made no
    successful allocation to compare with.  Never guessed."""
    alloc = df[(df["api"] == "cuda") & (df["category"] == "alloc") & df["handle"].notna() & (df["retval"] == 0)
               & ~df["call"].isin(["cudaMallocHost"])]
    frees = df[(df["api"] == "cuda") & (df["category"] == "free") & df["handle"].notna()]
    out = []
    for i in rows:
        pid, ts = df["pid"].iat[i], df["ts"].iat[i]
        live = alloc[(alloc["pid"] == pid) & (alloc["ts"] < ts)]
        if live.empty:
            out.append("unknown")
            continue
        freed = frees[(frees["pid"] == pid) & (frees["ts"] < ts)]["handle"]
        live = live[~live["handle"].isin(set(freed))]
        lo = live["handle"].to_numpy(np.int64)
        hi = lo + live["bytes"].fillna(0).to_numpy(np.int64)
        dst_dev, src_dev = (bool(((lo <= p) & (p < hi)).any()) for p in (args[i, 0], args[i, 1]))
        out.append({(False, True): "h2d", (True, False): "d2h", (True, True): "d2d", (False, False): "h2h"}
                   [(src_dev, dst_dev)])
    return out


_EMPTY_DTYPES = {"ts": "datetime64[ns]", "pid": "int64", "tid": "int64", "comm": object, "api": object,
                 "call": object, "category": object, "bytes": "Int64", "direction": object, "handle": "Int64",
                 "duration_ns": "Int64", "retval": "Int64", "frame": "Int64", "caller": "int64",
                 "library": object, "mechanism": object, "kernel": object, "stream": "Int64", "label": object}
