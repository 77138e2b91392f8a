/* The model's blocks, in llm.c's manner one level up from the ops: each
 * file holds a block's parameter views, its activations and their
 * gradients (named tensors), the function that declares its parameters,
 * the one that lays out its activations and gradients, and its forward
 * directly above its backward.  model.c declares the parameters in HF's
 * order, lays the tensors out, and runs the blocks shard by shard.
 *
 * Shapes, channels last: B batch (a shard's examples), T samples, F frames,
 * C conv channels (Cl: conv layer l's; C the last's), H hidden,
 * I intermediate, P projection, N labels; nh heads, K taps.
 *
 * The families (w2v_family) are options of these blocks, chosen by the
 * config: the feature projection's LayerNorm (HuBERT), the positional
 * embedding's form (data2vec-audio), the attention's relative position
 * bias (WavLM); parameter names take the family's prefix.
 *
 * A forward reads its input and writes its own activations.  A backward
 * accumulates into its parameter gradients, as the ops do, and SETS the
 * gradient of its input (zeroed, then accumulated); the transformer layers
 * instead update the residual stream's gradient in place. */
#ifndef W2V_BLOCKS_H
#define W2V_BLOCKS_H

#include "ops.h"
#include "w2v/config.h"
#include "w2v/rng.h"

#include <string.h>

#define MAXC W2V_MAX_CONV_LAYERS

/* ---- the parameter table (model.c) ---- */

/* How _init_weights initialises a parameter. */
typedef enum { INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_KAIMING_NORMAL, INIT_UNIFORM, INIT_UNIFORM01, INIT_CONST, INIT_NORM_OF_V } init_kind;

/* A walk over the parameters in the order of HF's named_parameters(): it
 * records the table, or points views into a block (parameters, gradients). */
typedef struct param_walk param_walk;

/* The next parameter: ndim sizes s0 .. s3; *view points at it; decay by
 * Trainer's rule; fe: part of the conv feature encoder. */
void param_add(param_walk *w, float **view, init_kind init, double value, int decay, int fe, int ndim, long s0, long s1,
               long s2, long s3, const char *fmt, ...) __attribute__((format(printf, 12, 13)));

/* ---- the arena (model.c lays out every block's tensors in it) ---- */

/* Tensors one after another from base, each n floats per example for B
 * examples, batch outermost; a view starts at example b0.  A NULL base
 * only counts. */
typedef struct {
    float *base;
    long off;
    int B, b0;
} arena;

static inline float *arena_take(arena *ar, long n)
{
    float *p = ar->base ? ar->base + ar->off + (long)ar->b0 * n : NULL;
    /* keep every tensor 16-float aligned for vector loads */
    ar->off += ((long)ar->B * n + 15) / 16 * 16;
    return p;
}

/* One tensor of n floats, not one per example. */
static inline float *arena_take_one(arena *ar, long n)
{
    arena one = {ar->base, ar->off, 1, 0};
    float *p = arena_take(&one, n);
    ar->off = one.off;
    return p;
}

/* The tensors taken since offset from, in an arena viewed from example 0:
 * a block's gradients, which its backward zeroes at once. */
typedef struct {
    float *p;
    long n;
} span;

static inline span arena_span(const arena *ar, long from)
{
    span s = {ar->base ? ar->base + from : NULL, ar->off - from};
    return s;
}

static inline void zero(float *p, long n) { memset(p, 0, (size_t)n * sizeof *p); }
static inline void span_zero(span s) { zero(s.p, s.n); }

/* ---- a shard's run ---- */

/* What a block reads besides its own tensors: the shard's sizes and place
 * in the batch, the forward's mask and randomness, and scratch. */
typedef struct {
    const w2v_config *cfg;
    int B, T, F;       /* the shard's examples; samples and frames per example */
    const int *Tl;     /* [num_conv_layers + 1] frames entering each conv layer: Tl[0] = T, the last F */
    int b0;            /* the shard's first example in the batch */
    int first;         /* ... and in the whole batch, across processes: keys its draws */
    const int *valid;  /* [B] the frames < valid[b] are real; NULL without the attention mask */
    uint64_t key;      /* the forward's; site_key() gives each dropout site its stream */
    float p_hidden, p_attn, p_act, p_feat; /* dropout probabilities, 0 in evaluation */
    float *scratch;    /* for the convolutions and attention; the blocks' *_scratch() floats */
    const float *pos_bias; /* WavLM: [nh, F, F] the relative position bias, one for the batch */
    int inference;     /* no backward follows: the layouts let activations that no later op reads share memory */
} block_run;

/* Where randomness is drawn: each site gets its own stream of the step's
 * key.  Draws are keyed by the example's place in the whole batch, so
 * they do not depend on how the batch is cut into shards. */
enum { SITE_FEAT_PROJ = 1, SITE_ENC, SITE_ATTN, SITE_ATTN_OUT, SITE_FF_ACT, SITE_FF_OUT, SITE_SPECAUG };

static inline uint64_t site_key(uint64_t key, int site, int layer)
{
    return w2v_hash(key, (uint64_t)site << 32 | (uint64_t)layer);
}

/* Where a shard's part (n floats) of a batch tensor starts in the whole
 * tensor: dropout keys its draws by that place. */
static inline long batch_offset(const block_run *r, long n) { return n / r->B * r->first; }

/* ---- block_conv.c: the conv feature encoder, audio [B, T] -> [B, F, C] ---- */

typedef struct {
    float *w[MAXC], *b[MAXC];           /* [Cl, C(l-1), Kl] (C(-1) = 1), [Cl] or none */
    float *norm_w[MAXC], *norm_b[MAXC]; /* [Cl]: every layer's LayerNorm, or layer 0's GroupNorm */
} conv_params;

typedef struct {
    float *out[MAXC];  /* [B, Tl[l+1], Cl] the conv's */
    float *norm[MAXC]; /* the same: the norm's, or out[l] where the layer has none */
    float *act[MAXC];  /* the same: GELU's, the layer's output; act[last] [B, F, C] the encoder's */
    float *mean[MAXC], *rstd[MAXC]; /* [B, Tl[l+1]] (LayerNorm) or [B, Cl] (GroupNorm); NULL without a norm */
} conv_acts;

/* One set for every layer, sized for the largest: the backward takes a
 * layer at a time. */
typedef struct {
    float *act;  /* d act[l - 1], the input of layer l > 0 */
    float *norm; /* d norm[l] */
    float *out;  /* d out[l] */
} conv_grads;

void conv_declare(param_walk *w, conv_params *p, const w2v_config *c);
void conv_layout(const block_run *r, arena *ar, conv_acts *a, arena *gr, conv_grads *d);
long conv_scratch(const block_run *r);
void conv_forward(const block_run *r, const conv_params *p, conv_acts *a, const float *audio);
/* dout [B, F, C]: d loss / d the encoder's output. */
void conv_backward(const block_run *r, const conv_params *p, conv_params *g, const conv_acts *a, conv_grads *d,
                   const float *audio, const float *dout);
int conv_init_filterbank(const w2v_config *c, const conv_params *p, double fmin, double fmax, char *err,
                         size_t errlen);

/* ---- block_featproj.c: the feature projection, [B, F, C] -> [B, F, H],
 * with SpecAugment's spans and the padded frames zeroed ---- */

typedef struct {
    float *masked_spec_embed;  /* [H] what SpecAugment's time spans read; absent without SpecAugment */
    float *ln_w, *ln_b;        /* [C]; absent without feat_proj_layer_norm */
    float *w, *b;              /* [H, C], [H] */
} featproj_params;

typedef struct {
    float *ln, *mean, *rstd;   /* [B, F, C], [B, F], [B, F]; NULL without feat_proj_layer_norm */
    float *out;                /* [B, F, H] the projection's */
    float *enc_in;             /* [B, F, H] after dropout, SpecAugment and padding: the encoder's input */
    const uint8_t *time_mask;  /* [B, F] SpecAugment's spans, drawn for the batch (1 = masked) */
    const uint8_t *feat_mask;  /* [B, H] */
} featproj_acts;

typedef struct {
    float *out, *ln; /* d out, d ln (NULL without the LayerNorm) */
    span all;
} featproj_grads;

/* masked_spec_embed, Wav2Vec2Model's own parameter: before its modules'. */
void featproj_declare_masked_spec_embed(param_walk *w, featproj_params *p, const w2v_config *c);
void featproj_declare(param_walk *w, featproj_params *p, const w2v_config *c);
void featproj_layout(const block_run *r, arena *ar, featproj_acts *a, arena *gr, featproj_grads *d);
void featproj_forward(const block_run *r, const featproj_params *p, featproj_acts *a, const float *features);
/* dout = d enc_in, zeroed in place where the forward wrote constants;
 * dx = d features, or NULL when the conv encoder takes no gradient. */
void featproj_backward(const block_run *r, const featproj_params *p, featproj_params *g, const featproj_acts *a,
                       featproj_grads *d, const float *features, float *dout, float *dx);

/* ---- block_posconv.c: the positional conv embedding, [B, F, H] ->
 * hidden[0] [B, F, H], and the encoder's LayerNorm: post-LN at the
 * layers' input, with the encoder's dropout; pre-LN after the last.
 * The embedding is nl conv layers of K taps (w2v_config_pos_layers,
 * _pos_kernel), each followed by GELU: one weight-normed conv, or
 * data2vec-audio's stack of plain convs, each with a LayerNorm without
 * weight and bias before its GELU ---- */

#define MAXP W2V_MAX_POS_LAYERS

typedef struct {
    float *b[MAXP];     /* conv.bias [H] of each layer */
    float *v[MAXP];     /* [H, H/G, K]: weight_v of the weight-normed conv, or data2vec-audio's conv.weight */
    float *g;           /* weight_g [1, 1, K]; absent in data2vec-audio */
    float *ln_w, *ln_b; /* the encoder's layer_norm [H] */
} posconv_params;

typedef struct {
    float *w;           /* [H, H/G, K] the weight-normed conv weight: one for the batch; NULL in data2vec-audio */
    float *wr[MAXP];    /* [H, K, H/G] each conv's weight reordered for the products (conv1d_reorder): one for the batch */
    float *dw;          /* [H, H/G, K] training: d w for the whole batch (posconv_backward_weight); NULL in data2vec-audio */
    float *unit;        /* [2H] ones, then zeros: data2vec-audio's LayerNorms' weight and bias, one for the batch */
    float *pre[MAXP];   /* [B, F, H] conv l's output */
    float *norm[MAXP], *norm_mean[MAXP], *norm_rstd[MAXP]; /* data2vec-audio: its LayerNorm's [B, F, H], [B, F],
                                                            * [B, F]; otherwise pre[l], NULL, NULL */
    float *emb[MAXP];   /* [B, F, H] after GELU, layer l's output: emb[nl - 1] is the embedding */
    float *sum;         /* [B, F, H] input + embedding */
    float *mean, *rstd; /* [B, F] the encoder's LayerNorm, at the input (post-LN) or the output (pre-LN) */
    float *final;       /* [B, F, H] pre-LN: the last hidden state after the LayerNorm */
} posconv_acts;

typedef struct {
    float *norm;        /* post-LN: d of the LayerNorm's output */
    float *sum;         /* d sum */
    float *emb;         /* data2vec-audio: d emb[l - 1], the input of layer l */
    float *act;         /* data2vec-audio: d norm[l], GELU's input */
    float *pre[MAXP];   /* d pre[l], each kept for posconv_backward_weight */
    span all;
} posconv_grads;

/* A shard's part of the batch, for posconv_backward_weight. */
typedef struct {
    const block_run *r;
    const posconv_acts *a;
    const posconv_grads *d;
    const float *x;     /* the block's input */
} posconv_shard;

void posconv_declare(param_walk *w, posconv_params *p, const w2v_config *c);
/* weight_g = ||weight_v|| per tap, as torch's weight_norm sets it. */
void posconv_init_weight_g(const w2v_config *c, const posconv_params *p);
void posconv_layout(const block_run *r, arena *ar, posconv_acts *a, arena *gr, posconv_grads *d);
long posconv_scratch(const block_run *r);
/* What every shard reads, once per batch: the conv weight from weight_g and
 * weight_v, or the unit LayerNorm parameters. */
void posconv_weight(const w2v_config *c, const posconv_params *p, posconv_acts *a);
void posconv_forward(const block_run *r, const posconv_params *p, posconv_acts *a, const float *x, float *out);
/* dout = d out; dx = d x, and the gradients of every parameter but the
 * conv weights', which posconv_backward_weight takes for the whole batch. */
void posconv_backward(const block_run *r, const posconv_params *p, posconv_params *g, const posconv_acts *a,
                      posconv_grads *d, const float *dout, float *dx);
/* After every shard's posconv_backward: the conv weights' gradients, the
 * batch's sum taken once (not a weight-sized block per thread: 19 MiB for
 * wav2vec2-base), the groups in parallel, thread t with shard t's scratch. */
void posconv_backward_weight(const posconv_shard *sh, int n, const posconv_params *p, posconv_params *g);
/* Pre-LN's final LayerNorm: x, the last layer's output, to a->final. */
void encoder_norm_forward(const block_run *r, const posconv_params *p, posconv_acts *a, const float *x);
void encoder_norm_backward(const block_run *r, const posconv_params *p, posconv_params *g, const posconv_acts *a,
                           const float *x, const float *dout, float *dx);

/* ---- block_layer.c: a transformer layer, x [B, F, H] -> out [B, F, H];
 * post-LN (LayerNorm after each residual) or pre-LN (before each block) ---- */

typedef struct {
    float *k_w, *k_b, *v_w, *v_b, *q_w, *q_b, *o_w, *o_b; /* [H, H], [H] */
    float *ln1_w, *ln1_b; /* "layer_norm": after attention (post-LN) or before it (pre-LN) */
    float *ff1_w, *ff1_b, *ff2_w, *ff2_b; /* [I, H], [I], [H, I], [H] */
    float *ln2_w, *ln2_b; /* "final_layer_norm" */
    /* WavLM */
    float *gate_const;    /* [1, nh, 1, 1] gru_rel_pos_const */
    float *gate_w, *gate_b; /* [8, H/nh], [8] gru_rel_pos_linear */
    float *rel_embed;     /* [num_buckets, nh] rel_attn_embed: layer 0's; the other layers' views point at it */
} layer_params;

typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; /* [B, F, H], [B, F], [B, F] */
    float *q, *k, *v;                 /* [B, F, H], q scaled */
    float *probs;                     /* [B, nh, F, F] */
    float *gl, *gate;                 /* WavLM: gru_rel_pos_linear's [B, F, nh, 8]; the gate [B, F, nh] */
    float *ctx, *attn, *res1;         /* [B, F, H]: heads joined; out_proj's after dropout; x + attn */
    float *ln2, *ln2_mean, *ln2_rstd; /* pre-LN; post-LN keeps only the statistics (LN2 writes out) */
    float *ff1, *ffa, *ff2;           /* [B, F, I], after GELU and dropout [B, F, I], after dropout [B, F, H] */
    float *res2;                      /* post-LN: ln1 + ff2 */
} layer_acts;

/* One set for every layer: the backward takes a layer at a time. */
typedef struct {
    float *ff2;   /* [B, F, H] d of output_dense's output, before dropout */
    float *ffa;   /* [B, F, I] d ffa */
    float *gelu;  /* [B, F, I] d of GELU's output, before dropout */
    float *ff1;   /* [B, F, I] */
    float *ln2;   /* [B, F, H] pre-LN: d ln2 */
    float *ln1;   /* [B, F, H] d ln1: pre-LN the attention's input; post-LN the FFN's and res2's */
    float *attn;  /* [B, F, H] d of out_proj's output, before dropout */
    float *ctx, *q, *k, *v;
    float *gl, *gate; /* WavLM: d gl, d gate */
    float *bias;      /* WavLM: [B, nh, F, F] d of the position bias, per example */
    span all;
} layer_grads;

void layer_declare(param_walk *w, layer_params *p, const w2v_config *c, int i);
/* gr NULL: the activations only (the gradients are laid out once). */
void layer_layout(const block_run *r, arena *ar, layer_acts *a, arena *gr, layer_grads *d);
long layer_scratch(const block_run *r);
/* WavLM: the relative position bias [nh, F, F] from layer 0's embedding,
 * once per batch (block_run's pos_bias). */
void layer_bias_forward(const w2v_config *c, const layer_params *first, float *bias, int F);
void layer_forward(const block_run *r, int i, const layer_params *w, layer_acts *la, const float *x, float *out);
/* The backward in two halves, each writing one contiguous part of the
 * layer's parameter gradients: layer_ffn_backward the FFN's (from ff1 to
 * the end: ff1, ff2, final_layer_norm), then layer_attention_backward the
 * rest (the attention's and layer_norm).  dx: d out on entry to the first,
 * d x on return from the second. */
void layer_ffn_backward(const block_run *r, int i, const layer_params *p, layer_params *g, const layer_acts *a,
                        layer_grads *d, float *dx);
void layer_attention_backward(const block_run *r, int i, const layer_params *p, layer_params *g, const layer_acts *a,
                              layer_grads *d, const float *x, float *dx);

/* ---- block_head.c: the classification head, HF's hidden_states [L + 1]
 * [B, F, H] -> logits [B, N]: weighted layer sum (or the last), projector
 * per frame, mean over the valid frames, classifier ---- */

typedef struct {
    float *layer_weights;   /* [L + 1] */
    float *proj_w, *proj_b; /* [P, H], [P] */
    float *cls_w, *cls_b;   /* [N, P], [N] */
} head_params;

typedef struct {
    float *wsum;            /* [B, F, H] the weighted layer sum */
    float *proj;            /* [B, F, P] */
    float *pooled;          /* [B, P] */
    float *logits, *probs;  /* [B, N] */
    float *dlogits;         /* [B, N] d loss / d logits, for the whole batch before the shards' backward */
} head_acts;

typedef struct {
    float *wsum, *proj, *pooled;
    float **hs;             /* [L + 1]: d hidden_states[i] [B, F, H]; without the weighted sum only hs[L] */
    span all;
} head_grads;

/* layer_weights, the classifier model's own parameter: before its modules'. */
void head_declare_layer_weights(param_walk *w, head_params *p, const w2v_config *c);
void head_declare(param_walk *w, head_params *p, const w2v_config *c);
void head_layout(const block_run *r, arena *ar, head_acts *a, arena *gr, head_grads *d);
void head_forward(const block_run *r, const head_params *p, head_acts *a, float *const *hidden_states);
/* From a->dlogits; sets d->hs. */
void head_backward(const block_run *r, const head_params *p, head_params *g, const head_acts *a, head_grads *d,
                   float *const *hidden_states);

#endif
