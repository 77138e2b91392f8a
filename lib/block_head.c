/* The classification head, HF's hidden_states (L + 1 of [B, F, H]) to
 * logits [B, N]: their weighted sum (softmax of layer_weights) or the last
 * alone, the projector on every frame, the mean over the valid frames,
 * the classifier.  The loss over the whole batch is model.c's. */
#include "blocks.h"

void head_declare_layer_weights(param_walk *w, head_params *p, const w2v_config *c)
{
    int L = c->num_hidden_layers;
    if (c->use_weighted_layer_sum)
        param_add(w, &p->layer_weights, INIT_CONST, 1.0 / (L + 1), 1, 0, 1, L + 1, 0, 0, 0, "layer_weights");
}

void head_declare(param_walk *w, head_params *p, const w2v_config *c)
{
    int H = c->hidden_size, P = c->classifier_proj_size, N = c->num_labels;
    double std = c->initializer_range;
    param_add(w, &p->proj_w, INIT_NORMAL, std, 1, 0, 2, P, H, 0, 0, "projector.weight");
    param_add(w, &p->proj_b, INIT_ZERO, 0, 0, 0, 1, P, 0, 0, 0, "projector.bias");
    param_add(w, &p->cls_w, INIT_NORMAL, std, 1, 0, 2, N, P, 0, 0, "classifier.weight");
    param_add(w, &p->cls_b, INIT_ZERO, 0, 0, 0, 1, N, 0, 0, 0, "classifier.bias");
}

void head_layout(const block_run *r, arena *ar, head_acts *a, arena *gr, head_grads *d)
{
    const w2v_config *c = r->cfg;
    int L = c->num_hidden_layers, P = c->classifier_proj_size, N = c->num_labels, weighted = c->use_weighted_layer_sum;
    long FH = (long)r->F * c->hidden_size;
    a->wsum = weighted ? arena_take(ar, FH) : NULL;
    a->proj = arena_take(ar, (long)r->F * P);
    a->pooled = arena_take(ar, P);
    a->logits = arena_take(ar, N);
    a->probs = arena_take(ar, N);
    a->dlogits = arena_take(ar, N);
    long from = gr->off;
    d->wsum = weighted ? arena_take(gr, FH) : NULL;
    d->proj = arena_take(gr, (long)r->F * P);
    d->pooled = arena_take(gr, P);
    for (int i = 0; i <= L; i++) d->hs[i] = weighted || i == L ? arena_take(gr, FH) : NULL;
    d->all = arena_span(gr, from);
}

void head_forward(const block_run *r, const head_params *p, head_acts *a, float *const *hidden_states)
{
    const w2v_config *c = r->cfg;
    int B = r->B, F = r->F, H = c->hidden_size, L = c->num_hidden_layers, P = c->classifier_proj_size;
    long BF = (long)B * F;
    const float *top = hidden_states[L];
    if (c->use_weighted_layer_sum) {
        layersum_forward(a->wsum, hidden_states, p->layer_weights, L + 1, BF * H);
        top = a->wsum;
    }
    linear_forward(a->proj, top, p->proj_w, p->proj_b, (int)BF, H, P);
    meanpool_forward(a->pooled, a->proj, r->valid, B, F, P);
    linear_forward(a->logits, a->pooled, p->cls_w, p->cls_b, B, P, c->num_labels);
}

void head_backward(const block_run *r, const head_params *p, head_params *g, const head_acts *a, head_grads *d,
                   float *const *hidden_states)
{
    const w2v_config *c = r->cfg;
    int B = r->B, F = r->F, H = c->hidden_size, L = c->num_hidden_layers, P = c->classifier_proj_size;
    int BF = B * F, weighted = c->use_weighted_layer_sum;
    span_zero(d->all);
    linear_backward(d->pooled, g->cls_w, g->cls_b, a->dlogits, a->pooled, p->cls_w, B, P, c->num_labels);
    meanpool_backward(d->proj, d->pooled, r->valid, B, F, P);
    const float *top = weighted ? a->wsum : hidden_states[L];
    float *dtop = weighted ? d->wsum : d->hs[L];
    linear_backward(dtop, g->proj_w, g->proj_b, d->proj, top, p->proj_w, BF, H, P);
    if (weighted)
        layersum_backward(d->hs, g->layer_weights, dtop, hidden_states, p->layer_weights, L + 1, (long)BF * H);
}
