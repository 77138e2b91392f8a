/* Shared command-line conventions of the w2vtools programs.
 *
 * Every program: getopt_long options, -h/--help and --version, inputs as file
 * arguments or "-" for stdin, output to stdout or -o FILE (written to a
 * temporary name and renamed when complete), no binary output to a terminal,
 * errors as "program: what failed: why" with a non-zero exit (2 for usage),
 * a quiet exit when the reader of a pipe goes away. */
#ifndef W2V_CLI_H
#define W2V_CLI_H

#include <stdio.h>
#include <stdarg.h>

#include <jansson.h>

#include "w2v/base.h"
#include "w2v/threads.h"

/* Options every program accepts; the ids are above any single character. */
enum { W2V_OPT_VERSION = 0x1000, W2V_OPT_PROGRESS, W2V_OPT_QUIET, W2V_OPT_THREADS };
#define W2V_COMMON_LONGOPTS \
    {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, W2V_OPT_VERSION}

/* Call first, with main's argv: records the program name and usage text,
 * restores the default SIGPIPE action so a closed pipe ends the program
 * quietly, and makes idle OpenMP threads sleep rather than spin (see
 * lib/cli.c). */
void w2v_cli_init(const char *program, const char *usage, char **argv);

/* Handles the options common to all programs (help, version, progress,
 * quiet, threads).  Returns 1 when opt was one of them. */
int w2v_cli_common(int opt, const char *arg);

/* "program: message" on stderr; die exits 1, usage_error exits 2 and points
 * to --help. */
void w2v_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void w2v_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void w2v_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Informational line on stderr unless --quiet. */
void w2v_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse numbers from option arguments, or exit with a usage error naming the option. */
long w2v_parse_long(const char *option, const char *arg, long min, long max);
double w2v_parse_double(const char *option, const char *arg, double min, double max);


/* Output file: path NULL or "-" means stdout.  A named file is written as
 * PATH.tmp.PID and renamed by w2v_output_close; on failure nothing is left.
 * binary != 0 refuses a terminal. */
typedef struct w2v_output w2v_output;
w2v_output *w2v_output_open(const char *path, int binary);
FILE *w2v_output_file(w2v_output *out);
/* Flushes, checks for write errors and renames into place; dies on failure. */
void w2v_output_close(w2v_output *out);
/* Removes the temporary file; for error paths. */
void w2v_output_abort(w2v_output *out);
/* Dies with the standard message after a failed write (quietly on EPIPE). */
void w2v_write_failed(const char *what) __attribute__((noreturn));
/* Writes o as one compact JSON line, floats with 9 significant digits (the
 * library's own, lib/base.c).  0, or -1 with errno set. */
int w2v_json_line(FILE *fp, const json_t *o);

/* Open an input: NULL or "-" is stdin. Dies with a clear message on failure. */
FILE *w2v_input_open(const char *path);
void w2v_input_close(FILE *fp);
/* Printable name of an input path ("-" and NULL read "stdin"). */
const char *w2v_input_name(const char *path);

/* Progress on stderr, drawn only when stderr is a terminal (or --progress),
 * never with --quiet.  total may be 0 when unknown. */
typedef struct {
    const char *what;
    double total, start;
    double last_draw;
    int shown;
} w2v_progress;
void w2v_progress_start(w2v_progress *p, const char *what, double total);
void w2v_progress_update(w2v_progress *p, double done, const char *extra);
void w2v_progress_end(w2v_progress *p);

#endif
