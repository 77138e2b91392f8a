/* The library's ground floor (w2v/base.h): messages, the clock, allocation,
 * error buffers and JSON lines (internal.h). */
#include "w2v/base.h"
#include "internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static w2v_message_fn message_fn;

void w2v_set_message_fn(w2v_message_fn fn) { message_fn = fn; }

static void vsend(w2v_message_kind kind, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (message_fn) message_fn(kind, msg);
    else if (kind != W2V_NOTE) fprintf(stderr, "libw2v: %s\n", msg);
}

void lib_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsend(W2V_NOTE, fmt, ap);
    va_end(ap);
}

void lib_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsend(W2V_WARNING, fmt, ap);
    va_end(ap);
}

/* Out of memory: the message function may end the process; else abort. */
static void oom(size_t n)
{
    char msg[64];
    snprintf(msg, sizeof msg, "out of memory (%zu bytes)", n);
    if (message_fn) message_fn(W2V_FATAL, msg);
    else fprintf(stderr, "libw2v: %s\n", msg);
    abort();
}

double w2v_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- allocation ---- */

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) oom(n);
    return p;
}

char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) oom(strlen(s) + 1);
    return d;
}

void *xaligned(size_t bytes)
{
    bytes = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) oom(bytes);
    return p;
}

float *xalloc_floats(size_t n)
{
    float *p = xaligned(n * sizeof(float));
    memset(p, 0, n * sizeof(float));
    return p;
}

int set_error(char *err, size_t len, const char *fmt, ...)
{
    if (err && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- output ---- */

int w2v_json_line(FILE *fp, const json_t *o)
{
    if (json_dumpf(o, fp, JSON_COMPACT | JSON_REAL_PRECISION(9)) < 0) return -1;
    return fputc('\n', fp) == EOF ? -1 : 0;
}
