/* ebpftoolkit ExecSnoop: every execve/execveat, with argv, return code, and
 * every process fork and exit (exit code, lifetime).  Tracepoints only: no
 * kprobes.  Configured by macros (see ExecSnoop.source for the values):
 *   EXEC_MAX_ARGS, EXEC_ARG_LEN, EXEC_FNAME_LEN, EXEC_FAILED_ONLY, EXEC_UID (-1: any)
 */
/* struct exec_event, struct task_event and the EXEC_F_* / TASK_EV_* values are generated
 * from their one definition in probes/execsnoop/probe.py (EXEC_EVENT, TASK_EVENT, FLAGS). */

BPF_F_TABLE("hash", u32, struct exec_event, exec_pending, 1024, BPF_F_NO_PREALLOC);
BPF_ARRAY(exec_zero, struct exec_event, 1);

static __always_inline u32 exec_ppid(void)
{
    void *task = (void *)bpf_get_current_task();
    void *parent = NULL;
    u32 ppid = 0;
    EBT_READ(parent, task, TASK_REAL_PARENT);
    if (parent)
        EBT_READ(ppid, parent, TASK_TGID);
    return ppid;
}

/* A zeroed pending exec for thread `key` (ts, uid and ppid filled), or NULL when the process
 * is filtered out or the pending map is full (counted as lost). */
static __always_inline struct exec_event *exec_new_pending(u32 key, u32 tgid, u32 uid)
{
    if (!ebt_wanted(tgid))
        return NULL;
    if (EXEC_UID >= 0 && uid != (u32)EXEC_UID)
        return NULL;
    u32 zero = 0;
    struct exec_event *z = exec_zero.lookup(&zero);
    if (!z || exec_pending.update(&key, z)) {
        exec_events_count_lost();
        return NULL;
    }
    struct exec_event *e = exec_pending.lookup(&key);
    if (e) {
        e->ts = bpf_ktime_get_ns();
        e->uid = uid;
        e->ppid = exec_ppid();
    }
    return e;
}

static __always_inline int exec_enter(const char *filename, const char *const *argv)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    struct exec_event *e = exec_new_pending(tid, tgid, (u32)bpf_get_current_uid_gid());
    if (!e)
        return 0;
    e->pid = tgid;
    e->tid = tid;
    e->old_tid = tid;
    int n = bpf_probe_read_user_str(e->filename, sizeof(e->filename), filename);
    if (n < 0)
        e->flags |= EXEC_F_READ_ERROR;
    else if (n == sizeof(e->filename)) {
        char c = 0;
        bpf_probe_read_user(&c, 1, filename + sizeof(e->filename) - 1);
        if (c)
            e->flags |= EXEC_F_FNAME_TRUNC;
    }
/* A bounded loop the verifier walks (kernel 5.3+), not unrolled: unrolling it in
 * both exec tracepoints was a third of this probe's compile time. */
#if EXEC_UNROLL
#pragma unroll
#else
#pragma clang loop unroll(disable)
#endif
    for (int i = 0; i < EXEC_MAX_ARGS; i++) {
        const char *argp = NULL;
        if (bpf_probe_read_user(&argp, sizeof(argp), &argv[i])) {
            e->flags |= EXEC_F_READ_ERROR;
            return 0;
        }
        if (!argp)
            return 0;
        n = bpf_probe_read_user_str(&e->args[i * EXEC_ARG_LEN], EXEC_ARG_LEN, argp);
        if (n < 0) {
            e->flags |= EXEC_F_READ_ERROR;
        } else if (n == EXEC_ARG_LEN) {
            char c = 0;
            bpf_probe_read_user(&c, 1, argp + EXEC_ARG_LEN - 1);
            if (c)
                e->flags |= EXEC_F_ARG_TRUNC;
        }
        e->argc = i + 1;
    }
    const char *more = NULL;
    bpf_probe_read_user(&more, sizeof(more), &argv[EXEC_MAX_ARGS]);
    if (more)
        e->flags |= EXEC_F_ARGV_TRUNC;
    return 0;
}

/* The exec failed: the syscall returns to the old program. (A successful
 * exec was already reported and removed by sched_process_exec.) */
static __always_inline int exec_exit(void *ctx, long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct exec_event *e = exec_pending.lookup(&tid);
    if (!e)
        return 0;
    e->retval = ret;
    e->ts_done = bpf_ktime_get_ns();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    if (!EXEC_FAILED_ONLY || ret != 0)
        exec_events_emit(ctx, e, sizeof(*e));
    exec_pending.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return exec_enter(args->filename, args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return exec_enter(args->filename, args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    return exec_exit(args, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    return exec_exit(args, args->ret);
}

/* The exec succeeded.  A non-leader thread that execs takes over the
 * leader's pid, so the pending entry is found by the old thread id. */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 old = args->old_pid;
    struct exec_event *e = exec_pending.lookup(&old);
    if (!e) {
        /* No syscall entry was recorded: either the kernel started this
         * exec, or the entry was filtered out (apply the same filters). */
        e = exec_new_pending(old, bpf_get_current_pid_tgid() >> 32, (u32)bpf_get_current_uid_gid());
        if (!e)
            return 0;
        e->flags = EXEC_F_NO_ENTRY;
        unsigned short loc = args->data_loc_filename & 0xFFFF;
        bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)args + loc);
    }
    e->pid = args->pid;
    e->tid = args->pid;
    e->old_tid = old;
    e->retval = 0;
    e->ts_done = bpf_ktime_get_ns();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    if (!EXEC_FAILED_ONLY)
        exec_events_emit(args, e, sizeof(*e));
    exec_pending.delete(&old);
    return 0;
}

int exec_on_fork(struct bpf_raw_tracepoint_args *ctx)
{
    void *parent = (void *)ctx->args[0];
    void *child = (void *)ctx->args[1];
    u32 ptgid = 0;
    EBT_READ(ptgid, parent, TASK_TGID);
    struct task_event ev = {};
    EBT_READ(ev.pid, child, TASK_TGID);
    if (ev.pid == ptgid || !ebt_wanted(ptgid))
        return 0;                    /* a new thread, or outside the traced tree */
    if (EXEC_UID >= 0 && (u32)bpf_get_current_uid_gid() != (u32)EXEC_UID)
        return 0;
    ev.ts = bpf_ktime_get_ns();
    ev.type = TASK_EV_FORK;
    ev.tid = (u32)bpf_get_current_pid_tgid();
    ev.ppid = ptgid;
    ev.uid = (u32)bpf_get_current_uid_gid();
    EBT_READ(ev.start_ns, child, TASK_START_TIME);
    bpf_get_current_comm(ev.comm, sizeof(ev.comm));
    exec_tasks_emit(ctx, &ev, sizeof(ev));
    return 0;
}

int exec_on_exit(struct bpf_raw_tracepoint_args *ctx)
{
    if (!ctx->args[1])  /* not the last thread: the process lives on */
        return 0;
    void *task = (void *)ctx->args[0];
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!ebt_wanted(tgid))
        return 0;
    if (EXEC_UID >= 0 && (u32)bpf_get_current_uid_gid() != (u32)EXEC_UID)
        return 0;
    struct task_event ev = {};
    void *leader = NULL;
    ev.ts = bpf_ktime_get_ns();
    ev.type = TASK_EV_EXIT;
    ev.pid = tgid;
    ev.tid = (u32)id;
    ev.ppid = exec_ppid();
    ev.uid = (u32)bpf_get_current_uid_gid();
    EBT_READ(ev.exit_code, task, TASK_EXIT_CODE);
    EBT_READ(leader, task, TASK_GROUP_LEADER);
    if (leader)
        EBT_READ(ev.start_ns, leader, TASK_START_TIME);
    bpf_get_current_comm(ev.comm, sizeof(ev.comm));
    exec_tasks_emit(ctx, &ev, sizeof(ev));
    return 0;
}
