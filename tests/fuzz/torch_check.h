/* What the two torch harnesses do with a checkpoint file: open it, touch
 * every tensor, and convert it as w2v-convert does, to a safetensors file
 * that must read back with the same tensors. */
#ifndef W2V_FUZZ_TORCH_CHECK_H
#define W2V_FUZZ_TORCH_CHECK_H

#include "w2v/safetensors.h"
#include "fuzz.h"
#include "w2v/torchfile.h"

#define MAX_CONVERT (1u << 22)
static float fbuf[MAX_CONVERT];
static int64_t ibuf[MAX_CONVERT];

static void torch_check(const char *path)
{
    char err[512];
    w2v_torchfile *tf = w2v_torch_open(path, err, sizeof err);
    if (!tf) {
        FUZZ_CHECK_ERR(err);
        return;
    }
    int n = w2v_torch_count(tf);
    FUZZ_ASSERT(n >= 1, "count %d", n);
    for (int i = 0; i < n; i++) {
        const w2v_st_tensor *t = w2v_torch_tensor_at(tf, i);
        fuzz_check_shape(t, i);
        if (t->count && t->count <= MAX_CONVERT) {
            volatile const unsigned char *p = t->data;
            (void)p[0];
            (void)p[t->count * w2v_st_dtype_size(t->dtype) - 1];
            if (w2v_st_to_f32(t, fbuf) < 0) (void)w2v_st_to_i64(t, ibuf);
        }
    }
    FUZZ_ASSERT(w2v_torch_tensor_at(tf, n) == NULL && w2v_torch_tensor_at(tf, -1) == NULL, "out of range");
    /* w2v-convert: the same tensors must come back from the safetensors file */
    const char *out = fuzz_path("converted.safetensors");
    if (w2v_torch_save_safetensors(tf, out, err, sizeof err) == 0) {
        w2v_safetensors *st = w2v_st_open(out, err, sizeof err);
        FUZZ_ASSERT(st, "converted file does not read back: %s", err);
        FUZZ_ASSERT(w2v_st_count(st) == n, "%d tensors written, %d read", n, w2v_st_count(st));
        for (int i = 0; i < n; i++) {
            const w2v_st_tensor *a = w2v_torch_tensor_at(tf, i);
            int j = w2v_st_find(st, a->name);
            FUZZ_ASSERT(j >= 0, "tensor '%s' lost in conversion", a->name);
            const w2v_st_tensor *b = w2v_st_tensor_at(st, j);
            FUZZ_ASSERT(a->dtype == b->dtype && a->ndim == b->ndim && a->count == b->count, "'%s' changed", a->name);
            for (int d = 0; d < a->ndim; d++) FUZZ_ASSERT(a->shape[d] == b->shape[d], "'%s' shape changed", a->name);
            FUZZ_ASSERT(!a->count || !memcmp(a->data, b->data, a->count * w2v_st_dtype_size(a->dtype)),
                        "'%s' data changed", a->name);
        }
        FUZZ_ASSERT(w2v_st_metadata(st, "format") && !strcmp(w2v_st_metadata(st, "format"), "pt"), "metadata");
        w2v_st_close(st);
    } else FUZZ_CHECK_ERR(err);
    w2v_torch_close(tf);
}

#endif
