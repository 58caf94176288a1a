/* Two loops with the same number of loads: one cache-hostile (a large stride
 * over 64 MiB, a new cache line every load), one cache-friendly (sequential
 * over 16 KiB, which fits in any L1).  For the cachegrind test:
 *   cache_pattern [LOADS]   (default 1M loads each) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BIG_BYTES (64UL << 20)
#define SMALL_BYTES (16UL << 10)
#define STRIDE 521            /* elements (4168 bytes: 65 lines + 8 bytes); odd, so all of BIG is visited */

__attribute__((noinline)) uint64_t hostile(const uint64_t *big, long loads)
{
    uint64_t sum = 0, mask = BIG_BYTES / sizeof(uint64_t) - 1, i = 0;
    for (long n = 0; n < loads; n++) {
        sum += big[i];
        i = (i + STRIDE) & mask;
    }
    return sum;
}

__attribute__((noinline)) uint64_t friendly(const uint64_t *small, long loads)
{
    uint64_t sum = 0, mask = SMALL_BYTES / sizeof(uint64_t) - 1, i = 0;
    for (long n = 0; n < loads; n++) {
        sum += small[i];
        i = (i + 1) & mask;
    }
    return sum;
}

int main(int argc, char **argv)
{
    long loads = argc > 1 ? atol(argv[1]) : 1000000;
    uint64_t *big = calloc(BIG_BYTES, 1), *small = calloc(SMALL_BYTES, 1);
    if (!big || !small)
        return 1;
    uint64_t s = hostile(big, loads) + friendly(small, loads);
    printf("%lu\n", (unsigned long)s);
    return 0;
}
