/* libebpftoolkit_marker.so.1: the functions ebpftoolkit.mark() and ebpftoolkit.frame() call
 * (probes/gpu/marker.py builds this file at first use).  They do nothing: GpuTrace probes them
 * (API "marker") and records the name each is given, in order with the GPU calls.  Each opens
 * with push %rbx, which the kernel emulates in a uprobe (no single-stepping).
 * void ebpftoolkit_mark(const char *name), ebpftoolkit_frame_begin(name), ebpftoolkit_frame_end(name) */
    .text
    .globl ebpftoolkit_mark
    .type ebpftoolkit_mark, @function
ebpftoolkit_mark:
    push %rbx
    pop %rbx
    ret
    .size ebpftoolkit_mark, .-ebpftoolkit_mark

    .globl ebpftoolkit_frame_begin
    .type ebpftoolkit_frame_begin, @function
ebpftoolkit_frame_begin:
    push %rbx
    pop %rbx
    ret
    .size ebpftoolkit_frame_begin, .-ebpftoolkit_frame_begin

    .globl ebpftoolkit_frame_end
    .type ebpftoolkit_frame_end, @function
ebpftoolkit_frame_end:
    push %rbx
    pop %rbx
    ret
    .size ebpftoolkit_frame_end, .-ebpftoolkit_frame_end
    .section .note.GNU-stack,"",@progbits
