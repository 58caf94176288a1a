/* ebpftoolkit: shared definitions for every probe of a session.
 *
 * Kernel structures are read at byte offsets taken from the running kernel's
 * BTF (passed in as -D macros such as TASK_TGID) because the compiler's
 * headers may belong to another kernel version.
 */
/* No kernel headers are included on purpose: every include costs compile
 * time (linux/sched.h alone ~0.4 s), and struct layouts come from BTF. */

#define EBT_READ(dst, base, off) \
    bpf_probe_read_kernel(&(dst), sizeof(dst), (const void *)(base) + (off))

/* Record streams (ring buffers, or perf buffers with EBT_TRANSPORT_PERF) are
 * declared by ebpftoolkit before each probe's code: for a stream NAME it
 * defines the map NAME, a per-CPU counter NAME_lost, and the functions
 * NAME_emit(ctx, ptr, size) (0 when handed over, -1 when counted lost) and NAME_count_lost(), which count every
 * record that could not be handed over. */

/* The traced process tree: tgids whose events are wanted.  Filled by user
 * space (the root pid and its existing descendants) and kept up to date by
 * ebt_track_fork / ebt_track_exit below. */
/* Recording switch: 1 while the session records.  Programs are attached
 * before the session starts and detached one by one at the end; the switch
 * makes both edges clean (no half-recorded frame at stop). */
BPF_ARRAY(ebt_state, u32, 1);

static __always_inline int ebt_recording(void)
{
    u32 z = 0;
    u32 *on = ebt_state.lookup(&z);
    return on && *on;
}

#if EBT_FILTER_TREE
BPF_HASH(ebt_tracked, u32, u8, EBT_TRACK_MAX);
BPF_PERCPU_ARRAY(ebt_tracked_lost, u64, 1);

static __always_inline int ebt_wanted(u32 tgid)
{
    return ebt_recording() && ebt_tracked.lookup(&tgid) != NULL;
}

int ebt_track_fork(struct bpf_raw_tracepoint_args *ctx)
{
    void *parent = (void *)ctx->args[0];
    void *child = (void *)ctx->args[1];
    u32 ptgid = 0, ctgid = 0;
    EBT_READ(ptgid, parent, TASK_TGID);
    EBT_READ(ctgid, child, TASK_TGID);
    if (ptgid == ctgid || !ebt_tracked.lookup(&ptgid))
        return 0;
    u8 one = 1;
    if (ebt_tracked.update(&ctgid, &one)) {
        u32 z = 0;
        u64 *lost = ebt_tracked_lost.lookup(&z);
        if (lost)
            (*lost)++;
    }
    return 0;
}

/* Attached after every probe's own exit handler, so they still see the
 * exiting process as tracked. */
int ebt_track_exit(struct bpf_raw_tracepoint_args *ctx)
{
    if (!ctx->args[1])  /* group_dead: the whole process is gone */
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    ebt_tracked.delete(&tgid);
    return 0;
}
#else
static __always_inline int ebt_wanted(u32 tgid) { return ebt_recording(); }
#endif
