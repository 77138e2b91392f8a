/* safetensors (w2v_st_open on the input written to a scratch file): the
 * header, every tensor's range, lookups by name, metadata, and the
 * conversions to f32 / i64 a model load does; then the writer
 * (w2v_st_write), whose copy of a valid file must read back the same. */
#include "w2v/safetensors.h"
#include "fuzz.h"

#define MAX_CONVERT (1u << 22)

static float fbuf[MAX_CONVERT];
static int64_t ibuf[MAX_CONVERT];

/* Converts and checks every tensor of an open file of size bytes. */
static void check_tensors(const w2v_safetensors *st, size_t size)
{
    int n = w2v_st_count(st);
    FUZZ_ASSERT(n >= 0, "count %d", n);
    for (int i = 0; i < n; i++) {
        const w2v_st_tensor *t = w2v_st_tensor_at(st, i);
        fuzz_check_shape(t, i);
        FUZZ_ASSERT(t->count <= size / w2v_st_dtype_size(t->dtype) + 1, "%zu elements in %zu bytes", t->count, size);
        int j = w2v_st_find(st, t->name);
        FUZZ_ASSERT(j >= 0 && !strcmp(w2v_st_tensor_at(st, j)->name, t->name), "find '%s'", t->name);
        (void)w2v_st_dtype_name(t->dtype);
        if (t->count > MAX_CONVERT) continue;
        if (w2v_st_to_f32(t, fbuf) < 0) (void)w2v_st_to_i64(t, ibuf);
        volatile const unsigned char *p = t->data;
        if (t->count) (void)p[t->count * w2v_st_dtype_size(t->dtype) - 1];
    }
    FUZZ_ASSERT(w2v_st_tensor_at(st, n) == NULL && w2v_st_tensor_at(st, -1) == NULL, "out of range");
    (void)w2v_st_find(st, "");
    (void)w2v_st_metadata(st, "format");
}

/* Writes every tensor of st (and its "format" metadata) to a new file and
 * checks that it reads back with the same tensors. */
static void rewrite(const w2v_safetensors *st)
{
    w2v_st_writer *w = w2v_st_writer_new();
    int n = w2v_st_count(st);
    for (int i = 0; i < n; i++) {
        const w2v_st_tensor *t = w2v_st_tensor_at(st, i);
        w2v_st_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    const char *format = w2v_st_metadata(st, "format");
    if (format) w2v_st_add_metadata(w, "format", format);
    char err[512];
    const char *path = fuzz_path("rewritten.safetensors");
    FUZZ_ASSERT(w2v_st_write(w, path, err, sizeof err) == 0, "cannot write: %s", err);
    w2v_st_writer_free(w);
    w2v_safetensors *back = w2v_st_open(path, err, sizeof err);
    FUZZ_ASSERT(back, "written file does not read back: %s", err);
    FUZZ_ASSERT(w2v_st_count(back) == n, "%d tensors written, %d read", n, w2v_st_count(back));
    for (int i = 0; i < n; i++) {
        const w2v_st_tensor *a = w2v_st_tensor_at(st, i);
        int j = w2v_st_find(back, a->name);
        FUZZ_ASSERT(j >= 0, "'%s' lost", a->name);
        const w2v_st_tensor *b = w2v_st_tensor_at(back, j);
        FUZZ_ASSERT(a->dtype == b->dtype && a->ndim == b->ndim && a->count == b->count, "'%s' changed", a->name);
        for (int d = 0; d < a->ndim; d++) FUZZ_ASSERT(a->shape[d] == b->shape[d], "'%s' shape changed", a->name);
        FUZZ_ASSERT(!a->count || !memcmp(a->data, b->data, a->count * w2v_st_dtype_size(a->dtype)), "'%s' data changed",
                    a->name);
    }
    if (format) FUZZ_ASSERT(w2v_st_metadata(back, "format") && !strcmp(w2v_st_metadata(back, "format"), format), "metadata");
    w2v_st_close(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("model.safetensors", data, size);
    char err[512];
    w2v_safetensors *st = w2v_st_open(path, err, sizeof err);
    if (!st) {
        FUZZ_CHECK_ERR(err);
        return 0;
    }
    check_tensors(st, size);
    rewrite(st);
    w2v_st_close(st);
    return 0;
}
