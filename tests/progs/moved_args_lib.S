/* Two functions whose opening instructions the kernel would have to single-step,
 * written out by hand so that the test knows exactly where their arguments are
 * when the first emulated instruction runs (see ebpftoolkit/runtime/x86.py).
 *
 * long upload_moved(long tag, long nbytes): nbytes is moved from %rsi to %rax and
 * %rsi is overwritten before the first push.  Returns tag + nbytes.
 * long upload_stack(long a0..a5, long nbytes): nbytes is the 7th argument, on the
 * stack; two 8-byte stack moves come before the first push.  Returns nbytes.
 */
    .text
    .globl upload_moved
    .type upload_moved, @function
upload_moved:
    sub $8, %rsp
    mov %rsi, %rax
    xor %esi, %esi
    push %rbx
    mov %rax, %rbx
    lea (%rdi,%rbx), %rax
    pop %rbx
    add $8, %rsp
    ret
    .size upload_moved, .-upload_moved

    .globl upload_stack
    .type upload_stack, @function
upload_stack:
    sub $8, %rsp
    push 0x10(%rsp)
    push %rbx
    mov 0x20(%rsp), %rax
    pop %rbx
    add $16, %rsp
    ret
    .size upload_stack, .-upload_stack

    .section .note.GNU-stack,"",@progbits
