/* The positional conv embedding: a weight-normed grouped conv over the
 * frames (kernel K, G groups, padding K/2, HF's SamePad dropping the
 * last output when K is even), GELU, added to its input; then, post-LN,
 * the encoder's LayerNorm, and the encoder's dropout.  Pre-LN applies the
 * encoder's LayerNorm after the last layer instead (encoder_norm_*). */
#include "blocks.h"

#include <math.h>

void posconv_declare(param_walk *w, posconv_params *p, const w2v_config *c)
{
    int H = c->hidden_size, K = c->num_conv_pos_embeddings, G = c->num_conv_pos_embedding_groups;
    param_add(w, &p->b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "wav2vec2.encoder.pos_conv_embed.conv.bias");
    param_add(w, &p->g, INIT_NORM_OF_V, 0, 1, 0, 3, 1, 1, K, "wav2vec2.encoder.pos_conv_embed.conv.weight_g");
    param_add(w, &p->v, INIT_UNIFORM, 1.0 / sqrt((double)H / G * K), 1, 0, 3, H, H / G, K,
              "wav2vec2.encoder.pos_conv_embed.conv.weight_v");
    param_add(w, &p->ln_w, INIT_ONE, 0, 0, 0, 1, H, 0, 0, "wav2vec2.encoder.layer_norm.weight");
    param_add(w, &p->ln_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, "wav2vec2.encoder.layer_norm.bias");
}

/* rows of weight_v: output channels times input channels per group */
static int rows(const w2v_config *c) { return c->hidden_size * (c->hidden_size / c->num_conv_pos_embedding_groups); }

void posconv_init_weight_g(const w2v_config *c, const posconv_params *p)
{
    int K = c->num_conv_pos_embeddings, n = rows(c);
    for (int k = 0; k < K; k++) {
        double ss = 0;
        for (long r = 0; r < n; r++) ss += (double)p->v[r * K + k] * p->v[r * K + k];
        p->g[k] = (float)sqrt(ss);
    }
}

void posconv_layout(const block_run *r, arena *ar, posconv_acts *a, arena *gr, posconv_grads *d)
{
    const w2v_config *c = r->cfg;
    long FH = (long)r->F * c->hidden_size, nw = (long)rows(c) * c->num_conv_pos_embeddings;
    a->w = arena_take_one(ar, nw);
    a->pre = arena_take(ar, FH);
    a->emb = arena_take(ar, FH);
    a->sum = arena_take(ar, FH);
    a->mean = arena_take(ar, r->F);
    a->rstd = arena_take(ar, r->F);
    a->final = arena_take(ar, FH);
    long from = gr->off;
    d->norm = c->do_stable_layer_norm ? NULL : arena_take(gr, FH);
    d->sum = arena_take(gr, FH);
    d->pre = arena_take(gr, FH);
    d->w = arena_take_one(gr, nw);
    d->all = arena_span(gr, from);
}

static conv_shape shape(const w2v_config *c, const block_run *r)
{
    int K = c->num_conv_pos_embeddings;
    conv_shape s = {r->B, r->F, r->F, c->hidden_size, c->hidden_size, K, 1, K / 2, c->num_conv_pos_embedding_groups};
    return s;
}

long posconv_scratch(const block_run *r)
{
    conv_shape s = shape(r->cfg, r);
    return conv1d_scratch(&s);
}

void posconv_weight(const w2v_config *c, const posconv_params *p, posconv_acts *a)
{
    weightnorm_forward(a->w, p->g, p->v, rows(c), c->num_conv_pos_embeddings);
}

void posconv_forward(const block_run *r, const posconv_params *p, posconv_acts *a, const float *x, float *out)
{
    const w2v_config *c = r->cfg;
    int H = c->hidden_size;
    long BF = (long)r->B * r->F;
    conv_shape s = shape(c, r);
    conv1d_forward(a->pre, x, a->w, p->b, &s, r->scratch);
    gelu_forward(a->emb, a->pre, BF * H);
    residual_forward(a->sum, x, a->emb, BF * H);
    uint64_t key = site_key(r->key, SITE_ENC, 0);
    if (c->do_stable_layer_norm) {
        dropout_forward(out, a->sum, BF * H, r->p_hidden, key, batch_offset(r, BF * H));
    } else {
        layernorm_forward(out, a->mean, a->rstd, a->sum, p->ln_w, p->ln_b, (int)BF, H, (float)c->layer_norm_eps);
        dropout_forward(out, out, BF * H, r->p_hidden, key, batch_offset(r, BF * H));
    }
}

void posconv_backward(const block_run *r, const posconv_params *p, posconv_params *g, const posconv_acts *a,
                      posconv_grads *d, const float *x, const float *dout, float *dx)
{
    const w2v_config *c = r->cfg;
    int H = c->hidden_size;
    long BF = (long)r->B * r->F, n = BF * H;
    uint64_t key = site_key(r->key, SITE_ENC, 0);
    span_zero(d->all);
    if (c->do_stable_layer_norm) {
        dropout_backward(d->sum, dout, n, r->p_hidden, key, batch_offset(r, n));
    } else {
        dropout_backward(d->norm, dout, n, r->p_hidden, key, batch_offset(r, n));
        layernorm_backward(d->sum, g->ln_w, g->ln_b, d->norm, a->sum, p->ln_w, a->mean, a->rstd, (int)BF, H);
    }
    /* dx: the residual's share, then the conv's */
    memcpy(dx, d->sum, (size_t)n * sizeof(float));
    gelu_backward(d->pre, a->pre, d->sum, n);
    conv_shape s = shape(c, r);
    conv1d_backward(dx, d->w, g->b, d->pre, x, a->w, &s, r->scratch);
    weightnorm_backward(g->g, g->v, d->w, p->g, p->v, rows(c), c->num_conv_pos_embeddings);
}

void encoder_norm_forward(const block_run *r, const posconv_params *p, posconv_acts *a, const float *x)
{
    const w2v_config *c = r->cfg;
    layernorm_forward(a->final, a->mean, a->rstd, x, p->ln_w, p->ln_b, r->B * r->F, c->hidden_size,
                      (float)c->layer_norm_eps);
}

void encoder_norm_backward(const block_run *r, const posconv_params *p, posconv_params *g, const posconv_acts *a,
                           const float *x, const float *dout, float *dx)
{
    int H = r->cfg->hidden_size;
    zero(dx, (long)r->B * r->F * H);
    layernorm_backward(dx, g->ln_w, g->ln_b, dout, x, p->ln_w, a->mean, a->rstd, r->B * r->F, H);
}
