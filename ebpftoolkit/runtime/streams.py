"""Record streams: what a probe hands to user space, and the BPF C that declares it.

A :class:`StreamSpec` names a ring buffer (or perf buffer) and the numpy dtype of its
records; :func:`stream_declaration` writes the map, its per-CPU lost counter and the
``NAME_emit(ctx, ptr, size)`` function the probe's C calls (each template below is
one way of handing records over).  Kernel-batched streams are unpacked by
:func:`unbatch`.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

__all__ = ["StreamSpec", "stream_declaration", "batch_wakeup", "unbatch", "BATCH_WAKEUP"]


@dataclass(frozen=True)
class StreamSpec:
    """A record stream: a ring buffer ``name`` and its lost counter ``name_lost``.

    ``wakeup``: ``"each"`` lets the kernel wake the reader when the ring was
    empty (fine for rare events); ``"batch"`` never wakes it except every
    ``BATCH_WAKEUP`` records per CPU, and the collector polls on its interval:
    at millions of events per second the wake-ups are what costs.
    """

    name: str
    dtype: np.dtype
    pages: int = 64
    wakeup: str = "each"
    c_type: str | None = None   # the C record type, checked against dtype's size at load
    kernel_batch: int = 0       # >0: gather this many records per CPU in the kernel, hand them over as one

    @property
    def wire_dtype(self) -> np.dtype:
        """What one ring-buffer record holds: a record, or a batch of them."""
        if not self.kernel_batch:
            return self.dtype
        body = self.dtype.itemsize * self.kernel_batch      # struct NAME_batch_t: u32 n, u32 _pad, char recs[]
        return np.dtype({"names": ["n", "_pad", "recs"], "formats": ["<u4", "<u4", (self.dtype, (self.kernel_batch,))],
                         "offsets": [0, 4, 8], "itemsize": 8 + (body + 3) // 4 * 4})   # padded to its u32 alignment


BATCH_WAKEUP = 8192  # power of two


# Every stream's per-CPU lost counter and the function that bumps it (a template part).
_LOST_DECL = """BPF_PERCPU_ARRAY({n}_lost, u64, 1);
static __always_inline void {n}_count_lost(void)
{{
    u32 z = 0;
    u64 *lost = {n}_lost.lookup(&z);
    if (lost)
        (*lost)++;
}}
"""

_RINGBUF_DECL = """BPF_RINGBUF_OUTPUT({n}, {pages});
{lost_decl}static __always_inline int {n}_emit(void *ctx, void *data, u64 size)
{{
    if ({n}.ringbuf_output(data, size, {n}_wakeup_flags())) {{
        {n}_count_lost();
        return -1;
    }}
    return 0;
}}
"""

_BATCH_WAKEUP_DECL = """BPF_PERCPU_ARRAY({n}_seq, u64, 1);
/* No wake-up per record: only every {every} records per CPU (BPF_RB_FORCE_WAKEUP);
 * the collector polls on its interval. */
static __always_inline u64 {n}_wakeup_flags(void)
{{
    u32 z = 0;
    u64 *seq = {n}_seq.lookup(&z);
    if (seq && ((++*seq) & ({every} - 1)) == 0)
        return 2;  /* BPF_RB_FORCE_WAKEUP */
    return 1;      /* BPF_RB_NO_WAKEUP */
}}
"""

_EACH_WAKEUP_DECL = """static __always_inline u64 {n}_wakeup_flags(void) {{ return 0; }}
"""

_PERF_DECL = """BPF_PERF_OUTPUT({n});
{lost_decl}static __always_inline int {n}_emit(void *ctx, void *data, u64 size)
{{
    if ({n}.perf_submit(ctx, data, size)) {{
        {n}_count_lost();
        return -1;
    }}
    return 0;
}}
"""


_KERNEL_BATCH_DECL = """BPF_RINGBUF_OUTPUT({n}, {pages});
{lost_decl}/* Records are gathered {b} at a time per CPU and handed over as one ring-buffer
 * record: one reservation and one commit for {b} events.  A partial batch is
 * read by user space from {n}_batch after the programs are detached. */
struct {n}_batch_t {{
    u32 n;
    u32 _pad;
    char recs[{b} * {size}];
}};
BPF_PERCPU_ARRAY({n}_batch, struct {n}_batch_t, 1);
static __always_inline int {n}_emit(void *ctx, void *data, u64 size)
{{
    u32 z = 0;
    struct {n}_batch_t *b = {n}_batch.lookup(&z);
    if (!b) {{
        {n}_count_lost();
        return -1;
    }}
    u32 i = b->n;
    if (i >= {b})
        i = 0;
    __builtin_memcpy(&b->recs[i * {size}], data, {size});
    i++;
    if (i == {b}) {{
        b->n = {b};
        if ({n}.ringbuf_output(b, sizeof(*b), {n}_wakeup_flags())) {{
            u64 *lost = {n}_lost.lookup(&z);
            if (lost)
                *lost += {b};
        }}
        i = 0;
    }}
    b->n = i;
    return 0;      /* a full batch that could not be handed over is counted lost */
}}
"""


def stream_declaration(spec: "StreamSpec", transport: str = "ringbuf") -> str:
    """BPF C declaring a stream's map, its lost counter and its emit function."""
    text = _BATCH_WAKEUP_DECL if spec.wakeup == "batch" and transport == "ringbuf" else _EACH_WAKEUP_DECL
    if transport != "ringbuf":
        text += _PERF_DECL
    elif spec.kernel_batch:
        text += _KERNEL_BATCH_DECL
    else:
        text += _RINGBUF_DECL
    text = text.replace("{lost_decl}", _LOST_DECL)
    return text.format(n=spec.name, pages=spec.pages, every=batch_wakeup(spec), b=spec.kernel_batch,
                       size=spec.dtype.itemsize)


def batch_wakeup(spec: "StreamSpec") -> int:
    """Records per CPU between forced wake-ups: BATCH_WAKEUP, or less so that a
    small ring is drained at a quarter full."""
    capacity = spec.pages * mmap.PAGESIZE // ((8 + spec.wire_dtype.itemsize + 7) & ~7)
    every = BATCH_WAKEUP
    while every > 1 and every > capacity // 4:
        every //= 2
    return every


def unbatch(batches: np.ndarray, spec: StreamSpec, partial: bool = False) -> np.ndarray:
    """Records out of kernel batches: each full batch holds kernel_batch records, a partial one n."""
    if not len(batches):
        return np.empty(0, spec.dtype)
    n = batches["n"].astype(np.int64)
    if not partial and (n == spec.kernel_batch).all():
        return batches["recs"].reshape(-1).copy()
    keep = np.arange(spec.kernel_batch)[None, :] < np.minimum(n, spec.kernel_batch)[:, None]
    return batches["recs"][keep].copy()
