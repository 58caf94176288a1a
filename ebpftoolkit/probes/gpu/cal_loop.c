/* cal_loop FUNCTION N: calls cal_push or cal_load N times; prints nanoseconds per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long cal_push(long a, long b);
long cal_load(long a, long b);

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: cal_loop push|load N\n"); return 2; }
    long (*fn)(long, long) = strcmp(argv[1], "push") ? cal_load : cal_push;
    long n = atol(argv[2]), s = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        s += fn(i, 4096);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.2f %ld\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n, s);
    return 0;
}
