/* Wav2Vec2ForSequenceClassification (and the HuBERT, data2vec-audio and
 * WavLM classifiers, whose differences are options of the blocks): the
 * parameter table with named views into one block, the activation arena,
 * the batch's shards, and the two passes, which run the blocks of blocks.h
 * in order and back:
 *
 *   audio [B, T]
 *   -> conv feature encoder (conv, norm, GELU) x num_conv_layers   [B, F, C]   block_conv.c
 *   -> feature projection (LayerNorm, Linear, dropout),            [B, F, H]   block_featproj.c
 *      SpecAugment (training), padded frames zeroed (mask mode)
 *   -> + positional conv embedding (weight-normed grouped conv,              block_posconv.c
 *      GELU; data2vec-audio: a stack of plain convs, LayerNorm, GELU),
 *      the encoder's LayerNorm (post-LN) and dropout
 *   -> transformer layers (post-LN or pre-LN; WavLM: with the      [B, F, H]   block_layer.c
 *      gated relative position bias of layer 0's embedding)
 *   -> (pre-LN: the encoder's LayerNorm)                                      block_posconv.c
 *   -> (weighted layer sum) -> projector per frame -> mean pool    [B, N]      block_head.c
 *      -> classifier
 */
#include "w2v/model.h"
#include "w2v/rng.h"
#include "w2v/threads.h"
#include "blocks.h"
#include "internal.h"

#include <omp.h>
#include <stdarg.h>
#include <sched.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

/* Named views into one block (the parameters, or the gradients). */
typedef struct {
    conv_params conv;
    featproj_params fp;
    posconv_params pos;
    layer_params *layer; /* [L] */
    head_params head;
} views;

/* Views of a shard's activations: each block's, and the tensors between
 * blocks.  The arena lays every tensor out with the batch outermost, so
 * the examples of a shard are one contiguous run of each tensor. */
typedef struct {
    float *input;      /* [B, T] */
    conv_acts conv;
    featproj_acts fp;
    posconv_acts pos;
    float *pos_bias;   /* WavLM: [nh, F, F] the relative position bias, one for the batch */
    float **hidden;    /* [L + 1] [B, F, H]: hidden[i] is layer i's input, hidden[L] the last output */
    float **reported;  /* [L + 1]: HF's hidden_states (pre-LN: the last after the encoder's LayerNorm) */
    layer_acts *layer; /* [L] */
    head_acts head;
} acts;

/* Gradients of a shard's activations: each block's own, and those that
 * pass between blocks. */
typedef struct {
    conv_grads conv;
    float *features;   /* [B, F, C] d the conv encoder's output */
    featproj_grads fp;
    float *enc_in;     /* [B, F, H] d the feature projection's output */
    posconv_grads pos;
    float *hidden;     /* [B, F, H] d hidden[i], from i = L down: the residual stream's, as llm.c's dresidual */
    layer_grads layer;
    head_grads head;
} grads;

/* One thread's share of a batch (data parallelism): a run of examples
 * taken through the whole model by one thread, with single-threaded
 * operations inside, its own scratch and activation gradients, and, after
 * the first shard, its own parameter gradients, added to the model's as
 * the backward pass goes (see ensure_shard_grads).  On a few cores this beats
 * splitting each operation: no thread pool wakes, waits or divides a small
 * GEMM per op. */
typedef struct {
    block_run run;
    acts a;
    grads d;
    float *grads_mem;  /* the activation gradients, made when a backward first needs them */
    long grads_need, grads_size, scratch_size;
    views g;
    float *ring[2], *rest, *rel; /* after the first shard: see ensure_shard_grads */
    int rest_mapped;
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
    int B, T, F;       /* the last batch: examples, samples, frames */
    int Tl[MAXC + 1];  /* frames entering each conv layer; Tl[n] = F */
    float *arena;      /* every activation of the batch */
    long arena_size, cap_bf;
    int cap_b;
    uint8_t *time_mask, *feat_mask; /* [B, F], [B, H]: SpecAugment's spans */
    int *valid;        /* [B] frames of each example (all F without the attention mask) */
    int64_t *labels;   /* [B] */
    int *skip;         /* [L]: LayerDrop's draws */
    unsigned char *touched; /* [nparams]: got a gradient since w2v_model_zero_grad */
    shard *shards;
    int nshards, cap_shards;
    long *layer_from, layer_to; /* [L]: where layer i's parameters start; the end of the last's */
    long *unit_from;   /* [2L + 1]: the layers' halves, unit 2i layer i's attention, 2i + 1 its FFN
                        * (layer_*_backward), unit u from unit_from[u] to unit_from[u + 1] */
    int *unit_shards;  /* [2L]: shards done with unit u's backward (unit_done) */
    int *unit_added;   /* [2L]: unit u's gradients added from every shard */
    long rel_from, rel_size; /* WavLM's rel_attn_embed in the block */
    int frozen, training, has_labels;
    int inference;     /* the last forward kept no activations for a backward */
    gemm_mode mode; /* the products' precision: the last forward's, kept for its backward */
    long time_masked;
    uint64_t key; /* randomness of the last forward */
};

/* ---- the parameter table ---- */

struct param_walk {
    w2v_model *m;
    float *block; /* NULL: views are not set */
    long off;
    int record;   /* append each parameter to m's table */
    long origin;  /* the offset at block[0] (a buffer of a part of the block) */
    long limit;   /* views only for the parameters in [origin, limit); 0: no limit */
};

void param_add(param_walk *w, float **view, init_kind init, double value, int decay, int fe, int ndim, long s0, long s1,
               long s2, long s3, const char *fmt, ...)
{
    long size = s0 * (ndim > 1 ? s1 : 1) * (ndim > 2 ? s2 : 1) * (ndim > 3 ? s3 : 1);
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
        p->shape[0] = s0, p->shape[1] = s1, p->shape[2] = s2, p->shape[3] = s3;
        p->offset = w->off;
        p->size = size;
        p->decay = decay;
        p->feature_encoder = fe;
        m->init[i] = init;
        m->init_value[i] = (float)value;
    }
    if (w->block && w->off >= w->origin && (!w->limit || w->off < w->limit)) *view = w->block + (w->off - w->origin);
    /* keep every tensor 16-float aligned for vector loads */
    w->off += (size + 15) / 16 * 16;
}

/* Walks the parameters in the order of HF's named_parameters(), which
 * gives a module's own parameters before its submodules': the classifier's
 * layer_weights, then Wav2Vec2Model's masked_spec_embed, then the blocks'. */
static long walk(w2v_model *m, views *v, float *block, int record)
{
    const w2v_config *c = &m->cfg;
    param_walk w = {m, block, 0, record};
    head_declare_layer_weights(&w, &v->head, c);
    featproj_declare_masked_spec_embed(&w, &v->fp, c);
    conv_declare(&w, &v->conv, c);
    featproj_declare(&w, &v->fp, c);
    posconv_declare(&w, &v->pos, c);
    for (int i = 0; i < c->num_hidden_layers; i++) {
        if (record) m->layer_from[i] = w.off;
        layer_declare(&w, &v->layer[i], c, i);
    }
    if (record) m->layer_to = w.off;
    /* WavLM: layer 0 owns the relative position embedding every layer uses */
    for (int i = 1; i < c->num_hidden_layers; i++) v->layer[i].rel_embed = v->layer[0].rel_embed;
    head_declare(&w, &v->head, c);
    return w.off;
}

w2v_model *w2v_model_new(const w2v_config *c)
{
    w2v_model *m = xcalloc(1, sizeof *m);
    w2v_threads(); /* the thread policy holds before any compute */
    w2v_config_copy(&m->cfg, c);
    int L = c->num_hidden_layers;
    m->p.layer = xcalloc((size_t)L + 1, sizeof *m->p.layer);
    m->g.layer = xcalloc((size_t)L + 1, sizeof *m->g.layer);
    m->layer_from = xcalloc((size_t)L + 1, sizeof *m->layer_from);
    m->unit_from = xcalloc(2 * (size_t)L + 1, sizeof *m->unit_from);
    m->unit_shards = xcalloc(2 * (size_t)L + 1, sizeof *m->unit_shards);
    m->unit_added = xcalloc(2 * (size_t)L + 1, sizeof *m->unit_added);
    m->nfloats = walk(m, &m->p, NULL, 1);
    m->block = xalloc_floats((size_t)m->nfloats);
    walk(m, &m->p, m->block, 0);
    if (L > 0 && m->p.layer[0].rel_embed) { /* WavLM */
        m->rel_from = m->p.layer[0].rel_embed - m->block;
        for (int i = 0; i < m->nparams; i++)
            if (m->params[i].offset == m->rel_from) m->rel_size = m->params[i].size;
    }
    for (int i = 0; i < L; i++) {
        m->unit_from[2 * i] = m->layer_from[i];
        m->unit_from[2 * i + 1] = m->p.layer[i].ff1_w - m->block;
    }
    m->unit_from[2 * L] = m->layer_to;
    m->skip = xcalloc((size_t)L + 1, sizeof *m->skip);
    m->touched = xcalloc((size_t)m->nparams, 1);
    return m;
}

static void alloc_views(shard *sh, int L)
{
    sh->a.hidden = xcalloc((size_t)L + 1, sizeof *sh->a.hidden);
    sh->a.reported = xcalloc((size_t)L + 1, sizeof *sh->a.reported);
    sh->a.layer = xcalloc((size_t)L + 1, sizeof *sh->a.layer);
    sh->d.head.hs = xcalloc((size_t)L + 1, sizeof *sh->d.head.hs);
}

static void free_views(shard *sh)
{
    free(sh->a.hidden);
    free(sh->a.reported);
    free(sh->a.layer);
    free(sh->d.head.hs);
}

static void free_batch(w2v_model *m)
{
    free(m->arena);
    free(m->time_mask);
    free(m->feat_mask);
    free(m->valid);
    free(m->labels);
    m->arena = NULL;
}

void w2v_model_free(w2v_model *m)
{
    if (!m) return;
    free_batch(m);
    for (int s = 0; s < m->cap_shards; s++) {
        shard *sh = &m->shards[s];
        free_views(sh);
        free(sh->run.scratch);
        free(sh->grads_mem);
        if (sh->rest_mapped) munmap(sh->rest, (size_t)m->nfloats * sizeof(float));
        else free(sh->rest);
        free(sh->ring[0]);
        free(sh->ring[1]);
        free(sh->rel);
        if (s) free(sh->g.layer);
    }
    free(m->shards);
    free(m->skip);
    free(m->touched);
    free(m->layer_from);
    free(m->unit_from);
    free(m->unit_shards);
    free(m->unit_added);
    free(m->block);
    free(m->grad_block);
    gemm_weights_free(m->mode.weights);
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
    gemm_weights_changed(m->mode.weights); /* a writable pointer: the bf16 copy is remade */
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
    gemm_weights_changed(m->mode.weights);
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
        case INIT_NORM_OF_V: break; /* after weight_v: posconv_init_weight_g */
        }
    }
}

void w2v_model_init_weights(w2v_model *m, uint64_t seed)
{
    w2v_rng r;
    w2v_rng_seed(&r, seed);
    for (int i = 0; i < m->nparams; i++) init_param(m, i, &r);
    posconv_init_weight_g(&m->cfg, &m->p.pos);
}

int w2v_model_init_filterbank(w2v_model *m, double fmin, double fmax, char *err, size_t errlen)
{
    gemm_weights_changed(m->mode.weights);
    return conv_init_filterbank(&m->cfg, &m->p.conv, fmin, fmax, err, errlen);
}

int w2v_model_init_param(w2v_model *m, const char *name, uint64_t seed)
{
    const w2v_param *p = w2v_model_find_param(m, name);
    if (!p) return -1;
    w2v_rng r;
    w2v_rng_seed(&r, w2v_hash(seed, (uint64_t)(p - m->params)));
    init_param(m, (int)(p - m->params), &r);
    if (m->init[p - m->params] == INIT_NORM_OF_V) posconv_init_weight_g(&m->cfg, &m->p.pos);
    return 0;
}

void w2v_model_zero_grad(w2v_model *m)
{
    ensure_grads(m);
    memset(m->grad_block, 0, (size_t)m->nfloats * sizeof(float));
    memset(m->touched, 0, (size_t)m->nparams);
}
void w2v_model_freeze_feature_encoder(w2v_model *m, int frozen) { m->frozen = frozen; }

int w2v_model_param_has_grad(const w2v_model *m, int i) { return m->touched[i]; }

/* Whether the last backward reached parameter i, as autograd would: not a
 * frozen encoder's, not masked_spec_embed without a masked frame, not a
 * layer LayerDrop skipped. */
static int reached(const w2v_model *m, int i)
{
    const w2v_param *p = &m->params[i];
    if (p->feature_encoder && m->frozen) return 0;
    if (m->p.fp.masked_spec_embed && m->block + p->offset == m->p.fp.masked_spec_embed) return m->time_masked > 0;
    int L = m->cfg.num_hidden_layers;
    for (int l = 0; l < L; l++)
        if (p->offset >= m->layer_from[l] && p->offset < (l + 1 < L ? m->layer_from[l + 1] : m->layer_to))
            return !m->skip[l];
    return 1;
}

/* ---- the activation arena ---- */

/* Lays out shard sh's activations, its examples' part of a batch of B
 * from base, and its activation gradients from grads_base; NULL bases only
 * count.  A frozen encoder has no gradients; an inference pass keeps one
 * layer's tensors (sh->run.inference).  Returns the arena's size;
 * sh->grads_need is the gradients'. */
static long layout(const w2v_model *m, shard *sh, int B, float *base, float *grads_base)
{
    const block_run *r = &sh->run;
    const w2v_config *c = r->cfg;
    acts *a = &sh->a;
    grads *d = &sh->d;
    arena ar = {base, 0, B, r->b0}, gr = {grads_base, 0, r->B, 0};
    int L = c->num_hidden_layers;
    long FH = (long)r->F * c->hidden_size;
    a->input = arena_take(&ar, r->T);
    conv_layout(r, &ar, &a->conv, m->frozen ? NULL : &gr, &d->conv);
    d->features = m->frozen ? NULL : arena_take(&gr, (long)r->F * c->conv_dim[c->num_conv_layers - 1]);
    featproj_layout(r, &ar, &a->fp, &gr, &d->fp);
    d->enc_in = arena_take(&gr, FH);
    posconv_layout(r, &ar, &a->pos, &gr, &d->pos);
    a->pos_bias = c->family == W2V_WAVLM ? arena_take_one(&ar, (long)c->num_attention_heads * r->F * r->F) : NULL;
    for (int i = 0; i <= L; i++) a->reported[i] = a->hidden[i] = arena_take(&ar, FH);
    if (c->do_stable_layer_norm) a->reported[L] = a->pos.final;
    d->hidden = arena_take(&gr, FH);
    /* one set of gradients serves every layer; in inference, one set of
     * activations too */
    long layers = ar.off, end = ar.off;
    for (int i = 0; i < L; i++) {
        if (r->inference) ar.off = layers;
        layer_layout(r, &ar, &a->layer[i], i ? NULL : &gr, &d->layer);
        end = ar.off > end ? ar.off : end;
    }
    ar.off = end;
    head_layout(r, &ar, &a->head, &gr, &d->head);
    sh->grads_need = gr.off;
    return ar.off;
}

/* The batch's tensors: held with the batch outermost, so the views of
 * shard 0, which start at example 0, are the whole batch's. */
static acts *batch_acts(const w2v_model *m) { return &m->shards[0].a; }

/* One shard per thread when the batch has an example for each (a batch
 * smaller than the threads splits every operation instead). */
static int shard_count(int B)
{
    int nt = omp_in_parallel() ? 1 : w2v_threads();
    return B >= nt ? nt : 1;
}

/* Gives shard s of ns its examples. */
static void cut_shard(w2v_model *m, int s, int ns)
{
    block_run *r = &m->shards[s].run;
    r->cfg = &m->cfg;
    r->b0 = (int)((long)m->B * s / ns);
    r->B = (int)((long)m->B * (s + 1) / ns) - r->b0;
    r->T = m->T, r->F = m->F, r->Tl = m->Tl;
    r->inference = m->inference;
}

/* Points a shard's views at its examples in the arena, with scratch for
 * its operations. */
static void ensure_shard(w2v_model *m, shard *sh)
{
    const w2v_config *c = &m->cfg;
    block_run *r = &sh->run;
    layout(m, sh, m->B, m->arena, NULL);
    sh->a.fp.time_mask = m->time_mask + (long)r->b0 * m->F;
    sh->a.fp.feat_mask = m->feat_mask + (long)r->b0 * c->hidden_size;
    long scratch = layer_scratch(r), n;
    if ((n = conv_scratch(r)) > scratch) scratch = n;
    if ((n = posconv_scratch(r)) > scratch) scratch = n;
    if (scratch > sh->scratch_size) {
        free(r->scratch);
        r->scratch = xalloc_floats((size_t)scratch);
        sh->scratch_size = scratch;
    }
}

/* Makes room for batch B of T samples (F frames): grows, never shrinks. */
static void ensure_acts(w2v_model *m, int B, int T, int F)
{
    const w2v_config *c = &m->cfg;
    m->B = B, m->T = T, m->F = F;
    m->Tl[0] = T;
    for (int l = 0; l < c->num_conv_layers; l++) m->Tl[l + 1] = (m->Tl[l] - c->conv_kernel[l]) / c->conv_stride[l] + 1;
    int ns = shard_count(B);
    if (ns > m->cap_shards) {
        m->shards = xrealloc(m->shards, (size_t)ns * sizeof *m->shards);
        memset(m->shards + m->cap_shards, 0, (size_t)(ns - m->cap_shards) * sizeof *m->shards);
        for (int s = m->cap_shards; s < ns; s++) alloc_views(&m->shards[s], c->num_hidden_layers);
        m->cap_shards = ns;
    }
    m->nshards = ns;
    for (int s = 0; s < ns; s++) cut_shard(m, s, ns);
    long need = layout(m, &m->shards[0], B, NULL, NULL); /* any shard's layout counts the whole arena */
    if (!m->arena || need > m->arena_size || (long)B * F > m->cap_bf || B > m->cap_b) {
        free_batch(m);
        m->arena = xalloc_floats((size_t)need);
        m->arena_size = need;
        m->cap_bf = (long)B * F;
        m->cap_b = B;
        m->time_mask = xcalloc((size_t)B * F, 1);
        m->feat_mask = xcalloc((size_t)B * c->hidden_size, 1);
        m->valid = xcalloc((size_t)B, sizeof *m->valid);
        m->labels = xcalloc((size_t)B, sizeof *m->labels);
    }
    for (int s = 0; s < ns; s++) ensure_shard(m, &m->shards[s]);
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

/* ---- forward ---- */

/* SpecAugment's spans for the whole batch (training only): time spans
 * take masked_spec_embed, feature spans are zeroed (HF's
 * _mask_hidden_states); applied per shard by featproj_forward.  For a part
 * of a larger batch the spans are drawn for the whole batch and the part's
 * rows kept; time_masked counts the whole batch's, so that every part
 * agrees on whether masked_spec_embed has a gradient. */
static void spec_augment_draw(w2v_model *m, const w2v_input *in, int use_mask)
{
    const w2v_config *c = &m->cfg;
    int B = m->B, F = m->F, H = c->hidden_size, W = in->whole ? in->whole : B;
    w2v_rng r;
    w2v_rng_seed(&r, site_key(m->key, SITE_SPECAUG, 0));
    m->time_masked = 0;
    memset(m->time_mask, 0, (size_t)B * F);
    memset(m->feat_mask, 0, (size_t)B * H);
    if (!m->training || !c->apply_spec_augment) return;
    uint8_t *time = m->time_mask, *feat = m->feat_mask;
    int *valid = use_mask ? m->valid : NULL;
    if (W != B) {
        time = xcalloc((size_t)W * F, 1);
        feat = xcalloc((size_t)W * H, 1);
        valid = use_mask ? xmalloc((size_t)W * sizeof *valid) : NULL;
        for (int b = 0; b < W && valid; b++) valid[b] = (int)w2v_config_frames(c, (long)in->whole_lengths[b]);
    }
    if (c->mask_time_prob > 0)
        m->time_masked = specaug_mask(time, W, F, valid, c->mask_time_prob, c->mask_time_length,
                                      c->mask_time_min_masks, &r);
    if (c->mask_feature_prob > 0)
        specaug_mask(feat, W, H, NULL, c->mask_feature_prob, c->mask_feature_length, c->mask_feature_min_masks, &r);
    if (W != B) {
        memcpy(m->time_mask, time + (long)in->first * F, (size_t)B * F);
        memcpy(m->feat_mask, feat + (long)in->first * H, (size_t)B * H);
        free(time);
        free(feat);
        free(valid);
    }
}

/* A shard's examples from the audio to the logits. */
static void shard_forward(w2v_model *m, shard *sh)
{
    const w2v_config *c = &m->cfg;
    const block_run *r = &sh->run;
    const views *p = &m->p;
    acts *a = &sh->a;
    int L = c->num_hidden_layers;
    long nh = (long)r->B * r->F * c->hidden_size;
    gemm_mode outer = gemm_mode_set(m->mode); /* this thread's products run in the pass's precision */

    conv_forward(r, &p->conv, &a->conv, a->input);
    featproj_forward(r, &p->fp, &a->fp, a->conv.act[c->num_conv_layers - 1]);
    posconv_forward(r, &p->pos, &a->pos, a->fp.enc_in, a->hidden[0]);
    for (int i = 0; i < L; i++) {
        if (m->skip[i]) memcpy(a->hidden[i + 1], a->hidden[i], (size_t)nh * sizeof(float));
        else layer_forward(r, i, &p->layer[i], &a->layer[i], a->hidden[i], a->hidden[i + 1]);
    }
    if (c->do_stable_layer_norm) encoder_norm_forward(r, &p->pos, &a->pos, a->hidden[L]);
    head_forward(r, &p->head, &a->head, a->reported);
    gemm_mode_set(outer);
}

float w2v_model_forward(w2v_model *m, const w2v_input *in, const w2v_run *run, float *logits, char *err,
                        size_t errlen)
{
    const w2v_config *c = &m->cfg;
    int B = in->B, T = in->T, L = c->num_hidden_layers, n = c->num_labels;
    long F = w2v_config_frames(c, T);
    if (B < 1) return set_error(err, errlen, "empty batch");
    if (in->whole && (in->first < 0 || in->first + B > in->whole || !in->whole_lengths))
        return set_error(err, errlen, "examples [%d, %d) are not part of a batch of %d", in->first, in->first + B, in->whole);
    if (F < 1)
        return set_error(err, errlen, "input of %d samples is too short: the model needs at least %ld", T,
                         w2v_config_min_samples(c));
    int use_mask = run->attention_mask < 0 ? c->return_attention_mask : run->attention_mask;
    if (use_mask && !in->lengths) return set_error(err, errlen, "the model takes an attention mask, but the input has no lengths");
    for (int b = 0; b < B && use_mask; b++)
        if (w2v_config_frames(c, (long)in->lengths[b]) < 1)
            return set_error(err, errlen, "example %d has %lld samples: the model needs at least %ld", b,
                             (long long)in->lengths[b], w2v_config_min_samples(c));
    m->inference = run->inference && !run->training;
    ensure_acts(m, B, T, (int)F);
    acts *a = batch_acts(m);
    /* the precision of this pass's products and its backward's (autocast's
     * context).  The bf16 copy of the weights is made at each training
     * forward and otherwise kept until w2v_model_params() hands out a
     * writable pointer (the optimizer, a load) or an init changes them. */
    m->mode.bf16 = run->bf16 && gemm_bf16_requested();
    if (m->mode.bf16 && !m->mode.weights) m->mode.weights = gemm_weights_new(m->block, m->nfloats);
    if (run->training) gemm_weights_changed(m->mode.weights);
    m->training = run->training;
    m->key = w2v_hash(run->seed, run->step);
    for (int s = 0; s < m->nshards; s++) {
        block_run *r = &m->shards[s].run;
        r->first = (in->whole ? in->first : 0) + r->b0;
        r->valid = use_mask ? m->valid + r->b0 : NULL;
        r->pos_bias = a->pos_bias;
        r->key = m->key;
        r->p_hidden = run->training ? (float)c->hidden_dropout : 0;
        r->p_attn = run->training ? (float)c->attention_dropout : 0;
        r->p_act = run->training ? (float)c->activation_dropout : 0;
        r->p_feat = run->training ? (float)c->feat_proj_dropout : 0;
    }
    for (int b = 0; b < B; b++) {
        m->valid[b] = (int)(use_mask ? w2v_config_frames(c, (long)in->lengths[b]) : F);
        m->labels[b] = in->labels ? in->labels[b] : -1;
    }
    memcpy(a->input, in->x, (size_t)B * T * sizeof(float));

    /* what every shard shares: the random draws of the batch, the
     * positional conv weight */
    spec_augment_draw(m, in, use_mask);
    w2v_rng r; /* LayerDrop draws for every layer, as HF does */
    w2v_rng_seed(&r, site_key(m->key, SITE_ENC, 1));
    for (int i = 0; i < L; i++) {
        double u = w2v_rng_uniform(&r);
        /* WavLM never skips layer 0, which computes the bias the others read */
        m->skip[i] = m->training && u < c->layerdrop && !(c->family == W2V_WAVLM && i == 0);
    }
    posconv_weight(c, &m->p.pos, &a->pos);
    if (a->pos_bias && L > 0) layer_bias_forward(c, &m->p.layer[0], a->pos_bias, (int)F);

    each_shard(m, shard_forward);
    if (logits) memcpy(logits, a->head.logits, (size_t)B * n * sizeof(float));
    m->has_labels = in->labels != NULL;
    return in->labels ? crossentropy_forward(a->head.probs, a->head.logits, m->labels, B, n) : 0.0f;
}

/* ---- backward ---- */

static void ensure_grad_acts(w2v_model *m, shard *sh)
{
    layout(m, sh, m->B, m->arena, NULL); /* counts: the encoder may have been frozen since the forward */
    if (sh->grads_need > sh->grads_size) {
        free(sh->grads_mem);
        sh->grads_mem = xalloc_floats((size_t)sh->grads_need);
        sh->grads_size = sh->grads_need;
    }
    layout(m, sh, m->B, m->arena, sh->grads_mem);
}

/* Where a shard's parameter gradients go.  The first shard writes the
 * model's block.  Each other shard writes the gradients of a layer's half
 * (a unit: its FFN's, or its attention's) into one of two buffers of the
 * largest unit's size, taken in turn (ring), WavLM's rel_attn_embed, which
 * every layer writes, into one of its own (rel), and the rest (head,
 * positional conv's bias and LayerNorm, feature projection and encoder)
 * into a mapped block of the model's size (rest) whose pages cost memory
 * only where written: a frozen encoder's, and the positional conv
 * weights' (by_shards), never are.  All of them hold zeros when a
 * backward starts. */
static void ensure_shard_grads(w2v_model *m, shard *sh)
{
    if (sh == &m->shards[0]) {
        sh->g = m->g;
        return;
    }
    if (sh->rest) return;
    const w2v_config *c = &m->cfg;
    int L = c->num_hidden_layers;
    long unit = 0; /* the largest unit's floats */
    for (int u = 0; u < 2 * L; u++) {
        long n = m->unit_from[u + 1] - m->unit_from[u];
        unit = n > unit ? n : unit;
    }
    void *p = mmap(NULL, (size_t)m->nfloats * sizeof(float), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    sh->rest = p == MAP_FAILED ? xalloc_floats((size_t)m->nfloats) : p;
    sh->rest_mapped = p != MAP_FAILED;
    for (int k = 0; k < 2; k++) sh->ring[k] = xalloc_floats((size_t)unit);
    sh->g.layer = xcalloc((size_t)L + 1, sizeof *sh->g.layer);
    walk(m, &sh->g, sh->rest, 0);
    for (int u = 0; u < 2 * L; u++) {
        param_walk w = {m, sh->ring[u % 2], m->layer_from[u / 2], 0, m->unit_from[u], m->unit_from[u + 1]};
        layer_declare(&w, &sh->g.layer[u / 2], c, u / 2);
    }
    if (m->rel_size) {
        sh->rel = xalloc_floats((size_t)m->rel_size);
        for (int i = 0; i < L; i++) sh->g.layer[i].rel_embed = sh->rel;
    }
}

/* The other shards' gradients added into the model's, in shard order
 * (one order: the sum does not depend on which thread adds which part):
 * m[j] += g_1[j - from] + g_2[j - from] + ... for j in [from, to), where
 * g_k is what buffer(shard k) returns. */
static void add_shards(w2v_model *m, long from, long to, float *(*buffer)(shard *sh, void *ctx), void *ctx)
{
    float *g[64], **gk = m->nshards - 1 <= 64 ? g : xmalloc((size_t)(m->nshards - 1) * sizeof *gk);
    for (int k = 1; k < m->nshards; k++) gk[k - 1] = buffer(&m->shards[k], ctx);
    /* all threads when called outside the shards' threads */
    #pragma omp parallel for if (!omp_in_parallel())
    for (long j = from; j < to; j++) {
        float sum = 0;
        for (int k = 1; k < m->nshards; k++) sum += gk[k - 1][j - from];
        m->grad_block[j] += sum;
    }
    if (gk != g) free(gk);
}

static float *ring_of(shard *sh, void *u) { return sh->ring[*(int *)u % 2]; }
static float *rest_of(shard *sh, void *from) { return sh->rest + *(long *)from; }
static float *rel_of(shard *sh, void *ctx) { (void)ctx; return sh->rel; }

/* A shard is about to write unit u's gradients into ring[u % 2]: unit
 * u + 2's, which were there, must have been added first (the backward
 * takes the units from the last down).  A shard waits only when a layer
 * ahead of the slowest. */
static void unit_start(w2v_model *m, int u)
{
    if (m->nshards == 1 || u + 2 >= 2 * m->cfg.num_hidden_layers) return;
    while (!__atomic_load_n(&m->unit_added[u + 2], __ATOMIC_ACQUIRE)) sched_yield();
}

/* A shard has done unit u's backward.  The last to finish it adds every
 * shard's ring into the model's block and zeroes them, while the others
 * go on: no barrier (on a busy machine, threads that wait for the slowest
 * at every layer lost half the backward's speed).  So a shard holds two
 * half layers' gradients, not the model's: 2 x 18 MiB, not 361, for
 * wav2vec2-base. */
static void unit_done(w2v_model *m, int u)
{
    if (m->nshards == 1 || __atomic_add_fetch(&m->unit_shards[u], 1, __ATOMIC_ACQ_REL) < m->nshards) return;
    long from = m->unit_from[u], to = m->unit_from[u + 1];
    add_shards(m, from, to, ring_of, &u);
    for (int k = 1; k < m->nshards; k++) memset(m->shards[k].ring[u % 2], 0, (size_t)(to - from) * sizeof(float));
    __atomic_store_n(&m->unit_added[u], 1, __ATOMIC_RELEASE);
}

/* Whether the shards write parameter i's gradient: not a frozen
 * encoder's, nor the positional conv weights' (posconv_backward_weight
 * takes those for the whole batch). */
static int by_shards(const w2v_model *m, int i)
{
    const w2v_param *p = &m->params[i];
    const float *at = m->block + p->offset;
    if (p->feature_encoder && m->frozen) return 0;
    if (at == m->p.pos.g) return 0;
    for (int l = 0; l < W2V_MAX_POS_LAYERS; l++)
        if (at == m->p.pos.v[l]) return 0;
    return 1;
}

/* After every shard's backward: their other gradients added, and zeroed
 * (a rest's pages that no shard writes stay untouched). */
static void add_rest(w2v_model *m)
{
    for (int i = 0; i < m->nparams; i++) {
        const w2v_param *p = &m->params[i];
        long from = p->offset;
        if ((from >= m->layer_from[0] && from < m->layer_to) || !by_shards(m, i)) continue;
        add_shards(m, from, from + p->size, rest_of, &from);
        for (int k = 1; k < m->nshards; k++) memset(m->shards[k].rest + from, 0, (size_t)p->size * sizeof(float));
    }
    if (m->rel_size) {
        add_shards(m, m->rel_from, m->rel_from + m->rel_size, rel_of, NULL);
        for (int k = 1; k < m->nshards; k++) memset(m->shards[k].rel, 0, (size_t)m->rel_size * sizeof(float));
    }
}

/* The positional conv weights' gradients, for the whole batch at once. */
static void posconv_weight_backward(w2v_model *m)
{
    posconv_shard sh[m->nshards];
    for (int k = 0; k < m->nshards; k++)
        sh[k] = (posconv_shard){&m->shards[k].run, &m->shards[k].a.pos, &m->shards[k].d.pos, m->shards[k].a.fp.enc_in};
    gemm_mode outer = gemm_mode_set(m->mode);
    posconv_backward_weight(sh, m->nshards, &m->p.pos, &m->g.pos);
    gemm_mode_set(outer);
}

/* A shard's examples from d loss / d logits back to the parameters: the
 * forward in reverse. */
static void shard_backward(w2v_model *m, shard *sh)
{
    const w2v_config *c = &m->cfg;
    ensure_grad_acts(m, sh);
    ensure_shard_grads(m, sh);
    const block_run *r = &sh->run;
    const views *p = &m->p;
    views *g = &sh->g;
    const acts *a = &sh->a;
    grads *d = &sh->d;
    int L = c->num_hidden_layers;
    long nh = (long)r->B * r->F * c->hidden_size;
    gemm_mode outer = gemm_mode_set(m->mode);

    head_backward(r, &p->head, &g->head, &a->head, &d->head, a->reported);
    if (c->do_stable_layer_norm)
        encoder_norm_backward(r, &p->pos, &g->pos, &a->pos, a->hidden[L], d->head.hs[L], d->hidden);
    else
        memcpy(d->hidden, d->head.hs[L], (size_t)nh * sizeof(float));
    for (int i = L - 1; i >= 0; i--) {
        unit_start(m, 2 * i + 1);
        if (!m->skip[i]) layer_ffn_backward(r, i, &p->layer[i], &g->layer[i], &a->layer[i], &d->layer, d->hidden);
        unit_done(m, 2 * i + 1);
        unit_start(m, 2 * i);
        if (!m->skip[i])
            layer_attention_backward(r, i, &p->layer[i], &g->layer[i], &a->layer[i], &d->layer, a->hidden[i],
                                     d->hidden);
        unit_done(m, 2 * i);
        if (c->use_weighted_layer_sum)
            for (long j = 0; j < nh; j++) d->hidden[j] += d->head.hs[i][j];
    }
    posconv_backward(r, &p->pos, &g->pos, &a->pos, &d->pos, d->hidden, d->enc_in);
    featproj_backward(r, &p->fp, &g->fp, &a->fp, &d->fp, a->conv.act[c->num_conv_layers - 1], d->enc_in,
                      m->frozen ? NULL : d->features);
    if (!m->frozen) conv_backward(r, &p->conv, &g->conv, &a->conv, &d->conv, a->input, d->features);
    gemm_mode_set(outer);
}

void w2v_model_backward(w2v_model *m, float scale)
{
    int n = m->cfg.num_labels;
    if (!m->has_labels || m->inference) return;
    ensure_grads(m);
    for (int i = 0; i < m->nparams; i++) m->touched[i] |= (unsigned char)reached(m, i);
    head_acts *h = &batch_acts(m)->head;
    zero(h->dlogits, (long)m->B * n);
    crossentropy_backward(h->dlogits, h->probs, m->labels, m->B, n);
    if (scale != 1.0f)
        for (long j = 0; j < (long)m->B * n; j++) h->dlogits[j] *= scale;
    if (m->nshards > 1) {
        memset(m->unit_shards, 0, 2 * (size_t)m->cfg.num_hidden_layers * sizeof *m->unit_shards);
        memset(m->unit_added, 0, 2 * (size_t)m->cfg.num_hidden_layers * sizeof *m->unit_added);
    }
    each_shard(m, shard_backward);
    posconv_weight_backward(m);
    /* the shards' other gradients: the parameters before the layers' and after them */
    if (m->nshards > 1) add_rest(m);
}

/* ---- inspection ---- */

const float *w2v_model_activation(const w2v_model *m, const char *name, int64_t shape[3])
{
    const w2v_config *c = &m->cfg;
    int H = c->hidden_size, L = c->num_hidden_layers, idx;
    char tail;
    shape[0] = m->B, shape[1] = m->F, shape[2] = H;
    if (!m->arena) return NULL;
    const acts *a = batch_acts(m);
    if (sscanf(name, "conv_layer.%d%c", &idx, &tail) == 1 && idx >= 0 && idx < c->num_conv_layers) {
        shape[1] = m->Tl[idx + 1], shape[2] = c->conv_dim[idx];
        return a->conv.act[idx];
    }
    if (sscanf(name, "hidden_states.%d%c", &idx, &tail) == 1 && idx >= 0 && idx <= L) return a->reported[idx];
    shape[2] = c->conv_dim[c->num_conv_layers - 1];
    if (!strcmp(name, "conv_features")) return a->conv.act[c->num_conv_layers - 1];
    if (!strcmp(name, "extract_features")) return a->fp.ln;
    shape[2] = H;
    if (!strcmp(name, "projected_features")) return a->fp.out;
    if (!strcmp(name, "position_embeddings")) return a->pos.emb[w2v_config_pos_layers(c) - 1];
    shape[1] = c->classifier_proj_size, shape[2] = 0;
    if (!strcmp(name, "pooled_output")) return a->head.pooled;
    shape[1] = c->num_labels;
    if (!strcmp(name, "logits")) return a->head.logits;
    return NULL;
}

const int *w2v_model_valid_frames(const w2v_model *m) { return m->valid; }
