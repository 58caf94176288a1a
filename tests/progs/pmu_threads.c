/* Threads doing known work for the PmuCounters tests.
 *   pmu_threads THREADS PAGES
 * thread i (1..THREADS) writes one byte to each of i * PAGES fresh pages (one
 * page fault each), sleeping 1 ms every 10 pages; prints the pid. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void *work(void *arg)
{
    long pages = (long)arg;
    char *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct timespec ms = {0, 1000000};
    if (mem == MAP_FAILED)
        return (void *)1;
    for (long i = 0; i < pages; i++) {
        ((volatile char *)mem)[i * 4096] = 1;
        if (i % 10 == 9)
            nanosleep(&ms, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s THREADS PAGES\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]);
    long pages = atol(argv[2]);
    pthread_t t[64];
    if (n < 1 || n > 64)
        return 2;
    for (long i = 0; i < n; i++)
        pthread_create(&t[i], NULL, work, (void *)(pages * (i + 1)));
    for (int i = 0; i < n; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        if (ret)
            return 1;
    }
    printf("%d\n", (int)getpid());
    return 0;
}
