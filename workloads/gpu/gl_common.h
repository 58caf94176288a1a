/* Shared per-frame GL work for gl_glx.c and gl_egl.c (compatibility profile,
 * fixed function, no shaders).  Every counted GL entry point is called ONLY
 * from gl_frame(), so the counts below are exact.
 * Per frame: 1 glClear, K draws (K/2 glDrawArrays + K/2 glDrawElements; half
 * of each through a pointer from *GetProcAddress, half direct), 1 glBufferData
 * (VB_BYTES), 1 glTexImage2D (TEX_W x TEX_H RGBA8), 1 glTexSubImage2D
 * (SUB_W x SUB_H RGBA8), 1 glReadPixels (RB_W x RB_H RGBA8), 1 glFlush; 1 glFinish every
 * other frame (odd frames). */
#ifndef GL_COMMON_H
#define GL_COMMON_H
#define GL_GLEXT_PROTOTYPES 1
#include <GL/gl.h>
#include <GL/glext.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NVERT    4096                 /* vertices in the VBO */
#define VB_BYTES (NVERT * 4 * (int)sizeof(float))   /* 65536 */
#define TEX_W 64
#define TEX_H 64
#define SUB_W 32
#define SUB_H 32
#define RB_W 32
#define RB_H 32
#define NIDX 96

typedef void (*glproc)(void);
typedef glproc (*getproc_fn)(const char *);
typedef void (*PFN_DrawArrays)(GLenum, GLint, GLsizei);
typedef void (*PFN_DrawElements)(GLenum, GLsizei, GLenum, const void *);

enum { C_DRAWARRAYS, C_DRAWELEMENTS, C_BUFFERDATA, C_TEXIMAGE, C_TEXSUBIMAGE,
       C_READPIXELS, C_SWAP, C_CLEAR, C_FLUSH, C_FINISH, C_N };
static const char *cname[C_N] = { "glDrawArrays", "glDrawElements", "glBufferData",
    "glTexImage2D", "glTexSubImage2D", "glReadPixels", NULL /* swap: set by caller */,
    "glClear", "glFlush", "glFinish" };
static long cnt[C_N], bytes[C_N], ptr_da, ptr_de;

static PFN_DrawArrays p_DrawArrays;
static PFN_DrawElements p_DrawElements;
static GLuint vbo, tex;
static float *vdata;
static unsigned char *tdata, *sdata, *rdata;
static GLushort idx[NIDX];

static int parse_int_arg(int argc, char **argv, const char *name, int def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return atoi(argv[i + 1]);
    return def;
}

static void gl_setup(getproc_fn gp)
{
    p_DrawArrays = (PFN_DrawArrays)gp("glDrawArrays");
    p_DrawElements = (PFN_DrawElements)gp("glDrawElements");
    if (!p_DrawArrays || !p_DrawElements) { fprintf(stderr, "GetProcAddress failed\n"); exit(1); }
    vdata = malloc(VB_BYTES);
    tdata = malloc(TEX_W * TEX_H * 4);
    sdata = malloc(SUB_W * SUB_H * 4);
    rdata = malloc(RB_W * RB_H * 4);
    for (int i = 0; i < NVERT; i++) {           /* small triangles on a grid */
        int t = i / 3, k = i % 3;
        float x = -1.0f + (t % 32) / 16.0f, y = -1.0f + (t / 32 % 32) / 16.0f;
        vdata[i * 4 + 0] = x + (k == 1 ? 0.05f : 0.0f);
        vdata[i * 4 + 1] = y + (k == 2 ? 0.05f : 0.0f);
        vdata[i * 4 + 2] = 0.0f;
        vdata[i * 4 + 3] = 1.0f;
    }
    for (int i = 0; i < NIDX; i++) idx[i] = (GLushort)(i * 7 % NVERT);
    glGenBuffers(1, &vbo);
    glBindBuffer(GL_ARRAY_BUFFER, vbo);
    glVertexPointer(4, GL_FLOAT, 0, (void *)0);
    glEnableClientState(GL_VERTEX_ARRAY);
    glGenTextures(1, &tex);
    glBindTexture(GL_TEXTURE_2D, tex);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    glClearColor(0.1f, 0.2f, 0.3f, 1.0f);
}

static void gl_frame(int f, int draws)
{
    memset(tdata, f & 0xff, TEX_W * TEX_H * 4);
    memset(sdata, (f * 3) & 0xff, SUB_W * SUB_H * 4);
    vdata[2] = (float)f * 1e-6f;

    glClear(GL_COLOR_BUFFER_BIT); cnt[C_CLEAR]++;
    glBufferData(GL_ARRAY_BUFFER, VB_BYTES, vdata, GL_STREAM_DRAW);
    cnt[C_BUFFERDATA]++; bytes[C_BUFFERDATA] += VB_BYTES;
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, TEX_W, TEX_H, 0, GL_RGBA, GL_UNSIGNED_BYTE, tdata);
    cnt[C_TEXIMAGE]++; bytes[C_TEXIMAGE] += TEX_W * TEX_H * 4;
    glTexSubImage2D(GL_TEXTURE_2D, 0, 8, 8, SUB_W, SUB_H, GL_RGBA, GL_UNSIGNED_BYTE, sdata);
    cnt[C_TEXSUBIMAGE]++; bytes[C_TEXSUBIMAGE] += SUB_W * SUB_H * 4;

    for (int d = 0; d < draws / 2; d++) {       /* draws/2 glDrawArrays */
        GLint first = (d * 48) % (NVERT - 48);
        if (d % 2) { p_DrawArrays(GL_TRIANGLES, first, 48); ptr_da++; }
        else       glDrawArrays(GL_TRIANGLES, first, 48);
        cnt[C_DRAWARRAYS]++;
    }
    for (int d = 0; d < draws / 2; d++) {       /* draws/2 glDrawElements */
        if (d % 2) { p_DrawElements(GL_TRIANGLES, NIDX, GL_UNSIGNED_SHORT, idx); ptr_de++; }
        else       glDrawElements(GL_TRIANGLES, NIDX, GL_UNSIGNED_SHORT, idx);
        cnt[C_DRAWELEMENTS]++;
    }
    glReadPixels(0, 0, RB_W, RB_H, GL_RGBA, GL_UNSIGNED_BYTE, rdata);
    cnt[C_READPIXELS]++; bytes[C_READPIXELS] += RB_W * RB_H * 4;
    glFlush(); cnt[C_FLUSH]++;                  /* tiny wrappers in Mesa: probed on their first branch */
    if (f % 2) { glFinish(); cnt[C_FINISH]++; }
}

static void gl_print_json(const char *api, const char *swapname, int frames,
                          int draws, const char *extra)
{
    cname[C_SWAP] = swapname;
    printf("{\"api\":\"%s\",\"frames\":%d,\"draws_per_frame\":%d,\"calls\":{", api, frames, draws);
    for (int i = 0; i < C_N; i++) printf("%s\"%s\":%ld", i ? "," : "", cname[i], cnt[i]);
    printf("},\"bytes\":{");
    int first = 1;
    for (int i = 0; i < C_N; i++)
        if (bytes[i]) { printf("%s\"%s\":%ld", first ? "" : ",", cname[i], bytes[i]); first = 0; }
    printf("},\"via_getprocaddress\":{\"glDrawArrays\":%ld,\"glDrawElements\":%ld}",
           ptr_da, ptr_de);
    printf(",\"gl_error\":%u,\"pixel0\":[%u,%u,%u,%u]%s}\n", (unsigned)glGetError(),
           rdata[0], rdata[1], rdata[2], rdata[3], extra ? extra : "");
    fflush(stdout);
}
#endif
