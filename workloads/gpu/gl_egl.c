/* gl_egl: fixed-count OpenGL workload through EGL, no X server needed.
 * Display: EGL_PLATFORM_SURFACELESS_MESA (falls back to EGL_DEFAULT_DISPLAY),
 * a 256x256 pbuffer surface (so eglSwapBuffers is called once per frame; on a
 * pbuffer it is a no-op by spec, but the call happens and returns EGL_TRUE),
 * and all rendering goes into an FBO (GL_RGBA8 renderbuffer).
 * Usage: gl_egl [--frames N (10)] [--draws K (8, multiple of 4)] [--wait]
 * --wait: set everything up, then wait for a line on stdin before the first frame
 * (a tracer can attach to the pid first).  "frame_seconds" in the JSON is the
 * frame loop's own duration (CLOCK_MONOTONIC). */
#include "gl_common.h"
#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <string.h>
#include <time.h>

#ifndef EGL_PLATFORM_SURFACELESS_MESA
#define EGL_PLATFORM_SURFACELESS_MESA 0x31DD
#endif

int main(int argc, char **argv)
{
    int frames = parse_int_arg(argc, argv, "--frames", 10);
    int draws = parse_int_arg(argc, argv, "--draws", 8);
    if (frames < 0 || draws < 0 || draws % 4) { fprintf(stderr, "bad --frames/--draws\n"); return 2; }

    const char *platform = "surfaceless";
    PFNEGLGETPLATFORMDISPLAYEXTPROC getPlatformDisplay =
        (PFNEGLGETPLATFORMDISPLAYEXTPROC)eglGetProcAddress("eglGetPlatformDisplayEXT");
    EGLDisplay dpy = getPlatformDisplay ?
        getPlatformDisplay(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, NULL) : EGL_NO_DISPLAY;
    EGLint major, minor;
    if (dpy == EGL_NO_DISPLAY || !eglInitialize(dpy, &major, &minor)) {
        platform = "default";
        dpy = eglGetDisplay(EGL_DEFAULT_DISPLAY);
        if (dpy == EGL_NO_DISPLAY || !eglInitialize(dpy, &major, &minor)) {
            fprintf(stderr, "eglInitialize failed\n"); return 1;
        }
    }
    EGLint cattr[] = { EGL_SURFACE_TYPE, EGL_PBUFFER_BIT, EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT,
                       EGL_RED_SIZE, 8, EGL_GREEN_SIZE, 8, EGL_BLUE_SIZE, 8, EGL_NONE };
    EGLConfig cfg; EGLint ncfg = 0;
    if (!eglChooseConfig(dpy, cattr, &cfg, 1, &ncfg) || ncfg < 1) { fprintf(stderr, "no pbuffer config\n"); return 1; }
    EGLint sattr[] = { EGL_WIDTH, 256, EGL_HEIGHT, 256, EGL_NONE };
    EGLSurface surf = eglCreatePbufferSurface(dpy, cfg, sattr);
    if (surf == EGL_NO_SURFACE) { fprintf(stderr, "eglCreatePbufferSurface failed 0x%x\n", eglGetError()); return 1; }
    eglBindAPI(EGL_OPENGL_API);
    EGLContext ctx = eglCreateContext(dpy, cfg, EGL_NO_CONTEXT, NULL);
    if (ctx == EGL_NO_CONTEXT || !eglMakeCurrent(dpy, surf, surf, ctx)) { fprintf(stderr, "EGL context failed\n"); return 1; }

    GLuint fbo, rb;                      /* render into an FBO, read back from it */
    glGenFramebuffers(1, &fbo);
    glBindFramebuffer(GL_FRAMEBUFFER, fbo);
    glGenRenderbuffers(1, &rb);
    glBindRenderbuffer(GL_RENDERBUFFER, rb);
    glRenderbufferStorage(GL_RENDERBUFFER, GL_RGBA8, 256, 256);
    glFramebufferRenderbuffer(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_RENDERBUFFER, rb);
    if (glCheckFramebufferStatus(GL_FRAMEBUFFER) != GL_FRAMEBUFFER_COMPLETE) { fprintf(stderr, "FBO incomplete\n"); return 1; }
    glViewport(0, 0, 256, 256);

    gl_setup((getproc_fn)eglGetProcAddress);
    long swap_ok = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--wait")) {
            char line[64];
            printf("{\"ready\":%d}\n", (int)getpid());
            fflush(stdout);
            if (!fgets(line, sizeof line, stdin)) return 1;
        }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int f = 0; f < frames; f++) {
        gl_frame(f, draws);
        swap_ok += eglSwapBuffers(dpy, surf) == EGL_TRUE; cnt[C_SWAP]++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char extra[640];
    snprintf(extra, sizeof extra, ",\"frame_seconds\":%.6f,\"wsi\":\"egl\",\"egl_platform\":\"%s\",\"egl_version\":\"%d.%d\","
             "\"eglSwapBuffers_true\":%ld,\"renderer\":\"%s\",\"pid\":%d",
             (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, platform, major, minor,
             swap_ok, (const char *)glGetString(GL_RENDERER), (int)getpid());
    gl_print_json("opengl", "eglSwapBuffers", frames, draws, extra);

    glDeleteFramebuffers(1, &fbo);
    glDeleteRenderbuffers(1, &rb);
    eglMakeCurrent(dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
    eglDestroyContext(dpy, ctx);
    eglDestroySurface(dpy, surf);
    eglTerminate(dpy);
    return 0;
}
