/* A transformer layer, x [B, F, H] -> out [B, F, H], nh heads:
 *   post-LN: res1 = x + attention(x);  ln1 = LN1(res1);  out = LN2(ln1 + FFN(ln1))
 *   pre-LN:  res1 = x + attention(LN1(x));  out = res1 + FFN(LN2(res1))
 * with dropout on the attention's probabilities, on out_proj's and
 * output_dense's outputs (hidden) and after the FFN's GELU (activation).
 * WavLM adds to each head's scores the relative position bias of layer 0's
 * embedding (one for the batch, block_run's pos_bias), scaled per query
 * frame by a gate computed from the attention's input:
 *   gate[b, t, h] = sa (sb c[h] - 1) + 2,  sa, sb = sigmoid of the sums of
 *   the two halves of gru_rel_pos_linear(head h's slice of the input) */
#include "blocks.h"

#include <math.h>
#include <stdio.h>

static int wavlm(const w2v_config *c) { return c->family == W2V_WAVLM; }

void layer_declare(param_walk *w, layer_params *p, const w2v_config *c, int i)
{
    int H = c->hidden_size, I = c->intermediate_size, nh = c->num_attention_heads;
    double std = c->initializer_range;
    char at[128]; /* the layer's names start so */
    snprintf(at, sizeof at, "%s.encoder.layers.%d", w2v_config_prefix(c), i);
    /* WavLM's attention: its own parameter first, as named_parameters() gives it */
    if (wavlm(c))
        param_add(w, &p->gate_const, INIT_ONE, 0, 1, 0, 4, 1, nh, 1, 1, "%s.attention.gru_rel_pos_const", at);
    param_add(w, &p->k_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, 0, "%s.attention.k_proj.weight", at);
    param_add(w, &p->k_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.attention.k_proj.bias", at);
    param_add(w, &p->v_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, 0, "%s.attention.v_proj.weight", at);
    param_add(w, &p->v_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.attention.v_proj.bias", at);
    param_add(w, &p->q_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, 0, "%s.attention.q_proj.weight", at);
    param_add(w, &p->q_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.attention.q_proj.bias", at);
    param_add(w, &p->o_w, INIT_NORMAL, std, 1, 0, 2, H, H, 0, 0, "%s.attention.out_proj.weight", at);
    param_add(w, &p->o_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.attention.out_proj.bias", at);
    if (wavlm(c)) {
        param_add(w, &p->gate_w, INIT_NORMAL, std, 1, 0, 2, 8, H / nh, 0, 0, "%s.attention.gru_rel_pos_linear.weight", at);
        param_add(w, &p->gate_b, INIT_ZERO, 0, 0, 0, 1, 8, 0, 0, 0, "%s.attention.gru_rel_pos_linear.bias", at);
        /* nn.Embedding, which _init_weights leaves at torch's N(0, 1) */
        if (i == 0)
            param_add(w, &p->rel_embed, INIT_NORMAL, 1, 1, 0, 2, c->num_buckets, nh, 0, 0,
                      "%s.attention.rel_attn_embed.weight", at);
    }
    param_add(w, &p->ln1_w, INIT_ONE, 0, 0, 0, 1, H, 0, 0, 0, "%s.layer_norm.weight", at);
    param_add(w, &p->ln1_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.layer_norm.bias", at);
    param_add(w, &p->ff1_w, INIT_NORMAL, std, 1, 0, 2, I, H, 0, 0, "%s.feed_forward.intermediate_dense.weight", at);
    param_add(w, &p->ff1_b, INIT_ZERO, 0, 0, 0, 1, I, 0, 0, 0, "%s.feed_forward.intermediate_dense.bias", at);
    param_add(w, &p->ff2_w, INIT_NORMAL, std, 1, 0, 2, H, I, 0, 0, "%s.feed_forward.output_dense.weight", at);
    param_add(w, &p->ff2_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.feed_forward.output_dense.bias", at);
    param_add(w, &p->ln2_w, INIT_ONE, 0, 0, 0, 1, H, 0, 0, 0, "%s.final_layer_norm.weight", at);
    param_add(w, &p->ln2_b, INIT_ZERO, 0, 0, 0, 1, H, 0, 0, 0, "%s.final_layer_norm.bias", at);
}

void layer_bias_forward(const w2v_config *c, const layer_params *first, float *bias, int F)
{
    relpos_bias_forward(bias, first->rel_embed, F, c->num_attention_heads, c->num_buckets, c->max_bucket_distance);
}

void layer_layout(const block_run *r, arena *ar, layer_acts *a, arena *gr, layer_grads *d)
{
    const w2v_config *c = r->cfg;
    long F = r->F, FH = F * c->hidden_size, FI = F * c->intermediate_size, FN = F * c->num_attention_heads;
    a->ln1 = arena_take(ar, FH);
    a->ln1_mean = arena_take(ar, F);
    a->ln1_rstd = arena_take(ar, F);
    a->q = arena_take(ar, FH);
    a->k = arena_take(ar, FH);
    a->v = arena_take(ar, FH);
    a->probs = arena_take(ar, c->num_attention_heads * F * F);
    a->gl = wavlm(c) ? arena_take(ar, FN * 8) : NULL;
    a->gate = wavlm(c) ? arena_take(ar, FN) : NULL;
    a->ctx = arena_take(ar, FH);
    a->attn = arena_take(ar, FH);
    a->res1 = arena_take(ar, FH);
    a->ln2 = arena_take(ar, FH);
    a->ln2_mean = arena_take(ar, F);
    a->ln2_rstd = arena_take(ar, F);
    a->ff1 = arena_take(ar, FI);
    a->ffa = arena_take(ar, FI);
    a->ff2 = arena_take(ar, FH);
    a->res2 = arena_take(ar, FH);
    if (!gr) return;
    long from = gr->off;
    d->ff2 = arena_take(gr, FH);
    d->ffa = arena_take(gr, FI);
    d->gelu = arena_take(gr, FI);
    d->ff1 = arena_take(gr, FI);
    d->ln2 = c->do_stable_layer_norm ? arena_take(gr, FH) : NULL;
    d->ln1 = arena_take(gr, FH);
    d->attn = arena_take(gr, FH);
    d->ctx = arena_take(gr, FH);
    d->q = arena_take(gr, FH);
    d->k = arena_take(gr, FH);
    d->v = arena_take(gr, FH);
    d->gl = wavlm(c) ? arena_take(gr, FN * 8) : NULL;
    d->gate = wavlm(c) ? arena_take(gr, FN) : NULL;
    d->bias = wavlm(c) ? arena_take(gr, FN * F) : NULL;
    d->all = arena_span(gr, from);
}

long layer_scratch(const block_run *r) { return attention_scratch(r->F); }

void layer_forward(const block_run *r, int i, const layer_params *w, layer_acts *la, const float *x, float *out)
{
    const w2v_config *c = r->cfg;
    int B = r->B, F = r->F, H = c->hidden_size, I = c->intermediate_size, nh = c->num_attention_heads;
    long BF = (long)B * F, n = BF * H;
    float eps = (float)c->layer_norm_eps, scale = 1.0f / sqrtf((float)(H / nh));
    const float *xin = x;
    if (c->do_stable_layer_norm) {
        layernorm_forward(la->ln1, la->ln1_mean, la->ln1_rstd, x, w->ln1_w, w->ln1_b, (int)BF, H, eps);
        xin = la->ln1;
    }
    linear_forward(la->q, xin, w->q_w, w->q_b, (int)BF, H, H);
    #pragma omp parallel for simd
    for (long j = 0; j < n; j++) la->q[j] *= scale; /* HF scales after the bias */
    linear_forward(la->k, xin, w->k_w, w->k_b, (int)BF, H, H);
    linear_forward(la->v, xin, w->v_w, w->v_b, (int)BF, H, H);
    attn_bias rb = {r->pos_bias, la->gate, NULL, NULL};
    if (wavlm(c)) relgate_forward(la->gate, la->gl, xin, w->gate_w, w->gate_b, w->gate_const, (int)BF, nh, H / nh);
    attention_forward(la->ctx, la->probs, la->q, la->k, la->v, r->valid, wavlm(c) ? &rb : NULL, B, F, H, nh, r->p_attn,
                      site_key(r->key, SITE_ATTN, i), r->first, r->scratch);
    linear_forward(la->attn, la->ctx, w->o_w, w->o_b, (int)BF, H, H);
    dropout_forward(la->attn, la->attn, n, r->p_hidden, site_key(r->key, SITE_ATTN_OUT, i), batch_offset(r, n));
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
    dropout_forward(la->ffa, la->ffa, BF * I, r->p_act, site_key(r->key, SITE_FF_ACT, i), batch_offset(r, BF * I));
    linear_forward(la->ff2, la->ffa, w->ff2_w, w->ff2_b, (int)BF, I, H);
    dropout_forward(la->ff2, la->ff2, n, r->p_hidden, site_key(r->key, SITE_FF_OUT, i), batch_offset(r, n));
    if (c->do_stable_layer_norm) {
        residual_forward(out, la->res1, la->ff2, n);
    } else {
        residual_forward(la->res2, la->ln1, la->ff2, n);
        layernorm_forward(out, la->ln2_mean, la->ln2_rstd, la->res2, w->ln2_w, w->ln2_b, (int)BF, H, eps);
    }
}

/* The backward comes in two halves, the FFN's and the attention's, each
 * writing the gradients of one contiguous part of the layer's parameters
 * (the attention's and ln1, then ff1, ff2 and ln2), so that the caller can
 * add a shard's gradients half a layer at a time. */
void layer_ffn_backward(const block_run *r, int i, const layer_params *p, layer_params *g, const layer_acts *a,
                        layer_grads *d, float *dx)
{
    const w2v_config *c = r->cfg;
    int BF = r->B * r->F, H = c->hidden_size, I = c->intermediate_size, stable = c->do_stable_layer_norm;
    long n = (long)BF * H, ni = (long)BF * I;
    const float *ffin = stable ? a->ln2 : a->ln1;
    float *dffin = stable ? d->ln2 : d->ln1;
    span_zero(d->all);

    /* from d of the layer's output through the residual */
    const float *dres = dx; /* pre-LN: out = res1 + ff2 */
    if (!stable) {
        /* post-LN: out = LN2(ln1 + ff2), and ln1 takes d res2 through the residual */
        layernorm_backward(d->ln1, g->ln2_w, g->ln2_b, dx, a->res2, p->ln2_w, a->ln2_mean, a->ln2_rstd, BF, H);
        dres = d->ln1;
    }
    dropout_backward(d->ff2, dres, n, r->p_hidden, site_key(r->key, SITE_FF_OUT, i), batch_offset(r, n));
    linear_backward(d->ffa, g->ff2_w, g->ff2_b, d->ff2, a->ffa, p->ff2_w, BF, I, H);
    dropout_backward(d->gelu, d->ffa, ni, r->p_act, site_key(r->key, SITE_FF_ACT, i), batch_offset(r, ni));
    gelu_backward(d->ff1, a->ff1, d->gelu, ni);
    linear_backward(dffin, g->ff1_w, g->ff1_b, d->ff1, ffin, p->ff1_w, BF, H, I);
    /* pre-LN: dx += d through LN2, d res1 */
    if (stable) layernorm_backward(dx, g->ln2_w, g->ln2_b, d->ln2, a->res1, p->ln2_w, a->ln2_mean, a->ln2_rstd, BF, H);
}

void layer_attention_backward(const block_run *r, int i, const layer_params *p, layer_params *g, const layer_acts *a,
                              layer_grads *d, const float *x, float *dx)
{
    const w2v_config *c = r->cfg;
    int B = r->B, F = r->F, H = c->hidden_size, nh = c->num_attention_heads;
    int BF = B * F, stable = c->do_stable_layer_norm;
    long n = (long)BF * H;
    float scale = 1.0f / sqrtf((float)(H / nh));
    const float *xin = stable ? a->ln1 : x;
    if (!stable) {
        /* post-LN: d out has been read, and d->ln1 holds d ln1: dx starts over as d res1 */
        zero(dx, n);
        layernorm_backward(dx, g->ln1_w, g->ln1_b, d->ln1, a->res1, p->ln1_w, a->ln1_mean, a->ln1_rstd, BF, H);
    }

    /* dx holds d res1, which is d x through the residual */
    dropout_backward(d->attn, dx, n, r->p_hidden, site_key(r->key, SITE_ATTN_OUT, i), batch_offset(r, n));
    linear_backward(d->ctx, g->o_w, g->o_b, d->attn, a->ctx, p->o_w, BF, H, H);
    attn_bias rb = {r->pos_bias, a->gate, d->bias, d->gate};
    attention_backward(d->q, d->k, d->v, d->ctx, a->probs, a->q, a->k, a->v, wavlm(c) ? &rb : NULL, B, F, H, nh,
                       r->p_attn, site_key(r->key, SITE_ATTN, i), r->first, r->scratch);
    #pragma omp parallel for simd
    for (long j = 0; j < n; j++) d->q[j] *= scale;
    float *dxin = stable ? d->ln1 : dx;
    linear_backward(dxin, g->q_w, g->q_b, d->q, xin, p->q_w, BF, H, H);
    linear_backward(dxin, g->k_w, g->k_b, d->k, xin, p->k_w, BF, H, H);
    linear_backward(dxin, g->v_w, g->v_b, d->v, xin, p->v_w, BF, H, H);
    if (wavlm(c)) {
        /* every layer's share of the bias goes to layer 0's embedding (g->rel_embed is its) */
        relpos_bias_backward(g->rel_embed, d->bias, B, F, nh, c->num_buckets, c->max_bucket_distance);
        relgate_backward(dxin, g->gate_w, g->gate_b, g->gate_const, d->gl, d->gate, xin, p->gate_w, a->gl,
                         p->gate_const, BF, nh, H / nh);
    }
    if (stable) layernorm_backward(dx, g->ln1_w, g->ln1_b, d->ln1, x, p->ln1_w, a->ln1_mean, a->ln1_rstd, BF, H);
}
