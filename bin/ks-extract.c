/* ks-extract: the audio files of a manifest to an examples stream of
 * (normalised) mono waveforms, decoded in parallel, in manifest order. */
#include "w2v/audio.h"
#include "w2v/cli.h"
#include "w2v/config.h"
#include "w2v/corpus.h"
#include "w2v/stream.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "ks-extract: decode the audio files of a manifest into an examples stream\n"
    "(mono, resampled, normalised as Wav2Vec2FeatureExtractor does)\n"
    "\n"
    "Usage: ks-extract [options] [MANIFEST]     (no MANIFEST or '-' reads stdin)\n"
    " e.g.: ks-extract -j2 data/train.tsv > train.stream\n"
    "       ks-extract --max-length 16000 data/test.tsv | ks-batch -b 32 | w2v-eval -m model/\n"
    "\n"
    "MANIFEST lines are key<TAB>path<TAB>label (an optional first line\n"
    "'key<TAB>path<TAB>label' is skipped; an empty or missing label is -1).\n"
    "Relative paths are relative to the manifest's directory.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE     write the stream to FILE (default: stdout)\n"
    "  --labels A,B,...      label names in id order (default: the SUPERB KS\n"
    "                        labels yes,no,up,down,left,right,on,off,stop,go,\n"
    "                        _silence_,_unknown_ when every label of the manifest\n"
    "                        is one of them, else the sorted names of the manifest)\n"
    "  --rate HZ             sample rate of the output (default: 16000)\n"
    "  --converter NAME      resampler: best, medium, fastest, zoh, linear (default: best)\n"
    "  --max-length N        keep the first N samples of each example, then\n"
    "                        normalise (default: 0 = everything)\n"
    "  --slice-long SECONDS  cut files longer than SECONDS into consecutive windows\n"
    "                        of that length (keys KEY@FIRST_SAMPLE; the remainder\n"
    "                        shorter than a window is dropped) (default: 0 = off)\n"
    "  --no-normalize        raw waveforms (default: zero mean, unit variance)\n"
    "  -j, --threads N       decoding threads (default: the cores available)\n"
    "  --strict              an unreadable file is fatal (default: warn and skip)\n"
    "  --progress            progress bar even when stderr is not a terminal\n"
    "  --quiet               no progress bar or summary\n"
    "  -h, --help            this text\n"
    "  --version             print the version\n";

enum { OPT_LABELS = 1, OPT_RATE, OPT_CONVERTER, OPT_MAX_LENGTH, OPT_SLICE, OPT_NO_NORMALIZE, OPT_STRICT };


typedef struct {
    int rate, converter, normalize;
    int64_t max_length, slice; /* samples; 0 = off */
} options;

typedef struct {
    char *key, *path, *file; /* path as in the manifest; file: what is opened */
    char *label_name;        /* NULL: no label */
    int64_t label;
    long line;
    int missing;             /* the file cannot be read: skipped, its label not counted */
} entry;

/* ---- manifest ---- */

static entry *read_manifest(const char *path, long *count)
{
    FILE *fp = w2v_input_open(path);
    const char *name = w2v_input_name(path);
    char err[1024];
    w2v_manifest_row *rows;
    long n = w2v_manifest_read(fp, name, &rows, err, sizeof err);
    if (n < 0) w2v_die("%s", err);
    w2v_input_close(fp);
    /* Relative audio paths are taken from the manifest's directory. */
    const char *slash = path && strcmp(path, "-") ? strrchr(path, '/') : NULL;
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e) w2v_die("out of memory");
    for (long i = 0; i < n; i++) {
        entry *x = &e[i];
        x->key = rows[i].key;
        x->path = rows[i].path;
        x->label_name = rows[i].label;
        x->line = rows[i].line;
        if (asprintf(&x->file, "%.*s%s", x->path[0] != '/' ? dirlen : 0, path ? path : "", x->path) < 0)
            w2v_die("out of memory");
        x->missing = access(x->file, R_OK) != 0;
    }
    free(rows); /* the strings now belong to the entries */
    *count = n;
    return e;
}

/* ---- labels ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int find_label(char **names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return i;
    return -1;
}

/* The label list: --labels, or the KS labels when they cover the manifest,
 * or the sorted names of the manifest.  Sets every entry's id. */
static char **assign_labels(entry *e, long n, const char *manifest, char **given, int ngiven, int *count)
{
    char **names = given;
    int nnames = ngiven;
    if (!given) {
        char **seen = NULL;
        int nseen = 0, all_ks = 1;
        for (long i = 0; i < n; i++) {
            if (!e[i].label_name || e[i].missing || find_label(seen, nseen, e[i].label_name) >= 0) continue;
            seen = realloc(seen, (size_t)(nseen + 1) * sizeof *seen);
            if (!seen) w2v_die("out of memory");
            seen[nseen++] = e[i].label_name;
            all_ks &= find_label((char **)w2v_ks_labels, W2V_KS_NLABELS, e[i].label_name) >= 0;
        }
        if (all_ks) {
            free(seen);
            names = (char **)w2v_ks_labels;
            nnames = W2V_KS_NLABELS;
        } else {
            qsort(seen, (size_t)nseen, sizeof *seen, cmp_str);
            names = seen;
            nnames = nseen;
        }
    }
    for (long i = 0; i < n; i++) {
        e[i].label = e[i].label_name ? find_label(names, nnames, e[i].label_name) : -1;
        if (e[i].label_name && e[i].label < 0 && !e[i].missing)
            w2v_die("%s:%ld: label '%s' is not among --labels", w2v_input_name(manifest), e[i].line, e[i].label_name);
    }
    *count = nnames;
    return names;
}

/* ---- decoding one file into its records ---- */

typedef struct {
    int ready;
    float *x;              /* the decoded file; records are windows of it */
    long nrec;
    int64_t *start, *len;  /* per record */
    char err[600];         /* non-empty: the file is skipped */
} result;

static void prepare(const entry *e, const options *o, result *r)
{
    int64_t n;
    if (w2v_audio_load(e->file, o->rate, o->converter, &r->x, &n, r->err, sizeof r->err) < 0) return;
    int sliced = o->slice > 0 && n > o->slice;
    r->nrec = sliced ? (long)(n / o->slice) : 1;
    r->start = malloc((size_t)r->nrec * sizeof *r->start);
    r->len = malloc((size_t)r->nrec * sizeof *r->len);
    if (!r->start || !r->len) w2v_die("out of memory");
    for (long k = 0; k < r->nrec; k++) {
        r->start[k] = sliced ? k * o->slice : 0;
        r->len[k] = sliced ? o->slice : n;
        /* HF truncates before it normalises */
        if (o->max_length > 0 && r->len[k] > o->max_length) r->len[k] = o->max_length;
        if (o->normalize && w2v_audio_normalize(r->x + r->start[k], r->len[k]) < 0) {
            snprintf(r->err, sizeof r->err, "%s: samples too large to normalise (their float32 sums overflow)", e->file);
            return;
        }
    }
}

static void result_free(result *r)
{
    free(r->x);
    free(r->start);
    free(r->len);
}

/* ---- the pipeline: workers decode ahead, the main thread writes in order ---- */

typedef struct {
    const entry *entries;
    long nentries;
    const options *opt;
    result *ring;        /* entry i waits in ring[i % window] */
    long window;         /* entries decoded or decoding ahead of the writer */
    long next, written;  /* next entry to take; entries the writer has taken */
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t ready, room;
} pipeline;

static void *worker(void *arg)
{
    pipeline *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next < p->nentries && p->next >= p->written + p->window)
            pthread_cond_wait(&p->room, &p->mu);
        if (p->stop || p->next >= p->nentries) break;
        long i = p->next++;
        pthread_mutex_unlock(&p->mu);
        result r = {0};
        prepare(&p->entries[i], p->opt, &r);
        r.ready = 1;
        pthread_mutex_lock(&p->mu);
        p->ring[i % p->window] = r;
        pthread_cond_broadcast(&p->ready);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Waits for entry i (taken in order) and hands it over. */
static result take(pipeline *p, long i)
{
    pthread_mutex_lock(&p->mu);
    while (!p->ring[i % p->window].ready) pthread_cond_wait(&p->ready, &p->mu);
    result r = p->ring[i % p->window];
    p->ring[i % p->window].ready = 0;
    p->written = i + 1;
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->mu);
    return r;
}

static void stop_workers(pipeline *p, pthread_t *threads, int nthreads)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < nthreads; t++) pthread_join(threads[t], NULL);
    for (long k = 0; k < p->window; k++)
        if (p->ring[k].ready) result_free(&p->ring[k]);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"output", required_argument, 0, 'o'},
        {"labels", required_argument, 0, OPT_LABELS},
        {"rate", required_argument, 0, OPT_RATE},
        {"converter", required_argument, 0, OPT_CONVERTER},
        {"max-length", required_argument, 0, OPT_MAX_LENGTH},
        {"slice-long", required_argument, 0, OPT_SLICE},
        {"no-normalize", no_argument, 0, OPT_NO_NORMALIZE},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {"strict", no_argument, 0, OPT_STRICT},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {0, 0, 0, 0},
    };
    options o = {.rate = 16000, .converter = W2V_AUDIO_DEFAULT_CONVERTER, .normalize = 1};
    const char *output = NULL, *labels_arg = NULL;
    double slice_seconds = 0;
    int strict = 0, opt;
    w2v_cli_init("ks-extract", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:j:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case 'j': w2v_set_threads((int)w2v_parse_long("-j", optarg, 1, 1024)); break;
        case OPT_LABELS: labels_arg = optarg; break;
        case OPT_RATE: o.rate = (int)w2v_parse_long("--rate", optarg, 1, 1000000); break;
        case OPT_CONVERTER:
            if ((o.converter = w2v_audio_converter(optarg)) < 0)
                w2v_usage_error("--converter: unknown converter '%s' (best, medium, fastest, zoh, linear)", optarg);
            break;
        case OPT_MAX_LENGTH: o.max_length = w2v_parse_long("--max-length", optarg, 0, INT32_MAX); break;
        case OPT_SLICE: slice_seconds = w2v_parse_double("--slice-long", optarg, 0, 1e6); break;
        case OPT_NO_NORMALIZE: o.normalize = 0; break;
        case OPT_STRICT: strict = 1; break;
        }
    }
    if (argc - optind > 1) w2v_usage_error("one manifest at most");
    const char *manifest = optind < argc ? argv[optind] : NULL;
    o.slice = (int64_t)(slice_seconds * o.rate + 0.5);
    if (slice_seconds > 0 && o.slice < 1) w2v_usage_error("--slice-long: %g s is less than one sample", slice_seconds);

    int ngiven = 0, nlabels;
    char **given = NULL, why[512];
    if (labels_arg && (ngiven = w2v_labels_parse(labels_arg, &given, why, sizeof why)) < 0)
        w2v_usage_error("--labels: %s", why);
    long n;
    entry *e = read_manifest(manifest, &n);
    char **labels = assign_labels(e, n, manifest, given, ngiven, &nlabels);

    w2v_output *out = w2v_output_open(output, 1);
    const char *out_name = output ? output : "stdout";
    w2v_writer *w = w2v_writer_new(w2v_output_file(out));
    w2v_header h;
    w2v_header_init(&h, W2V_EXAMPLES, nlabels, labels);
    h.sample_rate = o.rate;
    h.do_normalize = o.normalize;
    if (w2v_write_header(w, &h) < 0) w2v_write_failed(out_name);

    int nthreads = w2v_threads();
    pipeline p = {.entries = e, .nentries = n, .opt = &o, .window = 4L * nthreads};
    p.ring = calloc((size_t)p.window, sizeof *p.ring);
    pthread_t *threads = calloc((size_t)nthreads, sizeof *threads);
    if (!p.ring || !threads) w2v_die("out of memory");
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.ready, NULL);
    pthread_cond_init(&p.room, NULL);
    for (int t = 0; t < nthreads; t++)
        if ((errno = pthread_create(&threads[t], NULL, worker, &p)) != 0)
            w2v_die("cannot start a thread: %s", strerror(errno));

    w2v_progress prog;
    w2v_progress_start(&prog, "files", (double)n);
    double t0 = w2v_now();
    long records = 0, skipped = 0;
    for (long i = 0; i < n; i++) {
        result r = take(&p, i);
        if (r.err[0]) {
            if (strict) {
                stop_workers(&p, threads, nthreads);
                w2v_output_abort(out);
                w2v_die("%s:%ld: %s", w2v_input_name(manifest), e[i].line, r.err);
            }
            w2v_warn("%s:%ld: %s: skipped", w2v_input_name(manifest), e[i].line, r.err);
            skipped++;
        }
        for (long k = 0; k < r.nrec; k++) {
            char *key = e[i].key;
            if (r.nrec > 1 && asprintf(&key, "%s@%" PRId64, e[i].key, r.start[k]) < 0) w2v_die("out of memory");
            w2v_example ex = {.key = key, .path = e[i].path, .label = e[i].label,
                              .length = r.len[k], .input_values = r.x + r.start[k]};
            if (w2v_write_example(w, &ex) < 0) w2v_write_failed(out_name);
            if (key != e[i].key) free(key);
            records++;
        }
        result_free(&r);
        w2v_progress_update(&prog, (double)(i + 1), NULL);
    }
    w2v_progress_end(&prog);
    stop_workers(&p, threads, nthreads);
    if (n > 0 && records == 0) {
        w2v_output_abort(out);
        w2v_die("no file of %s could be read", w2v_input_name(manifest));
    }
    w2v_writer_free(w);
    w2v_output_close(out);
    double dt = w2v_now() - t0;
    w2v_note("%ld files, %ld records, %ld skipped, %.1f s (%.0f files/s)", n, records, skipped, dt,
             dt > 0 ? (double)n / dt : 0.0);

    w2v_header_free(&h);
    for (long i = 0; i < n; i++) {
        free(e[i].key);
        free(e[i].path);
        free(e[i].file);
        free(e[i].label_name);
    }
    if (labels != given && labels != (char **)w2v_ks_labels) free(labels);
    w2v_labels_free(given, ngiven);
    free(e);
    free(p.ring);
    free(threads);
    return 0;
}
