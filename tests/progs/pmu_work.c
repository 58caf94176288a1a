/* Known software-event work for the PmuCounters tests.
 *   pmu_work PAGES SLEEPS [SPIN_MS]
 * maps PAGES fresh anonymous pages and writes one byte to each (one page
 * fault per page), in SLEEPS rounds each followed by a 1 ms nanosleep (one
 * voluntary context switch per round), then spins for SPIN_MS more of its own
 * CPU time, and prints its pid and the counts. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s PAGES SLEEPS [SPIN_MS]\n", argv[0]);
        return 2;
    }
    long pages = atol(argv[1]), sleeps = atol(argv[2]);
    long psz = sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, (pages ? pages : 1) * psz, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct timespec ms = {0, 1000000};
    long rounds = sleeps ? sleeps : 1, done = 0;
    for (long r = 0; r < rounds; r++) {
        long upto = pages * (r + 1) / rounds;
        for (; done < upto; done++)
            ((volatile char *)mem)[done * psz] = 1;
        if (sleeps)
            nanosleep(&ms, NULL);
    }
    if (argc == 4) {
        struct timespec t;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        long until = t.tv_sec * 1000000000L + t.tv_nsec + atol(argv[3]) * 1000000L;
        do
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        while (t.tv_sec * 1000000000L + t.tv_nsec < until);
    }
    printf("%d %ld %ld\n", (int)getpid(), pages, sleeps);
    return 0;
}
