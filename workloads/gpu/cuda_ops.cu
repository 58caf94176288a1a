// cuda_ops: fixed-count CUDA runtime workload.  Every call's return code is
// recorded; with no NVIDIA driver every call returns 35
// (cudaErrorInsufficientDriver) -- the calls still happen, which is what a uprobe
// tracer needs.  Built twice: -cudart shared (cuda_ops_shared, libcudart.so) and
// the default static cudart (cuda_ops_static, cudart linked into the executable).
// Usage: cuda_ops [--iters N (10)]
// Calls: cudaMalloc x2 (A, B bytes), cudaMemcpy x4 (H2D A, D2D A, D2H A,
// Default(host->dev) A), N x (kernel<<<grid, block>>> + cudaGetLastError),
// cudaDeviceSynchronize x1, cudaFree x2.
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

#define A_BYTES (1 << 20)
#define B_BYTES (2 << 20)
#define BLOCK 256

__global__ void scale(float *p, int n, float k)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = p[i] * k + 1.0f;
}

static std::string seq;                     // ordered call log
static int ncall;

static cudaError_t rec(const char *name, cudaError_t rc, const char *dir = nullptr, long bytes = -1)
{
    char buf[160];
    snprintf(buf, sizeof buf, "%s{\"call\":\"%s\",\"rc\":%d%s%s%s", ncall++ ? "," : "", name, (int)rc,
             dir ? ",\"kind\":\"" : "", dir ? dir : "", dir ? "\"" : "");
    seq += buf;
    if (bytes >= 0) { snprintf(buf, sizeof buf, ",\"bytes\":%ld", bytes); seq += buf; }
    seq += "}";
    return rc;
}

static std::string mapped_cudart()
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024]; std::string out = "static";
    while (f && fgets(line, sizeof line, f)) {
        char *p = strstr(line, "libcudart");
        if (p) { while (p > line && p[-1] != ' ') p--; p[strcspn(p, "\n")] = 0; out = p; break; }
    }
    if (f) fclose(f);
    return out;
}

int main(int argc, char **argv)
{
    int iters = 10;
    for (int i = 1; i + 1 < argc; i++) if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
    int n = A_BYTES / (int)sizeof(float), grid = (n + BLOCK - 1) / BLOCK;
    float *h = (float *)malloc(A_BYTES);
    for (int i = 0; i < n; i++) h[i] = (float)i;
    float *dA = nullptr, *dB = nullptr;
    long c_malloc = 0, c_memcpy = 0, c_launch = 0, c_free = 0, c_err = 0, c_sync = 0;
    long b_malloc = 0, b_memcpy = 0, b_h2d = 0, b_d2h = 0, b_d2d = 0, b_def = 0, nonzero = 0;
    int last_rc = 0;
#define R(...) do { cudaError_t r_ = rec(__VA_ARGS__); nonzero += r_ != cudaSuccess; last_rc = r_; } while (0)

    R("cudaMalloc", cudaMalloc((void **)&dA, A_BYTES), nullptr, A_BYTES); c_malloc++; b_malloc += A_BYTES;
    R("cudaMalloc", cudaMalloc((void **)&dB, B_BYTES), nullptr, B_BYTES); c_malloc++; b_malloc += B_BYTES;
    R("cudaMemcpy", cudaMemcpy(dA, h, A_BYTES, cudaMemcpyHostToDevice), "H2D", A_BYTES);
    c_memcpy++; b_memcpy += A_BYTES; b_h2d += A_BYTES;
    R("cudaMemcpy", cudaMemcpy(dB, dA, A_BYTES, cudaMemcpyDeviceToDevice), "D2D", A_BYTES);
    c_memcpy++; b_memcpy += A_BYTES; b_d2d += A_BYTES;
    R("cudaMemcpy", cudaMemcpy(h, dB, A_BYTES, cudaMemcpyDeviceToHost), "D2H", A_BYTES);
    c_memcpy++; b_memcpy += A_BYTES; b_d2h += A_BYTES;
    R("cudaMemcpy", cudaMemcpy(dB, h, A_BYTES, cudaMemcpyDefault), "Default", A_BYTES);
    c_memcpy++; b_memcpy += A_BYTES; b_def += A_BYTES;
    for (int it = 0; it < iters; it++) {
        scale<<<grid, BLOCK>>>(dB, n, 2.0f); c_launch++;
        R("cudaGetLastError", cudaGetLastError(), "after_launch"); c_err++;
    }
    R("cudaDeviceSynchronize", cudaDeviceSynchronize()); c_sync++;
    R("cudaFree", cudaFree(dA)); c_free++;
    R("cudaFree", cudaFree(dB)); c_free++;

    printf("{\"api\":\"cuda\",\"cudart\":\"%s\",\"iters\":%d,\"grid\":[%d,1,1],\"block\":[%d,1,1],"
           "\"calls\":{\"cudaMalloc\":%ld,\"cudaMemcpy\":%ld,\"kernel_launch\":%ld,\"cudaGetLastError\":%ld,"
           "\"cudaDeviceSynchronize\":%ld,\"cudaFree\":%ld},"
           "\"bytes\":{\"cudaMalloc\":%ld,\"cudaMemcpy\":%ld},"
           "\"directions\":{\"H2D\":%ld,\"D2H\":%ld,\"D2D\":%ld,\"Default\":%ld},"
           "\"nonzero_rc\":%ld,\"last_rc\":%d,\"last_rc_name\":\"%s\",\"pid\":%d,\"sequence\":[%s]}\n",
           mapped_cudart().c_str(), iters, grid, BLOCK, c_malloc, c_memcpy, c_launch, c_err, c_sync, c_free,
           b_malloc, b_memcpy, b_h2d, b_d2h, b_d2d, b_def, nonzero, last_rc,
           cudaGetErrorName((cudaError_t)last_rc), (int)getpid(), seq.c_str());
    free(h);
    return 0;
}
