/* The positional conv embedding: nl grouped convs over the frames (K taps,
 * G groups, padding K/2, HF's SamePad dropping the last output when K is
 * even), each followed by GELU, the last one's output added to the
 * block's input; then, post-LN, the encoder's LayerNorm, and the encoder's
 * dropout.  Pre-LN applies the encoder's LayerNorm after the last layer
 * instead (encoder_norm_*).
 *
 * wav2vec2, HuBERT, WavLM: one conv, weight-normed (one weight for the
 * batch, from weight_g and weight_v).  data2vec-audio: a stack of plain
 * convs, each with a LayerNorm without weight and bias before its GELU;
 * that LayerNorm is the affine one with weight 1 and bias 0, exact in
 * float, so it runs the same op with no parameter gradients. */
#include "blocks.h"

#include <math.h>

static int plain(const w2v_config *c) { return c->family == W2V_DATA2VEC_AUDIO; }

void posconv_declare(param_walk *w, posconv_params *p, const w2v_config *c)
{
    int H = c->hidden_size, K = w2v_config_pos_kernel(c), G = c->num_conv_pos_embedding_groups;
    const char *pre = w2v_config_prefix(c);
    double fan_in = (double)H / G * K;
    if (plain(c)) {
        /* _init_weights: the inner Conv1d's kaiming normal, then the layer's bias 0 */
        for (int l = 0; l < w2v_config_pos_layers(c); l++) {
            param_add(w, &p->v[l], INIT_KAIMING_NORMAL, sqrt(2 / fan_in), 1, 0, 3, H, H / G, K, 0,
                      "%s.encoder.pos_conv_embed.layers.%d.conv.weight", pre, l);
            param_add(w, &p->b[l], INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.encoder.pos_conv_embed.layers.%d.conv.bias", pre,
                      l);
        }
    } else {
        param_add(w, &p->b[0], INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.encoder.pos_conv_embed.conv.bias", pre);
        param_add(w, &p->g, INIT_NORM_OF_V, 0, 1, 0, 3, 1, 1, K, 0, "%s.encoder.pos_conv_embed.conv.weight_g", pre);
        param_add(w, &p->v[0], INIT_UNIFORM, 1.0 / sqrt(fan_in), 1, 0, 3, H, H / G, K, 0,
                  "%s.encoder.pos_conv_embed.conv.weight_v", pre);
    }
    param_add(w, &p->ln_w, INIT_ONE, 0, 0, 0, 1, H, 0, 0, 0, "%s.encoder.layer_norm.weight", pre);
    param_add(w, &p->ln_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.encoder.layer_norm.bias", pre);
}

/* rows of a conv weight: output channels times input channels per group */
static int rows(const w2v_config *c) { return c->hidden_size * (c->hidden_size / c->num_conv_pos_embedding_groups); }

void posconv_init_weight_g(const w2v_config *c, const posconv_params *p)
{
    if (plain(c)) return;
    int K = w2v_config_pos_kernel(c), n = rows(c);
    for (int k = 0; k < K; k++) {
        double ss = 0;
        for (long r = 0; r < n; r++) ss += (double)p->v[0][r * K + k] * p->v[0][r * K + k];
        p->g[k] = (float)sqrt(ss);
    }
}

void posconv_layout(const block_run *r, arena *ar, posconv_acts *a, arena *gr, posconv_grads *d)
{
    const w2v_config *c = r->cfg;
    int nl = w2v_config_pos_layers(c), H = c->hidden_size;
    long FH = (long)r->F * H, nw = (long)rows(c) * w2v_config_pos_kernel(c);
    a->w = plain(c) ? NULL : arena_take_one(ar, nw);
    a->unit = plain(c) ? arena_take_one(ar, 2l * H) : NULL;
    for (int l = 0; l < nl; l++) {
        a->pre[l] = arena_take(ar, FH);
        a->norm[l] = plain(c) ? arena_take(ar, FH) : a->pre[l];
        a->norm_mean[l] = plain(c) ? arena_take(ar, r->F) : NULL;
        a->norm_rstd[l] = plain(c) ? arena_take(ar, r->F) : NULL;
        a->emb[l] = arena_take(ar, FH);
    }
    a->sum = arena_take(ar, FH);
    a->mean = arena_take(ar, r->F);
    a->rstd = arena_take(ar, r->F);
    a->final = arena_take(ar, FH);
    long from = gr->off;
    d->norm = c->do_stable_layer_norm ? NULL : arena_take(gr, FH);
    d->sum = arena_take(gr, FH);
    d->emb = plain(c) ? arena_take(gr, FH) : NULL;
    d->act = plain(c) ? arena_take(gr, FH) : NULL;
    d->pre = arena_take(gr, FH);
    d->w = plain(c) ? NULL : arena_take_one(gr, nw);
    d->all = arena_span(gr, from);
}

static conv_shape shape(const w2v_config *c, const block_run *r)
{
    int K = w2v_config_pos_kernel(c);
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
    if (!plain(c)) {
        weightnorm_forward(a->w, p->g, p->v[0], rows(c), w2v_config_pos_kernel(c));
        return;
    }
    for (int j = 0; j < c->hidden_size; j++) a->unit[j] = 1, a->unit[c->hidden_size + j] = 0;
}

/* Layer l's conv weight: the batch's weight-normed one, or the parameter. */
static const float *conv_weight(const w2v_config *c, const posconv_params *p, const posconv_acts *a, int l)
{
    return plain(c) ? p->v[l] : a->w;
}

void posconv_forward(const block_run *r, const posconv_params *p, posconv_acts *a, const float *x, float *out)
{
    const w2v_config *c = r->cfg;
    int H = c->hidden_size, nl = w2v_config_pos_layers(c);
    long BF = (long)r->B * r->F;
    conv_shape s = shape(c, r);
    const float *in = x;
    for (int l = 0; l < nl; l++) {
        conv1d_forward(a->pre[l], in, conv_weight(c, p, a, l), p->b[l], &s, r->scratch);
        /* nn.LayerNorm(elementwise_affine=False) keeps torch's default eps */
        if (plain(c))
            layernorm_forward(a->norm[l], a->norm_mean[l], a->norm_rstd[l], a->pre[l], a->unit, a->unit + H, (int)BF, H,
                              1e-5f);
        gelu_forward(a->emb[l], a->norm[l], BF * H);
        in = a->emb[l];
    }
    residual_forward(a->sum, x, a->emb[nl - 1], BF * H);
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
    int H = c->hidden_size, nl = w2v_config_pos_layers(c);
    long BF = (long)r->B * r->F, n = BF * H;
    uint64_t key = site_key(r->key, SITE_ENC, 0);
    span_zero(d->all);
    if (c->do_stable_layer_norm) {
        dropout_backward(d->sum, dout, n, r->p_hidden, key, batch_offset(r, n));
    } else {
        dropout_backward(d->norm, dout, n, r->p_hidden, key, batch_offset(r, n));
        layernorm_backward(d->sum, g->ln_w, g->ln_b, d->norm, a->sum, p->ln_w, a->mean, a->rstd, (int)BF, H);
    }
    /* dx: the residual's share, then the first conv's */
    memcpy(dx, d->sum, (size_t)n * sizeof(float));
    conv_shape s = shape(c, r);
    const float *demb = d->sum; /* d emb[l] */
    for (int l = nl - 1; l >= 0; l--) {
        float *dnorm = plain(c) ? d->act : d->pre; /* d norm[l]: d pre[l] where the layer has no LayerNorm */
        zero(dnorm, n);
        gelu_backward(dnorm, a->norm[l], demb, n);
        if (plain(c)) {
            zero(d->pre, n);
            layernorm_backward(d->pre, NULL, NULL, dnorm, a->pre[l], a->unit, a->norm_mean[l], a->norm_rstd[l], (int)BF,
                               H);
        }
        /* d emb[l] has been read: d->emb now takes d emb[l - 1] */
        float *din = dx;
        if (l > 0) {
            din = d->emb;
            zero(din, n);
        }
        conv1d_backward(din, plain(c) ? g->v[l] : d->w, g->b[l], d->pre, l ? a->emb[l - 1] : x, conv_weight(c, p, a, l),
                        &s, r->scratch);
        demb = d->emb;
    }
    if (!plain(c)) weightnorm_backward(g->g, g->v[0], d->w, p->g, p->v[0], rows(c), w2v_config_pos_kernel(c));
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
