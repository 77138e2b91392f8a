/* Every op's backward against central finite differences, then the whole
 * model in training mode (dropout, LayerDrop, SpecAugment, the attention
 * mask, the weighted layer sum), which the golden cases leave off.
 *
 * The ops run in float, so the loss is a fixed random projection of the
 * output summed in double, and each check follows a random direction
 * through one input (a directional derivative): its size grows with the
 * square root of the input's size while rounding noise does not. */
#include "unit.h"
#include "ops.h"
#include "w2v/model.h"
#include "w2v/rng.h"
#include "w2v/threads.h"

#include <stdlib.h>
#include <string.h>

static w2v_rng rng;

/* Every test buffer is kept here and freed together at the end. */
static float **buffers;
static size_t nbuffers;

static float *zeros(long n)
{
    float *x = calloc((size_t)n, sizeof *x), **more = realloc(buffers, (nbuffers + 1) * sizeof *buffers);
    if (!x || !more) abort();
    buffers = more;
    return buffers[nbuffers++] = x;
}

static void free_buffers(void)
{
    while (nbuffers) free(buffers[--nbuffers]);
    free(buffers);
}

static float *randn(long n, float scale)
{
    float *x = zeros(n);
    for (long i = 0; i < n; i++) x[i] = (float)(scale * w2v_rng_normal(&rng));
    return x;
}

/* The op under test: computes out from its inputs. */
typedef void (*forward_fn)(void *ctx);

typedef struct {
    const char *name;
    forward_fn fwd;
    void *ctx;
    float *out, *weights; /* loss = sum out * weights */
    long nout;
} op_check;

static double loss_of(op_check *c)
{
    c->fwd(c->ctx);
    double s = 0;
    for (long i = 0; i < c->nout; i++) s += (double)c->out[i] * c->weights[i];
    return s;
}

/* Compares grad (analytic, for input x of n values) with the directional
 * finite difference along a random +-1 direction. */
static void check_input(op_check *c, const char *what, float *x, const float *grad, long n, float h, double rtol)
{
    float *dir = malloc((size_t)n * sizeof *dir), *x0 = malloc((size_t)n * sizeof *x0);
    memcpy(x0, x, (size_t)n * sizeof *x0);
    double ana = 0, scale = 0;
    for (long i = 0; i < n; i++) {
        dir[i] = (w2v_rng_next(&rng) & 1) ? 1.0f : -1.0f;
        ana += (double)grad[i] * dir[i];
        scale += fabs((double)grad[i]);
    }
    for (long i = 0; i < n; i++) x[i] = x0[i] + h * dir[i];
    double lp = loss_of(c);
    for (long i = 0; i < n; i++) x[i] = x0[i] - h * dir[i];
    double lm = loss_of(c);
    memcpy(x, x0, (size_t)n * sizeof *x0);
    double num = (lp - lm) / (2.0 * h);
    /* rtol of the sum of |grad|: the size a directional derivative can have */
    double err = fabs(num - ana), tol = rtol * scale + 1e-6;
    CHECK(err <= tol, "%s d/d%s: analytic %.6g, numeric %.6g (|grad| sum %.3g)", c->name, what, ana, num, scale);
    free(dir);
    free(x0);
}

/* ---- linear ---- */
typedef struct { float *out, *in, *w, *b; int N, I, O; } lin_ctx;
static void lin_fwd(void *p) { lin_ctx *c = p; linear_forward(c->out, c->in, c->w, c->b, c->N, c->I, c->O); }

static void test_linear(void)
{
    lin_ctx c = {NULL, NULL, NULL, NULL, 7, 5, 6};
    c.in = randn(35, 1), c.w = randn(30, 0.5f), c.b = randn(6, 0.5f), c.out = zeros(42);
    float *r = randn(42, 1), *din = zeros(35), *dw = zeros(30), *db = zeros(6);
    linear_backward(din, dw, db, r, c.in, c.w, 7, 5, 6);
    op_check oc = {"linear", lin_fwd, &c, c.out, r, 42};
    check_input(&oc, "in", c.in, din, 35, 1e-2f, 1e-4);
    check_input(&oc, "w", c.w, dw, 30, 1e-2f, 1e-4);
    check_input(&oc, "b", c.b, db, 6, 1e-2f, 1e-4);
}

/* ---- norms ---- */
typedef struct { float *out, *mean, *rstd, *x, *w, *b; int B, T, C, group; } norm_ctx;
static void norm_fwd(void *p)
{
    norm_ctx *c = p;
    if (c->group) groupnorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->B, c->T, c->C, 1e-5f);
    else layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->B * c->T, c->C, 1e-5f);
}

static void test_norm(int group)
{
    int B = 2, T = 9, C = 5;
    long n = (long)B * T * C;
    norm_ctx c = {zeros(n), zeros(B * T * C), zeros(B * T * C), randn(n, 2), randn(C, 1), randn(C, 1), B, T, C, group};
    for (long i = 0; i < n; i++) c.x[i] += 0.5f; /* a mean away from zero */
    float *r = randn(n, 1), *dx = zeros(n), *dw = zeros(C), *db = zeros(C);
    norm_fwd(&c);
    if (group) groupnorm_backward(dx, dw, db, r, c.x, c.w, c.mean, c.rstd, B, T, C);
    else layernorm_backward(dx, dw, db, r, c.x, c.w, c.mean, c.rstd, B * T, C);
    op_check oc = {group ? "groupnorm" : "layernorm", norm_fwd, &c, c.out, r, n};
    check_input(&oc, "x", c.x, dx, n, 1e-2f, 1e-3);
    check_input(&oc, "w", c.w, dw, C, 1e-2f, 1e-4);
    check_input(&oc, "b", c.b, db, C, 1e-2f, 1e-4);
}

/* ---- GELU and dropout ---- */
typedef struct { float *out, *x; long n; float p; int which; } elt_ctx;
static void elt_fwd(void *p)
{
    elt_ctx *c = p;
    if (c->which) dropout_forward(c->out, c->x, c->n, c->p, 42, 0);
    else gelu_forward(c->out, c->x, c->n);
}

static void test_elementwise(void)
{
    long n = 200;
    elt_ctx c = {zeros(n), randn(n, 2), n, 0.3f, 0};
    float *r = randn(n, 1), *dx = zeros(n);
    gelu_backward(dx, c.x, r, n);
    op_check oc = {"gelu", elt_fwd, &c, c.out, r, n};
    check_input(&oc, "x", c.x, dx, n, 1e-2f, 1e-4);
    c.which = 1;
    memset(dx, 0, (size_t)n * sizeof *dx);
    dropout_backward(dx, r, n, c.p, 42, 0);
    op_check od = {"dropout", elt_fwd, &c, c.out, r, n};
    check_input(&od, "x", c.x, dx, n, 1e-2f, 1e-5);
    long kept = 0;
    dropout_forward(c.out, c.x, n, c.p, 42, 0);
    for (long i = 0; i < n; i++) kept += c.out[i] != 0;
    CHECK(kept > n * 0.55 && kept < n * 0.85, "dropout 0.3 kept %ld of %ld", kept, n);
}

/* ---- convolutions ---- */
typedef struct { float *out, *x, *w, *b, *scratch; conv_shape s; } conv_ctx;
static void conv_fwd(void *p) { conv_ctx *c = p; conv1d_forward(c->out, c->x, c->w, c->b, &c->s, c->scratch); }

static void test_conv(const char *name, conv_shape s)
{
    long nx = (long)s.B * s.Tin * s.Cin, no = (long)s.B * s.Tout * s.Cout, nw = (long)s.Cout * (s.Cin / s.G) * s.K;
    conv_ctx c = {zeros(no), randn(nx, 1), randn(nw, 0.5f), randn(s.Cout, 0.5f), zeros(conv1d_scratch(&s)), s};
    float *r = randn(no, 1), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(s.Cout);
    conv1d_backward(dx, dw, db, r, c.x, c.w, &c.s, c.scratch);
    op_check oc = {name, conv_fwd, &c, c.out, r, no};
    check_input(&oc, "x", c.x, dx, nx, 1e-2f, 1e-4);
    check_input(&oc, "w", c.w, dw, nw, 1e-2f, 1e-4);
    check_input(&oc, "b", c.b, db, s.Cout, 1e-2f, 1e-4);
    /* and the forward against the definition, for one output */
    conv_fwd(&c);
    int cg = s.Cin / s.G, cgo = s.Cout / s.G, b = s.B - 1, t = s.Tout / 2, o = s.Cout - 1, g = o / cgo;
    double want = c.b[o];
    for (int k = 0; k < s.K; k++)
        for (int ci = 0; ci < cg; ci++) {
            int ti = t * s.S + k - s.P;
            if (ti >= 0 && ti < s.Tin)
                want += (double)c.w[((long)o * cg + ci) * s.K + k] * c.x[((long)b * s.Tin + ti) * s.Cin + g * cg + ci];
        }
    float got = c.out[((long)b * s.Tout + t) * s.Cout + o];
    CHECK(fabs(got - want) < 1e-4, "%s forward: %.6f vs %.6f", name, got, want);
}

typedef struct { float *w, *g, *v; int rows, K; } wn_ctx;
static void wn_fwd(void *p) { wn_ctx *c = p; weightnorm_forward(c->w, c->g, c->v, c->rows, c->K); }

static void test_weightnorm(void)
{
    int rows = 12, K = 4;
    wn_ctx c = {zeros(rows * K), randn(K, 1), randn(rows * K, 1), rows, K};
    float *r = randn(rows * K, 1), *dg = zeros(K), *dv = zeros(rows * K);
    weightnorm_backward(dg, dv, r, c.g, c.v, rows, K);
    op_check oc = {"weightnorm", wn_fwd, &c, c.w, r, rows * K};
    check_input(&oc, "g", c.g, dg, K, 1e-2f, 1e-4);
    check_input(&oc, "v", c.v, dv, rows * K, 1e-2f, 1e-3);
}

/* ---- attention ---- */
typedef struct { float *ctx, *probs, *q, *k, *v, *scratch; int *valid, B, T, H, nh; float p; } att_ctx;
static void att_fwd(void *p)
{
    att_ctx *c = p;
    attention_forward(c->ctx, c->probs, c->q, c->k, c->v, c->valid, c->B, c->T, c->H, c->nh, c->p, 7, 0, c->scratch);
}

static void test_attention(float p, int masked)
{
    int B = 2, T = 6, H = 8, nh = 2;
    long n = (long)B * T * H;
    static int valid[2] = {6, 4};
    att_ctx c = {zeros(n), zeros((long)B * nh * T * T), randn(n, 1), randn(n, 1), randn(n, 1),
                 zeros(attention_scratch(T)), masked ? valid : NULL, B, T, H, nh, p};
    float *r = randn(n, 1), *dq = zeros(n), *dk = zeros(n), *dv = zeros(n);
    att_fwd(&c);
    attention_backward(dq, dk, dv, r, c.probs, c.q, c.k, c.v, B, T, H, nh, p, 7, 0, c.scratch);
    char name[64];
    snprintf(name, sizeof name, "attention(p=%.1f%s)", p, masked ? ", masked" : "");
    op_check oc = {name, att_fwd, &c, c.ctx, r, n};
    check_input(&oc, "q", c.q, dq, n, 1e-2f, 1e-3);
    check_input(&oc, "k", c.k, dk, n, 1e-2f, 1e-3);
    check_input(&oc, "v", c.v, dv, n, 1e-2f, 1e-4);
    if (masked) { /* masked keys get no weight */
        double wsum = 0;
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < T; i++)
                for (int j = valid[1]; j < T; j++) wsum += c.probs[((1l * nh + h) * T + i) * T + j];
        CHECK(wsum == 0, "masked keys got weight %g", wsum);
    }
}

/* ---- head ---- */
typedef struct { float *out, **hs, *lw; int L; long n; } ls_ctx;
static void ls_fwd(void *p) { ls_ctx *c = p; layersum_forward(c->out, c->hs, c->lw, c->L, c->n); }

static void test_head(void)
{
    int L = 3;
    long n = 20;
    float *hs[3] = {randn(n, 1), randn(n, 1), randn(n, 1)}, *dhs[3] = {zeros(n), zeros(n), zeros(n)};
    ls_ctx c = {zeros(n), hs, randn(L, 1), L, n};
    float *r = randn(n, 1), *dlw = zeros(L);
    layersum_backward(dhs, dlw, r, hs, c.lw, L, n);
    op_check oc = {"layersum", ls_fwd, &c, c.out, r, n};
    check_input(&oc, "layer_weights", c.lw, dlw, L, 1e-2f, 1e-4);
    check_input(&oc, "hs[1]", hs[1], dhs[1], n, 1e-2f, 1e-4);

    /* mean pooling: the gradient spreads over the valid frames only */
    int valid[2] = {3, 5};
    float *x = randn(2 * 5 * 2, 1), pooled[4], dpool[4] = {1, 2, 3, 4}, *dx = zeros(20);
    meanpool_forward(pooled, x, valid, 2, 5, 2);
    CHECK(fabsf(pooled[0] - (x[0] + x[2] + x[4]) / 3) < 1e-6f, "meanpool over valid frames");
    meanpool_backward(dx, dpool, valid, 2, 5, 2);
    CHECK(dx[6] == 0 && fabsf(dx[0] - 1.0f / 3) < 1e-7f && fabsf(dx[11] - 4.0f / 5) < 1e-7f, "meanpool backward");

    /* cross-entropy: d loss / d logits = (softmax - onehot) / labelled */
    float logits[6] = {1, 2, 3, 0, 0, 5}, probs[6], dl[6] = {0};
    int64_t labels[2] = {2, -1};
    float loss = crossentropy_forward(probs, logits, labels, 2, 3);
    double want = -log(exp(3.0) / (exp(1.0) + exp(2.0) + exp(3.0)));
    CHECK(fabs(loss - want) < 1e-6, "cross-entropy %.7f vs %.7f", loss, want);
    crossentropy_backward(dl, probs, labels, 2, 3);
    CHECK(fabsf(dl[2] - (probs[2] - 1)) < 1e-7f && dl[3] == 0 && dl[5] == 0, "cross-entropy backward");
}

/* ---- the whole model, training mode ---- */
typedef struct { w2v_model *m; w2v_input in; w2v_run run; } model_ctx;
static double model_loss(model_ctx *c)
{
    char err[256];
    return w2v_model_forward(c->m, &c->in, &c->run, NULL, err, sizeof err);
}

/* The tiny model with every random draw on: dropout, LayerDrop, SpecAugment. */
static void model_config(w2v_config *cfg, int stable, int weighted)
{
    char err[256];
    CHECK(w2v_config_preset(cfg, "tiny", err, sizeof err) == 0, "%s", err);
    cfg->do_stable_layer_norm = stable;
    cfg->feat_extract_norm_layer = stable;
    cfg->conv_bias = stable;
    cfg->use_weighted_layer_sum = weighted;
    cfg->hidden_dropout = cfg->attention_dropout = cfg->activation_dropout = cfg->feat_proj_dropout = 0.1;
    cfg->layerdrop = 0.3;
    cfg->apply_spec_augment = 1;
    cfg->mask_time_prob = 0.2;
    cfg->mask_time_length = 3;
    cfg->mask_feature_prob = 0.2;
    cfg->mask_feature_length = 4;
    cfg->return_attention_mask = 1;
    char *labels[3] = {"a", "b", "c"};
    w2v_config_set_labels(cfg, 3, labels);
}

static void test_model(int stable, int weighted)
{
    w2v_config cfg;
    model_config(&cfg, stable, weighted);
    w2v_model *m = w2v_model_new(&cfg);
    w2v_model_init_weights(m, 5);
    int B = 3, T = 1400;
    float *x = randn((long)B * T, 1);
    int64_t lengths[3] = {1400, 1100, 900}, lab[3] = {0, 2, 1};
    for (int b = 0; b < B; b++)
        for (int t = (int)lengths[b]; t < T; t++) x[(long)b * T + t] = 0;
    model_ctx c = {m, {B, T, x, lengths, lab}, {1, 11, 3, 1}};
    /* a step whose draws skip a layer and mask both ways */
    for (c.run.step = 0; c.run.step < 1000; c.run.step++) {
        model_loss(&c);
        int64_t shape[3];
        const float *h1 = w2v_model_activation(m, "hidden_states.1", shape), *h2 = w2v_model_activation(m, "hidden_states.2", shape);
        if (!stable && !memcmp(h1, h2, (size_t)shape[0] * shape[1] * shape[2] * sizeof(float))) break;
        if (stable && w2v_model_param_has_grad(m, 1)) break;
    }
    w2v_model_zero_grad(m);
    model_loss(&c);
    w2v_model_backward(m, 1.0f);
    float *p = w2v_model_params(m, NULL), *g = w2v_model_grads(m, NULL);
    for (int i = 0; i < w2v_model_num_params(m); i++) {
        const w2v_param *pp = w2v_model_param(m, i);
        float *dir = malloc((size_t)pp->size * sizeof *dir), *p0 = malloc((size_t)pp->size * sizeof *p0);
        double ana = 0, scale = 0, h = 1e-2;
        memcpy(p0, p + pp->offset, (size_t)pp->size * sizeof *p0);
        for (long j = 0; j < pp->size; j++) {
            dir[j] = (w2v_rng_next(&rng) & 1) ? 1.0f : -1.0f;
            ana += (double)g[pp->offset + j] * dir[j];
            scale += fabs((double)g[pp->offset + j]);
        }
        for (long j = 0; j < pp->size; j++) p[pp->offset + j] = p0[j] + (float)h * dir[j];
        double lp = model_loss(&c);
        for (long j = 0; j < pp->size; j++) p[pp->offset + j] = p0[j] - (float)h * dir[j];
        double lm = model_loss(&c);
        memcpy(p + pp->offset, p0, (size_t)pp->size * sizeof *p0);
        double num = (lp - lm) / (2 * h), err2 = fabs(num - ana);
        /* float loss: ~1e-7 relative rounding over 2h (~6e-6), plus second-order terms */
        CHECK(err2 <= 0.02 * scale + 3e-5, "model(stable=%d, weighted=%d) d/d%s: analytic %.6g, numeric %.6g (|grad| sum %.3g)",
              stable, weighted, pp->name, ana, num, scale);
        free(dir);
        free(p0);
    }
    w2v_model_free(m);
    w2v_config_free(&cfg);
}

/* Data parallelism: a batch cut into one shard per thread gives what it
 * gives whole, to float rounding, with every random draw on (the draws
 * are keyed by the example's place in the batch, not by the shard). */
static void test_shards(int stable)
{
    w2v_config cfg;
    model_config(&cfg, stable, !stable);
    w2v_model *m = w2v_model_new(&cfg);
    w2v_model_init_weights(m, 9);
    int B = 5, T = 1400, n = cfg.num_labels, threads = w2v_threads();
    float *x = randn((long)B * T, 1);
    int64_t lengths[5] = {1400, 1100, 900, 1400, 1000}, lab[5] = {0, 2, 1, 1, 0};
    model_ctx c = {m, {B, T, x, lengths, lab}, {1, 11, 0, 1}};
    long np;
    float *g = w2v_model_grads(m, &np), *g1 = malloc((size_t)np * sizeof *g1), l1[15], lg[15];
    double loss1 = 0;
    /* a step whose draws mask some time frames (the backward undoes them) */
    while (c.run.step < 1000 && (model_loss(&c), !w2v_model_param_has_grad(m, cfg.use_weighted_layer_sum)))
        c.run.step++;
    for (int t = 1; t <= 3; t++) {
        w2v_set_threads(t);
        w2v_model_zero_grad(m);
        char err[256];
        double loss = w2v_model_forward(m, &c.in, &c.run, lg, err, sizeof err);
        w2v_model_backward(m, 1.0f);
        if (t == 1) {
            loss1 = loss;
            memcpy(l1, lg, sizeof l1);
            memcpy(g1, g, (size_t)np * sizeof *g1);
            continue;
        }
        float dl = 0;
        for (int j = 0; j < B * n; j++) dl = fmaxf(dl, fabsf(lg[j] - l1[j]));
        CHECK(fabs(loss - loss1) < 1e-6 && dl < 1e-6f, "shards(stable=%d, %d threads): loss %.8f vs %.8f, logits %.3g",
              stable, t, loss, loss1, dl);
        for (int i = 0; i < w2v_model_num_params(m); i++) {
            const w2v_param *pp = w2v_model_param(m, i);
            float d = 0, big = 0;
            for (long j = pp->offset; j < pp->offset + pp->size; j++) {
                d = fmaxf(d, fabsf(g[j] - g1[j]));
                big = fmaxf(big, fabsf(g1[j]));
            }
            CHECK(d <= 1e-5f * big + 1e-9f, "shards(stable=%d, %d threads) d/d%s: max|diff| %.3g of %.3g", stable, t,
                  pp->name, d, big);
        }
    }
    w2v_set_threads(threads);
    free(g1);
    w2v_model_free(m);
    w2v_config_free(&cfg);
}

/* The GELU's own erf and exp against libm's, in double. */
static void test_approximations(void)
{
    double werf = 0, wexp = 0;
    for (double x = -6; x <= 6; x += 1e-4) {
        double e = fabs((double)w2v_erf((float)x) - erf((double)(float)x));
        werf = e > werf ? e : werf;
    }
    for (double x = -87; x <= 0; x += 1e-3) {
        double want = exp((double)(float)x), e = fabs((double)w2v_exp_neg((float)x) - want) / want;
        wexp = e > wexp ? e : wexp;
    }
    CHECK(werf <= 5e-7, "erf: max |error| %.3g", werf);
    CHECK(wexp <= 3e-7, "exp: max relative error %.3g", wexp);
    printf("erf max |error| %.2e, exp max relative error %.2e\n", werf, wexp);
}

int main(void)
{
    w2v_rng_seed(&rng, 1234);
    test_approximations();
    test_linear();
    test_norm(0);
    test_norm(1);
    test_elementwise();
    test_conv("conv(feature encoder)", (conv_shape){2, 50, 9, 3, 4, 10, 5, 0, 1});
    test_conv("conv(stride=kernel)", (conv_shape){2, 12, 6, 4, 5, 2, 2, 0, 1});
    test_conv("conv(kernel not a multiple of the stride)", (conv_shape){2, 15, 6, 3, 4, 5, 2, 0, 1});
    test_conv("conv(positional, even kernel)", (conv_shape){2, 9, 9, 8, 8, 4, 1, 2, 4});
    test_conv("conv(positional, odd kernel)", (conv_shape){2, 9, 9, 6, 6, 3, 1, 1, 2});
    test_weightnorm();
    test_attention(0, 0);
    test_attention(0, 1);
    test_attention(0.2f, 1);
    test_head();
    test_model(0, 0);
    test_model(1, 1);
    test_shards(0);
    test_shards(1);
    free_buffers();
    return unit_finish("test_gradcheck");
}
