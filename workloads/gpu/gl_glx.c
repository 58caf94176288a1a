/* gl_glx: fixed-count OpenGL workload through GLX (run under Xvfb, DISPLAY from env).
 * Usage: gl_glx [--frames N (10)] [--draws K (8, multiple of 4)]
 * Prints one JSON line with its own per-call counts and byte totals. */
#include "gl_common.h"
#include <GL/glx.h>
#include <X11/Xlib.h>

int main(int argc, char **argv)
{
    int frames = parse_int_arg(argc, argv, "--frames", 10);
    int draws = parse_int_arg(argc, argv, "--draws", 8);
    if (frames < 0 || draws < 0 || draws % 4) { fprintf(stderr, "bad --frames/--draws\n"); return 2; }

    Display *dpy = XOpenDisplay(NULL);
    if (!dpy) { fprintf(stderr, "cannot open DISPLAY=%s\n", getenv("DISPLAY") ? getenv("DISPLAY") : "(unset)"); return 1; }
    int attr[] = { GLX_RGBA, GLX_RED_SIZE, 8, GLX_GREEN_SIZE, 8, GLX_BLUE_SIZE, 8,
                   GLX_DOUBLEBUFFER, None };
    XVisualInfo *vi = glXChooseVisual(dpy, DefaultScreen(dpy), attr);
    if (!vi) { fprintf(stderr, "glXChooseVisual failed\n"); return 1; }
    Window root = RootWindow(dpy, vi->screen);
    XSetWindowAttributes swa = { 0 };
    swa.colormap = XCreateColormap(dpy, root, vi->visual, AllocNone);
    Window win = XCreateWindow(dpy, root, 0, 0, 256, 256, 0, vi->depth, InputOutput,
                               vi->visual, CWColormap, &swa);
    XMapWindow(dpy, win);
    GLXContext ctx = glXCreateContext(dpy, vi, NULL, True);
    if (!ctx || !glXMakeCurrent(dpy, win, ctx)) { fprintf(stderr, "GLX context failed\n"); return 1; }
    glViewport(0, 0, 256, 256);

    gl_setup((getproc_fn)glXGetProcAddressARB);
    for (int f = 0; f < frames; f++) {
        gl_frame(f, draws);
        glXSwapBuffers(dpy, win); cnt[C_SWAP]++;
    }
    char extra[512];
    snprintf(extra, sizeof extra, ",\"wsi\":\"glx\",\"renderer\":\"%s\",\"pid\":%d",
             (const char *)glGetString(GL_RENDERER), (int)getpid());
    gl_print_json("opengl", "glXSwapBuffers", frames, draws, extra);

    glXMakeCurrent(dpy, None, NULL);
    glXDestroyContext(dpy, ctx);
    XDestroyWindow(dpy, win);
    XCloseDisplay(dpy);
    return 0;
}
