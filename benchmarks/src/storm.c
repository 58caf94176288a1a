/* Syscall storm: THREADS threads each call getpgid(k) for k = base .. base+N-1
 * (base = thread index << 32 is not a valid pid: the kernel only looks it up
 * and fails fast).  Waits for a line on stdin before starting, so tracers can
 * attach first, then prints per-thread calls/s as JSON.
 * usage: storm N [THREADS] */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long n_calls;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *storm(void *arg)
{
    long base = (long)arg * 100000000L;
    for (long k = 0; k < n_calls; k++)
        syscall(SYS_getpgid, base + k + 1000000000L);
    return NULL;
}

int main(int argc, char **argv)
{
    n_calls = argc > 1 ? atol(argv[1]) : 1000000;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    char line[16];
    if (!getenv("STORM_NO_WAIT") && !fgets(line, sizeof(line), stdin))
        return 2;
    pthread_t tid[64];
    double t0 = now();
    for (long i = 1; i < threads && i < 64; i++)
        pthread_create(&tid[i], NULL, storm, (void *)i);
    storm((void *)0);
    for (long i = 1; i < threads && i < 64; i++)
        pthread_join(tid[i], NULL);
    double dt = now() - t0;
    printf("{\"calls\": %ld, \"seconds\": %.6f, \"calls_per_s\": %.0f}\n", n_calls * threads, dt,
           n_calls * threads / dt);
    return 0;
}
