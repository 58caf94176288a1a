// A C++ program whose CPU time is spent in one namespaced, overloaded function:
// PMU samples must name it as C++ does (demangled), e.g. "hotspace::spin(unsigned long)".
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace hotspace {
__attribute__((noinline)) unsigned long spin(unsigned long n) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < n; i++)
        x += i * 2654435761u;
    return x;
}
__attribute__((noinline)) unsigned long spin(int) { return 0; }   // an overload: the name alone is ambiguous
}

int main(int argc, char **argv) {
    unsigned long ms = argc > 1 ? strtoul(argv[1], nullptr, 10) : 300;
    printf("%d\n", getpid());
    fflush(stdout);
    unsigned long total = 0;
    for (unsigned long round = 0; round < ms * 4; round++)
        total += hotspace::spin(250000UL) + hotspace::spin(1);
    return total == 42 ? 1 : 0;
}
