/* ebpftoolkit GpuTrace: uprobes on graphics/compute API entry points.
 *
 * Every attach point runs gpu_entry_any (and gpu_return_any for return
 * probes); the uprobe's BPF cookie is the attach point's index in gpu_points,
 * which user space fills with its description before recording starts.  On
 * kernels without uprobe cookies (before 5.15) ebpftoolkit generates one small
 * wrapper per attach point instead (gpu_e_N / gpu_r_N, see GpuTrace.source).
 *
 * Entry records carry the six integer argument registers, three stack words
 * (arguments 7-9), the caller's return address and one optional 8-byte read
 * through a pointer argument (e.g. VkMemoryAllocateInfo.allocationSize).
 * Return records carry the return value and, for calls that return a handle
 * through a pointer (cudaMalloc, vkAllocateMemory), the value it points to.
 * A call with STR_ARG (a marker's name) also emits a gpu_string record, keyed
 * by its entry record's (ts, tid, point), into a ring of its own: the record
 * every other call makes stays as it is.
 *
 * Calls made by a library to itself (a driver calling its own entry points)
 * are not application calls: when SELF is set, an entry whose return address
 * lies inside the probed library's own code is counted in gpu_internal and
 * dropped.  The library's position in this process is known from the probe's
 * own address: bias = ip - PROBE_VADDR.  So is a call made while the thread is
 * inside another probed call (gpu_outer): a runtime calling another probed API.
 *
 * GPU_FOLLOW (follow.bpf.c): libraries mapped and programs exec'd during the
 * session are reported as they appear, and the process is held until user
 * space has probed them.
 */
struct ebt_regs {
    u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

/* struct gpu_event, struct gpu_point and GPU_ENTRY / GPU_RETURN are generated from their one
 * definition in probes/gpu/probe.py (EVENT, POINT, KINDS). */

BPF_ARRAY(gpu_points, struct gpu_point, GPU_MAX_POINTS);
BPF_HASH(gpu_out_ptr, u64, u64, 10240);      /* (tid << 32 | point) -> out pointer saved at entry */
BPF_HASH(gpu_skip_ret, u64, u8, 10240);     /* (tid << 32 | point): the entry was internal, drop its return */
BPF_PERCPU_ARRAY(gpu_internal, u64, 1);
/* (thread, attach point): pairs a call's entry with its return */
static __always_inline u64 gpu_call_key(u64 id, u32 point)
{
    return ((u64)(u32)id << 32) | point;
}

BPF_HASH(gpu_outer, u32, u64, 10240);       /* tid -> stack pointer at the entry of the API call it is in */

static __always_inline void gpu_count_internal(u64 id, u32 point, int has_ret)
{
    u32 z = 0;
    u64 *n = gpu_internal.lookup(&z);
    if (n)
        (*n)++;
    if (has_ret) {
        u64 key = gpu_call_key(id, point);
        u8 one = 1;
        gpu_skip_ret.update(&key, &one);
    }
}

/* The fields every record has. */
static __always_inline void gpu_event_start(struct gpu_event *e, u64 id, u32 point, u32 kind)
{
    e->ts = bpf_ktime_get_ns();
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->point = point;
    e->kind = kind;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* The NUL-terminated string at p (at most GPU_STRING_BYTES - 1 bytes), for the entry record e. */
static __always_inline void gpu_emit_string(struct ebt_regs *ctx, struct gpu_event *e, u64 p)
{
    struct gpu_string s = {};
    s.ts = e->ts;
    s.tid = e->tid;
    s.point = e->point;
    if (p)
        bpf_probe_read_user_str(s.str, sizeof(s.str), (void *)p);
    gpu_strings_emit(ctx, &s, sizeof(s));
}

static __always_inline int gpu_entry(struct ebt_regs *ctx, u32 point, int deref_arg, u32 deref_off,
                                     int out_arg, int has_ret, int self_filter, u64 probe_vaddr, u64 lib_lo,
                                     u64 lib_hi, u32 stack_adj, u32 remap, int str_arg, struct gpu_point *gp)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!ebt_wanted(id >> 32))
        return 0;
    /* one read for the return address and the three stack arguments above it (each
     * bpf_probe_read_user costs about 150 ns here).  stack_adj: the probe may sit a few
     * instructions into the function, after a `sub $n, %rsp` and pushes (runtime/x86.py). */
    u64 st[4] = {};
    bpf_probe_read_user(st, sizeof(st), (void *)(ctx->sp + stack_adj));
    u64 caller = st[0];
    if (self_filter) {
        u64 c = caller - (ctx->ip - probe_vaddr);
        if (c >= lib_lo && c < lib_hi) {
            gpu_count_internal(id, point, has_ret);
            return 0;
        }
    }
    /* A call made while the thread is inside another probed call (deeper on its stack) is the
     * runtime's own: GLX's swap flushing, cudart calling the driver API.  Only calls with a
     * return probe open such a window; a window whose return was never seen is closed by the
     * next call at or above its stack level. */
    u32 tid = (u32)id;
    u64 *outer = gpu_outer.lookup(&tid);
    u64 entry_sp = ctx->sp + stack_adj;   /* the stack pointer at the function's first instruction */
    if (outer) {
        if (entry_sp < *outer) {
            gpu_count_internal(id, point, has_ret);
            return 0;
        }
        gpu_outer.delete(&tid);
    }
    if (has_ret)
        gpu_outer.update(&tid, &entry_sp);
    struct gpu_event e = {};
    gpu_event_start(&e, id, point, GPU_ENTRY);
    e.caller = caller;
    e.args[0] = ctx->di;
    e.args[1] = ctx->si;
    e.args[2] = ctx->dx;
    e.args[3] = ctx->cx;
    e.args[4] = ctx->r8;
    e.args[5] = ctx->r9;
    e.args[6] = st[1];
    e.args[7] = st[2];
    e.args[8] = st[3];
    if (remap) {
        /* the registers as an array (the verifier allows no variable offsets into the context) */
        if (!gp)
            gp = gpu_points.lookup(&point);
        u64 regs[15] = {ctx->r15, ctx->r14, ctx->r13, ctx->r12, ctx->bp, ctx->bx, ctx->r11, ctx->r10,
                        ctx->r9, ctx->r8, ctx->ax, ctx->cx, ctx->dx, ctx->si, ctx->di};
        if (gp) {
#pragma unroll
            for (int k = 0; k < 6; k++) {
                u32 r = gp->arg_reg[k];
                u64 v = r < 15 ? regs[r] : 0;
                e.args[k] = (gp->narrow >> k) & 1 ? (u32)v : v;
            }
        }
    }
    if (deref_arg >= 0) {
        u64 p = e.args[deref_arg & 7];
        if (p)
            bpf_probe_read_user(&e.deref, sizeof(e.deref), (void *)(p + deref_off));
    }
    if (out_arg >= 0) {
        u64 key = gpu_call_key(id, point);
        u64 p = e.args[out_arg & 7];
        gpu_out_ptr.update(&key, &p);
    }
    if (str_arg >= 0)
        gpu_emit_string(ctx, &e, e.args[str_arg & 7]);
    gpu_events_emit(ctx, &e, sizeof(e));
    return 0;
}

static __always_inline int gpu_return(struct ebt_regs *ctx, u32 point, int has_out)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!ebt_wanted(id >> 32))
        return 0;
    u32 tid = (u32)id;
    u64 *outer = gpu_outer.lookup(&tid);
    if (outer && ctx->sp > *outer)        /* the call that opened the window returns */
        gpu_outer.delete(&tid);
    u64 key = gpu_call_key(id, point);
    if (gpu_skip_ret.lookup(&key)) {
        gpu_skip_ret.delete(&key);
        return 0;
    }
    struct gpu_event e = {};
    gpu_event_start(&e, id, point, GPU_RETURN);
    e.args[0] = ctx->ax;
    if (has_out) {
        u64 *p = gpu_out_ptr.lookup(&key);
        if (p) {
            if (*p)
                bpf_probe_read_user(&e.deref, sizeof(e.deref), (void *)*p);
            gpu_out_ptr.delete(&key);
        }
    }
    gpu_events_emit(ctx, &e, sizeof(e));
    return 0;
}

#if GPU_COOKIES
int gpu_entry_any(struct ebt_regs *ctx)
{
    u32 point = (u32)bpf_get_attach_cookie(ctx);
    struct gpu_point *p = gpu_points.lookup(&point);
    if (!p)
        return 0;
    return gpu_entry(ctx, point, p->deref_arg, p->deref_off, p->out_arg, p->has_ret, p->self_filter,
                     p->probe_vaddr, p->lib_lo, p->lib_hi, p->stack_adj, p->remap, p->str_arg, p);
}

int gpu_return_any(struct ebt_regs *ctx)
{
    u32 point = (u32)bpf_get_attach_cookie(ctx);
    struct gpu_point *p = gpu_points.lookup(&point);
    if (!p)
        return 0;
    return gpu_return(ctx, point, p->out_arg >= 0);
}
#endif
