/* Wav2Vec2ForSequenceClassification: the parameter block with named views,
 * the activation arena, and the forward and backward passes, top to bottom.
 *
 *   audio [B, T]
 *   -> conv feature encoder (conv, norm, GELU) x num_conv_layers   [B, F, C]
 *   -> feature projection (LayerNorm, Linear, dropout)             [B, F, H]
 *   -> SpecAugment (training), padded frames zeroed (mask mode)
 *   -> + positional conv embedding (weight-normed grouped conv, GELU)
 *   -> transformer layers (post-LN or pre-LN)                      [B, F, H]
 *   -> (weighted layer sum) -> projector per frame -> mean pool -> classifier
 */
#include "w2v/model.h"
#include "w2v/rng.h"
#include "w2v/threads.h"
#include "internal.h"
#include "ops.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAXC W2V_MAX_CONV_LAYERS

typedef struct {
    float *k_w, *k_b, *v_w, *v_b, *q_w, *q_b, *o_w, *o_b;
    float *ln1_w, *ln1_b; /* "layer_norm": after attention (post-LN) or before it (pre-LN) */
    float *ff1_w, *ff1_b, *ff2_w, *ff2_b;
    float *ln2_w, *ln2_b; /* "final_layer_norm" */
} layer_views;

/* Named views into one block (the parameters, or the gradients). */
typedef struct {
    float *layer_weights, *masked_spec_embed;
    float *conv_w[MAXC], *conv_b[MAXC], *conv_nw[MAXC], *conv_nb[MAXC];
    float *fp_ln_w, *fp_ln_b, *fp_w, *fp_b;
    float *pos_b, *pos_g, *pos_v;
    float *enc_ln_w, *enc_ln_b;
    layer_views *layer;
    float *proj_w, *proj_b, *cls_w, *cls_b;
} views;

/* How _init_weights initialises a parameter. */
typedef enum { INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_KAIMING_NORMAL, INIT_UNIFORM, INIT_UNIFORM01, INIT_CONST, INIT_NORM_OF_V } init_kind;

/* Activations of one transformer layer. */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd, *q, *k, *v, *probs, *ctx, *attn, *res1;
    float *ln2, *ln2_mean, *ln2_rstd, *ff1, *ffa, *ff2, *res2;
} layer_acts;

/* Views of the activations of examples [b0, b0 + B) of a batch.  The
 * arena lays every tensor out with the batch outermost, so the examples
 * of a shard are one contiguous run of each tensor. */
typedef struct {
    int B, T, F;
    int Tl[MAXC + 1];          /* frames entering each conv layer; Tl[n] = F */
    float *conv_out[MAXC], *conv_norm[MAXC], *conv_act[MAXC], *conv_mean[MAXC], *conv_rstd[MAXC];
    float *input;              /* [B, T] */
    float *fp_ln, *fp_mean, *fp_rstd, *fp_out, *enc_in;
    float *pos_w, *pos_pre, *pos_emb, *enc_sum, *enc_mean, *enc_rstd, *final_ln;
    float **hidden;            /* [L + 1]: hidden[i] is layer i's input, hidden[L] the last output */
    float **reported;          /* [L + 1]: HF's hidden_states (pre-LN: the last includes the final LayerNorm) */
    layer_acts *layer;
    float *wsum, *proj, *pooled, *logits, *probs, *dlogits;
    uint8_t *time_mask, *feat_mask;
    int *valid;
    int64_t *labels;
} acts;

/* Gradients of activations for the backward pass. */
typedef struct {
    long size;
    float *c0, *c1, *c2;                  /* conv encoder, largest layer */
    float *h, *t1, *t2, *q, *k, *v, *ctx; /* [B, F, H] */
    float *f1, *f2;                       /* [B, F, I] */
    float *proj, *pooled, *pos_w;
    float **hs;                           /* [L + 1], weighted layer sum only */
} grad_acts;

/* One thread's share of a batch (data parallelism): a run of examples
 * taken through the whole model by one thread, with single-threaded
 * operations inside, its own scratch and activation gradients, and, after
 * the first shard, its own parameter-gradient block, added to the model's
 * after the backward pass.  On a few cores this beats splitting each
 * operation: no thread pool wakes, waits or divides a small GEMM per op. */
typedef struct {
    int b0;
    acts a;
    float *scratch;
    long scratch_size;
    grad_acts d;
    views g;
    float *grad_block; /* NULL for the first shard, which uses the model's */
} shard;

struct w2v_model {
    w2v_config cfg;
    int nparams;
    w2v_param *params;
    init_kind *init;
    float *init_value; /* std, bound or constant per parameter */
    long nfloats;
    float *block, *grad_block;
    views p, g;
    acts a;            /* the whole batch */
    float *arena;      /* every activation of the batch */
    long arena_size, cap_bf;
    int cap_b;
    int *skip;         /* [L]: LayerDrop's draws */
    shard *shards;
    int nshards, cap_shards;
    int frozen, used_mask, training, has_labels;
    long time_masked;
    uint64_t key; /* randomness of the last forward */
    float p_hidden, p_attn, p_act, p_feat;
};

/* ---- the parameter table ---- */

typedef struct {
    w2v_model *m;
    views *v;
    float *block;
    long off;
    int record;
} walker;

static void add(walker *w, float **view, init_kind init, double value, int decay, int fe, int ndim, long s0, long s1,
                long s2, const char *fmt, ...)
{
    long size = s0 * (ndim > 1 ? s1 : 1) * (ndim > 2 ? s2 : 1);
    if (w->record) {
        w2v_model *m = w->m;
        int i = m->nparams++;
        m->params = xrealloc(m->params, (size_t)m->nparams * sizeof *m->params);
        m->init = xrealloc(m->init, (size_t)m->nparams * sizeof *m->init);
        m->init_value = xrealloc(m->init_value, (size_t)m->nparams * sizeof *m->init_value);
        w2v_param *p = &m->params[i];
        memset(p, 0, sizeof *p);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->name, sizeof p->name, fmt, ap);
        va_end(ap);
        p->ndim = ndim;
        p->shape[0] = s0, p->shape[1] = s1, p->shape[2] = s2;
        p->offset = w->off;
        p->size = size;
        p->decay = decay;
        p->feature_encoder = fe;
        m->init[i] = init;
        m->init_value[i] = (float)value;
    }
    if (w->block) *view = w->block + w->off;
    /* keep every tensor 16-float aligned for vector loads */
    w->off += (size + 15) / 16 * 16;
}

/* Walks the parameters in the order of HF's named_parameters(). */
static long walk(w2v_model *m, views *v, float *block, int record)
{
    const w2v_config *c = &m->cfg;
    walker w = {m, v, block, 0, record};
    int H = c->hidden_size, L = c->num_hidden_layers, I = c->intermediate_size, K = c->num_conv_pos_embeddings;
    int G = c->num_conv_pos_embedding_groups, P = c->classifier_proj_size, n = c->num_labels;
    double std = c->initializer_range;
    if (c->use_weighted_layer_sum)
        add(&w, &v->layer_weights, INIT_CONST, 1.0 / (L + 1), 1, 0, 1, L + 1, 0, 0, "layer_weights");
    if (w2v_config_has_masked_spec_embed(c))
        add(&w, &v->masked_spec_embed, INIT_UNIFORM01, 0, 1, 0, 1, H, 0, 0, "wav2vec2.masked_spec_embed");
    for (int l = 0; l < c->num_conv_layers; l++) {
        int cin = l ? c->conv_dim[l - 1] : 1, cout = c->conv_dim[l], k = c->conv_kernel[l];
        const char *pre = "wav2vec2.feature_extractor.conv_layers";
        add(&w, &v->conv_w[l], INIT_KAIMING_NORMAL, sqrt(2.0 / (cin * k)), 1, 1, 3, cout, cin, k, "%s.%d.conv.weight", pre, l);
        if (c->conv_bias)
            add(&w, &v->conv_b[l], INIT_UNIFORM, 1.0 / sqrt(cin * k), 0, 1, 1, cout, 0, 0, "%s.%d.conv.bias", pre, l);
        if (c->feat_extract_norm_layer || l == 0) {
            /* a GroupNorm weight decays, a LayerNorm weight does not */
            add(&w, &v->conv_nw[l], INIT_ONE, 0, !c->feat_extract_norm_layer, 1, 1, cout, 0, 0, "%s.%d.layer_norm.weight", pre, l);
            add(&w, &v->conv_nb[l], INIT_ZERO, 0, 0, 1, 1, cout, 0, 0, "%s.%d.layer_norm.bias", pre, l);
        }
    }
    int C = c->conv_dim[c->num_conv_layers - 1];
    add(&w, &v->fp_ln_w, INIT_ONE, 0, 0, 0, 1, C, 0, 0, "wav2vec2.feature_projection.layer_norm.weight");
    add(&w, &v->fp_ln_b, INIT_ZERO, 0, 0, 0, 1, C, 0, 0, "wav2vec2.feature_projection.layer_norm.bias");
    add(&w, &v->fp_w, INIT_UNIFORM, 1.0 / sqrt(C), 1, 0, 2, H, C, 0, "wav2vec2.feature_projection.projection.weight");
    add(&w, &v->fp_b, INIT_UNIFORM, 1.0 / sqrt(C), 0, 0, 1, H, 0, 0, "wav2vec2.feature_projection.projection.bias");
    add(&w, &v->pos_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "wav2vec2.encoder.pos_conv_embed.conv.bias");
    add(&w, &v->pos_g, INIT_NORM_OF_V, 0, 1, 0, 3, 1, 1, K, "wav2vec2.encoder.pos_conv_embed.conv.weight_g");
    add(&w, &v->pos_v, INIT_UNIFORM, 1.0 / sqrt((double)H / G * K), 1, 0, 3, H, H / G, K,
        "wav2vec2.encoder.pos_conv_embed.conv.weight_v");
    add(&w, &v->enc_ln_w, INIT_ONE, 0, 0, 0, 1, H, 0, 0, "wav2vec2.encoder.layer_norm.weight");
    add(&w, &v->enc_ln_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "wav2vec2.encoder.layer_norm.bias");
    for (int i = 0; i < L; i++) {
        layer_views *lv = &v->layer[i];
        const char *pre = "wav2vec2.encoder.layers";
        add(&w, &lv->k_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, "%s.%d.attention.k_proj.weight", pre, i);
        add(&w, &lv->k_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "%s.%d.attention.k_proj.bias", pre, i);
        add(&w, &lv->v_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, "%s.%d.attention.v_proj.weight", pre, i);
        add(&w, &lv->v_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "%s.%d.attention.v_proj.bias", pre, i);
        add(&w, &lv->q_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, "%s.%d.attention.q_proj.weight", pre, i);
        add(&w, &lv->q_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "%s.%d.attention.q_proj.bias", pre, i);
        add(&w, &lv->o_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, "%s.%d.attention.out_proj.weight", pre, i);
        add(&w, &lv->o_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "%s.%d.attention.out_proj.bias", pre, i);
        add(&w, &lv->ln1_w, INIT_ONE, 0, 0, 0, 1, H, 0, 0, "%s.%d.layer_norm.weight", pre, i);
        add(&w, &lv->ln1_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "%s.%d.layer_norm.bias", pre, i);
        add(&w, &lv->ff1_w, INIT_NORMAL, std, 1, 0, 2, I, H, 0, "%s.%d.feed_forward.intermediate_dense.weight", pre, i);
        add(&w, &lv->ff1_b, INIT_ZERO, 0, 0, 0, 1, I, 0, 0, "%s.%d.feed_forward.intermediate_dense.bias", pre, i);
        add(&w, &lv->ff2_w, INIT_NORMAL, std, 1, 0, 2, H, I, 0, "%s.%d.feed_forward.output_dense.weight", pre, i);
        add(&w, &lv->ff2_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "%s.%d.feed_forward.output_dense.bias", pre, i);
        add(&w, &lv->ln2_w, INIT_ONE, 0, 0, 0, 1, H, 0, 0, "%s.%d.final_layer_norm.weight", pre, i);
        add(&w, &lv->ln2_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "%s.%d.final_layer_norm.bias", pre, i);
    }
    add(&w, &v->proj_w, INIT_NORMAL, std, 1, 0, 2, P, H, 0, "projector.weight");
    add(&w, &v->proj_b, INIT_ZERO, 0, 0, 0, 1, P, 0, 0, "projector.bias");
    add(&w, &v->cls_w, INIT_NORMAL, std, 1, 0, 2, n, P, 0, "classifier.weight");
    add(&w, &v->cls_b, INIT_ZERO, 0, 0, 0, 1, n, 0, 0, "classifier.bias");
    return w.off;
}

static void alloc_views(acts *a, int L)
{
    a->hidden = xcalloc((size_t)L + 1, sizeof *a->hidden);
    a->reported = xcalloc((size_t)L + 1, sizeof *a->reported);
    a->layer = xcalloc((size_t)L + 1, sizeof *a->layer);
}

w2v_model *w2v_model_new(const w2v_config *c)
{
    w2v_model *m = xcalloc(1, sizeof *m);
    w2v_threads(); /* the thread policy holds before any compute */
    w2v_config_copy(&m->cfg, c);
    int L = c->num_hidden_layers;
    m->p.layer = xcalloc((size_t)L + 1, sizeof *m->p.layer);
    m->g.layer = xcalloc((size_t)L + 1, sizeof *m->g.layer);
    m->nfloats = walk(m, &m->p, NULL, 1);
    m->block = xalloc_floats((size_t)m->nfloats);
    walk(m, &m->p, m->block, 0);
    alloc_views(&m->a, L);
    m->skip = xcalloc((size_t)L + 1, sizeof *m->skip);
    return m;
}

static void free_views(acts *a)
{
    free(a->hidden);
    free(a->reported);
    free(a->layer);
}

static void free_batch(w2v_model *m)
{
    free(m->arena);
    free(m->a.time_mask);
    free(m->a.feat_mask);
    free(m->a.valid);
    free(m->a.labels);
    m->arena = NULL;
}

void w2v_model_free(w2v_model *m)
{
    if (!m) return;
    free_batch(m);
    free_views(&m->a);
    for (int s = 0; s < m->cap_shards; s++) {
        shard *sh = &m->shards[s];
        free_views(&sh->a);
        free(sh->scratch);
        free(sh->d.c0);
        free(sh->d.hs);
        free(sh->grad_block);
        if (s) free(sh->g.layer);
    }
    free(m->shards);
    free(m->skip);
    free(m->block);
    free(m->grad_block);
    free(m->params);
    free(m->init);
    free(m->init_value);
    free(m->p.layer);
    free(m->g.layer);
    w2v_config_free(&m->cfg);
    free(m);
}

const w2v_config *w2v_model_config(const w2v_model *m) { return &m->cfg; }
int w2v_model_num_params(const w2v_model *m) { return m->nparams; }
const w2v_param *w2v_model_param(const w2v_model *m, int i) { return i >= 0 && i < m->nparams ? &m->params[i] : NULL; }

const w2v_param *w2v_model_find_param(const w2v_model *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

float *w2v_model_params(w2v_model *m, long *count)
{
    if (count) *count = m->nfloats;
    return m->block;
}

/* The gradient block, made when training first needs it (inference never
 * does: for wav2vec2-base that is 361 MiB not taken). */
static void ensure_grads(w2v_model *m)
{
    if (m->grad_block) return;
    m->grad_block = xalloc_floats((size_t)m->nfloats);
    walk(m, &m->g, m->grad_block, 0);
}

float *w2v_model_grads(w2v_model *m, long *count)
{
    ensure_grads(m);
    if (count) *count = m->nfloats;
    return m->grad_block;
}

static void init_param(w2v_model *m, int i, w2v_rng *r)
{
    const w2v_param *p = &m->params[i];
    float *x = m->block + p->offset, v = m->init_value[i];
    for (long j = 0; j < p->size; j++) {
        switch (m->init[i]) {
        case INIT_ZERO: x[j] = 0; break;
        case INIT_ONE: x[j] = 1; break;
        case INIT_CONST: x[j] = v; break;
        case INIT_NORMAL: case INIT_KAIMING_NORMAL: x[j] = (float)(v * w2v_rng_normal(r)); break;
        case INIT_UNIFORM: x[j] = (float)(v * (2 * w2v_rng_uniform(r) - 1)); break;
        case INIT_UNIFORM01: x[j] = (float)w2v_rng_uniform(r); break;
        case INIT_NORM_OF_V: break; /* after weight_v, below */
        }
    }
}

/* weight_g = ||weight_v|| per tap, as torch's weight_norm sets it */
static void init_weight_g(w2v_model *m)
{
    const w2v_config *c = &m->cfg;
    int K = c->num_conv_pos_embeddings, rows = c->hidden_size * (c->hidden_size / c->num_conv_pos_embedding_groups);
    for (int k = 0; k < K; k++) {
        double ss = 0;
        for (long r = 0; r < rows; r++) ss += (double)m->p.pos_v[r * K + k] * m->p.pos_v[r * K + k];
        m->p.pos_g[k] = (float)sqrt(ss);
    }
}

void w2v_model_init_weights(w2v_model *m, uint64_t seed)
{
    w2v_rng r;
    w2v_rng_seed(&r, seed);
    for (int i = 0; i < m->nparams; i++) init_param(m, i, &r);
    init_weight_g(m);
}

/* Learning filters from raw audio is what makes a Wav2Vec2 slow to start
 * from scratch: HF's kaiming-normal first layer is white noise.  Here each
 * centre frequency, mel-spaced from fmin to fmax, gets four unit-norm
 * Hann-windowed cosines a quarter period apart (0, 90, 180, 270 degrees):
 * after the GroupNorm and GELU, their sum is the band's envelope whatever
 * the signal's phase at the frame.  A second layer with a channel per band
 * starts as that sum, averaged over its taps: the encoder then computes a
 * mel-like spectrogram, which a frozen encoder keeps. */
int w2v_model_init_filterbank(w2v_model *m, double fmin, double fmax, char *err, size_t errlen)
{
    const w2v_config *c = &m->cfg;
    int C = c->conv_dim[0], K = c->conv_kernel[0], bands = C / 4;
    double rate = c->sampling_rate;
    if (C % 4) return set_error(err, errlen, "a filterbank needs conv_dim[0] divisible by 4, not %d", C);
    if (K < 16) return set_error(err, errlen, "a filterbank needs a first conv kernel of at least 16 taps, not %d", K);
    if (!(fmin > 0 && fmin < fmax && fmax <= rate / 2))
        return set_error(err, errlen, "filterbank range %g-%g Hz: need 0 < fmin < fmax <= %g", fmin, fmax, rate / 2);
    double mlo = 2595 * log10(1 + fmin / 700), mhi = 2595 * log10(1 + fmax / 700);
    for (int i = 0; i < bands; i++) {
        double mel = bands > 1 ? mlo + (mhi - mlo) * i / (bands - 1) : mlo;
        double f = 700 * (pow(10, mel / 2595) - 1);
        for (int q = 0; q < 4; q++) {
            float *w = m->p.conv_w[0] + (long)(4 * i + q) * K;
            double ss = 0;
            for (int k = 0; k < K; k++) {
                double t = (k - (K - 1) / 2.0) / rate, hann = 0.5 - 0.5 * cos(2 * M_PI * k / (K - 1));
                w[k] = (float)(hann * cos(2 * M_PI * f * t + q * M_PI / 2));
                ss += (double)w[k] * w[k];
            }
            for (int k = 0; k < K; k++) w[k] = (float)(w[k] / sqrt(ss));
        }
    }
    if (c->conv_bias) memset(m->p.conv_b[0], 0, (size_t)C * sizeof(float));
    if (c->num_conv_layers < 2 || c->conv_dim[1] != bands) return 1;
    /* the envelope layer: [bands, C, K1], band i reads channels 4i .. 4i + 3 */
    int K1 = c->conv_kernel[1];
    float *w1 = m->p.conv_w[1];
    memset(w1, 0, (size_t)bands * C * K1 * sizeof(float));
    for (int i = 0; i < bands; i++)
        for (int q = 0; q < 4; q++)
            for (int k = 0; k < K1; k++) w1[((long)i * C + 4 * i + q) * K1 + k] = 1.0f / (float)K1;
    if (c->conv_bias) memset(m->p.conv_b[1], 0, (size_t)bands * sizeof(float));
    return 2;
}

int w2v_model_init_param(w2v_model *m, const char *name, uint64_t seed)
{
    const w2v_param *p = w2v_model_find_param(m, name);
    if (!p) return -1;
    w2v_rng r;
    w2v_rng_seed(&r, w2v_hash(seed, (uint64_t)(p - m->params)));
    init_param(m, (int)(p - m->params), &r);
    if (m->init[p - m->params] == INIT_NORM_OF_V) init_weight_g(m);
    return 0;
}

void w2v_model_zero_grad(w2v_model *m)
{
    ensure_grads(m);
    memset(m->grad_block, 0, (size_t)m->nfloats * sizeof(float));
}
void w2v_model_freeze_feature_encoder(w2v_model *m, int frozen) { m->frozen = frozen; }

int w2v_model_param_has_grad(const w2v_model *m, int i)
{
    const w2v_param *p = &m->params[i];
    if (p->feature_encoder && m->frozen) return 0;
    if (m->p.masked_spec_embed && m->block + p->offset == m->p.masked_spec_embed) return m->time_masked > 0;
    return 1;
}

/* ---- the activation arena ---- */

typedef struct {
    float *base;
    long off;
    int B, b0; /* the batch the arena is laid out for; the first example viewed */
} arena;

/* A tensor of n floats per example; the view starts at example b0. */
static float *take(arena *ar, long n)
{
    float *p = ar->base ? ar->base + ar->off + (long)ar->b0 * n : NULL;
    ar->off += ((long)ar->B * n + 15) / 16 * 16;
    return p;
}

/* Lays out every activation of a batch of B examples (a->T samples,
 * a->F frames) and points a's views at examples [b0, b0 + a->B); with a
 * NULL base it only counts. */
static long layout(w2v_model *m, acts *a, float *base, int B, int b0)
{
    const w2v_config *c = &m->cfg;
    arena ar = {base, 0, B, b0};
    int F = a->F, H = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    int nh = c->num_attention_heads;
    a->input = take(&ar, a->T);
    for (int l = 0; l < c->num_conv_layers; l++) {
        long n = (long)a->Tl[l + 1] * c->conv_dim[l];
        int normed = c->feat_extract_norm_layer || l == 0;
        a->conv_out[l] = take(&ar, n);
        a->conv_norm[l] = normed ? take(&ar, n) : a->conv_out[l];
        a->conv_act[l] = take(&ar, n);
        long stats = c->feat_extract_norm_layer ? a->Tl[l + 1] : c->conv_dim[l];
        a->conv_mean[l] = normed ? take(&ar, stats) : NULL;
        a->conv_rstd[l] = normed ? take(&ar, stats) : NULL;
    }
    int C = c->conv_dim[c->num_conv_layers - 1];
    a->fp_ln = take(&ar, (long)F * C);
    a->fp_mean = take(&ar, F);
    a->fp_rstd = take(&ar, F);
    a->fp_out = take(&ar, (long)F * H);
    a->enc_in = take(&ar, (long)F * H);
    /* the weight-normed positional conv weight: one for the batch */
    arena one = {base, ar.off, 1, 0};
    a->pos_w = take(&one, (long)H * (H / c->num_conv_pos_embedding_groups) * c->num_conv_pos_embeddings);
    ar.off = one.off;
    a->pos_pre = take(&ar, (long)F * H);
    a->pos_emb = take(&ar, (long)F * H);
    a->enc_sum = take(&ar, (long)F * H);
    a->enc_mean = take(&ar, F);
    a->enc_rstd = take(&ar, F);
    a->final_ln = take(&ar, (long)F * H);
    for (int i = 0; i <= L; i++) a->reported[i] = a->hidden[i] = take(&ar, (long)F * H);
    if (c->do_stable_layer_norm) a->reported[L] = a->final_ln;
    for (int i = 0; i < L; i++) {
        layer_acts *la = &a->layer[i];
        la->ln1 = take(&ar, (long)F * H);
        la->ln1_mean = take(&ar, F);
        la->ln1_rstd = take(&ar, F);
        la->q = take(&ar, (long)F * H);
        la->k = take(&ar, (long)F * H);
        la->v = take(&ar, (long)F * H);
        la->probs = take(&ar, (long)nh * F * F);
        la->ctx = take(&ar, (long)F * H);
        la->attn = take(&ar, (long)F * H);
        la->res1 = take(&ar, (long)F * H);
        la->ln2 = take(&ar, (long)F * H);
        la->ln2_mean = take(&ar, F);
        la->ln2_rstd = take(&ar, F);
        la->ff1 = take(&ar, (long)F * I);
        la->ffa = take(&ar, (long)F * I);
        la->ff2 = take(&ar, (long)F * H);
        la->res2 = take(&ar, (long)F * H);
    }
    a->wsum = take(&ar, (long)F * H);
    a->proj = take(&ar, (long)F * c->classifier_proj_size);
    a->pooled = take(&ar, c->classifier_proj_size);
    a->logits = take(&ar, c->num_labels);
    a->probs = take(&ar, c->num_labels);
    a->dlogits = take(&ar, c->num_labels);
    return ar.off;
}

static conv_shape conv_layer_shape(const w2v_config *c, const acts *a, int l)
{
    conv_shape s = {a->B, a->Tl[l], a->Tl[l + 1], l ? c->conv_dim[l - 1] : 1, c->conv_dim[l], c->conv_kernel[l],
                    c->conv_stride[l], 0, 1};
    return s;
}

static conv_shape pos_conv_shape(const w2v_config *c, const acts *a)
{
    int K = c->num_conv_pos_embeddings;
    conv_shape s = {a->B, a->F, a->F, c->hidden_size, c->hidden_size, K, 1, K / 2, c->num_conv_pos_embedding_groups};
    return s;
}

/* One shard per thread when the batch has an example for each (a batch
 * smaller than the threads splits every operation instead). */
static int shard_count(int B)
{
    int nt = omp_in_parallel() ? 1 : w2v_threads();
    return B >= nt ? nt : 1;
}

/* Points shard s of ns at its examples, with scratch for its operations. */
static void ensure_shard(w2v_model *m, int s, int ns)
{
    const w2v_config *c = &m->cfg;
    const acts *a = &m->a;
    shard *sh = &m->shards[s];
    int b0 = (int)((long)a->B * s / ns), nb = (int)((long)a->B * (s + 1) / ns) - b0;
    sh->b0 = b0;
    sh->a.B = nb, sh->a.T = a->T, sh->a.F = a->F;
    memcpy(sh->a.Tl, a->Tl, sizeof a->Tl);
    layout(m, &sh->a, m->arena, a->B, b0);
    sh->a.time_mask = a->time_mask + (long)b0 * a->F;
    sh->a.feat_mask = a->feat_mask + (long)b0 * c->hidden_size;
    sh->a.valid = a->valid + b0;
    sh->a.labels = a->labels + b0;
    long scratch = attention_scratch(a->F);
    for (int l = 0; l < c->num_conv_layers; l++) {
        conv_shape cs = conv_layer_shape(c, &sh->a, l);
        if (conv1d_scratch(&cs) > scratch) scratch = conv1d_scratch(&cs);
    }
    conv_shape ps = pos_conv_shape(c, &sh->a);
    if (conv1d_scratch(&ps) > scratch) scratch = conv1d_scratch(&ps);
    if (scratch > sh->scratch_size) {
        free(sh->scratch);
        sh->scratch = xalloc_floats((size_t)scratch);
        sh->scratch_size = scratch;
    }
}

/* Makes room for batch B of T samples (F frames): grows, never shrinks. */
static void ensure_acts(w2v_model *m, int B, int T, int F)
{
    const w2v_config *c = &m->cfg;
    acts *a = &m->a;
    a->B = B, a->T = T, a->F = F;
    a->Tl[0] = T;
    for (int l = 0; l < c->num_conv_layers; l++) a->Tl[l + 1] = (a->Tl[l] - c->conv_kernel[l]) / c->conv_stride[l] + 1;
    long need = layout(m, a, NULL, B, 0);
    if (!m->arena || need > m->arena_size || (long)B * F > m->cap_bf || B > m->cap_b) {
        free_batch(m);
        m->arena = xalloc_floats((size_t)need);
        m->arena_size = need;
        m->cap_bf = (long)B * F;
        m->cap_b = B;
        a->time_mask = xcalloc((size_t)B * F, 1);
        a->feat_mask = xcalloc((size_t)B * c->hidden_size, 1);
        a->valid = xcalloc((size_t)B, sizeof *a->valid);
        a->labels = xcalloc((size_t)B, sizeof *a->labels);
    }
    layout(m, a, m->arena, B, 0);
    int ns = shard_count(B);
    if (ns > m->cap_shards) {
        m->shards = xrealloc(m->shards, (size_t)ns * sizeof *m->shards);
        memset(m->shards + m->cap_shards, 0, (size_t)(ns - m->cap_shards) * sizeof *m->shards);
        for (int s = m->cap_shards; s < ns; s++) alloc_views(&m->shards[s].a, c->num_hidden_layers);
        m->cap_shards = ns;
    }
    m->nshards = ns;
    for (int s = 0; s < ns; s++) ensure_shard(m, s, ns);
}

/* Runs fn on every shard, one thread each. */
static void each_shard(w2v_model *m, void (*fn)(w2v_model *, shard *))
{
    if (m->nshards == 1) {
        fn(m, &m->shards[0]);
        return;
    }
    #pragma omp parallel for num_threads(m->nshards) schedule(static, 1)
    for (int s = 0; s < m->nshards; s++) fn(m, &m->shards[s]);
}

/* Where a shard's part (n floats) of a batch tensor starts in the whole
 * tensor: dropout keys its draws by that place. */
static long batch_offset(const shard *sh, long n) { return n / sh->a.B * sh->b0; }

/* ---- forward ---- */

/* Where randomness is drawn: each site gets its own stream of the step's
 * key.  Draws are keyed by the example's place in the whole batch, so
 * they do not depend on how the batch is cut into shards. */
enum { SITE_FEAT_PROJ = 1, SITE_ENC, SITE_ATTN, SITE_ATTN_OUT, SITE_FF_ACT, SITE_FF_OUT, SITE_SPECAUG };

static uint64_t site_key(const w2v_model *m, int site, int layer)
{
    return w2v_hash(m->key, (uint64_t)site << 32 | (uint64_t)layer);
}

static void layer_forward(w2v_model *m, shard *sh, int i, const int *valid)
{
    const w2v_config *c = &m->cfg;
    acts *a = &sh->a;
    layer_acts *la = &a->layer[i];
    const layer_views *w = &m->p.layer[i];
    int B = a->B, F = a->F, H = c->hidden_size, I = c->intermediate_size, nh = c->num_attention_heads;
    long BF = (long)B * F, n = BF * H;
    float eps = (float)c->layer_norm_eps, scale = 1.0f / sqrtf((float)(H / nh));
    const float *x = a->hidden[i], *xin = x;
    if (c->do_stable_layer_norm) {
        layernorm_forward(la->ln1, la->ln1_mean, la->ln1_rstd, x, w->ln1_w, w->ln1_b, (int)BF, H, eps);
        xin = la->ln1;
    }
    linear_forward(la->q, xin, w->q_w, w->q_b, (int)BF, H, H);
    #pragma omp parallel for simd
    for (long j = 0; j < n; j++) la->q[j] *= scale; /* HF scales after the bias */
    linear_forward(la->k, xin, w->k_w, w->k_b, (int)BF, H, H);
    linear_forward(la->v, xin, w->v_w, w->v_b, (int)BF, H, H);
    attention_forward(la->ctx, la->probs, la->q, la->k, la->v, valid, B, F, H, nh, m->p_attn,
                      site_key(m, SITE_ATTN, i), sh->b0, sh->scratch);
    linear_forward(la->attn, la->ctx, w->o_w, w->o_b, (int)BF, H, H);
    dropout_forward(la->attn, la->attn, n, m->p_hidden, site_key(m, SITE_ATTN_OUT, i), batch_offset(sh, n));
    residual_forward(la->res1, x, la->attn, n);
    const float *ffin;
    if (c->do_stable_layer_norm) {
        layernorm_forward(la->ln2, la->ln2_mean, la->ln2_rstd, la->res1, w->ln2_w, w->ln2_b, (int)BF, H, eps);
        ffin = la->ln2;
    } else {
        layernorm_forward(la->ln1, la->ln1_mean, la->ln1_rstd, la->res1, w->ln1_w, w->ln1_b, (int)BF, H, eps);
        ffin = la->ln1;
    }
    linear_forward(la->ff1, ffin, w->ff1_w, w->ff1_b, (int)BF, H, I);
    gelu_forward(la->ffa, la->ff1, BF * I);
    dropout_forward(la->ffa, la->ffa, BF * I, m->p_act, site_key(m, SITE_FF_ACT, i), batch_offset(sh, BF * I));
    linear_forward(la->ff2, la->ffa, w->ff2_w, w->ff2_b, (int)BF, I, H);
    dropout_forward(la->ff2, la->ff2, n, m->p_hidden, site_key(m, SITE_FF_OUT, i), batch_offset(sh, n));
    if (c->do_stable_layer_norm) {
        residual_forward(a->hidden[i + 1], la->res1, la->ff2, n);
    } else {
        residual_forward(la->res2, la->ln1, la->ff2, n);
        layernorm_forward(a->hidden[i + 1], la->ln2_mean, la->ln2_rstd, la->res2, w->ln2_w, w->ln2_b, (int)BF, H, eps);
    }
}

/* SpecAugment's spans for the whole batch (training only): time spans
 * take masked_spec_embed, feature spans are zeroed (HF's
 * _mask_hidden_states); applied per shard by spec_augment_apply. */
static void spec_augment_draw(w2v_model *m, const int *valid)
{
    const w2v_config *c = &m->cfg;
    acts *a = &m->a;
    int B = a->B, F = a->F, H = c->hidden_size;
    w2v_rng r;
    w2v_rng_seed(&r, site_key(m, SITE_SPECAUG, 0));
    m->time_masked = 0;
    memset(a->time_mask, 0, (size_t)B * F);
    memset(a->feat_mask, 0, (size_t)B * H);
    if (!m->training || !c->apply_spec_augment) return;
    if (c->mask_time_prob > 0)
        m->time_masked = specaug_mask(a->time_mask, B, F, valid, c->mask_time_prob, c->mask_time_length,
                                      c->mask_time_min_masks, &r);
    if (c->mask_feature_prob > 0)
        specaug_mask(a->feat_mask, B, H, NULL, c->mask_feature_prob, c->mask_feature_length,
                     c->mask_feature_min_masks, &r);
}

static void spec_augment_apply(w2v_model *m, acts *a)
{
    int B = a->B, F = a->F, H = m->cfg.hidden_size;
    if (m->time_masked)
        for (long j = 0; j < (long)B * F; j++)
            if (a->time_mask[j]) memcpy(a->enc_in + j * H, m->p.masked_spec_embed, (size_t)H * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < H; ch++)
            if (a->feat_mask[(long)b * H + ch])
                for (int t = 0; t < F; t++) a->enc_in[((long)b * F + t) * H + ch] = 0;
}

/* A shard's examples from the audio to the logits. */
static void shard_forward(w2v_model *m, shard *sh)
{
    const w2v_config *c = &m->cfg;
    acts *a = &sh->a;
    int B = a->B, F = a->F, H = c->hidden_size, L = c->num_hidden_layers, P = c->classifier_proj_size;
    long BF = (long)B * F;
    float eps = (float)c->layer_norm_eps;
    const int *valid = m->used_mask ? a->valid : NULL;

    /* conv feature encoder */
    const float *x = a->input;
    for (int l = 0; l < c->num_conv_layers; l++) {
        conv_shape s = conv_layer_shape(c, a, l);
        long cnt = (long)B * s.Tout * s.Cout;
        conv1d_forward(a->conv_out[l], x, m->p.conv_w[l], c->conv_bias ? m->p.conv_b[l] : NULL, &s, sh->scratch);
        /* nn.LayerNorm and nn.GroupNorm here keep torch's default eps */
        if (c->feat_extract_norm_layer)
            layernorm_forward(a->conv_norm[l], a->conv_mean[l], a->conv_rstd[l], a->conv_out[l], m->p.conv_nw[l],
                              m->p.conv_nb[l], B * s.Tout, s.Cout, 1e-5f);
        else if (l == 0)
            groupnorm_forward(a->conv_norm[l], a->conv_mean[l], a->conv_rstd[l], a->conv_out[l], m->p.conv_nw[l],
                              m->p.conv_nb[l], B, s.Tout, s.Cout, 1e-5f);
        gelu_forward(a->conv_act[l], a->conv_norm[l], cnt);
        x = a->conv_act[l];
    }
    int C = c->conv_dim[c->num_conv_layers - 1];

    /* feature projection, SpecAugment, padded frames */
    layernorm_forward(a->fp_ln, a->fp_mean, a->fp_rstd, x, m->p.fp_ln_w, m->p.fp_ln_b, (int)BF, C, eps);
    linear_forward(a->fp_out, a->fp_ln, m->p.fp_w, m->p.fp_b, (int)BF, C, H);
    dropout_forward(a->enc_in, a->fp_out, BF * H, m->p_feat, site_key(m, SITE_FEAT_PROJ, 0), batch_offset(sh, BF * H));
    spec_augment_apply(m, a);
    if (valid)
        for (int b = 0; b < B; b++)
            memset(a->enc_in + ((long)b * F + valid[b]) * H, 0, (size_t)(F - valid[b]) * H * sizeof(float));

    /* positional conv embedding */
    conv_shape ps = pos_conv_shape(c, a);
    conv1d_forward(a->pos_pre, a->enc_in, a->pos_w, m->p.pos_b, &ps, sh->scratch);
    gelu_forward(a->pos_emb, a->pos_pre, BF * H);
    residual_forward(a->enc_sum, a->enc_in, a->pos_emb, BF * H);
    if (c->do_stable_layer_norm) {
        dropout_forward(a->hidden[0], a->enc_sum, BF * H, m->p_hidden, site_key(m, SITE_ENC, 0), batch_offset(sh, BF * H));
    } else {
        layernorm_forward(a->hidden[0], a->enc_mean, a->enc_rstd, a->enc_sum, m->p.enc_ln_w, m->p.enc_ln_b, (int)BF,
                          H, eps);
        dropout_forward(a->hidden[0], a->hidden[0], BF * H, m->p_hidden, site_key(m, SITE_ENC, 0), batch_offset(sh, BF * H));
    }

    /* transformer layers */
    for (int i = 0; i < L; i++) {
        if (m->skip[i]) memcpy(a->hidden[i + 1], a->hidden[i], (size_t)BF * H * sizeof(float));
        else layer_forward(m, sh, i, valid);
    }
    if (c->do_stable_layer_norm)
        layernorm_forward(a->final_ln, a->enc_mean, a->enc_rstd, a->hidden[L], m->p.enc_ln_w, m->p.enc_ln_b,
                          (int)BF, H, eps);

    /* classification head */
    const float *top = a->reported[L];
    if (c->use_weighted_layer_sum) {
        layersum_forward(a->wsum, a->reported, m->p.layer_weights, L + 1, BF * H);
        top = a->wsum;
    }
    linear_forward(a->proj, top, m->p.proj_w, m->p.proj_b, (int)BF, H, P);
    meanpool_forward(a->pooled, a->proj, valid, B, F, P);
    linear_forward(a->logits, a->pooled, m->p.cls_w, m->p.cls_b, B, P, c->num_labels);
}

float w2v_model_forward(w2v_model *m, const w2v_input *in, const w2v_run *run, float *logits, char *err,
                        size_t errlen)
{
    const w2v_config *c = &m->cfg;
    int B = in->B, T = in->T, H = c->hidden_size, L = c->num_hidden_layers, n = c->num_labels;
    long F = w2v_config_frames(c, T);
    if (B < 1) return set_error(err, errlen, "empty batch");
    if (F < 1)
        return set_error(err, errlen, "input of %d samples is too short: the model needs at least %ld", T,
                         w2v_config_min_samples(c));
    int use_mask = run->attention_mask < 0 ? c->return_attention_mask : run->attention_mask;
    if (use_mask && !in->lengths) return set_error(err, errlen, "the model takes an attention mask, but the input has no lengths");
    for (int b = 0; b < B && use_mask; b++)
        if (w2v_config_frames(c, (long)in->lengths[b]) < 1)
            return set_error(err, errlen, "example %d has %lld samples: the model needs at least %ld", b,
                             (long long)in->lengths[b], w2v_config_min_samples(c));
    ensure_acts(m, B, T, (int)F);
    acts *a = &m->a;
    m->training = run->training;
    m->used_mask = use_mask;
    m->key = w2v_hash(run->seed, run->step);
    m->p_hidden = run->training ? (float)c->hidden_dropout : 0;
    m->p_attn = run->training ? (float)c->attention_dropout : 0;
    m->p_act = run->training ? (float)c->activation_dropout : 0;
    m->p_feat = run->training ? (float)c->feat_proj_dropout : 0;
    for (int b = 0; b < B; b++) {
        a->valid[b] = (int)(use_mask ? w2v_config_frames(c, (long)in->lengths[b]) : F);
        a->labels[b] = in->labels ? in->labels[b] : -1;
    }
    memcpy(a->input, in->x, (size_t)B * T * sizeof(float));

    /* what every shard shares: the random draws of the batch, the
     * positional conv weight */
    spec_augment_draw(m, use_mask ? a->valid : NULL);
    w2v_rng r; /* LayerDrop draws for every layer, as HF does */
    w2v_rng_seed(&r, site_key(m, SITE_ENC, 1));
    for (int i = 0; i < L; i++) {
        double u = w2v_rng_uniform(&r);
        m->skip[i] = m->training && u < c->layerdrop;
    }
    conv_shape ps = pos_conv_shape(c, a);
    weightnorm_forward(a->pos_w, m->p.pos_g, m->p.pos_v, H * (H / ps.G), ps.K);

    each_shard(m, shard_forward);
    if (logits) memcpy(logits, a->logits, (size_t)B * n * sizeof(float));
    m->has_labels = in->labels != NULL;
    return in->labels ? crossentropy_forward(a->probs, a->logits, a->labels, B, n) : 0.0f;
}

/* ---- backward ---- */

static void ensure_grad_acts(w2v_model *m, shard *sh)
{
    const w2v_config *c = &m->cfg;
    acts *a = &sh->a;
    grad_acts *d = &sh->d;
    int H = c->hidden_size, L = c->num_hidden_layers;
    long BF = (long)a->B * a->F, conv = BF * c->conv_dim[c->num_conv_layers - 1];
    for (int l = 0; l < c->num_conv_layers; l++) {
        long n = (long)a->B * a->Tl[l + 1] * c->conv_dim[l];
        conv = n > conv ? n : conv;
    }
    long th = (conv + 15) / 16 * 16, hh = (BF * H + 15) / 16 * 16, ii = (BF * c->intermediate_size + 15) / 16 * 16;
    long pp = (BF * c->classifier_proj_size + 15) / 16 * 16, small = ((long)a->B * c->classifier_proj_size + 15) / 16 * 16;
    long pw = ((long)H * (H / c->num_conv_pos_embedding_groups) * c->num_conv_pos_embeddings + 15) / 16 * 16;
    long hs = c->use_weighted_layer_sum ? (L + 1) * hh : 0;
    long need = 3 * th + 7 * hh + 2 * ii + pp + small + pw + hs;
    if (need > d->size) {
        free(d->c0);
        free(d->hs);
        memset(d, 0, sizeof *d);
        d->c0 = xalloc_floats((size_t)need);
        d->size = need;
        d->hs = xcalloc((size_t)L + 1, sizeof *d->hs);
    }
    float *p = d->c0;
    d->c1 = p += th;
    d->c2 = p += th;
    d->h = p += th;
    d->t1 = p += hh;
    d->t2 = p += hh;
    d->q = p += hh;
    d->k = p += hh;
    d->v = p += hh;
    d->ctx = p += hh;
    d->f1 = p += hh;
    d->f2 = p += ii;
    d->proj = p += ii;
    d->pooled = p += pp;
    d->pos_w = p += small;
    p += pw;
    for (int i = 0; i <= L && c->use_weighted_layer_sum; i++) d->hs[i] = p + i * hh;
}

/* Where a shard's parameter gradients go: the model's block for the
 * first, a zeroed block of its own for the others. */
static void ensure_shard_grads(w2v_model *m, shard *sh)
{
    if (sh == &m->shards[0]) {
        sh->g = m->g;
        return;
    }
    if (!sh->grad_block) {
        sh->grad_block = xalloc_floats((size_t)m->nfloats);
        sh->g.layer = xcalloc((size_t)m->cfg.num_hidden_layers + 1, sizeof *sh->g.layer);
        walk(m, &sh->g, sh->grad_block, 0);
    } else {
        memset(sh->grad_block, 0, (size_t)m->nfloats * sizeof(float));
    }
}

static void zero(float *p, long n) { memset(p, 0, (size_t)n * sizeof *p); }

/* Takes d->h = d loss / d hidden[i+1] to d loss / d hidden[i]. */
static void layer_backward(w2v_model *m, shard *sh, int i)
{
    const w2v_config *c = &m->cfg;
    acts *a = &sh->a;
    grad_acts *d = &sh->d;
    layer_acts *la = &a->layer[i];
    const layer_views *w = &m->p.layer[i];
    layer_views *g = &sh->g.layer[i];
    int B = a->B, F = a->F, H = c->hidden_size, I = c->intermediate_size, nh = c->num_attention_heads;
    int BF = B * F, stable = c->do_stable_layer_norm;
    long n = (long)BF * H, ni = (long)BF * I;
    float scale = 1.0f / sqrtf((float)(H / nh));
    const float *x = a->hidden[i], *xin = stable ? la->ln1 : x, *ffin = stable ? la->ln2 : la->ln1;

    /* the FFN block: d->t1 receives d loss / d ffin */
    float *dres = d->h; /* pre-LN: d res1 = d out; post-LN: d res2 below */
    if (!stable) {
        zero(d->t1, n);
        layernorm_backward(d->t1, g->ln2_w, g->ln2_b, d->h, la->res2, w->ln2_w, la->ln2_mean, la->ln2_rstd, BF, H);
        dres = d->t1; /* d res2 = d ln1 through the residual */
    }
    zero(d->t2, n);
    dropout_backward(d->t2, dres, n, m->p_hidden, site_key(m, SITE_FF_OUT, i), batch_offset(sh, n));
    zero(d->f1, ni);
    linear_backward(d->f1, g->ff2_w, g->ff2_b, d->t2, la->ffa, w->ff2_w, BF, I, H);
    zero(d->f2, ni);
    dropout_backward(d->f2, d->f1, ni, m->p_act, site_key(m, SITE_FF_ACT, i), batch_offset(sh, ni));
    zero(d->f1, ni);
    gelu_backward(d->f1, la->ff1, d->f2, ni);
    if (stable) {
        zero(d->t1, n);
        linear_backward(d->t1, g->ff1_w, g->ff1_b, d->f1, ffin, w->ff1_w, BF, H, I);
        layernorm_backward(d->h, g->ln2_w, g->ln2_b, d->t1, la->res1, w->ln2_w, la->ln2_mean, la->ln2_rstd, BF, H);
        /* d->h = d res1 */
    } else {
        linear_backward(d->t1, g->ff1_w, g->ff1_b, d->f1, ffin, w->ff1_w, BF, H, I);
        zero(d->h, n);
        layernorm_backward(d->h, g->ln1_w, g->ln1_b, d->t1, la->res1, w->ln1_w, la->ln1_mean, la->ln1_rstd, BF, H);
        /* d->h = d res1 */
    }

    /* the attention block: d->h holds d res1 = d x through the residual */
    zero(d->t1, n);
    dropout_backward(d->t1, d->h, n, m->p_hidden, site_key(m, SITE_ATTN_OUT, i), batch_offset(sh, n));
    zero(d->ctx, n);
    linear_backward(d->ctx, g->o_w, g->o_b, d->t1, la->ctx, w->o_w, BF, H, H);
    zero(d->q, n);
    zero(d->k, n);
    zero(d->v, n);
    attention_backward(d->q, d->k, d->v, d->ctx, la->probs, la->q, la->k, la->v, B, F, H, nh, m->p_attn,
                       site_key(m, SITE_ATTN, i), sh->b0, sh->scratch);
    #pragma omp parallel for simd
    for (long j = 0; j < n; j++) d->q[j] *= scale;
    float *dxin = d->h;
    if (stable) {
        zero(d->t2, n);
        dxin = d->t2;
    }
    linear_backward(dxin, g->q_w, g->q_b, d->q, xin, w->q_w, BF, H, H);
    linear_backward(dxin, g->k_w, g->k_b, d->k, xin, w->k_w, BF, H, H);
    linear_backward(dxin, g->v_w, g->v_b, d->v, xin, w->v_w, BF, H, H);
    if (stable) layernorm_backward(d->h, g->ln1_w, g->ln1_b, d->t2, x, w->ln1_w, la->ln1_mean, la->ln1_rstd, BF, H);
}

/* A shard's examples from d loss / d logits back to the parameters. */
static void shard_backward(w2v_model *m, shard *sh)
{
    const w2v_config *c = &m->cfg;
    acts *a = &sh->a;
    ensure_grad_acts(m, sh);
    ensure_shard_grads(m, sh);
    grad_acts *d = &sh->d;
    views *g = &sh->g;
    int B = a->B, F = a->F, H = c->hidden_size, L = c->num_hidden_layers, P = c->classifier_proj_size;
    int n = c->num_labels, BF = B * F, C = c->conv_dim[c->num_conv_layers - 1];
    long nh = (long)BF * H;
    const int *valid = m->used_mask ? a->valid : NULL;

    /* head */
    zero(d->pooled, (long)B * P);
    linear_backward(d->pooled, g->cls_w, g->cls_b, a->dlogits, a->pooled, m->p.cls_w, B, P, n);
    zero(d->proj, (long)BF * P);
    meanpool_backward(d->proj, d->pooled, valid, B, F, P);
    const float *top = c->use_weighted_layer_sum ? a->wsum : a->reported[L];
    float *dtop = c->use_weighted_layer_sum ? d->t2 : d->t1;
    zero(dtop, nh);
    linear_backward(dtop, g->proj_w, g->proj_b, d->proj, top, m->p.proj_w, BF, H, P);
    if (c->use_weighted_layer_sum) {
        for (int i = 0; i <= L; i++) zero(d->hs[i], nh);
        layersum_backward(d->hs, g->layer_weights, dtop, a->reported, m->p.layer_weights, L + 1, nh);
        memcpy(d->t1, d->hs[L], (size_t)nh * sizeof(float));
    }
    /* d->t1 = d loss / d reported[L] */
    if (c->do_stable_layer_norm) {
        zero(d->h, nh);
        layernorm_backward(d->h, g->enc_ln_w, g->enc_ln_b, d->t1, a->hidden[L], m->p.enc_ln_w, a->enc_mean,
                           a->enc_rstd, BF, H);
    } else {
        memcpy(d->h, d->t1, (size_t)nh * sizeof(float));
    }

    /* transformer layers, top down */
    for (int i = L - 1; i >= 0; i--) {
        if (!m->skip[i]) layer_backward(m, sh, i);
        if (c->use_weighted_layer_sum)
            for (long j = 0; j < nh; j++) d->h[j] += d->hs[i][j];
    }

    /* encoder input: d->t2 = d enc_sum */
    zero(d->t2, nh);
    if (c->do_stable_layer_norm) {
        dropout_backward(d->t2, d->h, nh, m->p_hidden, site_key(m, SITE_ENC, 0), batch_offset(sh, nh));
    } else {
        zero(d->t1, nh);
        dropout_backward(d->t1, d->h, nh, m->p_hidden, site_key(m, SITE_ENC, 0), batch_offset(sh, nh));
        layernorm_backward(d->t2, g->enc_ln_w, g->enc_ln_b, d->t1, a->enc_sum, m->p.enc_ln_w, a->enc_mean,
                           a->enc_rstd, BF, H);
    }
    /* d->t1 = d enc_in: the residual plus the positional conv */
    memcpy(d->t1, d->t2, (size_t)nh * sizeof(float));
    zero(d->q, nh);
    gelu_backward(d->q, a->pos_pre, d->t2, nh);
    conv_shape ps = pos_conv_shape(c, a);
    long pwn = (long)H * (H / ps.G) * ps.K;
    zero(d->pos_w, pwn);
    conv1d_backward(d->t1, d->pos_w, g->pos_b, d->q, a->enc_in, a->pos_w, &ps, sh->scratch);
    weightnorm_backward(g->pos_g, g->pos_v, d->pos_w, m->p.pos_g, m->p.pos_v, H * (H / ps.G), ps.K);
    if (valid)
        for (int b = 0; b < B; b++) zero(d->t1 + ((long)b * F + valid[b]) * H, (long)(F - valid[b]) * H);
    /* SpecAugment, undone in reverse: feature spans, then time spans */
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < H; ch++)
            if (a->feat_mask[(long)b * H + ch])
                for (int t = 0; t < F; t++) d->t1[((long)b * F + t) * H + ch] = 0;
    if (m->time_masked)
        for (long j = 0; j < (long)BF; j++)
            if (a->time_mask[j]) {
                for (int ch = 0; ch < H; ch++) g->masked_spec_embed[ch] += d->t1[j * H + ch];
                zero(d->t1 + j * H, H);
            }

    /* feature projection */
    zero(d->t2, nh);
    dropout_backward(d->t2, d->t1, nh, m->p_feat, site_key(m, SITE_FEAT_PROJ, 0), batch_offset(sh, nh));
    zero(d->c0, (long)BF * C);
    linear_backward(d->c0, g->fp_w, g->fp_b, d->t2, a->fp_ln, m->p.fp_w, BF, C, H);
    int nconv = c->num_conv_layers;
    float *dact = m->frozen ? NULL : d->c1;
    if (dact) zero(dact, (long)BF * C);
    layernorm_backward(dact, g->fp_ln_w, g->fp_ln_b, d->c0, a->conv_act[nconv - 1], m->p.fp_ln_w, a->fp_mean,
                       a->fp_rstd, BF, C);
    if (m->frozen) return;

    /* conv feature encoder, top down; dact = d loss / d conv_act[l] */
    float *bufs[3] = {d->c0, d->c1, d->c2};
    int ia = 1;
    for (int l = nconv - 1; l >= 0; l--) {
        conv_shape s = conv_layer_shape(c, a, l);
        long cnt = (long)B * s.Tout * s.Cout;
        float *dpre = bufs[(ia + 1) % 3], *dconv = dpre;
        zero(dpre, cnt);
        gelu_backward(dpre, a->conv_norm[l], bufs[ia], cnt);
        if (c->feat_extract_norm_layer || l == 0) {
            dconv = bufs[(ia + 2) % 3];
            zero(dconv, cnt);
            if (c->feat_extract_norm_layer)
                layernorm_backward(dconv, g->conv_nw[l], g->conv_nb[l], dpre, a->conv_out[l], m->p.conv_nw[l],
                                   a->conv_mean[l], a->conv_rstd[l], B * s.Tout, s.Cout);
            else
                groupnorm_backward(dconv, g->conv_nw[l], g->conv_nb[l], dpre, a->conv_out[l], m->p.conv_nw[l],
                                   a->conv_mean[l], a->conv_rstd[l], B, s.Tout, s.Cout);
        }
        /* the input of layer 0 is the audio: no gradient needed there */
        float *dx = NULL;
        if (l > 0) {
            dx = bufs[ia];
            zero(dx, (long)B * s.Tin * s.Cin);
        }
        conv1d_backward(dx, g->conv_w[l], c->conv_bias ? g->conv_b[l] : NULL, dconv,
                        l ? a->conv_act[l - 1] : a->input, m->p.conv_w[l], &s, sh->scratch);
    }
}

void w2v_model_backward(w2v_model *m, float scale)
{
    acts *a = &m->a;
    int n = m->cfg.num_labels;
    if (!m->has_labels) return;
    ensure_grads(m);
    zero(a->dlogits, (long)a->B * n);
    crossentropy_backward(a->dlogits, a->probs, a->labels, a->B, n);
    if (scale != 1.0f)
        for (long j = 0; j < (long)a->B * n; j++) a->dlogits[j] *= scale;
    each_shard(m, shard_backward);
    if (m->nshards == 1) return;
    /* the other shards' gradients into the model's, in shard order */
    #pragma omp parallel for
    for (long j = 0; j < m->nfloats; j++) {
        float s = 0;
        for (int k = 1; k < m->nshards; k++) s += m->shards[k].grad_block[j];
        m->grad_block[j] += s;
    }
}

/* ---- inspection ---- */

const float *w2v_model_activation(const w2v_model *m, const char *name, int64_t shape[3])
{
    const w2v_config *c = &m->cfg;
    const acts *a = &m->a;
    int H = c->hidden_size, L = c->num_hidden_layers, idx;
    char tail;
    shape[0] = a->B, shape[1] = a->F, shape[2] = H;
    if (!m->arena) return NULL;
    if (sscanf(name, "conv_layer.%d%c", &idx, &tail) == 1 && idx >= 0 && idx < c->num_conv_layers) {
        shape[1] = a->Tl[idx + 1], shape[2] = c->conv_dim[idx];
        return a->conv_act[idx];
    }
    if (sscanf(name, "hidden_states.%d%c", &idx, &tail) == 1 && idx >= 0 && idx <= L) return a->reported[idx];
    shape[2] = c->conv_dim[c->num_conv_layers - 1];
    if (!strcmp(name, "conv_features")) return a->conv_act[c->num_conv_layers - 1];
    if (!strcmp(name, "extract_features")) return a->fp_ln;
    shape[2] = H;
    if (!strcmp(name, "projected_features")) return a->fp_out;
    if (!strcmp(name, "position_embeddings")) return a->pos_emb;
    shape[1] = c->classifier_proj_size, shape[2] = 0;
    if (!strcmp(name, "pooled_output")) return a->pooled;
    shape[1] = c->num_labels;
    if (!strcmp(name, "logits")) return a->logits;
    return NULL;
}

const int *w2v_model_valid_frames(const w2v_model *m) { return m->a.valid; }
