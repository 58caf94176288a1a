/* ebpftoolkit PmuSampler: one record per sample of a perf event, with the user stack.
 *
 * User space opens the event (PMU_SAMPLE_EVENT) in sampling mode on every CPU
 * (pid -1, sample_period = the period) with pmu_on_sample attached: it runs at
 * every period-th occurrence of the event on that CPU, in the context of the
 * task that caused it.  Tasks of untracked processes (ebt_wanted) and the idle
 * task are skipped.
 *
 * The record holds the user instruction pointer and, with bpf_get_stack and
 * BPF_F_USER_STACK, the user stack (frame pointers; innermost first, at most
 * PMU_SAMPLE_DEPTH frames).  When the sample interrupted kernel code (a
 * system call, a page fault), the registers are the kernel's: the user IP is
 * then where the thread entered the kernel, the user stack's first frame.
 * Symbols are resolved in user space from /proc/PID/maps and the ELF files.
 *
 * pmu_on_sample_exec and pmu_on_sample_exit count each process's execs and
 * its exit (pmu_sample_gen); every record carries the count, so user space
 * never symbolizes a sample with the memory map of the program the process
 * ran before or after, or of an earlier process with the same pid.
 *
 * Defined before this file: PMU_SAMPLE_DEPTH, PMU_SAMPLE_ARM64 (0 or 1) and
 * the stream pmu_sample_recs (pmu_sample_recs_emit).
 */

/* The perf-event context (struct bpf_perf_event_data) starts with the
 * interrupted registers (bpf_user_pt_regs_t); its user ABI layout, so that
 * no kernel header is needed. */
#if PMU_SAMPLE_ARM64
struct pmu_sample_ctx {
    u64 regs[31], sp, pc, pstate;
};
#define PMU_SAMPLE_IP(c) ((c)->pc)
#define PMU_SAMPLE_USER(c) (((c)->pstate & 0xf) == 0)   /* PSR_MODE_EL0t */
#else
struct pmu_sample_ctx {
    u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#define PMU_SAMPLE_IP(c) ((c)->ip)
#define PMU_SAMPLE_USER(c) (((c)->cs & 3) == 3)          /* ring 3 */
#endif

/* struct pmu_sample is generated from probes/pmu/sampler.py (SAMPLE layout). */

BPF_PERCPU_ARRAY(pmu_sample_scratch, struct pmu_sample, 1);
/* tgid -> generation: execs and exits seen since recording began (absent: 0).
 * An exec replaces the memory map: user space reads /proc/PID/maps for a
 * (pid, gen) only while the process is still in that generation.  The exit
 * of a process bumps it too, so that a later process reusing the pid never
 * shares a generation with it. */
BPF_TABLE("lru_hash", u32, u32, pmu_sample_gen, 16384);

static __always_inline void pmu_sample_bump(u32 tgid)
{
    u32 one = 1;
    u32 *gen = pmu_sample_gen.lookup(&tgid);
    if (gen)
        __sync_fetch_and_add(gen, 1);
    else
        pmu_sample_gen.update(&tgid, &one);
}

/* raw tracepoint sched_process_exec: current has its new memory map */
int pmu_on_sample_exec(struct bpf_raw_tracepoint_args *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (ebt_wanted(tgid))
        pmu_sample_bump(tgid);
    return 0;
}

/* raw tracepoint sched_process_exit (task, group_dead): attached before
 * ebt_track_exit, so the process is still tracked */
int pmu_on_sample_exit(struct bpf_raw_tracepoint_args *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (ctx->args[1] && ebt_wanted(tgid))
        pmu_sample_bump(tgid);
    return 0;
}

int pmu_on_sample(struct pmu_sample_ctx *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (tgid == 0 || !ebt_wanted(tgid))
        return 0;
    u32 z = 0;
    struct pmu_sample *rec = pmu_sample_scratch.lookup(&z);
    if (!rec)
        return 0;
    /* read the registers first, each once (the verifier refuses a ctx pointer moved by an offset) */
    u64 ip = PMU_SAMPLE_IP(ctx);
    int user = PMU_SAMPLE_USER(ctx);
    __asm__ volatile("" : "+r"(ip));
    rec->ts = bpf_ktime_get_ns();
    rec->pid = tgid;
    rec->tid = (u32)id;
    rec->cpu = bpf_get_smp_processor_id();
    rec->flags = user ? 0 : PMU_SAMPLE_IN_KERNEL;
    u32 *gen = pmu_sample_gen.lookup(&tgid);
    rec->gen = gen ? *gen : 0;
    bpf_get_current_comm(rec->comm, sizeof(rec->comm));
    long n = bpf_get_stack(ctx, rec->stack, sizeof(rec->stack), BPF_F_USER_STACK);
    n = n > 0 ? n / 8 : 0;
    rec->nframes = n;
    if (user)
        rec->ip = ip;
    else
        rec->ip = n > 0 ? rec->stack[0] : 0;
    pmu_sample_recs_emit(ctx, rec, sizeof(*rec));
    return 0;
}
