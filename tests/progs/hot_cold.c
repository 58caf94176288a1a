/* Known CPU profile for the PmuSampler tests.
 *   hot_cold [TOTAL_MS]
 * spins on arithmetic in hot_loop for 90% of TOTAL_MS (default 500) of its own
 * CPU time, then in cold_loop, the same loop, for a ninth of the chunks
 * hot_loop ran (10% of the time), and prints its pid and the chunk counts.
 * The clock is read between chunks of ~0.1 ms from main, so samples land in
 * the two loops, called from main.  Build with frame pointers
 * (-fno-omit-frame-pointer) so that the user stacks reach main. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 50000UL

static unsigned long cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1000000000UL + t.tv_nsec;
}

__attribute__((noinline)) unsigned long hot_loop(unsigned long x)
{
    for (unsigned long i = 0; i < CHUNK; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

__attribute__((noinline)) unsigned long cold_loop(unsigned long x)
{
    for (unsigned long i = 0; i < CHUNK; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

int main(int argc, char **argv)
{
    unsigned long total_ms = argc > 1 ? strtoul(argv[1], NULL, 10) : 500;
    unsigned long until = cpu_ns() + total_ms * 900000UL;   /* 90% */
    unsigned long x = 1, hot = 0, cold = 0;
    while (cpu_ns() < until) {
        x = hot_loop(x);
        hot++;
    }
    for (; cold < (hot + 4) / 9; cold++)
        x = cold_loop(x);
    printf("%d %lu %lu %lu\n", (int)getpid(), hot, cold, x & 1);
    return 0;
}
