/* ebpftoolkit GpuTrace: follow what the traced processes load.
 *
 * A file mapped executable (mmap with PROT_EXEC: the dynamic linker mapping a library's
 * code, at start or by dlopen at any time) or a program exec'd by a traced process is
 * reported in gpu_mapped unless user space already knows its inode (gpu_known).  The
 * process is then stopped (SIGSTOP, delivered before it returns to user space, so before
 * it can run a single instruction of the new code) and user space continues it once it
 * has looked at the file and attached its probes: uprobes belong to the inode, so a file
 * probed once is probed in every process that maps it, and is never reported again.
 * The tracing process itself is never stopped (GPU_OWN_PID): it is reported only.  Every exec
 * is reported (held only when the program is new), so that user space can read the new
 * program's mappings: launched CUDA kernels are named from them.
 *
 * struct gpu_mapped and struct gpu_file are generated from probes/gpu/follow.py.
 */
BPF_HASH(gpu_known, struct gpu_file, u8, 65536);
BPF_HASH(gpu_mmap_fd, u32, s32, 10240);     /* tid -> fd of an executable mmap in flight */

/* GPU_SCOPED: the uprobes are in the traced processes only (one set of uprobe_multi links per
 * process, filtered by the kernel to its memory), not in every process that maps the file.  A
 * traced process gets its links before it can call a probed function: it is held when it first
 * maps or execs a probed file (gpu_probed), and a new process whose parent has links is held as
 * it returns from fork, before its first instruction.  gpu_linked: the processes with links. */
#if GPU_SCOPED
BPF_HASH(gpu_probed, struct gpu_file, u8, 65536);
BPF_HASH(gpu_linked, u32, u8, 65536);

static __always_inline int gpu_needs_links(struct gpu_file *k, u32 tgid)
{
    return gpu_probed.lookup(k) != NULL && gpu_linked.lookup(&tgid) == NULL;
}
#else
static __always_inline int gpu_needs_links(struct gpu_file *k, u32 tgid) { return 0; }
#endif

/* (device, inode) of a struct file, from the running kernel's layout (BTF offsets) */
static __always_inline int gpu_file_id(void *file, struct gpu_file *k)
{
    void *inode = 0, *sb = 0;
    u32 dev = 0;
    if (!file)
        return -1;
    EBT_READ(inode, file, FILE_F_INODE);
    if (!inode)
        return -1;
    EBT_READ(k->ino, inode, INODE_I_INO);
    EBT_READ(sb, inode, INODE_I_SB);
    if (sb)
        EBT_READ(dev, sb, SB_S_DEV);
    k->dev = dev;
    return 0;
}

static __always_inline void gpu_report(void *ctx, struct gpu_file *k, int fd, u64 addr, u32 kind, int always)
{
    int known = gpu_known.lookup(k) != NULL;
    u64 id = bpf_get_current_pid_tgid();
    int link = gpu_needs_links(k, id >> 32);
    if (known && !always && !link)
        return;
    struct gpu_mapped e = {};
    e.ts = bpf_ktime_get_ns();
    e.ino = k->ino;
    e.dev = k->dev;
    e.addr = addr;
    e.pid = id >> 32;
    e.tid = (u32)id;
    e.fd = fd;
    e.kind = kind;
    e.stopped = (!known || link) && (id >> 32) != GPU_OWN_PID;
    /* hold the process only if user space will hear of it (else it would stay stopped) */
    if (gpu_mapped_emit(ctx, &e, sizeof(e)) == 0 && e.stopped)
        bpf_send_signal(19);   /* SIGSTOP */
}

TRACEPOINT_PROBE(syscalls, sys_enter_mmap)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!(args->prot & 4) || (int)args->fd < 0 || !ebt_wanted(id >> 32))   /* PROT_EXEC, a file */
        return 0;
    u32 tid = (u32)id;
    s32 fd = (s32)args->fd;
    gpu_mmap_fd.update(&tid, &fd);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_mmap)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    s32 *fdp = gpu_mmap_fd.lookup(&tid);
    if (!fdp)
        return 0;
    s32 fd = *fdp;
    gpu_mmap_fd.delete(&tid);
    if (args->ret < 0 && args->ret > -4096)
        return 0;
    /* current->files->fdt->fd[fd] */
    void *task = (void *)bpf_get_current_task(), *files = 0, *fdt = 0, *fds = 0, *file = 0;
    EBT_READ(files, task, TASK_FILES);
    if (!files)
        return 0;
    EBT_READ(fdt, files, FILES_FDT);
    if (!fdt)
        return 0;
    unsigned int max_fds = 0;
    EBT_READ(max_fds, fdt, FDTABLE_MAX_FDS);
    if ((u32)fd >= max_fds)
        return 0;
    EBT_READ(fds, fdt, FDTABLE_FD);
    if (!fds)
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), fds + (u64)(u32)fd * 8);
    struct gpu_file k = {};
    if (gpu_file_id(file, &k) == 0)
        gpu_report(args, &k, fd, (u64)args->ret, GPU_MAPPED_MMAP, 0);
    return 0;
}

/* raw tracepoint sched_process_exec(task, old_pid, bprm): the program itself (static runtimes) */
int gpu_on_exec(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!ebt_wanted(id >> 32))
        return 0;
    void *bprm = (void *)ctx->args[2], *file = 0;
    EBT_READ(file, bprm, BPRM_FILE);
    struct gpu_file k = {};
    if (gpu_file_id(file, &k) == 0)
        gpu_report(ctx, &k, -1, 0, GPU_MAPPED_EXEC, 1);   /* every exec: user space reads its maps */
    return 0;
}

#if GPU_SCOPED
/* In the child, as it returns from fork/clone/vfork (a new process, not a thread): held if its
 * parent has links, until it has its own (the parent's breakpoints are in its copy of the memory,
 * but the kernel runs the parent's links for the parent's memory only). */
static __always_inline void gpu_fork_return(void *ctx, long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, ptgid = 0;
    if (ret != 0 || (u32)id != tgid || tgid == GPU_OWN_PID || !ebt_wanted(tgid) || gpu_linked.lookup(&tgid))
        return;
    void *task = (void *)bpf_get_current_task(), *parent = 0;
    EBT_READ(parent, task, TASK_REAL_PARENT);
    if (!parent)
        return;
    EBT_READ(ptgid, parent, TASK_TGID);
    if (!gpu_linked.lookup(&ptgid))
        return;
    struct gpu_mapped e = {};
    e.ts = bpf_ktime_get_ns();
    e.pid = tgid;
    e.tid = tgid;
    e.fd = -1;
    e.kind = GPU_MAPPED_FORK;
    e.stopped = 1;
    if (gpu_mapped_emit(ctx, &e, sizeof(e)) == 0)
        bpf_send_signal(19);   /* SIGSTOP */
}

TRACEPOINT_PROBE(syscalls, sys_exit_clone) { gpu_fork_return(args, args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_clone3) { gpu_fork_return(args, args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_fork) { gpu_fork_return(args, args->ret); return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_vfork) { gpu_fork_return(args, args->ret); return 0; }

/* raw tracepoint sched_process_exit: a process that ends has no links any more (its pid may come back) */
int gpu_on_exit(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if ((u32)id == tgid)
        gpu_linked.delete(&tgid);
    return 0;
}
#endif
