/* cl_vecadd: fixed-count OpenCL workload (PoCL on this VM).
 * Usage: cl_vecadd [--iters N (10)] [--n ELEMS (262144 floats = 1 MiB per buffer)]
 * clCreateBuffer x3, clEnqueueWriteBuffer x2, N x clEnqueueNDRangeKernel (c = a + b),
 * clEnqueueReadBuffer x1 (blocking), clReleaseMemObject x3, clFinish x1. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *src =
    "__kernel void vecadd(__global const float *a, __global const float *b,\n"
    "                     __global float *c, const unsigned n) {\n"
    "    size_t i = get_global_id(0); if (i < n) c[i] = a[i] + b[i];\n"
    "}\n";

enum { CREATEBUF, WRITEBUF, NDRANGE, READBUF, RELEASEMEM, FINISH, SETARG, BUILD, NCALL };
static const char *names[NCALL] = { "clCreateBuffer", "clEnqueueWriteBuffer",
    "clEnqueueNDRangeKernel", "clEnqueueReadBuffer", "clReleaseMemObject", "clFinish",
    "clSetKernelArg", "clBuildProgram" };
static long cnt[NCALL], bytes[NCALL], errs[NCALL];
#define REC(i, expr) do { cl_int e_ = (expr); cnt[i]++; if (e_ != CL_SUCCESS) { errs[i]++; \
    fprintf(stderr, "%s -> %d (line %d)\n", names[i], e_, __LINE__); } } while (0)
#define DIE(msg, e) do { fprintf(stderr, "%s: %d\n", msg, (int)(e)); exit(1); } while (0)

int main(int argc, char **argv)
{
    int iters = 10; cl_uint n = 1u << 18;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--n")) n = (cl_uint)atoi(argv[i + 1]);
    }
    size_t S = (size_t)n * sizeof(float);
    cl_int err; cl_platform_id plat; cl_device_id devid; cl_uint np = 0;
    if ((err = clGetPlatformIDs(1, &plat, &np)) != CL_SUCCESS || !np) DIE("clGetPlatformIDs", err);
    if ((err = clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &devid, NULL)) != CL_SUCCESS) DIE("clGetDeviceIDs", err);
    char pname[128] = "", dname[128] = "";
    clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof pname, pname, NULL);
    clGetDeviceInfo(devid, CL_DEVICE_NAME, sizeof dname, dname, NULL);
    cl_context ctx = clCreateContext(NULL, 1, &devid, NULL, NULL, &err);
    if (!ctx) DIE("clCreateContext", err);
    cl_command_queue q = clCreateCommandQueue(ctx, devid, 0, &err);
    if (!q) DIE("clCreateCommandQueue", err);
    cl_program prog = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
    if (!prog) DIE("clCreateProgramWithSource", err);
    REC(BUILD, clBuildProgram(prog, 1, &devid, "", NULL, NULL));
    cl_kernel k = clCreateKernel(prog, "vecadd", &err);
    if (!k) DIE("clCreateKernel", err);

    float *a = malloc(S), *b = malloc(S), *c = malloc(S);
    for (cl_uint i = 0; i < n; i++) { a[i] = (float)i; b[i] = 2.0f * (float)i; c[i] = -1.0f; }
    cl_mem_flags fl[3] = { CL_MEM_READ_ONLY, CL_MEM_READ_ONLY, CL_MEM_WRITE_ONLY };
    cl_mem m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = clCreateBuffer(ctx, fl[i], S, NULL, &err);
        cnt[CREATEBUF]++; bytes[CREATEBUF] += S;
        if (!m[i]) DIE("clCreateBuffer", err);
    }
    REC(WRITEBUF, clEnqueueWriteBuffer(q, m[0], CL_TRUE, 0, S, a, 0, NULL, NULL)); bytes[WRITEBUF] += S;
    REC(WRITEBUF, clEnqueueWriteBuffer(q, m[1], CL_TRUE, 0, S, b, 0, NULL, NULL)); bytes[WRITEBUF] += S;
    for (int i = 0; i < 3; i++) REC(SETARG, clSetKernelArg(k, i, sizeof(cl_mem), &m[i]));
    REC(SETARG, clSetKernelArg(k, 3, sizeof(cl_uint), &n));
    size_t gws = n;
    for (int it = 0; it < iters; it++)
        REC(NDRANGE, clEnqueueNDRangeKernel(q, k, 1, NULL, &gws, NULL, 0, NULL, NULL));
    REC(READBUF, clEnqueueReadBuffer(q, m[2], CL_TRUE, 0, S, c, 0, NULL, NULL)); bytes[READBUF] += S;
    for (int i = 0; i < 3; i++) REC(RELEASEMEM, clReleaseMemObject(m[i]));
    REC(FINISH, clFinish(q));

    long bad = 0;
    for (cl_uint i = 0; i < n; i++) bad += c[i] != (iters ? 3.0f * (float)i : -1.0f);
    clReleaseKernel(k); clReleaseProgram(prog); clReleaseCommandQueue(q); clReleaseContext(ctx);

    printf("{\"api\":\"opencl\",\"iters\":%d,\"n\":%u,\"buffer_bytes\":%zu,\"global_work_size\":%zu,\"calls\":{",
           iters, n, S, gws);
    for (int i = 0; i < NCALL; i++) printf("%s\"%s\":%ld", i ? "," : "", names[i], cnt[i]);
    printf("},\"bytes\":{");
    for (int i = 0, f = 1; i < NCALL; i++) if (bytes[i]) { printf("%s\"%s\":%ld", f ? "" : ",", names[i], bytes[i]); f = 0; }
    long nerr = 0; for (int i = 0; i < NCALL; i++) nerr += errs[i];
    printf("},\"errors\":%ld,\"verify_mismatches\":%ld,\"platform\":\"%s\",\"device\":\"%s\",\"pid\":%d}\n",
           nerr, bad, pname, dname, (int)getpid());
    free(a); free(b); free(c);
    return (bad || nerr) ? 1 : 0;
}
