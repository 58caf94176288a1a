/* Calls upload_moved (tests/progs/moved_args_lib.S: its uprobe sits on an emulated
 * push after three moved instructions) N times; prints nanoseconds per call. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

long upload_moved(long tag, long nbytes);

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000, s = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        s += upload_moved(i, 4096);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f %ld\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n, s);
    return 0;
}
