/* The w2v stream (w2v-stream(5)): round trips, concatenation, truncation at
 * every byte, corruption at every byte, tensor checks, seeking, and memory
 * that stays one record deep. */
#include "unit.h"
#include "stream_msgpack.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator (gcc ships no header for it) */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
#include <malloc.h>
static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
#endif

static char *const LABELS[] = {"yes", "no", "up"};
enum { NLABELS = 3 };

/* ---- building streams in memory ---- */

typedef struct {
    char *data;
    size_t len;
    FILE *fp;
    w2v_writer *w;
    size_t bounds[64]; /* offset of each map written, then the end */
    int nmaps;
} membuf;

static void mem_open(membuf *m)
{
    memset(m, 0, sizeof *m);
    m->fp = open_memstream(&m->data, &m->len);
    m->w = w2v_writer_new(m->fp);
}

/* Notes where the next map starts (open_memstream updates len on fflush). */
static void mem_mark(membuf *m)
{
    fflush(m->fp);
    m->bounds[m->nmaps++] = m->len;
}

static void mem_close(membuf *m)
{
    w2v_writer_free(m->w);
    fclose(m->fp);
    m->bounds[m->nmaps] = m->len;
}

/* A regular (seekable) file holding n bytes, positioned at the start. */
static FILE *file_of(const void *bytes, size_t n)
{
    FILE *fp = tmpfile();
    if (!fp || (n && fwrite(bytes, 1, n, fp) != n)) {
        perror("tmpfile");
        exit(1);
    }
    rewind(fp);
    return fp;
}

/* The deterministic test records: example i has i*3 samples. */
static float sample(int i, int t) { return (float)(i * 100 + t) * 0.25f - 3.0f; }

static void example_of(int i, w2v_example *ex, float *buf, char *key, char *path)
{
    sprintf(key, "key%d", i);
    sprintf(path, "dir/file%d.wav", i);
    ex->key = key;
    ex->path = i % 2 ? path : NULL;
    ex->label = i % (NLABELS + 1) - 1; /* -1 (none) too */
    ex->length = 3 * i;
    for (int t = 0; t < 3 * i; t++) buf[t] = sample(i, t);
    ex->input_values = buf;
}

enum { BATCH = 2, TIME = 4 };
static void batch_of(int i, w2v_batch *b, float *values, uint8_t *mask, int64_t *labels, int64_t *lengths,
                     char **keys, char keybuf[][16])
{
    lengths[0] = TIME;
    lengths[1] = i % TIME + 1;
    for (int r = 0; r < BATCH; r++) {
        sprintf(keybuf[r], "b%d_%d", i, r);
        keys[r] = keybuf[r];
        labels[r] = (i + r) % NLABELS;
        for (int t = 0; t < TIME; t++) {
            mask[r * TIME + t] = t < lengths[r];
            values[r * TIME + t] = t < lengths[r] ? sample(i + r, t) : 0.0f;
        }
    }
    *b = (w2v_batch){BATCH, TIME, keys, labels, lengths, values, mask};
}

static void write_examples_header(membuf *m, int sample_rate, int nlabels, char *const *labels)
{
    w2v_header h;
    w2v_header_init(&h, W2V_EXAMPLES, nlabels, labels);
    h.sample_rate = sample_rate;
    mem_mark(m);
    CHECK(w2v_write_header(m->w, &h) == 0, "write header");
    w2v_header_free(&h);
}

static void write_examples(membuf *m, int first, int n)
{
    float buf[256];
    char key[32], path[64];
    for (int i = first; i < first + n; i++) {
        w2v_example ex;
        example_of(i, &ex, buf, key, path);
        mem_mark(m);
        CHECK(w2v_write_example(m->w, &ex) == 0, "write example %d", i);
    }
}

/* header + n examples 0..n-1 */
static void examples_stream(membuf *m, int n)
{
    mem_open(m);
    write_examples_header(m, 16000, NLABELS, LABELS);
    write_examples(m, 0, n);
    mem_close(m);
}

static void batches_stream(membuf *m, int n)
{
    w2v_header h;
    mem_open(m);
    w2v_header_init(&h, W2V_BATCHES, NLABELS, LABELS);
    h.batches_per_epoch = n;
    h.epochs = 1;
    h.batch_size = BATCH;
    mem_mark(m);
    CHECK(w2v_write_header(m->w, &h) == 0, "write header");
    w2v_header_free(&h);
    for (int i = 0; i < n; i++) {
        float values[BATCH * TIME];
        uint8_t mask[BATCH * TIME];
        int64_t labels[BATCH], lengths[BATCH];
        char *keys[BATCH], keybuf[BATCH][16];
        w2v_batch b;
        batch_of(i, &b, values, mask, labels, lengths, keys, keybuf);
        mem_mark(m);
        CHECK(w2v_write_batch(m->w, &b) == 0, "write batch %d", i);
    }
    mem_close(m);
}

/* ---- checking records against what was written ---- */

static int example_is(w2v_reader *r, int i)
{
    w2v_example got, want;
    float buf[256];
    char key[32], path[64], err[512];
    if (w2v_reader_example(r, &got, err, sizeof err) < 0) {
        fprintf(stderr, "example %d: %s\n", i, err);
        return 0;
    }
    example_of(i, &want, buf, key, path);
    return !strcmp(got.key, want.key) && got.label == want.label && got.length == want.length &&
           (want.path ? got.path && !strcmp(got.path, want.path) : !got.path) &&
           !memcmp(got.input_values, want.input_values, (size_t)want.length * sizeof(float));
}

static int batch_is(w2v_reader *r, int i)
{
    w2v_batch got, want;
    float values[BATCH * TIME];
    uint8_t mask[BATCH * TIME];
    int64_t labels[BATCH], lengths[BATCH];
    char *keys[BATCH], keybuf[BATCH][16], err[512];
    if (w2v_reader_batch(r, &got, err, sizeof err) < 0) {
        fprintf(stderr, "batch %d: %s\n", i, err);
        return 0;
    }
    batch_of(i, &want, values, mask, labels, lengths, keys, keybuf);
    if (got.batch != BATCH || got.time != TIME) return 0;
    for (int k = 0; k < BATCH; k++)
        if (strcmp(got.keys[k], want.keys[k])) return 0;
    return !memcmp(got.labels, labels, sizeof labels) && !memcmp(got.lengths, lengths, sizeof lengths) &&
           !memcmp(got.input_values, values, sizeof values) && !memcmp(got.attention_mask, mask, sizeof mask);
}

/* ---- tests ---- */

static void test_dtypes(void)
{
    static const struct { w2v_dtype t; const char *name; size_t size; } want[] = {
        {W2V_F32, "f32", 4}, {W2V_F64, "f64", 8}, {W2V_I64, "i64", 8}, {W2V_I32, "i32", 4}, {W2V_U8, "u8", 1}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        CHECK(!strcmp(w2v_dtype_name(want[i].t), want[i].name), "name of %s", want[i].name);
        CHECK(w2v_dtype_size(want[i].t) == want[i].size, "size of %s", want[i].name);
    }
}

static void test_headers(void)
{
    char err[512];
    membuf m;
    mem_open(&m);
    w2v_header h, b;
    w2v_header_init(&h, W2V_EXAMPLES, NLABELS, LABELS);
    h.sample_rate = 8000;
    CHECK(w2v_write_header(m.w, &h) == 0, "write");
    mem_close(&m);
    FILE *fp = file_of(m.data, m.len);
    w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
    CHECK(r != NULL, "%s", err);
    if (r) {
        const w2v_header *g = w2v_reader_header(r);
        CHECK(g->type == W2V_EXAMPLES && g->sample_rate == 8000 && g->nlabels == NLABELS, "fields");
        CHECK(w2v_header_compatible(g, &h), "read back equals written");
        CHECK(g->batches_per_epoch == -1 && g->epochs == -1 && g->batch_size == -1, "absent optional fields are -1");
        CHECK(w2v_header_label(g, "up") == 2 && w2v_header_label(g, "down") == -1, "label lookup");
        CHECK(w2v_reader_next(r, err, sizeof err) == 0, "a header alone is an empty stream");
        w2v_reader_close(r);
    }
    fclose(fp);
    free(m.data);

    w2v_header_init(&b, W2V_BATCHES, NLABELS, LABELS);
    b.batches_per_epoch = 10;
    b.epochs = 3;
    b.batch_size = 8;
    mem_open(&m);
    CHECK(w2v_write_header(m.w, &b) == 0, "write");
    mem_close(&m);
    fp = file_of(m.data, m.len);
    r = w2v_reader_from_file(fp, "mem", err, sizeof err);
    CHECK(r != NULL, "%s", err);
    if (r) {
        const w2v_header *g = w2v_reader_header(r);
        CHECK(g->type == W2V_BATCHES && g->sample_rate == 16000, "type, default sample_rate");
        CHECK(g->batches_per_epoch == 10 && g->epochs == 3 && g->batch_size == 8, "optional fields");
        w2v_reader_close(r);
    }
    fclose(fp);
    free(m.data);

    /* what concatenation must agree on */
    CHECK(!w2v_header_compatible(&h, &b), "type differs");
    w2v_header o;
    char *swapped[] = {"no", "yes", "up"};
    w2v_header_init(&o, W2V_EXAMPLES, NLABELS, swapped);
    CHECK(!w2v_header_compatible(&h, &o), "label order differs");
    w2v_header_free(&o);
    w2v_header_init(&o, W2V_EXAMPLES, NLABELS - 1, LABELS);
    CHECK(!w2v_header_compatible(&h, &o) && !w2v_header_compatible(&o, &h), "label count differs");
    w2v_header_free(&o);
    w2v_header_init(&o, W2V_EXAMPLES, NLABELS, LABELS);
    CHECK(!w2v_header_compatible(&h, &o), "sample_rate differs (16000 vs 8000)");
    o.sample_rate = 8000;
    CHECK(w2v_header_compatible(&h, &o), "equal");
    w2v_header_free(&o);
    w2v_header_free(&h);
    w2v_header_free(&b);
}

/* Header and records read back as written, with their positions. */
static void test_round_trip(int batches)
{
    char err[512];
    int n = batches ? 6 : 8;
    membuf m;
    if (batches) batches_stream(&m, n);
    else examples_stream(&m, n);
    FILE *fp = file_of(m.data, m.len);
    w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
    CHECK(r != NULL, "%s", err);
    if (!r) return;
    CHECK(w2v_reader_index(r) == 0 && w2v_reader_offset(r) == 0 && w2v_reader_size(r) == m.bounds[1], "header position");
    for (int i = 0; i < n; i++) {
        CHECK(w2v_reader_next(r, err, sizeof err) == 1, "record %d: %s", i, err);
        CHECK(w2v_reader_index(r) == i + 1, "index %ld", w2v_reader_index(r));
        CHECK(w2v_reader_offset(r) == (int64_t)m.bounds[i + 1], "offset of record %d", i + 1);
        CHECK(w2v_reader_size(r) == m.bounds[i + 2] - m.bounds[i + 1], "size of record %d", i + 1);
        CHECK(batches ? batch_is(r, i) : example_is(r, i), "record %d as written", i + 1);
        /* and not the other kind */
        w2v_example ex;
        w2v_batch b;
        CHECK((batches ? w2v_reader_example(r, &ex, err, sizeof err) : w2v_reader_batch(r, &b, err, sizeof err)) == -1 &&
                  strstr(err, batches ? "not an examples stream" : "not a batches stream"),
              "wrong kind: %s", err);
    }
    CHECK(w2v_reader_next(r, err, sizeof err) == 0, "clean end");
    CHECK(w2v_reader_next(r, err, sizeof err) == 0, "still the end");
    w2v_reader_close(r);
    fclose(fp);
    free(m.data);
}

/* A record larger than the reader's first buffer, between small ones. */
static void test_large_record(void)
{
    enum { N = 300000 };
    char err[512];
    float *big = malloc(N * sizeof *big);
    for (int t = 0; t < N; t++) big[t] = (float)t * 0.5f;
    membuf m;
    mem_open(&m);
    write_examples_header(&m, 16000, NLABELS, LABELS);
    write_examples(&m, 1, 1);
    w2v_example ex = {.key = "big", .label = 1, .length = N, .input_values = big};
    CHECK(w2v_write_example(m.w, &ex) == 0, "write");
    write_examples(&m, 2, 1);
    mem_close(&m);
    FILE *fp = file_of(m.data, m.len);
    w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
    CHECK(r && w2v_reader_next(r, err, sizeof err) == 1 && example_is(r, 1), "small record before");
    CHECK(r && w2v_reader_next(r, err, sizeof err) == 1 && w2v_reader_example(r, &ex, err, sizeof err) == 0, "big record");
    CHECK(r && ex.length == N && !strcmp(ex.key, "big") && !memcmp(ex.input_values, big, N * sizeof *big), "big values");
    CHECK(r && w2v_reader_next(r, err, sizeof err) == 1 && example_is(r, 2), "small record after");
    CHECK(r && w2v_reader_next(r, err, sizeof err) == 0, "end");
    w2v_reader_close(r);
    fclose(fp);
    free(m.data);
    free(big);
}

static void test_concatenation(void)
{
    char err[512], want[512];
    membuf a, b;
    examples_stream(&a, 2);
    examples_stream(&b, 3);
    /* a then b: b's header agrees and is skipped; indices count it */
    size_t n = a.len + b.len;
    char *cat = malloc(n);
    memcpy(cat, a.data, a.len);
    memcpy(cat + a.len, b.data, b.len);
    FILE *fp = file_of(cat, n);
    w2v_reader *r = w2v_reader_from_file(fp, "cat", err, sizeof err);
    int expect[] = {0, 1, 0, 1, 2}, index[] = {1, 2, 4, 5, 6};
    for (int k = 0; r && k < 5; k++) {
        CHECK(w2v_reader_next(r, err, sizeof err) == 1, "record %d: %s", k, err);
        CHECK(w2v_reader_index(r) == index[k], "index %ld, expected %d", w2v_reader_index(r), index[k]);
        CHECK(example_is(r, expect[k]), "record %d", k);
    }
    CHECK(r && w2v_reader_next(r, err, sizeof err) == 0, "end");
    w2v_reader_close(r);
    fclose(fp);

    /* conflicting headers: labels, sample_rate, type, version */
    char *other[] = {"yes", "no", "down"};
    for (int variant = 0; variant < 4; variant++) {
        membuf c;
        if (variant == 3) {
            batches_stream(&c, 1);
        } else {
            mem_open(&c);
            if (variant == 0) write_examples_header(&c, 16000, NLABELS, other);
            if (variant == 1) write_examples_header(&c, 22050, NLABELS, LABELS);
            if (variant == 2) write_examples_header(&c, 16000, NLABELS - 1, LABELS);
            write_examples(&c, 0, 1);
            mem_close(&c);
        }
        cat = realloc(cat, a.len + c.len);
        memcpy(cat + a.len, c.data, c.len);
        fp = file_of(cat, a.len + c.len);
        r = w2v_reader_from_file(fp, "cat", err, sizeof err);
        CHECK(r && w2v_reader_next(r, err, sizeof err) == 1 && w2v_reader_next(r, err, sizeof err) == 1, "records of the first stream");
        CHECK(r && w2v_reader_next(r, err, sizeof err) == -1, "variant %d: conflicting header", variant);
        snprintf(want, sizeof want, "cat: record 3 at byte %zu: header conflicts with the first header", a.len);
        CHECK(r && !strncmp(err, want, strlen(want)), "variant %d: error '%s'", variant,
              r ? err : err);
        w2v_reader_close(r);
        fclose(fp);
        free(c.data);
    }
    free(cat);
    free(a.data);
    free(b.data);
}

/* Every prefix of a stream: a clean end exactly at map boundaries, else a
 * "truncated" error naming the record and where it starts. */
static void truncate_everywhere(const membuf *m, int batches)
{
    char err[512], want[512];
    for (size_t k = 0; k <= m->len; k++) {
        FILE *fp = file_of(m->data, k);
        w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
        int j = 0; /* the map the cut falls in, or ends */
        while (j < m->nmaps && m->bounds[j + 1] <= k) j++;
        if (k == 0) {
            CHECK(!r && !strcmp(err, "mem: record 0 at byte 0: empty stream: no header"), "empty: %s", err);
        } else if (j == 0) {
            snprintf(want, sizeof want,
                     "mem: record 0 at byte 0: truncated: the stream ends inside the record (%zu bytes of it present)", k);
            CHECK(!r && !strcmp(err, want), "cut at %zu: '%s'", k, err);
        } else {
            CHECK(r != NULL, "cut at %zu after the header: %s", k, err);
            int got = 0, ret = 0;
            while (r && (ret = w2v_reader_next(r, err, sizeof err)) == 1) {
                CHECK(batches ? batch_is(r, got) : example_is(r, got), "cut at %zu: record %d", k, got + 1);
                got++;
            }
            CHECK(got == j - 1, "cut at %zu: %d records, expected %d", k, got, j - 1);
            if (r && k == m->bounds[j]) {
                CHECK(ret == 0, "cut at %zu (a boundary): clean end, got %d: %s", k, ret, err);
            } else if (r) {
                snprintf(want, sizeof want,
                         "mem: record %d at byte %zu: truncated: the stream ends inside the record (%zu bytes of it present)",
                         j, m->bounds[j], k - m->bounds[j]);
                CHECK(ret == -1 && !strcmp(err, want), "cut at %zu: '%s'", k, err);
            }
        }
        w2v_reader_close(r);
        fclose(fp);
    }
}

static void test_truncation(void)
{
    membuf m;
    examples_stream(&m, 5);
    truncate_everywhere(&m, 0);
    free(m.data);
    batches_stream(&m, 3);
    truncate_everywhere(&m, 1);
    free(m.data);
}

/* Parses "mem: record N at byte OFFSET: why"; 0 when the form is wrong. */
static int error_form(const char *e, long *record, long long *offset)
{
    int n = -1;
    return sscanf(e, "mem: record %ld at byte %lld: %n", record, offset, &n) == 2 && n > 0 && e[n] != 0;
}

/* Reads a whole (damaged) stream, decoding each record: 1 at a clean end,
 * -1 on an error of the right form, 0 on anything else.  *heap: memory held
 * by the reader at the end, before it is closed. */
static int read_damaged(const char *data, size_t len, size_t *heap)
{
    char err[512];
    long rec;
    long long off;
    size_t base = heap_in_use();
    FILE *fp = file_of(data, len);
    w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
    int result;
    if (!r) {
        result = error_form(err, &rec, &off) && rec == 0 && off == 0 ? -1 : 0;
        *heap = 0;
    } else {
        int ret;
        result = 1;
        while ((ret = w2v_reader_next(r, err, sizeof err)) == 1) {
            w2v_example ex;
            w2v_batch b;
            if ((w2v_reader_header(r)->type == W2V_EXAMPLES ? w2v_reader_example(r, &ex, err, sizeof err) : w2v_reader_batch(r, &b, err, sizeof err)) < 0) {
                result = -1;
                break;
            }
        }
        if (ret < 0) result = -1;
        if (result < 0 && !(error_form(err, &rec, &off) && rec >= 1 && off > 0 && (size_t)off < len))
            result = 0;
        if (!result) fprintf(stderr, "bad error: '%s'\n", err);
        *heap = heap_in_use() - base;
        w2v_reader_close(r);
    }
    fclose(fp);
    return result;
}

/* The reader's own buffers: the first read takes 64 KiB; records here are
 * far smaller.  A decoder that allocated a corrupt count (65535 map entries
 * are 2 MiB) would show. */
enum { HEAP_LIMIT = 256 * 1024 };

static void test_corruption(void)
{
    static const int replacements[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc6,
                                       0xc9, 0xcb, 0xd3, 0xd8, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};
    static const int flips[] = {0x01, 0x10, 0x80};
    membuf m[2];
    examples_stream(&m[0], 4);
    batches_stream(&m[1], 2);
    for (int s = 0; s < 2; s++) {
        char *copy = malloc(m[s].len);
        int clean = 0, errors = 0;
        size_t worst = 0;
        for (size_t i = 0; i < m[s].len; i++) {
            size_t nvar = sizeof replacements / sizeof *replacements + sizeof flips / sizeof *flips;
            for (size_t v = 0; v < nvar; v++) {
                memcpy(copy, m[s].data, m[s].len);
                unsigned char orig = (unsigned char)copy[i];
                unsigned char c = v < sizeof replacements / sizeof *replacements
                    ? (unsigned char)replacements[v] : orig ^ (unsigned char)flips[v - sizeof replacements / sizeof *replacements];
                if (c == orig) continue;
                copy[i] = (char)c;
                size_t heap;
                int ret = read_damaged(copy, m[s].len, &heap);
                CHECK(ret != 0, "stream %d, byte %zu = 0x%02x: no clear outcome", s, i, c);
                clean += ret == 1;
                errors += ret == -1;
                worst = heap > worst ? heap : worst;
                CHECK(heap < HEAP_LIMIT, "stream %d, byte %zu = 0x%02x: reader holds %zu bytes", s, i, c, heap);
            }
        }
        /* most damage is caught; some (a digit of a sample) is not visible */
        CHECK(errors > clean, "stream %d: %d errors, %d clean reads", s, errors, clean);
        printf("corruption of stream %d (%zu bytes): %d errors, %d undetected, reader held at most %zu bytes\n", s,
               m[s].len, errors, clean, worst);
        free(copy);
    }
    free(m[0].data);
    free(m[1].data);
}

/* Declared counts far beyond the bytes present: the reader must wait for
 * the bytes (and so report truncation), never ask the decoder for them. */
static void test_huge_counts(void)
{
    static const unsigned char huge[][5] = {
        {0xdf, 0xff, 0xff, 0xff, 0xff}, /* map32 */
        {0xdd, 0xff, 0xff, 0xff, 0xff}, /* array32 */
        {0xde, 0xff, 0xff, 0, 0},       /* map16 (+2 bytes of the record) */
        {0xdc, 0xff, 0xff, 0, 0},       /* array16 */
        {0xc6, 0xff, 0xff, 0xff, 0xff}, /* bin32 */
        {0xdb, 0xff, 0xff, 0xff, 0xff}, /* str32 */
        {0xc9, 0xff, 0xff, 0xff, 0xff}, /* ext32 */
    };
    char want[512], err[512];
    membuf m;
    examples_stream(&m, 4);
    size_t at = m.bounds[2]; /* record 2 */
    for (size_t h = 0; h < sizeof huge / sizeof *huge; h++) {
        /* at the start of a record */
        char *copy = malloc(m.len);
        memcpy(copy, m.data, m.len);
        memcpy(copy + at, huge[h], 5);
        FILE *fp = file_of(copy, m.len);
        size_t base = heap_in_use();
        w2v_reader *r = w2v_reader_from_file(fp, "mem", want, sizeof want);
        CHECK(r && w2v_reader_next(r, err, sizeof err) == 1 && w2v_reader_next(r, err, sizeof err) == -1, "huge count %zu: an error", h);
        snprintf(want, sizeof want, "mem: record 2 at byte %zu: truncated", at);
        CHECK(r && !strncmp(err, want, strlen(want)), "huge count %zu: '%s'", h, r ? err : "");
        size_t heap = heap_in_use() - base;
        CHECK(heap < HEAP_LIMIT, "huge count %zu: reader holds %zu bytes", h, heap);
        w2v_reader_close(r);
        fclose(fp);
        /* and in the middle of one: the f32 tensor's shape array */
        for (size_t i = m.bounds[1]; i + 5 < m.bounds[2]; i++) {
            memcpy(copy, m.data, m.len);
            if ((unsigned char)copy[i] != 0x91) continue; /* fixarray of 1: a shape */
            memcpy(copy + i, huge[h], 5);
            CHECK(read_damaged(copy, m.len, &heap) == -1, "huge count %zu at byte %zu: an error", h, i);
            CHECK(heap < HEAP_LIMIT, "huge count %zu at byte %zu: reader holds %zu bytes", h, i, heap);
        }
        free(copy);
    }
    free(m.data);
}

/* Packs a tensor map and decodes it (fields only: the data go with it). */
static int decode_packed(void (*pack)(msgpack_packer *, const void *), const void *arg, w2v_tensor *t, char *err,
                         size_t errlen)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack(&pk, arg);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object o;
    size_t off = 0;
    int ret = -2;
    if (msgpack_unpack(sb.data, sb.size, &off, &zone, &o) == MSGPACK_UNPACK_SUCCESS) {
        ret = w2v_tensor_decode(&o, t, err, errlen);
        t->data = NULL; /* pointed into the zone */
    }
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    return ret;
}

/* A tensor map from raw parts: dtype, shape (ndim < 0: no shape), bytes. */
typedef struct {
    const char *dtype;
    int ndim;
    uint64_t shape[10];
    size_t nbytes;
} raw_tensor;

static void pack_raw(msgpack_packer *pk, const void *arg)
{
    const raw_tensor *rt = arg;
    static const unsigned char zeros[4096];
    msgpack_pack_map(pk, 3);
    w2v_pack_str(pk, "dtype");
    w2v_pack_str(pk, rt->dtype);
    w2v_pack_str(pk, "shape");
    msgpack_pack_array(pk, (size_t)rt->ndim);
    for (int i = 0; i < rt->ndim; i++) msgpack_pack_uint64(pk, rt->shape[i]);
    w2v_pack_str(pk, "data");
    msgpack_pack_bin(pk, rt->nbytes);
    msgpack_pack_bin_body(pk, zeros, rt->nbytes);
}

static void test_tensors(void)
{
    char err[256];
    w2v_tensor t;
    static const char *names[] = {"f32", "f64", "i64", "i32", "u8"};
    static const size_t sizes[] = {4, 8, 8, 4, 1};
    for (int d = 0; d < 5; d++) {
        raw_tensor rt = {names[d], 2, {2, 3}, 6 * sizes[d]};
        CHECK(decode_packed(pack_raw, &rt, &t, err, sizeof err) == 0, "%s [2,3]: %s", names[d], err);
        CHECK(t.dtype == (w2v_dtype)d && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3 && t.count == 6, "%s fields", names[d]);
        /* data length must be exactly prod(shape) * size */
        for (int delta = -1; delta <= 1; delta += 2) {
            rt.nbytes = 6 * sizes[d] + (size_t)delta;
            CHECK(decode_packed(pack_raw, &rt, &t, err, sizeof err) == -1 && strstr(err, "tensor data is"),
                  "%s with %zu bytes: '%s'", names[d], rt.nbytes, err);
        }
    }
    raw_tensor scalar = {"f64", 0, {0}, 8}, empty = {"u8", 2, {0, 5}, 0};
    CHECK(decode_packed(pack_raw, &scalar, &t, err, sizeof err) == 0 && t.count == 1 && t.ndim == 0, "scalar: %s", err);
    CHECK(decode_packed(pack_raw, &empty, &t, err, sizeof err) == 0 && t.count == 0, "empty: %s", err);
    scalar.nbytes = 4;
    CHECK(decode_packed(pack_raw, &scalar, &t, err, sizeof err) == -1 && strstr(err, "scalar needs 8"), "scalar of 4 bytes: '%s'", err);

    raw_tensor bad[] = {
        {"f16", 1, {2}, 4},                                        /* unknown dtype */
        {"f\x01\xff\\", 1, {2}, 4},                                /* shown escaped */
        {"f32", 9, {1, 1, 1, 1, 1, 1, 1, 1, 1}, 4},               /* too many dimensions */
        {"u8", 2, {1ull << 40, 1ull << 40}, 0},                    /* product wraps to 0 in 64 bits */
        {"u8", 3, {1ull << 20, 1ull << 20, 1ull << 20}, 0},       /* 2^60 */
        {"u8", 1, {(1ull << 40) + 1}, 0},                          /* one dimension too large */
    };
    const char *why[] = {"unknown dtype 'f16'", "unknown dtype 'f\\x01\\xff\\x5c'", "9 dimensions", "too large", "too large", "shape[0] is not a dimension"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(decode_packed(pack_raw, &bad[i], &t, err, sizeof err) == -1 && strstr(err, why[i]), "bad tensor %zu: '%s'", i, err);
    CHECK(w2v_tensor_decode(NULL, &t, err, sizeof err) == -1, "NULL is no tensor");

    /* conversions */
    const float f[] = {1.5f, -2.0f};
    const double d[] = {2.25, -1e10};
    const int64_t l[] = {-5, 1ll << 40};
    const int32_t i32[] = {-7, 70000};
    const uint8_t u8[] = {0, 255};
    const void *data[] = {f, d, l, i32, u8};
    const float wantf[5][2] = {{1.5f, -2.0f}, {2.25f, -1e10f}, {-5.0f, 1099511627776.0f}, {-7.0f, 70000.0f}, {0, 255.0f}};
    const int64_t wanti[5][2] = {{1, -2}, {2, -10000000000ll}, {-5, 1ll << 40}, {-7, 70000}, {0, 255}};
    for (int k = 0; k < 5; k++) {
        w2v_tensor x = {(w2v_dtype)k, 1, {2}, 2, data[k]};
        float of[2];
        int64_t oi[2];
        w2v_tensor_to_f32(&x, of);
        w2v_tensor_to_i64(&x, oi);
        CHECK(of[0] == wantf[k][0] && of[1] == wantf[k][1], "%s to f32: %g %g", names[k], of[0], of[1]);
        CHECK(oi[0] == wanti[k][0] && oi[1] == wanti[k][1], "%s to i64: %" PRId64 " %" PRId64, names[k], oi[0], oi[1]);
    }
}

/* Writes a header then one hand-made record; returns the stream. */
static void stream_with_record(membuf *m, w2v_stream_type type, void (*pack)(msgpack_packer *, int), int variant)
{
    w2v_header h;
    mem_open(m);
    w2v_header_init(&h, type, NLABELS, LABELS);
    mem_mark(m);
    w2v_write_header(m->w, &h);
    w2v_header_free(&h);
    mem_mark(m);
    pack(w2v_writer_packer(m->w), variant);
    mem_close(m);
}

/* Examples that break one rule each. */
static void pack_bad_example(msgpack_packer *pk, int v)
{
    float x[3] = {1, 2, 3};
    int64_t n = 3;
    msgpack_pack_map(pk, v == 0 ? 2 : 3);
    if (v != 0) {
        w2v_pack_str(pk, "key");
        if (v == 1) msgpack_pack_int(pk, 5);
        else w2v_pack_str(pk, "k");
    }
    w2v_pack_str(pk, "label");
    if (v == 2) w2v_pack_str(pk, "yes");
    else msgpack_pack_int(pk, v == 3 ? NLABELS : v == 4 ? -2 : 0);
    w2v_pack_str(pk, "input_values");
    if (v == 5) w2v_pack_tensor(pk, W2V_F64, 1, &n, (double[]){1, 2, 3});
    else if (v == 6) {
        int64_t s[2] = {1, 3};
        w2v_pack_tensor(pk, W2V_F32, 2, s, x);
    } else if (v == 7) { /* 12 bytes of data declared as 4 samples */
        msgpack_pack_map(pk, 3);
        w2v_pack_str(pk, "dtype");
        w2v_pack_str(pk, "f32");
        w2v_pack_str(pk, "shape");
        msgpack_pack_array(pk, 1);
        msgpack_pack_int(pk, 4);
        w2v_pack_str(pk, "data");
        msgpack_pack_bin(pk, sizeof x);
        msgpack_pack_bin_body(pk, x, sizeof x);
    } else w2v_pack_tensor(pk, W2V_F32, 1, &n, x);
}

/* Batches that break one rule each (B = 2, T = 3). */
static void pack_bad_batch(msgpack_packer *pk, int v)
{
    float x[6] = {1, 2, 3, 4, 5, 0};
    uint8_t mask[6] = {1, 1, 1, 1, 1, 0};
    int64_t labels[2] = {0, v == 0 ? NLABELS : 1}, lengths[2] = {3, v == 1 ? 4 : 2}, B = 2, s[2] = {2, 3};
    if (v == 2) mask[5] = 1;
    if (v == 3) mask[1] = 0;
    msgpack_pack_map(pk, 5);
    w2v_pack_str(pk, "keys");
    msgpack_pack_array(pk, v == 4 ? 1 : 2);
    w2v_pack_str(pk, "a");
    if (v != 4) w2v_pack_str(pk, "b");
    w2v_pack_str(pk, "labels");
    w2v_pack_tensor(pk, v == 5 ? W2V_F32 : W2V_I64, 1, &B, labels);
    w2v_pack_str(pk, "input_values");
    w2v_pack_tensor(pk, W2V_F32, 2, s, x);
    w2v_pack_str(pk, "attention_mask");
    w2v_pack_tensor(pk, v == 6 ? W2V_I32 : W2V_U8, v == 6 ? 1 : 2, v == 6 ? (int64_t[]){1} : s, mask);
    w2v_pack_str(pk, "lengths");
    w2v_pack_tensor(pk, W2V_I64, 1, &B, lengths);
}

static void pack_good_batch(msgpack_packer *pk, int v) { pack_bad_batch(pk, v + 100); }

static void test_record_rules(void)
{
    static const char *example_why[] = {"example without a key string", "example without a key string",
                                        "example without an integer label", "label 3 is out of range (3 labels)",
                                        "label -2 is out of range", "input_values must be f32 [T]",
                                        "input_values must be f32 [T]", "input_values: tensor data is 12 bytes"};
    static const char *batch_why[] = {"label 3 is out of range", "lengths[1] = 4 is outside [0, 3]",
                                      "attention_mask[1][2] = 1 disagrees with lengths[1] = 2",
                                      "attention_mask[0][1] = 0 disagrees with lengths[0] = 3",
                                      "keys must be an array of 2 strings", "labels must be an integer tensor [2]",
                                      "attention_mask must be u8 [2, 3]"};
    char err[512], want[512];
    for (int kind = 0; kind < 2; kind++) {
        int n = kind ? 7 : 8;
        for (int v = 0; v < n; v++) {
            membuf m;
            stream_with_record(&m, kind ? W2V_BATCHES : W2V_EXAMPLES, kind ? pack_bad_batch : pack_bad_example, v);
            FILE *fp = file_of(m.data, m.len);
            w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
            w2v_example ex;
            w2v_batch b;
            CHECK(r && w2v_reader_next(r, err, sizeof err) == 1, "%s %d: %s", kind ? "batch" : "example", v, err);
            int ret = r ? (kind ? w2v_reader_batch(r, &b, err, sizeof err) : w2v_reader_example(r, &ex, err, sizeof err)) : 0;
            snprintf(want, sizeof want, "mem: record 1 at byte %zu: %s", m.bounds[1], kind ? batch_why[v] : example_why[v]);
            CHECK(ret == -1 && !strncmp(err, want, strlen(want)), "%s %d: '%s', expected '%s'",
                  kind ? "batch" : "example", v, r ? err : "", want);
            /* a record the reader can decode no further is no stream error */
            CHECK(r && w2v_reader_next(r, err, sizeof err) == 0, "%s %d: clean end after", kind ? "batch" : "example", v);
            w2v_reader_close(r);
            fclose(fp);
            free(m.data);
        }
    }
    /* the model batch of those: valid, and read as written */
    membuf m;
    stream_with_record(&m, W2V_BATCHES, pack_good_batch, 0);
    FILE *fp = file_of(m.data, m.len);
    w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
    w2v_batch b;
    CHECK(r && w2v_reader_next(r, err, sizeof err) == 1 && w2v_reader_batch(r, &b, err, sizeof err) == 0, "good batch: %s", r ? err : err);
    CHECK(r && b.batch == 2 && b.time == 3 && b.lengths[1] == 2 && b.labels[1] == 1 && !strcmp(b.keys[1], "b") &&
              b.input_values[4] == 5 && b.attention_mask[5] == 0, "good batch fields");
    w2v_reader_close(r);
    fclose(fp);
    free(m.data);
}

/* Raw msgpack bytes that are not a stream, or go wrong after its header. */
static void test_not_streams(void)
{
    static const struct { const char *bytes; size_t n; const char *want; } cases[] = {
        {"\x05", 1, "mem: record 0 at byte 0: not a map"},
        {"\xc1", 1, "mem: record 0 at byte 0: malformed msgpack"},
        {"\x81\xa1k\x01", 4, "mem: record 0 at byte 0: not a w2v stream header"},
        {"\x82\xa6" "format\xaaw2v-stream\xa7version\x02", 28, "mem: record 0 at byte 0: stream version 2 is not supported"},
        {"\x82\xa6" "format\xaaw2v-stream\xa7version\x01", 28, "mem: record 0 at byte 0: header type must be"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        FILE *fp = file_of(cases[i].bytes, cases[i].n);
        w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
        CHECK(!r && !strncmp(err, cases[i].want, strlen(cases[i].want)), "case %zu: '%s'", i, err);
        w2v_reader_close(r);
        fclose(fp);
    }
    CHECK(!w2v_reader_open("/nonexistent/x.stream", err, sizeof err) &&
              !strcmp(err, "/nonexistent/x.stream: cannot open: No such file or directory"), "'%s'", err);

    /* a non-map record, and a malformed one, after a good header */
    membuf m;
    examples_stream(&m, 1);
    for (int k = 0; k < 2; k++) {
        char *data = malloc(m.len + 1);
        memcpy(data, m.data, m.len);
        data[m.len] = k ? (char)0xc1 : 0x2a;
        FILE *fp = file_of(data, m.len + 1);
        w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
        char want[256];
        snprintf(want, sizeof want, "mem: record 2 at byte %zu: %s", m.len, k ? "malformed msgpack" : "not a map");
        CHECK(r && w2v_reader_next(r, err, sizeof err) == 1 && w2v_reader_next(r, err, sizeof err) == -1 && !strcmp(err, want),
              "'%s'", r ? err : err);
        w2v_reader_close(r);
        fclose(fp);
        free(data);
    }
    free(m.data);
}

static void test_seek_and_open(void)
{
    char err[512], path[] = "/tmp/test_stream.XXXXXX";
    membuf m;
    examples_stream(&m, 6);
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, m.data, m.len) == (ssize_t)m.len, "temporary file");
    close(fd);
    w2v_reader *r = w2v_reader_open(path, err, sizeof err);
    CHECK(r && w2v_reader_seekable(r), "a regular file is seekable: %s", err);
    if (r) {
        int64_t off[8];
        long idx[8];
        int n = 0;
        while (w2v_reader_next(r, err, sizeof err) == 1) {
            off[n] = w2v_reader_offset(r);
            idx[n++] = w2v_reader_index(r);
        }
        CHECK(n == 6, "%d records", n);
        /* back to record 3 (example 2), then to record 1 and on to the end */
        CHECK(w2v_reader_seek(r, off[2], idx[2], err, sizeof err) == 0, "seek: %s", err);
        CHECK(w2v_reader_next(r, err, sizeof err) == 1 && w2v_reader_index(r) == idx[2] && w2v_reader_offset(r) == off[2] && example_is(r, 2),
              "record after seek");
        CHECK(w2v_reader_seek(r, off[0], idx[0], err, sizeof err) == 0, "seek: %s", err);
        int k = 0;
        while (w2v_reader_next(r, err, sizeof err) == 1) {
            CHECK(example_is(r, k) && w2v_reader_index(r) == idx[k], "record %d after the second seek", k);
            k++;
        }
        CHECK(k == 6, "%d records after the second seek", k);
        /* a seek to a place that is no record boundary reads garbage as an error, not a crash */
        CHECK(w2v_reader_seek(r, off[1] + 1, 2, err, sizeof err) == 0, "seek into a record");
        int ret;
        while ((ret = w2v_reader_next(r, err, sizeof err)) == 1) {
            w2v_example ex;
            w2v_reader_example(r, &ex, err, sizeof err);
        }
        CHECK(ret <= 0, "seek into a record: %d", ret);
        w2v_reader_close(r);
    }
    unlink(path);

    /* a pipe reads the same and cannot seek */
    int p[2];
    CHECK(pipe(p) == 0 && write(p[1], m.data, m.len) == (ssize_t)m.len, "pipe (the stream fits its buffer)");
    close(p[1]);
    FILE *fp = fdopen(p[0], "rb");
    r = w2v_reader_from_file(fp, "pipe", err, sizeof err);
    CHECK(r && !w2v_reader_seekable(r), "a pipe is not seekable");
    if (r) {
        CHECK(w2v_reader_seek(r, 0, 0, err, sizeof err) == -1 && strstr(err, "cannot seek: not a regular file"), "%s",
              err);
        int k = 0;
        while (w2v_reader_next(r, err, sizeof err) == 1) {
            CHECK(example_is(r, k), "pipe record %d", k);
            k++;
        }
        CHECK(k == 6, "%d records from the pipe", k);
        w2v_reader_close(r);
    }
    fclose(fp);
    free(m.data);
}

/* Memory held while reading many records stays that of one record. */
static void test_memory_bounded(void)
{
    enum { RECORDS = 2000, T = 2048 };
    char err[512];
    float *x = malloc(T * sizeof *x);
    for (int t = 0; t < T; t++) x[t] = (float)t;
    FILE *fp = tmpfile();
    w2v_writer *w = w2v_writer_new(fp);
    w2v_header h;
    w2v_header_init(&h, W2V_EXAMPLES, NLABELS, LABELS);
    w2v_write_header(w, &h);
    w2v_header_free(&h);
    for (int i = 0; i < RECORDS; i++) {
        char key[32];
        sprintf(key, "k%d", i);
        x[0] = (float)i;
        w2v_example ex = {.key = key, .label = i % NLABELS, .length = T, .input_values = x};
        CHECK(w2v_write_example(w, &ex) == 0, "write");
    }
    w2v_writer_free(w);
    rewind(fp);
    size_t base = heap_in_use(), peak = 0;
    w2v_reader *r = w2v_reader_from_file(fp, "mem", err, sizeof err);
    int n = 0, ok = 1;
    while (r && w2v_reader_next(r, err, sizeof err) == 1) {
        w2v_example ex;
        ok &= w2v_reader_example(r, &ex, err, sizeof err) == 0 && ex.input_values[0] == (float)n && ex.input_values[T - 1] == (float)(T - 1);
        n++;
        size_t used = heap_in_use() - base;
        peak = used > peak ? used : peak;
    }
    CHECK(n == RECORDS && ok, "%d records read", n);
    /* the whole stream is 16 MiB; a record is 8 KiB */
    CHECK(peak < 512 * 1024, "reader held %zu bytes", peak);
    printf("reading %d records of %zu bytes held at most %zu bytes\n", RECORDS, T * sizeof(float), peak);
    w2v_reader_close(r);
    fclose(fp);
    free(x);
}

static void test_write_errors(void)
{
    FILE *fp = fopen("/dev/full", "wb");
    if (!fp) {
        printf("test_write_errors: skipped: no /dev/full\n");
        return;
    }
    setvbuf(fp, NULL, _IONBF, 0);
    w2v_writer *w = w2v_writer_new(fp);
    w2v_header h;
    w2v_header_init(&h, W2V_EXAMPLES, NLABELS, LABELS);
    errno = 0;
    CHECK(w2v_write_header(w, &h) == -1 && errno == ENOSPC, "write to a full device: errno %d", errno);
    w2v_example ex = {.key = "k", .label = 0, .length = 0, .input_values = NULL};
    errno = 0;
    CHECK(w2v_write_example(w, &ex) == -1 && errno == ENOSPC, "the failure sticks: errno %d", errno);
    w2v_header_free(&h);
    w2v_writer_free(w);
    fclose(fp);
}

static void test_map_get(void)
{
    msgpack_object i = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    CHECK(w2v_map_get(&i, "x") == NULL && w2v_map_get(NULL, "x") == NULL, "not a map");
}

int main(void)
{
    test_dtypes();
    test_headers();
    test_round_trip(0);
    test_round_trip(1);
    test_large_record();
    test_concatenation();
    test_truncation();
    test_corruption();
    test_huge_counts();
    test_tensors();
    test_record_rules();
    test_not_streams();
    test_seek_and_open();
    test_memory_bounded();
    test_write_errors();
    test_map_get();
    return unit_finish("test_stream");
}
