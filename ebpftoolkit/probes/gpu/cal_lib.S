/* Two do-nothing functions for measuring what a traced call costs on this machine
 * (probes/gpu/calibrate.py): the kernel emulates cal_push's first instruction (push %rbx)
 * in a uprobe, and single-steps cal_load's (a rip-relative load, as Mesa's GL wrappers open).
 * long cal_push(long a, long b), long cal_load(long a, long b): both return a + b. */
    .text
    .globl cal_push
    .type cal_push, @function
cal_push:
    push %rbx
    lea (%rdi,%rsi), %rax
    pop %rbx
    ret
    .size cal_push, .-cal_push

    .globl cal_load
    .type cal_load, @function
cal_load:
    mov cal_zero(%rip), %rax
    add %rdi, %rax
    add %rsi, %rax
    ret
    .size cal_load, .-cal_load

    .data
cal_zero:
    .quad 0
    .section .note.GNU-stack,"",@progbits
