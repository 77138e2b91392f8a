/* ks-batch: an examples stream to a batches stream: shuffled, padded,
 * batched, for one or more epochs, reading records on demand. */
#include "w2v/cli.h"
#include "w2v/rng.h"
#include "w2v/stream.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "ks-batch: group an examples stream into padded batches, epoch after epoch\n"
    "\n"
    "Usage: ks-batch [options] [EXAMPLES]     (no EXAMPLES or '-' reads stdin)\n"
    " e.g.: ks-batch -b 32 --shuffle --epochs 5 train.stream | w2v-train ...\n"
    "       ks-extract data/test.tsv | ks-batch -b 64 --sort-by-length | w2v-eval -m model/\n"
    "\n"
    "Every batch holds input_values f32 [B, T] zero-padded to the longest\n"
    "example of the batch, attention_mask u8 [B, T] (1 = real sample),\n"
    "lengths, labels and keys.  Input from a pipe is first copied to an\n"
    "unlinked file in $TMPDIR (default /tmp); a file is read in place.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE    write the stream to FILE (default: stdout)\n"
    "  -b, --batch-size N   examples per batch (default: 8)\n"
    "  --epochs N           epochs written one after the other (default: 1)\n"
    "  --shuffle            a fresh order every epoch (default: input order)\n"
    "  --seed S             seed of every random choice (default: 42)\n"
    "  --balance            draw examples with replacement, each class equally\n"
    "                       likely (weight 1/class size), as many draws as\n"
    "                       examples per epoch (implies a random order)\n"
    "  --sort-by-length     batch examples of similar length: with --shuffle or\n"
    "                       --balance, runs of 100 batches are sorted and the\n"
    "                       batches shuffled; else everything is sorted\n"
    "  --drop-last          drop the last batch of an epoch when incomplete\n"
    "  --max-length N       keep at most N samples of an example (default: 0 = all)\n"
    "  --crop MODE          which N: 'start' (default) or 'random' (a fresh\n"
    "                       window every epoch; needs --max-length)\n"
    "  --pad-to N           pad every batch to N samples (default: 0 = longest)\n"
    "  --progress           progress bar even when stderr is not a terminal\n"
    "  --quiet              no progress bar or summary\n"
    "  -h, --help           this text\n"
    "  --version            print the version\n";

enum { OPT_EPOCHS = 1, OPT_SHUFFLE, OPT_SEED, OPT_BALANCE, OPT_SORT, OPT_DROP_LAST, OPT_MAX_LENGTH, OPT_CROP, OPT_PAD_TO };

typedef struct {
    long batch_size, epochs, max_length, pad_to;
    uint64_t seed;
    int shuffle, balance, sort, drop_last, crop_random;
} options;

/* ---- the index of the input: where each record is, its label and length ---- */

typedef struct {
    int64_t offset, length, label;
    long record; /* index in the stream, for messages */
} item;

static item *index_push(item *items, long *n, long *cap, const w2v_reader *r, int64_t offset, const w2v_example *ex)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 4096;
        items = realloc(items, (size_t)*cap * sizeof *items);
        if (!items) w2v_die("out of memory");
    }
    items[(*n)++] = (item){offset, ex->length, ex->label, w2v_reader_index(r)};
    return items;
}

/* A file is indexed in place.  A pipe is copied to an unlinked temporary
 * file as it is indexed; *r then reads the copy.  Every record is decoded
 * once here, so a bad one stops us before anything is written. */
static item *index_input(w2v_reader **rp, long *count)
{
    w2v_reader *r = *rp;
    FILE *tmp = NULL;
    w2v_writer *copy = NULL;
    char err[512];
    if (!w2v_reader_seekable(r)) {
        const char *dir = getenv("TMPDIR");
        char *path;
        if (asprintf(&path, "%s/ks-batch.XXXXXX", dir && *dir ? dir : "/tmp") < 0) w2v_die("out of memory");
        int fd = mkstemp(path);
        if (fd < 0) w2v_die("%s: cannot create a temporary file: %s", path, strerror(errno));
        unlink(path);
        if (!(tmp = fdopen(fd, "w+b"))) w2v_die("%s: %s", path, strerror(errno));
        free(path);
        copy = w2v_writer_new(tmp);
        if (w2v_write_record(copy, r) < 0) w2v_die("temporary file: write failed: %s", strerror(errno));
    }
    item *items = NULL;
    long n = 0, cap = 0;
    int ret;
    w2v_progress prog;
    w2v_progress_start(&prog, "indexing examples", 0);
    while ((ret = w2v_reader_next(r, err, sizeof err)) > 0) {
        w2v_example ex;
        if (w2v_reader_example(r, &ex, err, sizeof err) < 0) w2v_die("%s", err);
        int64_t offset = w2v_reader_offset(r);
        if (copy) {
            offset = ftello(tmp);
            if (w2v_write_record(copy, r) < 0)
                w2v_die("temporary file: write failed: %s", strerror(errno));
        }
        items = index_push(items, &n, &cap, r, offset, &ex);
        w2v_progress_update(&prog, (double)n, NULL);
    }
    w2v_progress_end(&prog);
    if (ret < 0) w2v_die("%s", err);
    if (copy) {
        if (fflush(tmp) != 0 || w2v_writer_status(copy) < 0)
            w2v_die("temporary file: write failed: %s", strerror(errno));
        w2v_writer_free(copy);
        rewind(tmp);
        char err[512];
        w2v_reader_close(r);
        /* the copy is read through tmp for the rest of the run (exit closes it) */
        if (!(*rp = w2v_reader_from_file(tmp, "stdin (copy)", err, sizeof err))) w2v_die("%s", err);
    }
    *count = n;
    return items;
}

/* ---- one epoch's plan: which examples, in which batches ---- */

typedef struct {
    long *order;   /* item indices in batch order */
    long n;        /* examples this epoch */
    long *start;   /* batch b is order[start[b] .. start[b] + size(b)) */
    long nbatches;
} plan;

static int64_t effective_length(const item *it, int64_t max_length)
{
    return max_length > 0 && it->length > max_length ? max_length : it->length;
}

typedef struct {
    const item *items;
    int64_t max_length;
} length_order;

/* by length, then by index: a total order, so qsort's instability is moot */
static int by_length(const void *a, const void *b, void *ctx)
{
    const length_order *lo = ctx;
    long i = *(const long *)a, j = *(const long *)b;
    int64_t li = effective_length(&lo->items[i], lo->max_length), lj = effective_length(&lo->items[j], lo->max_length);
    return li < lj ? -1 : li > lj ? 1 : (i > j) - (i < j);
}

static long batch_count(long n, const options *o)
{
    return o->drop_last ? n / o->batch_size : (n + o->batch_size - 1) / o->batch_size;
}

static long batch_size_of(const plan *p, long b, const options *o)
{
    long left = p->n - p->start[b];
    return left < o->batch_size ? left : o->batch_size;
}

/* Per class lists of items, for --balance. */
typedef struct {
    long nclasses;
    long *size, **members;
} classes;

static classes group_classes(const item *items, long n, int nlabels)
{
    /* class c holds label c - 1: -1 (unlabelled) is a class of its own */
    classes c = {0};
    long *size = calloc((size_t)nlabels + 1, sizeof *size);
    if (!size) w2v_die("out of memory");
    for (long i = 0; i < n; i++) size[items[i].label + 1]++;
    c.size = calloc((size_t)nlabels + 1, sizeof *c.size);
    c.members = calloc((size_t)nlabels + 1, sizeof *c.members);
    if (!c.size || !c.members) w2v_die("out of memory");
    long *slot = calloc((size_t)nlabels + 1, sizeof *slot);
    if (!slot) w2v_die("out of memory");
    for (int l = 0; l <= nlabels; l++)
        if (size[l]) {
            slot[l] = c.nclasses;
            c.members[c.nclasses] = malloc((size_t)size[l] * sizeof **c.members);
            if (!c.members[c.nclasses]) w2v_die("out of memory");
            c.nclasses++;
        }
    for (long i = 0; i < n; i++) {
        long k = slot[items[i].label + 1];
        c.members[k][c.size[k]++] = i;
    }
    free(size);
    free(slot);
    return c;
}

static void make_plan(plan *p, w2v_rng *r, const item *items, long n, const classes *cls, const options *o)
{
    p->n = n;
    if (o->balance) {
        for (long i = 0; i < n; i++) {
            long c = (long)w2v_rng_below(r, (uint64_t)cls->nclasses);
            p->order[i] = cls->members[c][w2v_rng_below(r, (uint64_t)cls->size[c])];
        }
    } else {
        for (long i = 0; i < n; i++) p->order[i] = i;
        if (o->shuffle) w2v_rng_shuffle(r, p->order, n);
    }
    int random = o->shuffle || o->balance;
    p->nbatches = batch_count(n, o);
    for (long b = 0; b < p->nbatches; b++) p->start[b] = b * o->batch_size;
    if (o->sort) {
        /* Sorted runs are whole batches, so batches stay within a run. */
        long run = random ? 100 * o->batch_size : (n > 0 ? n : 1);
        length_order lo = {items, o->max_length};
        for (long s = 0; s < n; s += run)
            qsort_r(p->order + s, (size_t)(n - s < run ? n - s : run), sizeof *p->order, by_length, &lo);
        if (random) w2v_rng_shuffle(r, p->start, p->nbatches);
    }
}

/* ---- batches ---- */

typedef struct {
    w2v_batch b;
    long cap_rows;
    size_t cap_values;
} batch_buf;

static void fill_batch(batch_buf *bb, w2v_reader *r, const item *items, const plan *p, long bi, w2v_rng *rnd,
                       const options *o, int64_t *next_offset)
{
    w2v_batch *b = &bb->b;
    long rows = batch_size_of(p, bi, o);
    const long *idx = p->order + p->start[bi];
    int64_t T = o->pad_to;
    char err[512];
    if (!T)
        for (long i = 0; i < rows; i++) {
            int64_t len = effective_length(&items[idx[i]], o->max_length);
            T = len > T ? len : T;
        }
    if (T > INT32_MAX) w2v_die("a batch of %" PRId64 " samples is too long", T);
    size_t cells = (size_t)rows * (size_t)T;
    if (cells > bb->cap_values) {
        free(b->input_values);
        free(b->attention_mask);
        bb->cap_values = cells;
        b->input_values = malloc(cells * sizeof *b->input_values);
        b->attention_mask = malloc(cells);
    }
    if (rows > bb->cap_rows) {
        bb->cap_rows = rows;
        b->keys = realloc(b->keys, (size_t)rows * sizeof *b->keys);
        b->labels = realloc(b->labels, (size_t)rows * sizeof *b->labels);
        b->lengths = realloc(b->lengths, (size_t)rows * sizeof *b->lengths);
    }
    if (!b->input_values || !b->attention_mask || !b->keys || !b->labels || !b->lengths) w2v_die("out of memory");
    memset(b->input_values, 0, cells * sizeof *b->input_values);
    memset(b->attention_mask, 0, cells);
    b->batch = (int)rows;
    b->time = (int)T;
    for (long i = 0; i < rows; i++) {
        const item *it = &items[idx[i]];
        /* records in stream order need no seek: keep the reader's buffer */
        if (it->offset != *next_offset && w2v_reader_seek(r, it->offset, it->record, err, sizeof err) < 0)
            w2v_die("%s", err);
        w2v_example ex;
        int ret = w2v_reader_next(r, err, sizeof err);
        if (ret <= 0 || w2v_reader_example(r, &ex, err, sizeof err) < 0)
            w2v_die("%s", ret == 0 ? "input changed while being read: a record is gone" : err);
        *next_offset = w2v_reader_offset(r) + (int64_t)w2v_reader_size(r);
        int64_t len = effective_length(it, o->max_length), first = 0;
        if (len > T)
            w2v_die("%s: %" PRId64 " samples do not fit --pad-to %ld (add --max-length %ld)", ex.key, len,
                    o->pad_to, o->pad_to);
        if (o->crop_random && ex.length > len) first = (int64_t)w2v_rng_below(rnd, (uint64_t)(ex.length - len + 1));
        memcpy(b->input_values + i * T, ex.input_values + first, (size_t)len * sizeof(float));
        memset(b->attention_mask + i * T, 1, (size_t)len);
        b->lengths[i] = len;
        b->labels[i] = ex.label;
        if (!(b->keys[i] = strdup(ex.key))) w2v_die("out of memory");
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"output", required_argument, 0, 'o'},
        {"batch-size", required_argument, 0, 'b'},
        {"epochs", required_argument, 0, OPT_EPOCHS},
        {"shuffle", no_argument, 0, OPT_SHUFFLE},
        {"seed", required_argument, 0, OPT_SEED},
        {"balance", no_argument, 0, OPT_BALANCE},
        {"sort-by-length", no_argument, 0, OPT_SORT},
        {"drop-last", no_argument, 0, OPT_DROP_LAST},
        {"max-length", required_argument, 0, OPT_MAX_LENGTH},
        {"crop", required_argument, 0, OPT_CROP},
        {"pad-to", required_argument, 0, OPT_PAD_TO},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {0, 0, 0, 0},
    };
    options o = {.batch_size = 8, .epochs = 1, .seed = 42};
    const char *output = NULL;
    int opt;
    w2v_cli_init("ks-batch", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:b:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case 'b': o.batch_size = w2v_parse_long("--batch-size", optarg, 1, 1000000); break;
        case OPT_EPOCHS: o.epochs = w2v_parse_long("--epochs", optarg, 1, 1000000); break;
        case OPT_SHUFFLE: o.shuffle = 1; break;
        case OPT_SEED: o.seed = (uint64_t)w2v_parse_long("--seed", optarg, 0, LONG_MAX); break;
        case OPT_BALANCE: o.balance = 1; break;
        case OPT_SORT: o.sort = 1; break;
        case OPT_DROP_LAST: o.drop_last = 1; break;
        case OPT_MAX_LENGTH: o.max_length = w2v_parse_long("--max-length", optarg, 0, INT32_MAX); break;
        case OPT_PAD_TO: o.pad_to = w2v_parse_long("--pad-to", optarg, 0, INT32_MAX); break;
        case OPT_CROP:
            if (!strcmp(optarg, "random")) o.crop_random = 1;
            else if (strcmp(optarg, "start")) w2v_usage_error("--crop: '%s' is neither 'start' nor 'random'", optarg);
            break;
        }
    }
    if (argc - optind > 1) w2v_usage_error("one input at most");
    if (o.crop_random && !o.max_length) w2v_usage_error("--crop random needs --max-length N");
    const char *input = optind < argc ? argv[optind] : NULL;

    char err[512];
    w2v_reader *r = w2v_reader_open(input, err, sizeof err);
    if (!r) w2v_die("%s", err);
    const w2v_header *in = w2v_reader_header(r);
    if (in->type != W2V_EXAMPLES) w2v_die("%s: not an examples stream", w2v_input_name(input));
    long n;
    item *items = index_input(&r, &n);
    in = w2v_reader_header(r);

    plan p = {.order = malloc(((size_t)n + 1) * sizeof *p.order),
              .start = malloc(((size_t)batch_count(n, &o) + 1) * sizeof *p.start)};
    if (!p.order || !p.start) w2v_die("out of memory");
    classes cls = o.balance ? group_classes(items, n, in->nlabels) : (classes){0};

    w2v_output *out = w2v_output_open(output, 1);
    const char *out_name = output ? output : "stdout";
    w2v_writer *w = w2v_writer_new(w2v_output_file(out));
    w2v_header h;
    w2v_header_init(&h, W2V_BATCHES, in->nlabels, in->labels);
    h.sample_rate = in->sample_rate;
    h.do_normalize = in->do_normalize;
    h.batches_per_epoch = batch_count(n, &o);
    h.epochs = o.epochs;
    h.batch_size = o.batch_size;
    if (w2v_write_header(w, &h) < 0) w2v_write_failed(out_name);

    w2v_progress prog;
    w2v_progress_start(&prog, "batches", (double)(h.batches_per_epoch * o.epochs));
    batch_buf bb = {0};
    int64_t next_offset = -1;
    long written = 0;
    for (long e = 0; e < o.epochs; e++) {
        w2v_rng rnd;
        /* one independent sequence per (seed, epoch) */
        w2v_rng_seed(&rnd, w2v_hash((uint64_t)o.seed, (uint64_t)e));
        make_plan(&p, &rnd, items, n, &cls, &o);
        for (long bi = 0; bi < p.nbatches; bi++) {
            fill_batch(&bb, r, items, &p, bi, &rnd, &o, &next_offset);
            if (w2v_write_batch(w, &bb.b) < 0) w2v_write_failed(out_name);
            for (int i = 0; i < bb.b.batch; i++) free(bb.b.keys[i]);
            w2v_progress_update(&prog, (double)++written, NULL);
        }
    }
    w2v_progress_end(&prog);
    w2v_writer_free(w);
    w2v_output_close(out);
    w2v_note("%ld examples, %ld batches per epoch, %ld epochs", n, h.batches_per_epoch, o.epochs);

    w2v_reader_close(r);
    w2v_header_free(&h);
    for (long c = 0; c < cls.nclasses; c++) free(cls.members[c]);
    free(cls.members);
    free(cls.size);
    free(items);
    free(p.order);
    free(p.start);
    free(bb.b.input_values);
    free(bb.b.attention_mask);
    free(bb.b.keys);
    free(bb.b.labels);
    free(bb.b.lengths);
    return 0;
}
