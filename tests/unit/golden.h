/* Reading the golden reference data (../shared/golden, made by HF
 * transformers) in the unit tests. */
#ifndef W2V_GOLDEN_H
#define W2V_GOLDEN_H

#include "unit.h"
#include "w2v/model.h"
#include "w2v/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The wav2vec2 cases, then one per other family (golden/family/README.md). */
static const char *const golden_cases[] = {"base-tiny",
                                           "large-tiny",
                                           "weighted-tiny",
                                           "family/hubert-tiny",
                                           "family/distilhubert-tiny",
                                           "family/data2vec-audio-tiny",
                                           "family/wavlm-tiny"};
#define GOLDEN_NCASES 7

/* The directory of a golden case, or NULL (with a note) when the shared
 * data is not there. */
static inline const char *golden_dir(const char *name)
{
    static char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/golden/%s", unit_shared_dir(), name);
    if (stat(path, &sb) != 0) {
        unit_no_golden(name, path);
        return NULL;
    }
    return path;
}

static inline w2v_safetensors *golden_open(const char *dir, const char *file)
{
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    w2v_safetensors *st = w2v_st_open(path, err, sizeof err);
    CHECK(st != NULL, "%s", err);
    return st;
}

/* A tensor as floats (malloc'd), or NULL when absent. */
static inline float *golden_f32(w2v_safetensors *st, const char *name, size_t *count)
{
    int i = w2v_st_find(st, name);
    if (i < 0) return NULL;
    const w2v_st_tensor *t = w2v_st_tensor_at(st, i);
    float *x = malloc((t->count ? t->count : 1) * sizeof *x);
    if (t->dtype == W2V_ST_I64) {
        int64_t *v = malloc(t->count * sizeof *v);
        w2v_st_to_i64(t, v);
        for (size_t j = 0; j < t->count; j++) x[j] = (float)v[j];
        free(v);
    } else
        w2v_st_to_f32(t, x);
    if (count) *count = t->count;
    return x;
}

/* HF's gradient of parameter p (expected.safetensors' grad.NAME), as
 * golden_f32 gives it. */
static inline float *golden_grad(w2v_safetensors *ex, const w2v_param *p, size_t *count)
{
    char name[160];
    snprintf(name, sizeof name, "grad.%s", p->name);
    return golden_f32(ex, name, count);
}

static inline int64_t *golden_i64(w2v_safetensors *st, const char *name, size_t *count)
{
    int i = w2v_st_find(st, name);
    if (i < 0) return NULL;
    const w2v_st_tensor *t = w2v_st_tensor_at(st, i);
    int64_t *x = malloc((t->count ? t->count : 1) * sizeof *x);
    w2v_st_to_i64(t, x);
    if (count) *count = t->count;
    return x;
}

/* 1 when name is an item of a comma-separated list (the metadata's
 * grad_none and decay lists). */
static inline int golden_listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *s = list; s && (s = strstr(s, name)); s++)
        if ((s == list || s[-1] == ',') && (s[len] == ',' || !s[len])) return 1;
    return 0;
}

/* A golden case: HF's model, its batch of 3 (inputs.safetensors) and what
 * HF computed from it (expected.safetensors). */
typedef struct {
    const char *name;
    char dir[4096];
    w2v_model *m;
    w2v_safetensors *in, *ex;
    float *x;
    int64_t *lengths, *labels;
    w2v_input input;
    int frozen; /* HF ran freeze_feature_encoder(): no conv encoder gradients */
} golden_case;

/* 0 with the case open, or -1: its data is absent (a skip, noted) or did
 * not load (a failed check). */
static inline int golden_case_open(golden_case *g, const char *name)
{
    memset(g, 0, sizeof *g);
    g->name = name;
    const char *dir = golden_dir(name);
    if (!dir) return -1;
    snprintf(g->dir, sizeof g->dir, "%s", dir);
    char err[512];
    g->m = w2v_model_load(dir, err, sizeof err);
    CHECK(g->m != NULL, "%s: %s", name, err);
    if (!g->m) return -1;
    g->in = golden_open(dir, "inputs.safetensors");
    g->ex = golden_open(dir, "expected.safetensors");
    size_t nx = 0;
    g->x = golden_f32(g->in, "input_values", &nx);
    g->lengths = golden_i64(g->in, "lengths", NULL);
    g->labels = golden_i64(g->in, "labels", NULL);
    g->input = (w2v_input){.B = 3, .T = (int)(nx / 3), .x = g->x, .lengths = g->lengths, .labels = g->labels};
    const char *none = w2v_st_metadata(g->ex, "grad_none");
    g->frozen = none && strstr(none, "feature_extractor.conv_layers") != NULL;
    return 0;
}

static inline void golden_case_close(golden_case *g)
{
    free(g->x);
    free(g->lengths);
    free(g->labels);
    w2v_st_close(g->in);
    w2v_st_close(g->ex);
    w2v_model_free(g->m);
}

/* max |a - b| and max |b| over n values */
static inline double max_abs_diff(const float *a, const float *b, size_t n, double *maxb)
{
    double d = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > d || isnan(e)) d = isnan(e) ? INFINITY : e;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    if (maxb) *maxb = mb;
    return d;
}

/* Worst violation of |a - b| <= atol + rtol |b|: returns the largest
 * |a - b| / (atol + rtol |b|) (<= 1 passes). */
static inline double tol_ratio(const float *a, const float *b, size_t n, double atol, double rtol)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / (atol + rtol * fabs(b[i]));
        if (r > worst || isnan(r)) worst = isnan(r) ? INFINITY : r;
    }
    return worst;
}

#endif
