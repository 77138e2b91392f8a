/* Shared command-line conventions: messages, options, outputs, progress. */
#include "w2v/cli.h"
#include "w2v/fs.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "w2v";
static const char *usage_text = "";
static int quiet, progress_forced;

/* The library's messages, as the program's own. */
static void library_message(w2v_message_kind kind, const char *msg)
{
    if (kind == W2V_NOTE) w2v_note("%s", msg);
    else if (kind == W2V_WARNING) w2v_warn("%s", msg);
    else w2v_die("%s", msg);
}

void w2v_cli_init(const char *program, const char *usage, char **argv)
{
    prog = program;
    usage_text = usage;
    w2v_set_message_fn(library_message);
    /* A parent may have ignored SIGPIPE; restore the default so that a
     * closed pipe ends us quietly, as it does every Unix filter. */
    signal(SIGPIPE, SIG_DFL);
    /* libgomp's idle threads spin by default, and a spinning thread that
     * shares its core with another process (the other stages of a
     * pipeline, another job) stalls every barrier: a training step measured
     * 6x slower on two busy cores than with sleeping threads.  libgomp reads
     * its policy from the environment when it loads, before main, so the
     * program starts itself again with the policy set; a user's own
     * OMP_WAIT_POLICY is kept. */
    if (!getenv("OMP_WAIT_POLICY") && argv) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
        /* no /proc: run on with the default policy */
    }
}

static void vmessage(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void w2v_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    exit(1);
}

void w2v_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", prog);
    exit(2);
}

void w2v_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

void w2v_note(const char *fmt, ...)
{
    if (quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

int w2v_cli_common(int opt, const char *arg)
{
    switch (opt) {
    case 'h':
        fputs(usage_text, stdout);
        exit(0);
    case W2V_OPT_VERSION:
        printf("%s (w2vtools) %s\n", prog, W2V_VERSION);
        exit(0);
    case W2V_OPT_PROGRESS: progress_forced = 1; return 1;
    case W2V_OPT_QUIET: quiet = 1; return 1;
    case W2V_OPT_THREADS: w2v_set_threads((int)w2v_parse_long("--threads", arg, 1, 1024)); return 1;
    case '?': /* getopt has printed what was wrong */
        fprintf(stderr, "Try '%s --help' for more information.\n", prog);
        exit(2);
    }
    return 0;
}

long w2v_parse_long(const char *option, const char *arg, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end)
        w2v_usage_error("%s: not an integer: '%s'", option, arg);
    if (v < min || v > max)
        w2v_usage_error("%s: %ld is out of range [%ld, %ld]", option, v, min, max);
    return v;
}

double w2v_parse_double(const char *option, const char *arg, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !isfinite(v))
        w2v_usage_error("%s: not a number: '%s'", option, arg);
    if (v < min || v > max)
        w2v_usage_error("%s: %g is out of range [%g, %g]", option, v, min, max);
    return v;
}

/* ---- outputs ---- */

struct w2v_output {
    FILE *fp;
    w2v_atomic_file file; /* for named outputs */
    int named;
    w2v_output *next;
};

/* Outputs with a temporary file not yet renamed into place: a program that
 * dies (w2v_die, exit) leaves none of them behind. */
static w2v_output *pending;

static void remove_pending(void)
{
    for (w2v_output *o = pending; o; o = o->next) unlink(o->file.tmp);
}

static void forget(w2v_output *o)
{
    for (w2v_output **p = &pending; *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            break;
        }
}

void w2v_write_failed(const char *what)
{
    if (errno == EPIPE) exit(141); /* reader went away: quiet, like SIGPIPE; atexit removes temporaries */
    w2v_die("%s: write failed: %s", what, strerror(errno));
}

w2v_output *w2v_output_open(const char *path, int binary)
{
    w2v_output *o = calloc(1, sizeof *o);
    if (!o) w2v_die("out of memory");
    char err[512];
    if (!path || !strcmp(path, "-")) {
        if (binary && isatty(STDOUT_FILENO))
            w2v_usage_error("refusing to write a binary stream to a terminal: "
                            "redirect stdout or use -o FILE");
        o->fp = stdout;
        return o;
    }
    if (w2v_atomic_open(&o->file, path, err, sizeof err) < 0) w2v_die("%s", err);
    o->fp = o->file.fp;
    o->named = 1;
    static int registered;
    if (!registered++) atexit(remove_pending);
    o->next = pending;
    pending = o;
    return o;
}

FILE *w2v_output_file(w2v_output *o) { return o->fp; }

void w2v_output_close(w2v_output *o)
{
    char err[512];
    if (o->named) {
        forget(o);
        int ok = !ferror(o->fp);
        if (w2v_atomic_commit(&o->file, ok, err, sizeof err) < 0) w2v_die("%s", err);
    } else if (fflush(o->fp) != 0 || ferror(o->fp)) {
        if (!errno) errno = EIO;
        w2v_write_failed("stdout");
    }
    free(o);
}

void w2v_output_abort(w2v_output *o)
{
    if (!o) return;
    if (o->named) {
        forget(o);
        w2v_atomic_commit(&o->file, 0, NULL, 0);
    }
    free(o);
}

FILE *w2v_input_open(const char *path)
{
    if (!path || !strcmp(path, "-")) return stdin;
    FILE *fp = fopen(path, "rb");
    if (!fp) w2v_die("%s: cannot open: %s", path, strerror(errno));
    return fp;
}

void w2v_input_close(FILE *fp)
{
    if (fp && fp != stdin) fclose(fp);
}

const char *w2v_input_name(const char *path)
{
    return (!path || !strcmp(path, "-")) ? "stdin" : path;
}

/* ---- progress ---- */

void w2v_progress_start(w2v_progress *p, const char *what, double total)
{
    p->what = what;
    p->total = total;
    p->start = w2v_now();
    p->last_draw = 0;
    p->shown = !quiet && (progress_forced || isatty(STDERR_FILENO));
}

void w2v_progress_update(w2v_progress *p, double done, const char *extra)
{
    if (!p->shown) return;
    double now = w2v_now();
    if (now - p->last_draw < 0.2 && !(p->total > 0 && done >= p->total)) return;
    p->last_draw = now;
    double el = now - p->start, rate = el > 0 ? done / el : 0;
    char bar[32] = "";
    if (p->total > 0) {
        int w = 20, fill = (int)(w * (done / p->total));
        if (fill > w) fill = w;
        bar[0] = '[';
        for (int i = 0; i < w; i++) bar[1 + i] = i < fill ? '#' : '.';
        bar[w + 1] = ']';
        bar[w + 2] = 0;
        double eta = rate > 0 ? (p->total - done) / rate : 0;
        fprintf(stderr, "\r%s: %s %s %.0f/%.0f %.1f/s eta %.0fs %s\033[K", prog, p->what, bar,
                done, p->total, rate, eta, extra ? extra : "");
    } else {
        fprintf(stderr, "\r%s: %s %.0f %.1f/s %s\033[K", prog, p->what, done, rate,
                extra ? extra : "");
    }
    fflush(stderr);
}

void w2v_progress_end(w2v_progress *p)
{
    if (p->shown && p->last_draw > 0) fputc('\n', stderr);
    p->shown = 0;
}
