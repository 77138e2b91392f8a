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
#include <omp.h>

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
    a->dw = plain(c) || r->inference ? NULL : arena_take_one(ar, nw);
    a->unit = plain(c) ? arena_take_one(ar, 2l * H) : NULL;
    for (int l = 0; l < nl; l++) {
        a->wr[l] = arena_take_one(ar, nw);
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
    for (int l = 0; l < nl; l++) d->pre[l] = arena_take(gr, FH);
    d->all = arena_span(gr, from);
}

static conv_shape shape_of(const w2v_config *c, int B, int F)
{
    int K = w2v_config_pos_kernel(c);
    conv_shape s = {B, F, F, c->hidden_size, c->hidden_size, K, 1, K / 2, c->num_conv_pos_embedding_groups};
    return s;
}

static conv_shape shape(const w2v_config *c, const block_run *r) { return shape_of(c, r->B, r->F); }

long posconv_scratch(const block_run *r)
{
    conv_shape s = shape(r->cfg, r);
    return conv1d_scratch(&s);
}

void posconv_weight(const w2v_config *c, const posconv_params *p, posconv_acts *a)
{
    conv_shape s = shape_of(c, 0, 0);
    if (!plain(c)) {
        weightnorm_forward(a->w, p->g, p->v[0], rows(c), w2v_config_pos_kernel(c));
        conv1d_reorder(a->wr[0], a->w, &s);
        return;
    }
    for (int l = 0; l < w2v_config_pos_layers(c); l++) conv1d_reorder(a->wr[l], p->v[l], &s);
    for (int j = 0; j < c->hidden_size; j++) a->unit[j] = 1, a->unit[c->hidden_size + j] = 0;
}

void posconv_forward(const block_run *r, const posconv_params *p, posconv_acts *a, const float *x, float *out)
{
    const w2v_config *c = r->cfg;
    int H = c->hidden_size, nl = w2v_config_pos_layers(c);
    long BF = (long)r->B * r->F;
    conv_shape s = shape(c, r);
    const float *in = x;
    for (int l = 0; l < nl; l++) {
        conv1d_forward(a->pre[l], in, a->wr[l], p->b[l], &s, r->scratch);
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
                      posconv_grads *d, const float *dout, float *dx)
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
        float *dnorm = plain(c) ? d->act : d->pre[l]; /* d norm[l]: d pre[l] where the layer has no LayerNorm */
        zero(dnorm, n);
        gelu_backward(dnorm, a->norm[l], demb, n);
        if (plain(c))
            layernorm_backward(d->pre[l], NULL, NULL, dnorm, a->pre[l], a->unit, a->norm_mean[l], a->norm_rstd[l],
                               (int)BF, H);
        /* d emb[l] has been read: d->emb now takes d emb[l - 1] */
        float *din = dx;
        if (l > 0) {
            din = d->emb;
            zero(din, n);
        }
        conv1d_backward_data(din, d->pre[l], a->wr[l], &s, r->scratch);
        column_sum(g->b[l], d->pre[l], BF, H);
        demb = d->emb;
    }
}

void posconv_backward_weight(const posconv_shard *sh, int n, const posconv_params *p, posconv_params *g)
{
    const w2v_config *c = sh[0].r->cfg;
    const posconv_acts *batch = sh[0].a; /* the batch's one weight and its gradient */
    int G = c->num_conv_pos_embedding_groups, K = w2v_config_pos_kernel(c);
    gemm_mode mode = gemm_mode_get();
    if (!plain(c)) zero(batch->dw, (long)rows(c) * K);
    for (int l = 0; l < w2v_config_pos_layers(c); l++) {
        float *dw = plain(c) ? g->v[l] : batch->dw;
        #pragma omp parallel for schedule(dynamic) num_threads(n)
        for (int grp = 0; grp < G; grp++) {
            gemm_mode outer = gemm_mode_set(mode);
            float *scratch = sh[omp_get_thread_num()].r->scratch;
            for (int k = 0; k < n; k++) {
                conv_shape s = shape(c, sh[k].r);
                conv1d_backward_weight(dw, sh[k].d->pre[l], l ? sh[k].a->emb[l - 1] : sh[k].x, &s, grp, scratch);
            }
            gemm_mode_set(outer);
        }
    }
    if (!plain(c)) weightnorm_backward(g->g, g->v[0], batch->dw, p->g, p->v[0], rows(c), K);
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
