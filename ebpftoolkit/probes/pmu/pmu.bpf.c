/* ebpftoolkit PmuCounters: perf event counters read in BPF and charged to tasks.
 *
 * Event i (0..PMU_NEV-1) is open on every CPU c (pid -1, cpu c) at index
 * i * PMU_NCPU + c of the perf event array pmu_counters (user space fills it
 * after load).  Those counters count everything that runs on their CPU; this
 * file splits the counts between tasks.  On every read it takes the delta
 * since the previous read on the same CPU and charges it to the task that ran
 * in between, which is the current task:
 *   - pmu_on_switch (raw tracepoint sched_switch): the task switching out,
 *   - pmu_on_tick (a cpu-clock perf event every PMU_INTERVAL_NS): the task it
 *     interrupted, so long slices are cut into intervals,
 *   - pmu_on_exit (raw tracepoint sched_process_exit): the exiting task's last
 *     slice (it runs before ebt_track_exit drops the process from the tracked set),
 *   - pmu_on_execve (tracepoints syscalls:sys_enter_execve(at)): the slice before
 *     an exec, so every record's comm names the program that ran all of it (perf
 *     stat counts a command from its exec; Session.run's child runs Python before).
 * The per-CPU previous values are updated on every read, whoever runs; only
 * tasks of tracked processes (ebt_wanted) produce records.
 *
 * The kernel counts a context switch (PERF_COUNT_SW_CONTEXT_SWITCHES) just
 * after the sched_switch tracepoint, while the task switching out is still
 * current: bit i of PMU_SWITCH_BIAS marks such events, whose count is taken
 * one ahead at sched_switch (charged to the task switching out, as perf stat
 * does; not for a dead task, which perf stat no longer counts).
 *
 * Defined before this file: PMU_NEV, PMU_NCPU, PMU_SWITCH_BIAS, PMU_INTERVAL_NS, PMU_HAS_PREV_STATE
 * and the stream pmu_records (pmu_records_emit).
 */
/* struct pmu_record and the PMU_<reason> codes are generated from probes/pmu/counters.py. */
#define PMU_TASK_DEAD 0x80   /* TASK_DEAD in prev_state */

struct pmu_cpu {
    u64 counter[PMU_NEV];
    u64 enabled[PMU_NEV];
    u64 running[PMU_NEV];
    u64 valid;   /* bit i: event i has a previous reading on this CPU */
    u64 busy;    /* a handler is updating this state: a tick interrupting it skips */
};

BPF_PERF_ARRAY(pmu_counters, PMU_NEV * PMU_NCPU);
BPF_PERCPU_ARRAY(pmu_cpu_state, struct pmu_cpu, 1);
BPF_PERCPU_ARRAY(pmu_scratch, struct pmu_record, 1);

/* Read every counter of this CPU, charge the deltas to the current task.
 * bias: 1 at sched_switch (count PMU_SWITCH_BIAS events one ahead), charge_bias:
 * whether that extra count belongs to the task switching out (not when it is dead). */
static __always_inline int pmu_charge(void *ctx, u32 reason, int bias, int charge_bias)
{
    u32 z = 0;
    struct pmu_cpu *st = pmu_cpu_state.lookup(&z);
    struct pmu_record *rec = pmu_scratch.lookup(&z);
    if (!st || !rec || st->busy)
        return 0;
    st->busy = 1;
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 cpu = bpf_get_smp_processor_id();
    int charged = 0;
#pragma unroll
    for (u32 i = 0; i < PMU_NEV; i++) {
        struct bpf_perf_event_value v = {};
        rec->value[i] = 0;
        rec->enabled[i] = 0;
        rec->running[i] = 0;
        if (pmu_counters.perf_counter_value(i * PMU_NCPU + cpu, &v, sizeof(v)))
            continue;   /* not open on this CPU (yet): nothing to charge */
        u64 ahead = (bias && ((PMU_SWITCH_BIAS >> i) & 1)) ? 1 : 0;
        if (st->valid & (1ULL << i)) {
            if (v.counter >= st->counter[i])
                rec->value[i] = v.counter - st->counter[i];
            if (charge_bias)
                rec->value[i] += ahead;
            if (v.enabled >= st->enabled[i])
                rec->enabled[i] = v.enabled - st->enabled[i];
            if (v.running >= st->running[i])
                rec->running[i] = v.running - st->running[i];
            charged = 1;
        }
        st->counter[i] = v.counter + ahead;
        st->enabled[i] = v.enabled;
        st->running[i] = v.running;
        st->valid |= 1ULL << i;
    }
    if (charged && ebt_wanted(tgid)) {
        rec->ts = bpf_ktime_get_ns();
        rec->pid = tgid;
        rec->tid = (u32)id;
        rec->cpu = cpu;
        rec->reason = reason;
        bpf_get_current_comm(rec->comm, sizeof(rec->comm));
        pmu_records_emit(ctx, rec, sizeof(*rec));
    }
    st->busy = 0;
    return 0;
}

/* sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
 *              unsigned int prev_state): current is still prev. */
int pmu_on_switch(struct bpf_raw_tracepoint_args *ctx)
{
#if PMU_HAS_PREV_STATE
    int dead = (ctx->args[3] & PMU_TASK_DEAD) != 0;
#else
    int dead = 0;   /* before 5.18: an exiting thread's last switch counts once more than in perf stat */
#endif
    return pmu_charge(ctx, PMU_SWITCH, 1, !dead);
}

int pmu_on_tick(void *ctx)
{
    return pmu_charge(ctx, PMU_TICK, 0, 0);
}

int pmu_on_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return pmu_charge(ctx, PMU_EXIT, 0, 0);
}

int pmu_on_execve(void *ctx)
{
    return pmu_charge(ctx, PMU_EXEC, 0, 0);
}
