/* w2v-plot: the training curves of a run and the confusion matrix of an
 * evaluation as PNG pictures, drawn by gnuplot. */
#include "w2v/cli.h"
#include "w2v/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char usage[] =
    "w2v-plot: draw training curves or a confusion matrix as a PNG (with gnuplot)\n"
    "\n"
    "Usage: w2v-plot training [options] [METRICS.jsonl] [-o PNG]\n"
    "       w2v-plot confusion [options] [EVAL.json] [-o PNG]   (no file or '-' reads stdin)\n"
    " e.g.: w2v-plot training runs/base/metrics.jsonl -o training.png\n"
    "       w2v-eval -m runs/base --json - test.stream | w2v-plot confusion -o confusion.png\n"
    "\n"
    "training: training loss (line) and eval loss (points) against step, eval\n"
    "accuracy on the right axis (0 to 1), from w2v-train's metrics.jsonl.\n"
    "confusion: w2v-eval --json's confusion matrix, true labels as rows and predicted\n"
    "labels as columns; each cell shows its count and is coloured by the fraction\n"
    "of its row (the recall of the true label), so that rows of unequal size compare.\n"
    "\n"
    "Options:\n"
    "  -o, --output F   the PNG file (default: stdout, never a terminal)\n"
    "  --title TEXT     the title (default: the input file's name)\n"
    "  --size WxH       the picture's size in pixels (default: 900x600 for\n"
    "                   training, 700x650 for confusion)\n"
    "  --script         write the gnuplot script instead of the PNG, to adjust\n"
    "                   the picture by hand (w2v-plot --script ... | gnuplot > x.png)\n"
    "  -h, --help       this text\n"
    "  --version        print the version\n";

enum { OPT_TITLE = 1, OPT_SIZE, OPT_SCRIPT };

/* ---- gnuplot ---- */

/* A gnuplot string literal: in single quotes nothing is special but the
 * quote itself, written twice; a newline is joined in from a double-quoted
 * "\n", and other control characters (they would end the command) become
 * spaces. */
static void gp_string(FILE *fp, const char *s)
{
    fputc('\'', fp);
    for (; *s; s++) {
        if (*s == '\'') fputs("''", fp);
        else if (*s == '\n') fputs("'.\"\\n\".'", fp);
        else fputc((unsigned char)*s < 0x20 ? ' ' : *s, fp);
    }
    fputc('\'', fp);
}

/* The terminal: cairo's anti-aliased PNG where gnuplot has it, else libgd's.
 * noenhanced everywhere: label names such as _unknown_ are text, not
 * subscripts. */
static void gp_terminal(FILE *fp, int width, int height, const char *title)
{
    fprintf(fp,
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo noenhanced size %d,%d font 'sans,10'\n"
            "} else {\n"
            "  set terminal png noenhanced size %d,%d\n"
            "}\n"
            "set encoding utf8\n"
            "set title ",
            width, height, width, height);
    gp_string(fp, title);
    fputs(" font ',12'\n", fp);
}

/* Runs gnuplot on script, its PNG going straight to out's file; gnuplot's
 * messages become ours.  Dies when gnuplot cannot run or fails. */
static void run_gnuplot(const char *script, size_t len, w2v_output *out)
{
    FILE *o = w2v_output_file(out), *msgs = tmpfile();
    int in[2];
    if (!msgs) w2v_die("cannot create a temporary file for gnuplot's messages: %s", strerror(errno));
    if (fflush(o) != 0) w2v_write_failed("output");
    if (pipe2(in, O_CLOEXEC) < 0) w2v_die("cannot create a pipe to gnuplot: %s", strerror(errno));

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t dfl;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fileno(o), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fileno(msgs), STDERR_FILENO);
    /* gnuplot must die of SIGPIPE when the reader of -o - goes away, even
     * though we ignore it while writing the script. */
    posix_spawnattr_init(&attr);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    /* -d: the defaults, not the user's ~/.gnuplot */
    char *args[] = {"gnuplot", "-d", NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "gnuplot", &fa, &attr, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    if (err == ENOENT) w2v_die("cannot run gnuplot: not found on PATH (Debian: apt-get install gnuplot-nox)");
    if (err) w2v_die("cannot run gnuplot: %s", strerror(err));

    /* A gnuplot that stops early closes the pipe: its status says why. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t done = 0; done < len;) {
        ssize_t n = write(in[1], script + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    close(in[1]);
    signal(SIGPIPE, SIG_DFL);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) w2v_die("waiting for gnuplot: %s", strerror(errno));

    rewind(msgs);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, msgs)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (strspn(line, " \t") < (size_t)n) w2v_warn("gnuplot: %s", line);
    }
    free(line);
    fclose(msgs);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE) exit(141); /* the reader went away */
    if (WIFSIGNALED(status)) w2v_die("gnuplot failed: killed by signal %d", WTERMSIG(status));
    if (WEXITSTATUS(status)) w2v_die("gnuplot failed: exit status %d", WEXITSTATUS(status));
}

/* ---- training curves ---- */

/* A gnuplot datablock $name of (x, y) rows. */
static void gp_datablock(FILE *fp, const char *name, const w2v_series *s)
{
    fprintf(fp, "$%s << EOD\n", name);
    for (size_t i = 0; i < s->n; i++) fprintf(fp, "%.10g %.10g\n", s->x[i], s->y[i]);
    fputs("EOD\n", fp);
}

static void plot_training(FILE *in, const char *name, const char *title, int width, int height, FILE *gp)
{
    w2v_training_log log;
    char err[1024];
    if (w2v_training_log_read(in, name, &log, err, sizeof err) < 0) w2v_die("%s", err);
    const w2v_series loss = log.loss, eval_loss = log.eval_loss, eval_acc = log.eval_accuracy;
    if (log.stepless)
        w2v_warn("%s: %ld line%s without a numeric \"step\" left out", name, log.stepless, log.stepless > 1 ? "s" : "");
    if (!loss.n && !eval_loss.n && !eval_acc.n)
        w2v_die("%s: nothing to plot: no line has a step with a loss, eval_loss or eval_accuracy", name);

    /* Ranges set here, not left to gnuplot, which warns about and widens
     * the empty range of a single point.  Losses from 0; steps from 0. */
    double xmin = 0, xmax = 0, ymax = 0;
    const w2v_series *all[] = {&loss, &eval_loss, &eval_acc};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < all[k]->n; i++) {
            xmin = fmin(xmin, all[k]->x[i]);
            xmax = fmax(xmax, all[k]->x[i]);
            if (k < 2) ymax = fmax(ymax, all[k]->y[i]); /* the losses */
        }
    if (xmax <= xmin) xmax = xmin + 1;
    ymax = ymax > 0 ? ymax * 1.05 : 1;

    gp_terminal(gp, width, height, title);
    fprintf(gp,
            "set xlabel 'step'\n"
            "set ylabel 'loss'\n"
            "set xrange [%.10g:%.10g]\n"
            "set yrange [0:%.10g]\n"
            "set xtics nomirror\n"
            "set ytics nomirror\n"
            "set grid xtics ytics lc rgb '#dddddd' lt 1\n"
            "set key below horizontal spacing 1.2 width 2 height 1\n"
            "set tmargin 3\n",
            xmin, xmax, ymax);
    if (eval_acc.n)
        fputs("set y2label 'eval accuracy'\n"
              "set y2range [0:1]\n"
              "set y2tics 0.1 format '%.1f'\n",
              gp);
    else fputs("set rmargin 4\n", gp);
    gp_datablock(gp, "loss", &loss);
    gp_datablock(gp, "eval_loss", &eval_loss);
    gp_datablock(gp, "eval_acc", &eval_acc);

    /* A line needs two points: a lone training loss is drawn as a point. */
    const char *sep = "plot ";
    if (loss.n) {
        fprintf(gp, "%s$loss using 1:2 with %s lw 1.5 lc rgb '#1f77b4' title 'training loss'", sep,
                loss.n > 1 ? "lines" : "points pt 7 ps 1");
        sep = ", \\\n     ";
    }
    if (eval_loss.n) {
        fprintf(gp, "%s$eval_loss using 1:2 with linespoints lw 1.5 dt 2 pt 7 ps 1.3 lc rgb '#d62728' title 'eval loss'",
                sep);
        sep = ", \\\n     ";
    }
    if (eval_acc.n)
        fprintf(gp,
                "%s$eval_acc using 1:2 axes x1y2 with linespoints lw 1.5 pt 5 ps 1.3 lc rgb '#2ca02c' "
                "title 'eval accuracy'",
                sep);
    fputc('\n', gp);
    w2v_training_log_free(&log);
}

/* ---- confusion matrix ---- */

static void plot_confusion(FILE *in, const char *name, const char *title, int width, int height, FILE *gp)
{
    w2v_confusion cm;
    char err[1024];
    if (w2v_confusion_read(in, name, &cm, err, sizeof err) < 0) w2v_die("%s", err);
    size_t n = cm.n;
    const long *count = cm.count;

    char *heading;
    if (asprintf(&heading, "%s\naccuracy %.4f, %ld examples", title, cm.accuracy, cm.total) < 0) w2v_die("out of memory");
    gp_terminal(gp, width, height, heading);
    free(heading);
    /* Cell text small enough for the cells: about a third of a cell's
     * height, which the plot gets from the smaller side less the margins. */
    double cell = (fmin(width, height) - 200) / (double)n;
    int font = (int)fmax(6, fmin(11, cell / 3.2));
    fprintf(gp,
            "set xlabel 'predicted label'\n"
            "set ylabel 'true label'\n"
            "set size ratio -1\n"
            "set xrange [-0.5:%zu.5]\n"
            "set yrange [%zu.5:-0.5]\n"
            "set tics scale 0\n"
            "set xtics rotate by 45 right\n"
            "set cbrange [0:1]\n"
            "set cbtics 0.2 format '%%.1f'\n"
            "set cblabel 'fraction of the true label''s examples'\n"
            "set palette defined (0 '#ffffff', 0.25 '#c6dbef', 0.5 '#6baed6', 0.75 '#2171b5', 1 '#08306b')\n"
            "unset key\n",
            n - 1, n - 1);
    const char *axes[] = {"xtics", "ytics"};
    for (int a = 0; a < 2; a++) {
        fprintf(gp, "set %s (", axes[a]);
        for (size_t i = 0; i < n; i++) {
            gp_string(gp, cm.labels[i]);
            fprintf(gp, " %zu%s", i, i + 1 < n ? ", " : ")\n");
        }
    }
    /* Columns: predicted, true, fraction of the row, count, text colour
     * (white on dark cells, grey for zeros). */
    fputs("$cells << EOD\n", gp);
    for (size_t i = 0; i < n; i++) {
        long support = 0;
        for (size_t j = 0; j < n; j++) support += count[i * n + j];
        for (size_t j = 0; j < n; j++) {
            long c = count[i * n + j];
            double frac = support ? (double)c / (double)support : 0;
            fprintf(gp, "%zu %zu %.6f %ld %s\n", j, i, frac, c,
                    !c ? "0xb0b0b0" : frac > 0.55 ? "0xffffff" : "0x000000");
        }
    }
    fputs("EOD\n", gp);
    fprintf(gp,
            "plot $cells using 1:2:3 with image, \\\n"
            "     $cells using 1:2:(sprintf('%%d', $4)):5 with labels font ',%d' tc rgb variable\n",
            font);
    w2v_confusion_free(&cm);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"output", required_argument, 0, 'o'},
        {"title", required_argument, 0, OPT_TITLE},
        {"size", required_argument, 0, OPT_SIZE},
        {"script", no_argument, 0, OPT_SCRIPT},
        {0, 0, 0, 0},
    };
    const char *output = NULL, *title = NULL;
    int width = 0, height = 0, script_only = 0, opt;
    w2v_cli_init("w2v-plot", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case OPT_TITLE: title = optarg; break;
        case OPT_SCRIPT: script_only = 1; break;
        case OPT_SIZE: {
            int end = 0;
            if (sscanf(optarg, "%dx%d%n", &width, &height, &end) != 2 || optarg[end] || width < 100 || height < 100 ||
                width > 10000 || height > 10000)
                w2v_usage_error("--size: not WIDTHxHEIGHT in pixels, each 100 to 10000: '%s'", optarg);
            break;
        }
        }
    }
    if (optind >= argc) w2v_usage_error("no mode: 'training' or 'confusion'");
    const char *mode = argv[optind++];
    int training = !strcmp(mode, "training");
    if (!training && strcmp(mode, "confusion")) w2v_usage_error("unknown mode '%s': 'training' or 'confusion'", mode);
    if (argc - optind > 1) w2v_usage_error("one input file at most, not %d", argc - optind);
    const char *path = optind < argc ? argv[optind] : NULL, *name = w2v_input_name(path);
    if (!width) width = training ? 900 : 700, height = training ? 600 : 650;
    if (!title) title = name;

    /* Opened first, so that a terminal is refused before stdin is read; bad
     * input then dies leaving no output (w2v_output removes it). */
    w2v_output *out = w2v_output_open(output, !script_only);
    FILE *in = w2v_input_open(path);
    char *script;
    size_t len;
    FILE *gp = open_memstream(&script, &len);
    if (!gp) w2v_die("out of memory");
    if (training) plot_training(in, name, title, width, height, gp);
    else plot_confusion(in, name, title, width, height, gp);
    w2v_input_close(in);
    if (fclose(gp) != 0) w2v_die("out of memory");

    if (!script_only) run_gnuplot(script, len, out);
    else if (fwrite(script, 1, len, w2v_output_file(out)) != len)
        w2v_write_failed(output && strcmp(output, "-") ? output : "stdout");
    w2v_output_close(out);
    free(script);
    return 0;
}
