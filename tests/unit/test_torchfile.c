/* torch.save checkpoints (tests/data/torch, made by make-fixtures.py with
 * torch 1.13): odd layouts against torch's own values, the golden tiny
 * model through conversion and w2v_model_load, hostile files refused, and
 * every truncation or single-byte corruption of a pickle handled. */
#include "golden.h"
#include "w2v/model.h"
#include "w2v/safetensors.h"
#include "w2v/torchfile.h"
#include "w2v/fs.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DATA "tests/data/torch/"

static char tmpdir[] = "/tmp/w2v-test-torch-XXXXXX";

static void test_odd_layouts(void)
{
    char err[1024];
    w2v_safetensors *want = w2v_st_open(DATA "odd-expected.safetensors", err, sizeof err);
    CHECK(want, "%s", err);
    if (!want) return;
    const char *files[] = {DATA "odd-layouts.bin", DATA "odd-layouts-p4.bin"};
    for (int f = 0; f < 2; f++) {
        w2v_torchfile *tf = w2v_torch_open(files[f], err, sizeof err);
        CHECK(tf, "%s", err);
        if (!tf) continue;
        CHECK(w2v_torch_count(tf) == w2v_st_count(want), "%s: %d tensors, torch saved %d", files[f],
              w2v_torch_count(tf), w2v_st_count(want));
        CHECK(!strcmp(w2v_torch_tensor_at(tf, 0)->name, "base") && w2v_torch_tensor_at(tf, w2v_torch_count(tf)) == NULL,
              "state dict order, bounds");
        for (int i = 0; i < w2v_torch_count(tf); i++) {
            const w2v_st_tensor *t = w2v_torch_tensor_at(tf, i), *e = w2v_st_tensor_at(want, w2v_st_find(want, t->name));
            CHECK(e, "%s: unexpected tensor %s", files[f], t->name);
            if (!e) continue;
            int same_shape = t->dtype == e->dtype && t->ndim == e->ndim && t->count == e->count;
            for (int d = 0; same_shape && d < t->ndim; d++) same_shape = t->shape[d] == e->shape[d];
            CHECK(same_shape, "%s: %s: dtype %s ndim %d, torch says %s ndim %d", files[f], t->name,
                  w2v_st_dtype_name(t->dtype), t->ndim, w2v_st_dtype_name(e->dtype), e->ndim);
            CHECK(same_shape && !memcmp(t->data, e->data, t->count * w2v_st_dtype_size(t->dtype)),
                  "%s: %s: values differ from torch's", files[f], t->name);
        }
        w2v_torch_close(tf);
    }
    w2v_st_close(want);
}

/* The golden tiny model's state dict: converted, it loads as a model, with
 * the golden values where the shared data is there to compare. */
static void test_tiny_model(void)
{
    char err[1024], path[4200];
    w2v_torchfile *tf = w2v_torch_open(DATA "tiny/pytorch_model.bin", err, sizeof err);
    CHECK(tf, "%s", err);
    if (!tf) return;
    char dir[sizeof tmpdir + 16];
    snprintf(dir, sizeof dir, "%s/tiny", tmpdir);
    CHECK(w2v_mkdirs(dir, err, sizeof err) == 0, "%s", err);
    static const char *const copied[] = {"config.json", "preprocessor_config.json"};
    for (int i = 0; i < 2; i++) {
        char src[4200];
        snprintf(src, sizeof src, DATA "tiny/%s", copied[i]);
        snprintf(path, sizeof path, "%s/%s", dir, copied[i]);
        FILE *in = fopen(src, "rb");
        char buf[8192];
        size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
        if (in) fclose(in);
        buf[n < sizeof buf ? n : sizeof buf - 1] = 0;
        CHECK(n > 0 && w2v_atomic_write_text(path, buf, err, sizeof err) == 0, "copy %s", src);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(w2v_torch_save_safetensors(tf, path, err, sizeof err) == 0, "%s", err);
    w2v_torch_close(tf);

    w2v_model *m = w2v_model_load(dir, err, sizeof err);
    CHECK(m, "the converted model loads: %s", err);
    if (!m) return;
    w2v_safetensors *st = w2v_st_open(path, err, sizeof err);
    CHECK(st && !strcmp(w2v_st_metadata(st, "format"), "pt"), "metadata format pt");
    CHECK(st && w2v_st_count(st) == 51, "51 tensors: %d", st ? w2v_st_count(st) : -1);
    w2v_st_close(st);
    const char *gdir = golden_dir("base-tiny");
    if (gdir) {
        w2v_model *g = w2v_model_load(gdir, err, sizeof err);
        long na, nb;
        float *pa = w2v_model_params(m, &na), *pb = g ? w2v_model_params(g, &nb) : NULL;
        CHECK(g && na == nb && !memcmp(pa, pb, (size_t)na * sizeof *pa), "converted = golden parameters, bit for bit");
        w2v_model_free(g);
    }
    w2v_model_free(m);
}

static void test_refused(void)
{
    static const struct { const char *file, *says; } cases[] = {
        {"bad-global.bin", "data.pkl, byte 2: refusing global os.system"},
        {"bad-stack-global.bin", "refusing global builtins.eval"},
        {"bad-inst.bin", "pickle opcode INST (0x69) is not allowed"},
        {"bad-opcode.bin", "unknown pickle opcode 0xff"},
        {"bad-truncated.bin", "truncated"},
        {"bad-missing-storage.bin", "'b': storage '1' is missing"},
        {"bad-beyond-storage.bin", "reaches element 15, beyond its 12 elements"},
        {"bad-huge-shape.bin", "more than 2^40 elements"},
        {"bad-short-storage.bin", "storage '0' holds 40 bytes, not 12 F32 elements (48 bytes)"},
        {"bad-nested.bin", "'model' is a dict, not a tensor"},
        {"bad-legacy.bin", "legacy torch.save format"},
        {"bad-big-endian.bin", "big-endian checkpoints are not supported"},
        {"tiny", "not a regular file"},
        {"tiny/config.json", "not a PyTorch checkpoint"},
        {"absent.bin", "cannot open"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256], err[1024] = "";
        snprintf(path, sizeof path, DATA "%s", cases[i].file);
        w2v_torchfile *tf = w2v_torch_open(path, err, sizeof err);
        CHECK(!tf && !strncmp(err, path, strlen(path)) && strstr(err, cases[i].says), "%s: want '%s', got '%s'",
              cases[i].file, cases[i].says, err);
        w2v_torch_close(tf);
    }
}

/* ---- mutated pickles ---- */

typedef struct {
    char *name;
    void *data;
    size_t size;
} entry;

static int read_zip(const char *path, entry *e, int max)
{
    struct archive *a = archive_read_new();
    struct archive_entry *ae;
    int n = 0;
    archive_read_support_format_zip(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) return -1;
    while (n < max && archive_read_next_header(a, &ae) == ARCHIVE_OK) {
        e[n].name = strdup(archive_entry_pathname(ae));
        e[n].size = (size_t)archive_entry_size(ae);
        e[n].data = malloc(e[n].size + 1);
        if (archive_read_data(a, e[n].data, e[n].size) != (la_ssize_t)e[n].size) return -1;
        n++;
    }
    archive_read_free(a);
    return n;
}

/* The entries as a zip at path, with data.pkl replaced by pkl[0..n);
 * stored as torch stores them, or deflated. */
static void write_zip(const char *path, const entry *e, int count, const unsigned char *pkl, size_t n, int deflate)
{
    /* A new file each time: truncating one makes ext4 flush it to disk. */
    unlink(path);
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    if (deflate) archive_write_zip_set_compression_deflate(a);
    else archive_write_zip_set_compression_store(a);
    archive_write_open_filename(a, path);
    for (int i = 0; i < count; i++) {
        int is_pkl = strstr(e[i].name, "/data.pkl") != NULL;
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e[i].name);
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_perm(ae, 0644);
        archive_entry_set_size(ae, (la_int64_t)(is_pkl ? n : e[i].size));
        archive_write_header(a, ae);
        archive_write_data(a, is_pkl ? (const void *)pkl : e[i].data, is_pkl ? n : e[i].size);
        archive_entry_free(ae);
    }
    archive_write_free(a);
}

static void test_mutations(void)
{
    entry e[64];
    int n = read_zip(DATA "odd-layouts.bin", e, 64), p = -1;
    CHECK(n > 0, "read odd-layouts.bin");
    for (int i = 0; i < n; i++)
        if (strstr(e[i].name, "/data.pkl")) p = i;
    CHECK(p >= 0, "data.pkl in odd-layouts.bin");
    if (p < 0) return;
    char path[sizeof tmpdir + 16], err[1024];
    snprintf(path, sizeof path, "%s/m.bin", tmpdir);
    unsigned char *pkl = e[p].data, *mut = malloc(e[p].size);
    size_t size = e[p].size;

    /* the libarchive-written copy is read like torch's */
    write_zip(path, e, n, pkl, size, 0);
    w2v_torchfile *tf = w2v_torch_open(path, err, sizeof err);
    CHECK(tf && w2v_torch_count(tf) == 17, "rewritten archive: %s", tf ? "wrong count" : err);
    w2v_torch_close(tf);

    int truncations_refused = 1;
    for (size_t len = 0; len < size; len++) {
        write_zip(path, e, n, pkl, len, 0);
        tf = w2v_torch_open(path, err, sizeof err);
        if (tf || !strstr(err, "data.pkl")) {
            truncations_refused = 0;
            fprintf(stderr, "data.pkl cut to %zu bytes: %s\n", len, tf ? "accepted" : err);
        }
        w2v_torch_close(tf);
    }
    CHECK(truncations_refused, "every truncated data.pkl is refused");

    /* Single-byte changes: whatever is accepted still has every tensor
     * inside its storage (the sanitizer build checks the reads too). */
    static const unsigned char values[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '(', 't', 'R', '.', 'Q', 'h', 'q'};
    int accepted = 0, refused = 0;
    for (size_t i = 0; i < size; i++)
        for (size_t v = 0; v < sizeof values; v++) {
            if (pkl[i] == values[v]) continue;
            memcpy(mut, pkl, size);
            mut[i] = values[v];
            write_zip(path, e, n, mut, size, 0);
            tf = w2v_torch_open(path, err, sizeof err);
            if (!tf) {
                refused++;
                continue;
            }
            accepted++;
            for (int t = 0; t < w2v_torch_count(tf); t++) {
                const w2v_st_tensor *x = w2v_torch_tensor_at(tf, t);
                volatile unsigned char sum = 0;
                for (size_t b = 0; b < x->count * w2v_st_dtype_size(x->dtype); b++)
                    sum ^= ((const unsigned char *)x->data)[b];
            }
            w2v_torch_close(tf);
        }
    CHECK(refused > 0 && accepted > 0, "corruptions: %d refused, %d accepted (names, values)", refused, accepted);

    /* a MARK and an empty TUPLE: a tuple, not a state dict */
    write_zip(path, e, n, (const unsigned char *)"(t.", 3, 0);
    tf = w2v_torch_open(path, err, sizeof err);
    CHECK(!tf && strstr(err, "holds a tuple, not a state dict"), "(t.: %s", tf ? "accepted" : err);
    w2v_torch_close(tf);
    /* an empty state dict: nothing to convert */
    write_zip(path, e, n, (const unsigned char *)"}.", 2, 0);
    tf = w2v_torch_open(path, err, sizeof err);
    CHECK(!tf && strstr(err, "empty state dict"), "}.: %s", tf ? "accepted" : err);
    w2v_torch_close(tf);
    /* a zip bomb: 64 MB of zeros deflated to some 64 KB beside the real records */
    CHECK(n < 64, "room for one more entry");
    if (n < 64) {
        size_t big = 64u << 20;
        char name[256];
        snprintf(name, sizeof name, "%.*sdata/bomb", (int)(strstr(e[p].name, "data.pkl") - e[p].name), e[p].name);
        e[n] = (entry){name, calloc(big, 1), big};
        write_zip(path, e, n + 1, pkl, size, 1);
        struct stat sb;
        stat(path, &sb);
        tf = w2v_torch_open(path, err, sizeof err);
        CHECK(!tf && strstr(err, "unpacks to more than 8 times its size"), "a %lld-byte zip bomb: %s",
              (long long)sb.st_size, tf ? "accepted" : err);
        w2v_torch_close(tf);
        free(e[n].data);
    }
    free(mut);
    for (int i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].data);
    }
}

int main(void)
{
    /* libarchive stamps entries in local time: spare it a look at
     * /etc/localtime for each of the thousands of zips written here */
    setenv("TZ", "UTC", 1);
    if (!mkdtemp(tmpdir)) return 1;
    test_odd_layouts();
    test_tiny_model();
    test_refused();
    test_mutations();
    w2v_remove_tree(tmpdir, NULL, 0);
    return unit_finish("test_torchfile");
}
