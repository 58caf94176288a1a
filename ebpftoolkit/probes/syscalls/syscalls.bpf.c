/* ebpftoolkit SyscallTrace: entries of chosen system calls, with their first
 * SYS_NARGS arguments, as events (SYS_COUNT_ONLY=0) or as in-kernel counts
 * per (pid, syscall) (SYS_COUNT_ONLY=1).  One function per syscall (sys_tp_NAME) is
 * generated after this file, attached by SyscallTrace.setup; each calls sys_on_enter().
 *
 * Every syscalls:sys_enter_* tracepoint has the same layout: the common
 * fields, int __syscall_nr at offset 8, then the arguments as 8-byte words
 * from offset 16.
 */
/* struct sys_event and struct sys_key are generated from probes/syscalls/probe.py (one definition). */

#if SYS_COUNT_ONLY
BPF_PERCPU_HASH(sys_counts, struct sys_key, u64, SYS_COUNT_KEYS);
BPF_PERCPU_ARRAY(sys_counts_lost, u64, 1);
#endif

/* navail: how many arguments the call's tracepoint records (a constant per wrapper): a call with fewer
 * than SYS_NARGS leaves the rest 0 (reading past its record would be refused by the verifier) */
static __always_inline int sys_on_enter(void *ctx, u32 nr, int navail)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 pid = id >> 32;
    if (!ebt_wanted(pid))
        return 0;
#if SYS_COUNT_ONLY
    struct sys_key key = {.pid = pid, .nr = nr};
    u64 *n = sys_counts.lookup(&key);
    if (n) {
        (*n)++;
    } else {
        u64 one = 1;
        if (sys_counts.update(&key, &one)) {
            u32 z = 0;
            u64 *lost = sys_counts_lost.lookup(&z);
            if (lost)
                (*lost)++;
        }
    }
#else
    struct sys_event ev;
    ev.ts = bpf_ktime_get_ns();
    ev.pid = pid;
    ev.tid = (u32)id;
#if SYS_MULTI
    ev.nr = nr;
    ev._pad = 0;
#endif
#if SYS_NARGS > 0
    /* direct loads from the tracepoint record (a helper call costs more than the rest of the record) */
#pragma unroll
    for (int i = 0; i < SYS_NARGS; i++)
        ev.args[i] = i < navail ? ((u64 *)ctx)[2 + i] : 0;
#endif
    sys_events_emit(ctx, &ev, sizeof(ev));
#endif
    return 0;
}
