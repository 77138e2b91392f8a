/* The feature projection: the conv features [B, F, C] through LayerNorm
 * (but HuBERT's feat_proj_layer_norm false), Linear and dropout to [B, F, H]; then, as HF's _mask_hidden_states,
 * SpecAugment's spans (drawn for the whole batch by model.c: time spans
 * take masked_spec_embed, feature spans are zeroed) and, with the
 * attention mask, the padded frames zeroed.  The result is the encoder's
 * input. */
#include "blocks.h"

#include <math.h>

void featproj_declare_masked_spec_embed(param_walk *w, featproj_params *p, const w2v_config *c)
{
    if (w2v_config_has_masked_spec_embed(c))
        param_add(w, &p->masked_spec_embed, INIT_UNIFORM01, 0, 1, 0, 1, c->hidden_size, 0, 0, 0, "%s.masked_spec_embed",
                  w2v_config_prefix(c));
}

void featproj_declare(param_walk *w, featproj_params *p, const w2v_config *c)
{
    int C = c->conv_dim[c->num_conv_layers - 1], H = c->hidden_size;
    const char *pre = w2v_config_prefix(c);
    if (c->feat_proj_layer_norm) {
        param_add(w, &p->ln_w, INIT_ONE, 0, 0, 0, 1, C, 0, 0, 0, "%s.feature_projection.layer_norm.weight", pre);
        param_add(w, &p->ln_b, INIT_ZERO, 0, 0, 0, 1, C, 0, 0, 0, "%s.feature_projection.layer_norm.bias", pre);
    }
    /* HuBERT's _init_weights takes the projection for any Linear */
    int hubert = c->family == W2V_HUBERT;
    param_add(w, &p->w, hubert ? INIT_NORMAL : INIT_UNIFORM, hubert ? c->initializer_range : 1.0 / sqrt(C), 1, 0, 2, H,
              C, 0, 0, "%s.feature_projection.projection.weight", pre);
    param_add(w, &p->b, hubert ? INIT_ZERO : INIT_UNIFORM, 1.0 / sqrt(C), 0, 0, 1, H, 0, 0, 0,
              "%s.feature_projection.projection.bias", pre);
}

void featproj_layout(const block_run *r, arena *ar, featproj_acts *a, arena *gr, featproj_grads *d)
{
    const w2v_config *c = r->cfg;
    long FC = (long)r->F * c->conv_dim[c->num_conv_layers - 1], FH = (long)r->F * c->hidden_size;
    a->ln = c->feat_proj_layer_norm ? arena_take(ar, FC) : NULL;
    a->mean = c->feat_proj_layer_norm ? arena_take(ar, r->F) : NULL;
    a->rstd = c->feat_proj_layer_norm ? arena_take(ar, r->F) : NULL;
    a->out = arena_take(ar, FH);
    a->enc_in = arena_take(ar, FH);
    long from = gr->off;
    d->out = arena_take(gr, FH);
    d->ln = c->feat_proj_layer_norm ? arena_take(gr, FC) : NULL;
    d->all = arena_span(gr, from);
}

void featproj_forward(const block_run *r, const featproj_params *p, featproj_acts *a, const float *features)
{
    const w2v_config *c = r->cfg;
    int B = r->B, F = r->F, H = c->hidden_size, C = c->conv_dim[c->num_conv_layers - 1];
    long BF = (long)B * F;
    const float *in = features;
    if (c->feat_proj_layer_norm) {
        layernorm_forward(a->ln, a->mean, a->rstd, features, p->ln_w, p->ln_b, (int)BF, C, (float)c->layer_norm_eps);
        in = a->ln;
    }
    linear_forward(a->out, in, p->w, p->b, (int)BF, C, H);
    dropout_forward(a->enc_in, a->out, BF * H, r->p_feat, site_key(r->key, SITE_FEAT_PROJ, 0), batch_offset(r, BF * H));
    for (long j = 0; j < BF; j++)
        if (a->time_mask[j]) memcpy(a->enc_in + j * H, p->masked_spec_embed, (size_t)H * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < H; ch++)
            if (a->feat_mask[(long)b * H + ch])
                for (int t = 0; t < F; t++) a->enc_in[((long)b * F + t) * H + ch] = 0;
    if (r->valid)
        for (int b = 0; b < B; b++) zero(a->enc_in + ((long)b * F + r->valid[b]) * H, (long)(F - r->valid[b]) * H);
}

void featproj_backward(const block_run *r, const featproj_params *p, featproj_params *g, const featproj_acts *a,
                       featproj_grads *d, const float *features, float *dout, float *dx)
{
    const w2v_config *c = r->cfg;
    int B = r->B, F = r->F, H = c->hidden_size, C = c->conv_dim[c->num_conv_layers - 1];
    long BF = (long)B * F;
    span_zero(d->all);
    /* the forward in reverse: padded frames, feature spans, then time spans */
    if (r->valid)
        for (int b = 0; b < B; b++) zero(dout + ((long)b * F + r->valid[b]) * H, (long)(F - r->valid[b]) * H);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < H; ch++)
            if (a->feat_mask[(long)b * H + ch])
                for (int t = 0; t < F; t++) dout[((long)b * F + t) * H + ch] = 0;
    for (long j = 0; j < BF; j++)
        if (a->time_mask[j]) {
            for (int ch = 0; ch < H; ch++) g->masked_spec_embed[ch] += dout[j * H + ch];
            zero(dout + j * H, H);
        }
    dropout_backward(d->out, dout, BF * H, r->p_feat, site_key(r->key, SITE_FEAT_PROJ, 0), batch_offset(r, BF * H));
    if (dx) zero(dx, BF * C);
    if (!c->feat_proj_layer_norm) {
        linear_backward(dx, g->w, g->b, d->out, features, p->w, (int)BF, C, H);
        return;
    }
    linear_backward(d->ln, g->w, g->b, d->out, a->ln, p->w, (int)BF, C, H);
    layernorm_backward(dx, g->ln_w, g->ln_b, d->ln, features, p->ln_w, a->mean, a->rstd, (int)BF, C);
}
