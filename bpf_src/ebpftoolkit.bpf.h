/* ebpftoolkit.bpf.h: what a libbpf-style BPF program needs to take part in an ebpftoolkit session.
 *
 * Include it after vmlinux.h (or linux/bpf.h) and <bpf/bpf_helpers.h>, in one .bpf.c file of the
 * object.  compile_bpf_source() puts this folder on the include path.
 *
 * The session's shared maps are declared here with the exact names and shapes of the session's
 * own (bpf_src/common.h); before load, user space hands the object the session's maps with
 * bpf_map__reuse_fd (BpfObject.reuse_map_fd), so the object reads the session's recording switch
 * and set of traced processes instead of its own empty copies.
 */
#ifndef EBPFTOOLKIT_BPF_H
#define EBPFTOOLKIT_BPF_H

/* Recording switch: ebt_state[0] is 1 while the session records. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ebt_state SEC(".maps");

/* The traced processes: tgid -> 1, kept up to date by the session. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} ebt_tracked SEC(".maps");

/* The session's scope, set by user space after load: 1 for the whole machine (every process
 * counts as traced while recording), 0 for the processes in ebt_tracked. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ebt_scope SEC(".maps");

/* Records that could not be handed over (ring buffer full): per CPU, slot 0; user space sums it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ebt_user_lost SEC(".maps");

static __always_inline int ebt_obj_recording(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&ebt_state, &zero);
	return on && *on == 1;
}

static __always_inline int ebt_obj_traced(void)
{
	if (!ebt_obj_recording())
		return 0;
	__u32 zero = 0, tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 *all = bpf_map_lookup_elem(&ebt_scope, &zero);
	if (all && *all == 1)
		return 1;
	return bpf_map_lookup_elem(&ebt_tracked, &tgid) != (void *)0;
}

static __always_inline void ebt_obj_count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&ebt_user_lost, &zero);
	if (n)
		*n += 1;	/* this CPU's slot: no other CPU writes it */
}

/* As bpf_ringbuf_output: 0 when handed over, a negative error (and counted lost) when not. */
static __always_inline long ebt_obj_ringbuf_output(void *map, void *data, __u64 size, __u64 flags)
{
	long err = bpf_ringbuf_output(map, data, size, flags);
	if (err)
		ebt_obj_count_lost();
	return err;
}

/* As bpf_ringbuf_reserve(map, size, 0): NULL (and counted lost) when the ring is full. */
static __always_inline void *ebt_obj_ringbuf_reserve(void *map, __u64 size)
{
	void *rec = bpf_ringbuf_reserve(map, size, 0);
	if (!rec)
		ebt_obj_count_lost();
	return rec;
}

/* EBPF_RECORD(events, struct event); at file scope: the records of ring or perf buffer `events` are
 * `struct event`.  It puts the type in the object's BTF (clang leaves out types only locals use),
 * where ebpftoolkit finds it by the variable's name; the variable itself is never used. */
#define EBPF_RECORD(ring, type) type *ebt_record__##ring __attribute__((unused))

#define EBPF_RECORDING() ebt_obj_recording()
#define EBPF_TRACED() ebt_obj_traced()
#define EBPF_RINGBUF_OUTPUT(map, data, size, flags) ebt_obj_ringbuf_output((map), (data), (size), (flags))
#define EBPF_RINGBUF_RESERVE(map, size) ebt_obj_ringbuf_reserve((map), (size))

#endif /* EBPFTOOLKIT_BPF_H */
