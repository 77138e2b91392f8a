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

/* affine 0: LayerNorm without weight and bias (data2vec-audio's positional
 * convs): the affine op with weight 1, bias 0 and no parameter gradients. */
static void test_norm(int group, int affine)
{
    int B = 2, T = 9, C = 5;
    long n = (long)B * T * C;
    norm_ctx c = {zeros(n), zeros(B * T * C), zeros(B * T * C), randn(n, 2), randn(C, 1), randn(C, 1), B, T, C, group};
    for (long i = 0; i < n; i++) c.x[i] += 0.5f; /* a mean away from zero */
    for (int i = 0; i < C && !affine; i++) c.w[i] = 1, c.b[i] = 0;
    float *r = randn(n, 1), *dx = zeros(n), *dw = affine ? zeros(C) : NULL, *db = affine ? zeros(C) : NULL;
    norm_fwd(&c);
    if (group) groupnorm_backward(dx, dw, db, r, c.x, c.w, c.mean, c.rstd, B, T, C);
    else layernorm_backward(dx, dw, db, r, c.x, c.w, c.mean, c.rstd, B * T, C);
    op_check oc = {group ? "groupnorm" : affine ? "layernorm" : "layernorm(no affine)", norm_fwd, &c, c.out, r, n};
    check_input(&oc, "x", c.x, dx, n, 1e-2f, 1e-3);
    if (!affine) {
        /* and each row comes out with mean 0 and variance 1 */
        double worst = 0;
        for (int row = 0; row < B * T; row++) {
            double m = 0, v = 0;
            for (int j = 0; j < C; j++) m += c.out[row * C + j] / C;
            for (int j = 0; j < C; j++) v += (c.out[row * C + j] - m) * (c.out[row * C + j] - m) / C;
            worst = fmax(worst, fmax(fabs(m), fabs(v - 1)));
        }
        CHECK(worst < 1e-3, "layernorm(no affine): rows off mean 0, variance 1 by %.3g", worst);
        return;
    }
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
typedef struct { float *out, *x, *w, *wr, *b, *scratch; conv_shape s; } conv_ctx;
static void conv_fwd(void *p)
{
    conv_ctx *c = p;
    conv1d_reorder(c->wr, c->w, &c->s);
    conv1d_forward(c->out, c->x, c->wr, c->b, &c->s, c->scratch);
}

static void test_conv(const char *name, conv_shape s)
{
    long nx = (long)s.B * s.Tin * s.Cin, no = (long)s.B * s.Tout * s.Cout, nw = (long)s.Cout * (s.Cin / s.G) * s.K;
    conv_ctx c = {zeros(no), randn(nx, 1), randn(nw, 0.5f), zeros(nw), randn(s.Cout, 0.5f), zeros(conv1d_scratch(&s)), s};
    float *r = randn(no, 1), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(s.Cout);
    conv1d_reorder(c.wr, c.w, &s);
    conv1d_backward_data(dx, r, c.wr, &s, c.scratch);
    for (int g = 0; g < s.G; g++) conv1d_backward_weight(dw, r, c.x, &s, g, c.scratch);
    column_sum(db, r, (long)s.B * s.Tout, s.Cout);
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
typedef struct { float *ctx, *probs, *q, *k, *v, *scratch; int *valid, B, T, H, nh; float p; attn_bias *rb; } att_ctx;
static void att_fwd(void *p)
{
    att_ctx *c = p;
    attention_forward(c->ctx, c->probs, c->q, c->k, c->v, c->valid, c->rb, c->B, c->T, c->H, c->nh, c->p, 7, 0,
                      c->scratch);
}

/* biased: WavLM's gated bias added to the scores */
static void test_attention(float p, int masked, int biased)
{
    int B = 2, T = 6, H = 8, nh = 2;
    long n = (long)B * T * H, nb = (long)nh * T * T;
    static int valid[2] = {6, 4};
    att_ctx c = {zeros(n), zeros((long)B * nh * T * T), randn(n, 1), randn(n, 1), randn(n, 1),
                 zeros(attention_scratch(T)), masked ? valid : NULL, B, T, H, nh, p, NULL};
    attn_bias rb = {0};
    if (biased) {
        rb = (attn_bias){randn(nb, 1), randn((long)B * T * nh, 1), zeros(B * nb), zeros((long)B * T * nh)};
        c.rb = &rb;
    }
    float *r = randn(n, 1), *dq = zeros(n), *dk = zeros(n), *dv = zeros(n);
    att_fwd(&c);
    attention_backward(dq, dk, dv, r, c.probs, c.q, c.k, c.v, c.rb, B, T, H, nh, p, 7, 0, c.scratch);
    char name[64];
    snprintf(name, sizeof name, "attention(p=%.1f%s%s)", p, masked ? ", masked" : "", biased ? ", biased" : "");
    op_check oc = {name, att_fwd, &c, c.ctx, r, n};
    check_input(&oc, "q", c.q, dq, n, 1e-2f, 1e-3);
    check_input(&oc, "k", c.k, dk, n, 1e-2f, 1e-3);
    check_input(&oc, "v", c.v, dv, n, 1e-2f, 1e-4);
    if (biased) {
        /* the bias is shared by the examples: its gradient is their sum */
        float *dbias = zeros(nb);
        for (long j = 0; j < nb; j++) dbias[j] = rb.dbias[j] + rb.dbias[nb + j];
        check_input(&oc, "bias", (float *)rb.bias, dbias, nb, 1e-2f, 1e-3);
        check_input(&oc, "gate", (float *)rb.gate, rb.dgate, (long)B * T * nh, 1e-2f, 1e-3);
    }
    if (masked) { /* masked keys get no weight */
        double wsum = 0;
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < T; i++)
                for (int j = valid[1]; j < T; j++) wsum += c.probs[((1l * nh + h) * T + i) * T + j];
        CHECK(wsum == 0, "masked keys got weight %g", wsum);
    }
}

/* ---- WavLM's gated relative position bias ---- */
static void test_relpos_bucket(void)
{
    /* by hand from _relative_positions_bucket: wavlm-base's 320 buckets to
     * 800 frames (80 exact, 80 logarithmic per sign), and the tiny 16 to 40 */
    static const int cases[][4] = {
        {0, 320, 800, 0},     {-5, 320, 800, 5},      {5, 320, 800, 165},    {79, 320, 800, 239},
        {80, 320, 800, 240},  {100, 320, 800, 247},   {-100, 320, 800, 87},  {800, 320, 800, 319},
        {-10000, 320, 800, 159}, {3, 16, 40, 11},     {4, 16, 40, 12},       {10, 16, 40, 13},
        {-39, 16, 40, 7},     {-40, 16, 40, 7},       {68, 16, 40, 15},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int got = relpos_bucket(cases[i][0], cases[i][1], cases[i][2]);
        CHECK(got == cases[i][3], "relpos_bucket(%d, %d, %d) = %d, not %d", cases[i][0], cases[i][1], cases[i][2], got,
              cases[i][3]);
    }
}

typedef struct { float *bias, *embed; int T, nh, nb, md; } rb_ctx;
static void rb_fwd(void *p)
{
    rb_ctx *c = p;
    relpos_bias_forward(c->bias, c->embed, c->T, c->nh, c->nb, c->md);
}

typedef struct { float *gate, *gl, *x, *w, *b, *c; int N, nh, hd; } gate_ctx;
static void gate_fwd(void *p)
{
    gate_ctx *c = p;
    relgate_forward(c->gate, c->gl, c->x, c->w, c->b, c->c, c->N, c->nh, c->hd);
}

static void test_relpos(void)
{
    /* the bias: a lookup; two examples' gradients summed into the embedding */
    int T = 13, nh = 3, nb = 8, md = 10;
    long n = (long)nh * T * T;
    rb_ctx c = {zeros(n), randn(nb * nh, 1), T, nh, nb, md};
    float *r0 = randn(2 * n, 1), *r = zeros(n), *de = zeros(nb * nh);
    for (long j = 0; j < n; j++) r[j] = r0[j] + r0[n + j];
    relpos_bias_backward(de, r0, 2, T, nh, nb, md);
    op_check oc = {"relpos_bias", rb_fwd, &c, c.bias, r, n};
    check_input(&oc, "embed", c.embed, de, nb * nh, 1e-2f, 1e-4);
    rb_fwd(&c);
    CHECK(c.bias[(1l * T + 2) * T + 9] == c.embed[relpos_bucket(7, nb, md) * nh + 1], "relpos_bias: a lookup");

    /* the gate */
    int N = 11, hd = 4;
    gate_ctx g = {zeros(N * nh), zeros(N * nh * 8), randn(N * nh * hd, 1), randn(8 * hd, 0.5f), randn(8, 0.5f),
                  randn(nh, 1), N, nh, hd};
    float *rg = randn(N * nh, 1), *dx = zeros(N * nh * hd), *dw = zeros(8 * hd), *db = zeros(8), *dc = zeros(nh);
    gate_fwd(&g);
    relgate_backward(dx, dw, db, dc, zeros(N * nh * 8), rg, g.x, g.w, g.gl, g.c, N, nh, hd);
    op_check og = {"relgate", gate_fwd, &g, g.gate, rg, N * nh};
    /* through the sigmoids: the step's truncation error is 1e-3 of these */
    check_input(&og, "x", g.x, dx, N * nh * hd, 1e-2f, 1e-3);
    check_input(&og, "w", g.w, dw, 8 * hd, 1e-2f, 1e-3);
    check_input(&og, "b", g.b, db, 8, 1e-2f, 1e-4);
    check_input(&og, "c", g.c, dc, nh, 1e-2f, 1e-4);
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
typedef struct {
    w2v_model *m;
    w2v_input in;
    w2v_run run;
    float *logits, *base; /* [B, labels]: the last forward's, and the unperturbed step's */
} model_ctx;

/* The forward pass, and the loss taken again from its logits in double:
 * the mean cross-entropy over labelled examples, as crossentropy_forward.
 * The float loss the forward returns rounds at 6e-8 of itself; in double
 * the finite differences see only the logits' own rounding. */
static double model_loss(model_ctx *c)
{
    char err[256];
    int n = w2v_model_config(c->m)->num_labels, counted = 0;
    if (w2v_model_forward(c->m, &c->in, &c->run, c->logits, err, sizeof err) < 0) CHECK(0, "model forward: %s", err);
    double loss = 0;
    for (int b = 0; b < c->in.B; b++) {
        if (c->in.labels[b] < 0) continue;
        const float *z = c->logits + (long)b * n;
        double mx = z[0], sum = 0;
        for (int i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
        for (int i = 0; i < n; i++) sum += exp(z[i] - mx);
        loss += log(sum) + mx - z[c->in.labels[b]];
        counted++;
    }
    return counted ? loss / counted : 0;
}

/* How many examples' logits the n values x reach at this step: they all
 * move by delta, and an example whose logits stay the same to the bit
 * never read them (a layer LayerDrop skipped, a channel a feature span
 * zeroed).  which[b], where given, says which did. */
static int reaches(model_ctx *c, float *x, long n, float delta, int *which)
{
    int nl = w2v_model_config(c->m)->num_labels, count = 0;
    float *x0 = malloc((size_t)n * sizeof *x0);
    memcpy(x0, x, (size_t)n * sizeof *x0);
    for (long j = 0; j < n; j++) x[j] += delta;
    model_loss(c);
    memcpy(x, x0, (size_t)n * sizeof *x0); /* x + delta - delta need not be x */
    free(x0);
    for (int b = 0; b < c->in.B; b++) {
        int w = memcmp(c->logits + (long)b * nl, c->base + (long)b * nl, (size_t)nl * sizeof(float)) != 0;
        if (which) which[b] = w;
        count += w;
    }
    return count;
}

/* The step's logits with nothing moved: what reaches compares with. */
static void set_base(model_ctx *c)
{
    model_loss(c);
    memcpy(c->base, c->logits, (size_t)c->in.B * w2v_model_config(c->m)->num_labels * sizeof *c->base);
}

static float *param_values(w2v_model *m, const char *name)
{
    const w2v_param *p = w2v_model_find_param(m, name);
    if (!p) {
        fprintf(stderr, "no parameter %s\n", name);
        abort();
    }
    return w2v_model_params(m, NULL) + p->offset;
}

static int layer_of(const w2v_param *p)
{
    int i;
    const char *s = strstr(p->name, ".encoder.layers.");
    return s && sscanf(s, ".encoder.layers.%d.", &i) == 1 ? i : -1;
}

/* A parameter's name under the model's family prefix. */
static const char *pname(w2v_model *m, const char *rest)
{
    static char name[128];
    snprintf(name, sizeof name, "%s.%s", w2v_config_prefix(w2v_model_config(m)), rest);
    return name;
}

/* _init_weights leaves every bias at 0 and every linear weight at std 0.02:
 * attention is then near uniform (q and k get almost no gradient) and where
 * a bias is added cannot be seen (q scaled before or after its bias).  So
 * every parameter gets a size at which each path counts: linear weights
 * std 1/sqrt(fan-in), biases and norm weights 0.2 off their init. */
static void spread_weights(w2v_model *m)
{
    float *p = w2v_model_params(m, NULL);
    for (int i = 0; i < w2v_model_num_params(m); i++) {
        const w2v_param *pp = w2v_model_param(m, i);
        float *x = p + pp->offset;
        size_t len = strlen(pp->name);
        int bias = len > 4 && !strcmp(pp->name + len - 4, "bias"), norm = strstr(pp->name, "norm.weight") != NULL;
        for (long j = 0; j < pp->size; j++) {
            if (pp->ndim == 2) x[j] = (float)(w2v_rng_normal(&rng) / sqrt((double)pp->shape[1]));
            else if (bias || norm || !strcmp(pp->name, "layer_weights")) x[j] += (float)(0.2 * w2v_rng_normal(&rng));
        }
    }
}

/* The tiny model of a family with every random draw on: dropout,
 * LayerDrop, SpecAugment.  Each family's option is on: HuBERT without the
 * feature projection's LayerNorm, data2vec-audio's stack with an even
 * kernel (the last frame dropped), WavLM's bias with distances past
 * max_bucket_distance (the frames here: 69). */
static void model_config(w2v_config *cfg, w2v_family family, int stable, int weighted)
{
    char err[256], json[1024];
    static const char *const options[] = {
        [W2V_HUBERT] = "\"model_type\":\"hubert\",\"feat_proj_layer_norm\":false,\"num_conv_pos_embeddings\":16",
        [W2V_DATA2VEC_AUDIO] = "\"model_type\":\"data2vec-audio\",\"num_conv_pos_embeddings\":2,\"conv_pos_kernel_size\":4",
        [W2V_WAVLM] = "\"model_type\":\"wavlm\",\"num_conv_pos_embeddings\":16,\"num_buckets\":16,"
                      "\"max_bucket_distance\":40",
    };
    snprintf(json, sizeof json,
             "{\"conv_dim\":[16,16,16],\"conv_kernel\":[10,3,3],\"conv_stride\":[5,2,2],\"hidden_size\":32,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":64,"
             "\"num_conv_pos_embedding_groups\":4,\"classifier_proj_size\":8,%s}",
             family == W2V_WAV2VEC2 ? "\"model_type\":\"wav2vec2\"" : options[family]);
    if (family == W2V_WAV2VEC2) CHECK(w2v_config_preset(cfg, "tiny", err, sizeof err) == 0, "%s", err);
    else CHECK(w2v_config_parse(cfg, json, NULL, err, sizeof err) == 0, "%s", err);
    if (family != W2V_DATA2VEC_AUDIO) { /* whose conv encoder has LayerNorms, post-LN */
        cfg->do_stable_layer_norm = stable;
        cfg->feat_extract_norm_layer = stable;
    }
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

/* The central difference of the loss along dir (n values from x) with
 * step h, and in *ana the analytic gradient along the same displacement:
 * the one stored, which float rounding moves off h dir. */
static double central(model_ctx *c, float *x, const float *g, const double *dir, long n, double h, double *ana)
{
    float *x0 = malloc((size_t)n * sizeof *x0);
    memcpy(x0, x, (size_t)n * sizeof *x0);
    double a = 0;
    for (long j = 0; j < n; j++) {
        x[j] = (float)(x0[j] + h * dir[j]);
        a += (double)g[j] * ((double)x[j] - x0[j]);
    }
    double lp = model_loss(c);
    for (long j = 0; j < n; j++) {
        x[j] = (float)(x0[j] - h * dir[j]);
        a -= (double)g[j] * ((double)x[j] - x0[j]);
    }
    double lm = model_loss(c);
    memcpy(x, x0, (size_t)n * sizeof *x0);
    free(x0);
    *ana = a / (2 * h);
    return (lp - lm) / (2 * h);
}

/* Each comparison: |numeric - analytic| within GC_RTOL of the larger, plus
 * GC_NOISE / 2h.  The forward rounds in float, and its logits (of order 1,
 * ulp 1.2e-7) put an error of a few 1e-7 in the loss that no step shrinks:
 * up to 2e-7 seen between forwards 2 ulp of one parameter apart, 4e-7 in
 * a central difference; the floor allows 1e-6.  Steps of 1.5e-2 of a value
 * (4e-3 of the tensor's rms along a direction) keep the truncation error
 * to a few 1e-3 of the derivative.  Over seeds the worst error was 0.4 of
 * its tolerance; each bug this test was tried on (a sign, attention
 * dropout or SpecAugment left out of a backward, q's bias after its scale)
 * had checks off by over 100 times theirs. */
#define GC_RTOL 5e-3
#define GC_NOISE 1e-6

typedef struct {
    const char *name;
    double worst_rel;    /* |num - ana| / max(|num|, |ana|), where the noise floor is under 1% of that */
    double worst_margin; /* error / tolerance */
} gc_stats;

static void compare(gc_stats *s, const char *what, long j, double num, double ana, double h)
{
    double err = fabs(num - ana), big = fmax(fabs(num), fabs(ana)), noise = GC_NOISE / (2 * h);
    double tol = GC_RTOL * big + noise;
    CHECK(err <= tol, "%s d/d%s[%ld]: analytic %.7g, numeric %.7g (error %.3g, tolerance %.3g)", s->name, what, j, ana,
          num, err, tol);
    if (big > 100 * noise && err / big > s->worst_rel) s->worst_rel = err / big;
    if (err / tol > s->worst_margin) s->worst_margin = err / tol;
}

/* Every parameter's gradient from w2v_model_backward at the run's step
 * against finite differences of model_loss: the largest element, three at
 * random ([j] in messages) and two random directions through the whole
 * tensor ([-1], [-2]).  A parameter the step gives no gradient (has_grad
 * 0, or in a layer marked in skipped) must get exactly 0 and reach no logit;
 * every other must get more than rounding (masked_spec_embed too, which
 * has_grad gives one when time spans exist), but k_proj.bias: the softmax
 * over keys ignores q.b_k, the same for every key, so its gradient is 0
 * but for rounding. */
static void check_grads(model_ctx *c, const int *skipped, gc_stats *s)
{
    w2v_model *m = c->m;
    long np;
    w2v_model_zero_grad(m);
    set_base(c);
    w2v_model_backward(m, 1.0f);
    float *p = w2v_model_params(m, NULL), *g = w2v_model_grads(m, &np);
    double gall = 0;
    for (long j = 0; j < np; j++) gall = fmax(gall, fabs(g[j]));
    for (int i = 0; i < w2v_model_num_params(m); i++) {
        const w2v_param *pp = w2v_model_param(m, i);
        float *x = p + pp->offset, *gx = g + pp->offset;
        int layer = layer_of(pp), expect = w2v_model_param_has_grad(m, i) && !(layer >= 0 && skipped[layer]);
        double gmax = 0, rms = 0;
        long jmax = 0;
        for (long j = 0; j < pp->size; j++) {
            rms += (double)x[j] * x[j];
            if (fabs(gx[j]) > gmax) gmax = fabs(gx[j]), jmax = j;
        }
        rms = rms > 0 ? sqrt(rms / pp->size) : 1;
        if (!expect) {
            CHECK(gmax == 0, "%s: %s should get no gradient: max |grad| %.3g", s->name, pp->name, gmax);
            CHECK(!reaches(c, x, pp->size, 1.0f, NULL), "%s: %s gets no gradient, yet moves the logits", s->name,
                  pp->name);
            continue;
        }
        /* every tensor's largest gradient here is above 1e-2 of the
         * model's (but one, below); k_proj.bias's is 1e-8 of it */
        if (strstr(pp->name, "k_proj.bias"))
            CHECK(gmax <= 1e-6 * gall, "%s: %s should be 0 but for rounding: max |grad| %.3g of %.3g", s->name,
                  pp->name, gmax, gall);
        else
            /* but WavLM's gate (gru_rel_pos_*): its gradient, per frame and
             * head the covariance of the scores' gradient with the position
             * bias, largely cancels over the frames: 1e-4 to 1e-3 of the
             * model's here */
            CHECK(gmax > (strstr(pp->name, "gru_rel_pos_") ? 1e-5 : 1e-3) * gall,
                  "%s: %s has a trivial gradient: max |grad| %.3g of %.3g", s->name, pp->name, gmax, gall);
        double one = 1, ana, num, h;
        for (int e = 0; e < 4; e++) {
            long j = e ? (long)w2v_rng_below(&rng, (uint64_t)pp->size) : jmax;
            h = 1.5e-2 * fmax(fabs(x[j]), rms);
            num = central(c, x + j, gx + j, &one, 1, h, &ana);
            compare(s, pp->name, j, num, ana, h);
        }
        double *dir = malloc((size_t)pp->size * sizeof *dir);
        for (int e = 0; e < 2; e++) {
            for (long j = 0; j < pp->size; j++) dir[j] = rms * w2v_rng_normal(&rng);
            num = central(c, x, gx, dir, pp->size, 4e-3, &ana);
            compare(s, pp->name, -1 - e, num, ana, 4e-3);
        }
        free(dir);
    }
}

/* The whole model in training mode at a step whose draws are asserted,
 * not hoped for: post-LN with exactly one layer skipped by LayerDrop (its
 * parameters must get nothing), pre-LN with none (every layer checked);
 * then the same in evaluation, where nothing is drawn. */
static void test_model(w2v_family family, int stable, int weighted)
{
    w2v_config cfg;
    model_config(&cfg, family, stable, weighted);
    w2v_model *m = w2v_model_new(&cfg);
    w2v_model_init_weights(m, 5);
    spread_weights(m);
    int B = 4, T = 1400, L = cfg.num_hidden_layers, H = cfg.hidden_size, nl = cfg.num_labels;
    float *x = randn((long)B * T, 1);
    /* the last example unlabelled: it is in the batch, not in the loss */
    int64_t lengths[4] = {1400, 1100, 900, 1250}, lab[4] = {0, 2, 1, -1};
    for (int b = 0; b < B; b++)
        for (int t = (int)lengths[b]; t < T; t++) x[(long)b * T + t] = 0;
    model_ctx c = {m, {.B = B, .T = T, .x = x, .lengths = lengths, .labels = lab}, {1, 11, 0, 1}, zeros((long)B * nl), zeros((long)B * nl)};
    char name[96];
    snprintf(name, sizeof name, "model(%s, stable=%d, weighted=%d)", w2v_config_model_type(&cfg), stable, weighted);
    gc_stats s = {name, 0, 0};
    int skip[8] = {0}, none[8] = {0}, nskip = -1, want = stable ? 0 : 1, which[4];
    CHECK(L <= 8, "%s: %d layers", name, L);

    /* a layer is skipped when its final_layer_norm.bias reaches no logit */
    for (c.run.step = 0; c.run.step < 100; c.run.step++) {
        set_base(&c);
        nskip = 0;
        for (int i = 0; i < L && i < 8; i++) {
            char pn[96];
            snprintf(pn, sizeof pn, "encoder.layers.%d.final_layer_norm.bias", i);
            nskip += skip[i] = !reaches(&c, param_values(m, pname(m, pn)), 1, 1.0f, NULL);
        }
        if (nskip == want) break;
    }
    CHECK(nskip == want, "%s: no step in 100 where LayerDrop skips %d layers", name, want);
    if (nskip != want) goto done;

    /* The step's other draws: hidden dropout (p 0.1) zeroes a tenth of
     * hidden_states.0 over the valid frames; time spans take
     * masked_spec_embed; a feature span cuts a channel off, so that a
     * push to its projection bias moves no logit of that example. */
    set_base(&c);
    int64_t shape[3];
    const float *h0 = w2v_model_activation(m, "hidden_states.0", shape);
    const int *valid = w2v_model_valid_frames(m);
    long zero = 0, all = 0;
    for (int b = 0; b < B; b++)
        for (long j = 0; j < valid[b] * shape[2]; j++, all++) zero += h0[b * shape[1] * shape[2] + j] == 0;
    CHECK(zero > 0.07 * all && zero < 0.13 * all, "%s: dropout zeroed %ld of %ld in hidden_states.0", name, zero, all);
    const w2v_param *mse = w2v_model_find_param(m, pname(m, "masked_spec_embed"));
    int imse = (int)(mse - w2v_model_param(m, 0)), timed = reaches(&c, param_values(m, mse->name), H, 1.0f, NULL);
    CHECK(timed > 0, "%s: no time span (no example reads masked_spec_embed)", name);
    float *fpb = param_values(m, pname(m, "feature_projection.projection.bias"));
    int cut = 0;
    for (int ch = 0; ch < H; ch++) {
        reaches(&c, fpb + ch, 1, 1.0f, which);
        for (int b = 0; b < B; b++) cut += !which[b];
    }
    CHECK(cut > 0 && cut < B * H / 2, "%s: feature spans cut %d of %d channels", name, cut, B * H);
    check_grads(&c, skip, &s);
    CHECK(w2v_model_param_has_grad(m, imse), "%s: masked_spec_embed, which %d examples read, has no gradient", name,
          timed);
    printf("%s: step %d, %d layers skipped, %.1f%% dropped, %d examples with time spans, %d channels cut: "
           "worst relative error %.2e, worst error/tolerance %.2f\n",
           name, (int)c.run.step, nskip, 100.0 * zero / all, timed, cut, s.worst_rel, s.worst_margin);

    /* evaluation: masked_spec_embed gets nothing, every layer something */
    c.run.training = 0;
    s.worst_rel = s.worst_margin = 0;
    check_grads(&c, none, &s);
    CHECK(!w2v_model_param_has_grad(m, imse), "%s: masked_spec_embed has a gradient in evaluation", name);
    printf("%s in evaluation: worst relative error %.2e, worst error/tolerance %.2f\n", name, s.worst_rel,
           s.worst_margin);
done:
    w2v_model_free(m);
    w2v_config_free(&cfg);
}

/* Data parallelism: a batch cut into one shard per thread gives what it
 * gives whole, to float rounding, with every random draw on (the draws
 * are keyed by the example's place in the batch, not by the shard). */
static void test_shards(int stable)
{
    w2v_config cfg;
    model_config(&cfg, W2V_WAV2VEC2, stable, !stable);
    w2v_model *m = w2v_model_new(&cfg);
    w2v_model_init_weights(m, 9);
    int B = 5, T = 1400, n = cfg.num_labels, threads = w2v_threads();
    float *x = randn((long)B * T, 1);
    int64_t lengths[5] = {1400, 1100, 900, 1400, 1000}, lab[5] = {0, 2, 1, 1, 0};
    model_ctx c = {m, {.B = B, .T = T, .x = x, .lengths = lengths, .labels = lab}, {1, 11, 0, 1}, zeros((long)B * n), NULL};
    long np;
    float *g = w2v_model_grads(m, &np), *g1 = malloc((size_t)np * sizeof *g1), l1[15], lg[15];
    double loss1 = 0;
    /* a step whose draws mask some time frames (the backward undoes them):
     * masked_spec_embed, parameter 0 or 1, gets a gradient */
    for (; c.run.step < 1000; c.run.step++) {
        w2v_model_zero_grad(m);
        model_loss(&c);
        w2v_model_backward(m, 1.0f);
        if (w2v_model_param_has_grad(m, cfg.use_weighted_layer_sum)) break;
    }
    CHECK(c.run.step < 1000, "shards(stable=%d): no step in 1000 masks a time frame", stable);
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
    test_norm(0, 1);
    test_norm(1, 1);
    test_elementwise();
    test_conv("conv(feature encoder)", (conv_shape){2, 50, 9, 3, 4, 10, 5, 0, 1});
    test_conv("conv(stride=kernel)", (conv_shape){2, 12, 6, 4, 5, 2, 2, 0, 1});
    test_conv("conv(kernel not a multiple of the stride)", (conv_shape){2, 15, 6, 3, 4, 5, 2, 0, 1});
    test_conv("conv(positional, even kernel)", (conv_shape){2, 9, 9, 8, 8, 4, 1, 2, 4});
    test_conv("conv(positional, odd kernel)", (conv_shape){2, 9, 9, 6, 6, 3, 1, 1, 2});
    test_weightnorm();
    test_attention(0, 0, 0);
    test_attention(0, 1, 0);
    test_attention(0.2f, 1, 0);
    test_head();
    test_model(W2V_WAV2VEC2, 0, 0);
    test_model(W2V_WAV2VEC2, 1, 1);
    test_shards(0);
    test_shards(1);
    /* the other families' ops and models (after the rest, whose draws stay as they were) */
    test_norm(0, 0);
    test_relpos_bucket();
    test_relpos();
    test_attention(0.2f, 1, 1);
    test_model(W2V_HUBERT, 0, 0);
    test_model(W2V_DATA2VEC_AUDIO, 0, 1);
    test_model(W2V_WAVLM, 0, 0);
    test_model(W2V_WAVLM, 1, 1);
    free_buffers();
    return unit_finish("test_gradcheck");
}
