/* Calls the hand-written functions of moved_args_lib.S with known sizes and
 * prints what it did as JSON: the tracer must agree. */
#include <stdint.h>
#include <stdio.h>

long upload_moved(long tag, long nbytes);
long upload_stack(long a0, long a1, long a2, long a3, long a4, long a5, long nbytes);

int main(void)
{
    long sum_moved = 0, sum_stack = 0, check = 0;
    for (long i = 0; i < 5; i++) {
        long n = (1L << 40) + 1000 * i;              /* above 32 bits: a narrowed copy would show */
        check += upload_moved(i, n) - i - n;
        sum_moved += n;
    }
    for (long i = 0; i < 4; i++) {
        long n = (3L << 33) + 7 * i;
        check += upload_stack(-1, -2, -3, -4, -5, -6, n) - n;
        sum_stack += n;
    }
    printf("{\"calls\": {\"upload_moved\": 5, \"upload_stack\": 4}, "
           "\"bytes\": {\"upload_moved\": %ld, \"upload_stack\": %ld}, \"check\": %ld, \"main\": %lu}\n",
           sum_moved, sum_stack, check, (unsigned long)(uintptr_t)&main);
    return check != 0;
}
