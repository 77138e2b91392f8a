/* bf16 mixed precision (w2v_run.bf16, torch.autocast's rule: the matrix
 * products take bf16 inputs and accumulate in fp32).
 *
 * 1. The rounding: to nearest even, NaN kept.
 * 2. The GEMM entry in bf16 against products in double, on the
 *    transposition cases, odd sizes, leading dimensions and betas the
 *    library passes (linear.c, attention.c, conv.c), split over threads and
 *    not, inside a parallel region and not, operands from a kept weight copy
 *    and converted per call.
 * 3. The golden cases (HF transformers, fp32) run in bf16: logits, loss,
 *    hidden states and every gradient within the tolerances derived below.
 * 4. The fp32 path is untouched: a bf16 pass leaves nothing behind (fp32
 *    before and after agree bit for bit), weights changed between passes
 *    are seen.
 *
 * Where the CPU has no avx512_bf16 (or DNNL_MAX_CPU_ISA lowers oneDNN's
 * ISA) bf16 passes run in fp32: then 3 checks that they equal fp32 exactly
 * and 2 is skipped.
 *
 * Tolerances.  bf16 keeps 8 significant bits: rounding to nearest leaves a
 * relative error of at most u = 2^-9 per operand, uniformly spread, so a
 * term a_k b_k of a product is off by a_k b_k (d_a + d_b), standard
 * deviation |a_k b_k| u sqrt(2/3).  Summed over K terms with independent
 * errors (a random walk; the fp32 accumulation adds ~sqrt(K) 2^-24, nothing
 * beside it) the error of an output is u sqrt(2/3) sqrt(sum (a_k b_k)^2):
 * about 1.6e-3 of the output's own RMS for incoherent sums (oneDNN measured
 * 2.2e-3 on random data, 2.1e-3 here).  A value of the model passes through
 * n products in series, each adding its own independent error of that
 * relative size, so its relative RMS error grows like e = 2.2e-3 sqrt(n);
 * the largest error of a tensor of a few thousand values lies within about
 * 4.5 standard deviations.  The tiny golden models have, counted along the
 * longest path (3 conv, projection, positional conv, 2 x 8 in each layer,
 * projector, classifier): n = 23 forward; a gradient adds the backward's
 * products back to it, n <= 46.  Hence, relative to the largest value of
 * each tensor:
 *   activations and logits: 4.5 * 2.2e-3 * sqrt(23) = 0.047
 *   gradients:              4.5 * 2.2e-3 * sqrt(46) = 0.067
 *   loss (absolute): the loss moves by sum_i (p_i - y_i) dlogit_i, at most
 *   2 max|dlogit|: 2 * 0.047 * max|logits|.
 * Tensors that are zero by cancellation in exact arithmetic (k_proj.bias's
 * gradient: softmax's backward rows sum to 0) are measured against the
 * scale of their layer's k_proj.weight gradient.  A wrong transposition or
 * operand gives errors of order 1: these bounds still catch it. */
#include "golden.h"
#include "ops.h"
#include "w2v/model.h"
#include "w2v/threads.h"

#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


/* ---- 1. rounding ---- */

static uint16_t round1(uint32_t bits)
{
    float f;
    uint16_t h;
    memcpy(&f, &bits, 4);
    float_to_bf16(&h, &f, 1);
    return h;
}

static float bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void check_rounding(void)
{
    static const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000, 0x3f80}, /* 1 */
        {0x3f808000, 0x3f80}, /* 1 + 2^-8: a tie, to even (down) */
        {0x3f818000, 0x3f82}, /* a tie, to even (up) */
        {0x3f808001, 0x3f81}, /* above the tie */
        {0x3f807fff, 0x3f80}, /* below it */
        {0xbf818000, 0xbf82}, /* negative */
        {0x80000000, 0x8000}, /* -0 */
        {0x00000001, 0x0000}, /* the smallest subnormal */
        {0x7f800000, 0x7f80}, /* inf */
        {0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to inf, as torch's cast does */
        {0x7fc00000, 0x7fc0}, /* quiet NaN */
        {0x7f800001, 0x7fc0}, /* signalling NaN: stays NaN, quiet (not inf) */
        {0xffffffff, 0xffff}, /* NaN with all bits set */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint16_t got = round1(cases[i].in);
        CHECK(got == cases[i].out, "bf16 of 0x%08x: 0x%04x, want 0x%04x", cases[i].in, got, cases[i].out);
    }
    /* a long run (the vector loop) agrees with one at a time */
    enum { N = 1001 };
    float x[N];
    uint16_t v[N];
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        memcpy(&x[i], &s, 4);
    }
    float_to_bf16(v, x, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        bad += v[i] != round1(u);
    }
    CHECK(bad == 0, "%d of %d values round otherwise in a run", bad, N);
}

/* ---- 2. the GEMM entry ---- */

static uint32_t rng = 1;
static float uniform(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

static float round_bf16(float x)
{
    uint16_t h;
    float_to_bf16(&h, &x, 1);
    return bf16_value(h);
}

static double worst_rel_rms;

typedef struct {
    const char *what;
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
} gcase;

/* One product through gemm() in bf16 mode: A, B as given or placed in a
 * parameter block with a kept copy (from_block); in a parallel region or
 * not.  C's gaps (ldc > N) must stay as they were. */
static void check_product(const gcase *g, int from_block, int in_parallel)
{
    long arows = g->ta ? g->K : g->M, acols = g->ta ? g->M : g->K;
    long brows = g->tb ? g->N : g->K, bcols = g->tb ? g->K : g->N;
    long asize = (arows - 1) * g->lda + acols, bsize = (brows - 1) * g->ldb + bcols, csize = (long)g->M * g->ldc;
    float *block = malloc((size_t)(asize + bsize + 64) * sizeof *block);
    float *A = block + 16, *B = A + asize + 16; /* not at the block's start */
    float *C = malloc((size_t)csize * sizeof *C), *C0 = malloc((size_t)csize * sizeof *C0);
    for (long i = 0; i < asize + bsize + 64; i++) block[i] = uniform();
    for (long i = 0; i < csize; i++) C0[i] = C[i] = uniform();
    gemm_weights *w = from_block ? gemm_weights_new(block, asize + bsize + 64) : NULL;
    gemm_mode bf = {1, w};
    if (in_parallel) {
        #pragma omp parallel num_threads(2)
        if (omp_get_thread_num() == 1) {
            gemm_mode_set(bf);
            gemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, g->lda, B, g->ldb, g->beta, C, g->ldc);
            gemm_mode_set((gemm_mode){0, NULL});
        }
    } else {
        gemm_mode old = gemm_mode_set(bf);
        gemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, g->lda, B, g->ldb, g->beta, C, g->ldc);
        gemm_mode_set(old);
    }
    double e2 = 0, r2 = 0, worst = 0;
    long gaps = 0;
    for (int i = 0; i < g->M; i++) {
        for (int j = 0; j < g->N; j++) {
            double ref16 = 0, ref32 = 0, mag = 0;
            for (int k = 0; k < g->K; k++) {
                float a = g->ta ? A[(long)k * g->lda + i] : A[(long)i * g->lda + k];
                float b = g->tb ? B[(long)j * g->ldb + k] : B[(long)k * g->ldb + j];
                ref16 += (double)round_bf16(a) * round_bf16(b);
                ref32 += (double)a * b;
                mag += fabs((double)round_bf16(a) * round_bf16(b));
            }
            double c0 = C0[(long)i * g->ldc + j], got = C[(long)i * g->ldc + j];
            double want16 = g->alpha * ref16 + g->beta * c0, want32 = g->alpha * ref32 + g->beta * c0;
            /* the products of the rounded operands, accumulated in fp32:
             * within K roundings of 2^-24 of the sum of |terms| */
            double bound = 2.0 * (g->K + 2) * 0x1p-24 * (fabs(g->alpha) * mag + fabs(g->beta * c0)) + 1e-30;
            double ratio = fabs(got - want16) / bound;
            if (!(ratio <= worst)) worst = ratio;
            e2 += (got - want32) * (got - want32);
            r2 += (g->alpha * ref32) * (g->alpha * ref32);
        }
        for (int j = g->N; j < g->ldc && i < g->M; j++) gaps += memcmp(&C[(long)i * g->ldc + j], &C0[(long)i * g->ldc + j], 4) != 0;
    }
    double rel = sqrt(e2 / (r2 > 0 ? r2 : 1));
    const char *how = from_block ? (in_parallel ? "kept copy, in a parallel region" : "kept copy")
                                 : (in_parallel ? "in a parallel region" : "converted");
    CHECK(worst <= 1, "gemm bf16 %s (%s): off the bf16 operands' product by %.3g of the fp32 accumulation bound",
          g->what, how, worst);
    /* against the fp32 operands: the rounding's 1.6e-3-2.2e-3 (see the top) */
    CHECK(rel < 4e-3, "gemm bf16 %s (%s): relative RMS error %.3g against fp32 operands", g->what, how, rel);
    CHECK(gaps == 0, "gemm bf16 %s (%s): %ld values between C's rows were written", g->what, how, gaps);
    if (g->K >= 16 && rel > worst_rel_rms) worst_rel_rms = rel;
    gemm_weights_free(w);
    free(block);
    free(C);
    free(C0);
}

/* Weights changed in place are seen after gemm_weights_changed, and only
 * then (the copy is kept until told). */
static void check_weight_copy(void)
{
    enum { M = 33, N = 40, K = 24 };
    float *block = malloc((size_t)(N * K + 8) * sizeof *block), *W = block + 8, A[M * K], C1[M * N], C2[M * N], C3[M * N];
    for (int i = 0; i < N * K + 8; i++) block[i] = uniform();
    for (int i = 0; i < M * K; i++) A[i] = uniform();
    gemm_weights *w = gemm_weights_new(block, N * K + 8);
    gemm_mode old = gemm_mode_set((gemm_mode){1, w});
    gemm(0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C1, N);
    for (int i = 0; i < N * K; i++) W[i] *= 2; /* powers of two round alike */
    gemm(0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C2, N);
    gemm_weights_changed(w);
    gemm(0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C3, N);
    gemm_mode_set(old);
    int kept = !memcmp(C1, C2, sizeof C1), seen = 1;
    for (int i = 0; i < M * N; i++) seen &= C3[i] == 2 * C1[i];
    CHECK(kept, "gemm bf16: the weight copy was remade without gemm_weights_changed");
    CHECK(seen, "gemm bf16: weights changed (and said so) are not seen");
    gemm_weights_free(w);
    free(block);
}

static void check_gemm(void)
{
    /* H = 48, hd = 12, T = 37: attention's strided heads; conv: Cin 20,
     * S 2, K 3 (direct: lda S*Cin, ldb K*Cin), grouped im2col (ldc Cout) */
    static const gcase cases[] = {
        {"linear forward (0,1)", 0, 1, 37, 29, 13, 13, 13, 29, 1, 0},
        {"linear forward + bias (0,1) beta 1", 0, 1, 37, 29, 13, 13, 13, 29, 1, 1},
        {"linear d input (0,0)", 0, 0, 37, 13, 29, 29, 13, 13, 1, 1},
        {"linear d weight (1,0)", 1, 0, 29, 13, 37, 29, 13, 13, 1, 1},
        {"attention q k^T (0,1) strided", 0, 1, 37, 37, 12, 48, 48, 37, 1, 0},
        {"attention p v (0,0) ldc H", 0, 0, 37, 12, 37, 37, 48, 48, 1, 0},
        {"attention d v (1,0) beta 1", 1, 0, 37, 12, 37, 37, 48, 48, 1, 1},
        {"attention d p (0,1)", 0, 1, 37, 37, 12, 48, 48, 37, 1, 0},
        {"conv direct (0,1) lda S*Cin ldb K*Cin", 0, 1, 31, 17, 40, 40, 60, 17, 1, 1},
        {"conv direct d weight (1,0)", 1, 0, 17, 40, 31, 17, 40, 60, 1, 1},
        {"conv direct d input (0,0)", 0, 0, 31, 40, 17, 17, 60, 40, 1, 1},
        {"conv grouped (0,1) ldc Cout", 0, 1, 45, 5, 15, 15, 15, 20, 1, 0},
        {"transposes (1,1), alpha and beta", 1, 1, 23, 19, 21, 23, 21, 19, 0.5f, 2.0f},
        {"one row", 0, 1, 1, 12, 32, 32, 32, 12, 1, 1},
        {"K = 1", 0, 0, 7, 9, 1, 1, 9, 9, 1, 0},
        /* over gemm's split threshold (2^18 multiply-adds): by rows, by columns */
        {"split by rows (0,1)", 0, 1, 301, 67, 45, 45, 45, 67, 1, 1},
        {"split by columns (1,0)", 1, 0, 40, 517, 33, 41, 520, 519, 1, 0},
        {"split (0,0) wide", 0, 0, 130, 300, 70, 70, 300, 300, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int from_block = 0; from_block < 2; from_block++)
            for (int par = 0; par < 2; par++) check_product(&cases[i], from_block, par);
    printf("gemm bf16: %zu cases x 4 ways; worst relative RMS error against fp32 operands %.2e\n",
           sizeof cases / sizeof *cases, worst_rel_rms);
    /* K = 0: C = beta C */
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {0}, B[1] = {0};
    gemm_mode old = gemm_mode_set((gemm_mode){1, NULL});
    gemm(0, 0, 2, 3, 0, 1.0f, A, 1, B, 3, 0.0f, C, 3);
    gemm_mode_set(old);
    CHECK(C[0] == 0 && C[5] == 0, "gemm bf16 with K = 0 and beta 0 leaves C");
    check_weight_copy();
}

/* A parallel loop hands the caller's mode to its threads: attention's
 * heads, run by the loop's threads (outside any region), come out in bf16
 * (off fp32 by the rounding: neither 0 nor more). */
static void check_attention_threads(void)
{
    enum { T = 37, H = 48, NH = 4 };
    float q[T * H], k[T * H], v[T * H], c32[T * H], c16[T * H], probs[NH * T * T];
    for (int i = 0; i < T * H; i++) q[i] = uniform(), k[i] = uniform(), v[i] = uniform();
    float *scratch = malloc((size_t)attention_scratch(T) * sizeof *scratch);
    attention_forward(c32, probs, q, k, v, NULL, NULL, 1, T, H, NH, 0, 0, 0, scratch);
    gemm_mode old = gemm_mode_set((gemm_mode){1, NULL});
    attention_forward(c16, probs, q, k, v, NULL, NULL, 1, T, H, NH, 0, 0, 0, scratch);
    gemm_mode_set(old);
    double e2 = 0, r2 = 0;
    int heads_off = 0;
    for (int h = 0; h < NH; h++) {
        int off = 0;
        for (int t = 0; t < T; t++)
            for (int j = h * (H / NH); j < (h + 1) * (H / NH); j++) {
                double d = (double)c16[t * H + j] - c32[t * H + j];
                e2 += d * d, r2 += (double)c32[t * H + j] * c32[t * H + j];
                off |= d != 0;
            }
        heads_off += off;
    }
    double rel = sqrt(e2 / r2);
    CHECK(heads_off == NH, "attention in bf16: %d of %d heads ran in bf16", heads_off, NH);
    CHECK(rel < 1e-2, "attention in bf16: relative RMS error %.3g", rel);
    free(scratch);
}

/* ---- 3 and 4. the model ---- */

typedef struct {
    float loss, logits[36];
    float *grads, *hidden;
    long nh;
} outputs;

static void run_pass(w2v_model *m, const w2v_input *in, int bf16, int frozen, outputs *o)
{
    char err[512];
    w2v_run run = {1, 0, 0, -1, bf16};
    o->loss = w2v_model_forward(m, in, &run, o->logits, err, sizeof err);
    CHECK(o->loss >= 0, "forward: %s", err);
    CHECK(gemm_mode_get().bf16 == 0, "the forward left this thread in bf16");
    int64_t shape[3];
    const float *h = w2v_model_activation(m, "hidden_states.2", shape);
    o->nh = shape[0] * shape[1] * shape[2];
    o->hidden = malloc((size_t)o->nh * sizeof *o->hidden);
    memcpy(o->hidden, h, (size_t)o->nh * sizeof *o->hidden);
    w2v_model_freeze_feature_encoder(m, frozen);
    w2v_model_zero_grad(m);
    w2v_model_backward(m, 1.0f);
    CHECK(gemm_mode_get().bf16 == 0, "the backward left this thread in bf16");
    long n;
    const float *g = w2v_model_grads(m, &n);
    o->grads = malloc((size_t)n * sizeof *o->grads);
    memcpy(o->grads, g, (size_t)n * sizeof *o->grads);
}

static void free_outputs(outputs *o)
{
    free(o->grads);
    free(o->hidden);
}

#define TOL_FWD 0.047
#define TOL_GRAD 0.067

static void check_case(const char *cname, int bf16_runs)
{
    golden_case g;
    if (golden_case_open(&g, cname) < 0) return;
    char err[512];
    w2v_model *m = g.m;
    w2v_safetensors *ex = g.ex;
    w2v_input input = g.input;
    int frozen = g.frozen;
    long np;
    w2v_model_params(m, &np);

    outputs f1, b, f2;
    run_pass(m, &input, 0, frozen, &f1);
    run_pass(m, &input, 1, frozen, &b);
    run_pass(m, &input, 0, frozen, &f2);

    /* 4: fp32 after a bf16 pass is fp32 before it, bit for bit */
    CHECK(f1.loss == f2.loss && !memcmp(f1.logits, f2.logits, sizeof f1.logits) &&
              !memcmp(f1.grads, f2.grads, (size_t)np * sizeof(float)) &&
              !memcmp(f1.hidden, f2.hidden, (size_t)f1.nh * sizeof(float)),
          "%s: fp32 passes before and after a bf16 pass differ", cname);

    if (!bf16_runs) {
        CHECK(b.loss == f1.loss && !memcmp(b.logits, f1.logits, sizeof b.logits) &&
                  !memcmp(b.grads, f1.grads, (size_t)np * sizeof(float)),
              "%s: without avx512_bf16 a bf16 pass must be the fp32 pass", cname);
        printf("%s: no bf16 on this CPU: bf16 passes ran in fp32, identical\n", cname);
    } else {
        size_t n = 0;
        float *want = golden_f32(ex, "logits", &n);
        double mb, d = max_abs_diff(b.logits, want, n, &mb), d32 = max_abs_diff(f1.logits, want, n, NULL);
        CHECK(d <= TOL_FWD * mb, "%s: bf16 logits off by %.3g, over %.3g = %.3g of max|logits| %.3g", cname, d,
              TOL_FWD * mb, TOL_FWD, mb);
        /* it did run in bf16: far from fp32's 1e-8 */
        CHECK(d > 10 * d32 + 1e-7, "%s: bf16 logits are fp32's (off by %.3g): bf16 did not run", cname, d);
        printf("%s: bf16 logits   max|diff| %.2e = %.4f of max|golden| (tolerance %.3f)\n", cname, d, d / mb, TOL_FWD);
        float *wl = golden_f32(ex, "loss", NULL);
        double dl = fabs((double)b.loss - *wl), tl = 2 * TOL_FWD * mb;
        CHECK(dl <= tl, "%s: bf16 loss %.8f vs %.8f: off by %.3g, over %.3g", cname, b.loss, *wl, dl, tl);
        printf("%s: bf16 loss     %.8f (golden %.8f): |diff| %.2e (tolerance %.2e)\n", cname, b.loss, *wl, dl, tl);
        free(want);
        free(wl);
        want = golden_f32(ex, "hidden_states.2", &n);
        CHECK(n == (size_t)b.nh, "%s: hidden_states.2 sizes", cname);
        d = max_abs_diff(b.hidden, want, n, &mb);
        CHECK(d <= TOL_FWD * mb, "%s: bf16 hidden_states.2 off by %.3g of %.3g", cname, d / mb, TOL_FWD);
        printf("%s: bf16 hidden_states.2 max|diff| %.2e = %.4f of max|golden| (tolerance %.3f)\n", cname, d, d / mb,
               TOL_FWD);
        free(want);

        double worst = 0;
        const char *worst_name = "";
        for (int i = 0; i < w2v_model_num_params(m); i++) {
            const w2v_param *p = w2v_model_param(m, i);
            char gname[160];
            snprintf(gname, sizeof gname, "grad.%s", p->name);
            want = golden_f32(ex, gname, &n);
            if (!want) continue;
            d = max_abs_diff(b.grads + p->offset, want, n, &mb);
            double scale = mb;
            const char *kb = strstr(p->name, "k_proj.bias"), *gate = strstr(p->name, "gru_rel_pos_");
            /* zero by cancellation: its layer's k_proj.weight gradient sets
             * the scale.  WavLM's gate: the scores' gradient contracted with
             * the position bias, which cancels over the keys as q's (the
             * same gradient contracted with k) does not: q_proj.weight's */
            if (kb || gate) {
                char wname[160];
                if (kb) snprintf(wname, sizeof wname, "grad.%.*sk_proj.weight", (int)(kb - p->name), p->name);
                else snprintf(wname, sizeof wname, "grad.%.*sq_proj.weight", (int)(gate - p->name), p->name);
                size_t nw = 0;
                float *ww = golden_f32(ex, wname, &nw);
                if (ww) max_abs_diff(ww, ww, nw, &scale);
                free(ww);
            }
            if (!w2v_model_param_has_grad(m, i)) {
                CHECK(d == 0, "%s: %s has no gradient, yet bf16 gave one", cname, gname);
            } else {
                CHECK(d <= TOL_GRAD * scale + 1e-30, "%s: bf16 %s off by %.3g, over %.3g of its scale %.3g", cname,
                      gname, d, TOL_GRAD, scale);
                if (scale > 0 && d / scale > worst) worst = d / scale, worst_name = p->name;
            }
            free(want);
        }
        printf("%s: bf16 gradients: worst max|diff| %.4f of the tensor's max|golden| (%s; tolerance %.3f)\n", cname,
               worst, worst_name, TOL_GRAD);

        /* one example: one shard, run by this thread, its products cut over
         * the threads by gemm and attention's loop */
        w2v_input one = input;
        one.B = 1;
        float l1[12], l132[12];
        w2v_run r16 = {1, 0, 0, -1, 1}, r32 = {1, 0, 0, -1, 0};
        w2v_model_forward(m, &one, &r16, l1, err, sizeof err);
        w2v_model_forward(m, &one, &r32, l132, err, sizeof err);
        d = max_abs_diff(l1, l132, 12, &mb);
        CHECK(d > 0 && d <= TOL_FWD * mb, "%s: one example in bf16: logits off fp32's by %.3g of %.3g", cname, d / mb,
              TOL_FWD);

        /* weights changed between passes (as an optimizer step does) are seen */
        const w2v_param *cw = w2v_model_find_param(m, "classifier.weight");
        float *p = w2v_model_params(m, NULL) + cw->offset, l2[36], l32[36];
        for (long j = 0; j < cw->size; j++) p[j] = -p[j];
        w2v_run run = {0, 0, 0, -1, 1}, run32 = {0, 0, 0, -1, 0};
        w2v_model_forward(m, &input, &run, l2, err, sizeof err);
        w2v_model_forward(m, &input, &run32, l32, err, sizeof err);
        d = max_abs_diff(l2, l32, 36, &mb);
        CHECK(d <= TOL_FWD * mb, "%s: after a change of the weights, bf16 logits are off by %.3g of %.3g", cname,
              d / mb, TOL_FWD);
    }
    free_outputs(&f1);
    free_outputs(&b);
    free_outputs(&f2);
    golden_case_close(&g);
}

int main(void)
{
    w2v_threads();
    check_rounding();
    int bf16 = gemm_bf16_available();
    if (bf16) {
        check_gemm();
        check_attention_threads();
    } else printf("test_bf16: this CPU has no avx512_bf16 for oneDNN: the GEMM checks are skipped\n");
    for (int i = 0; i < GOLDEN_NCASES; i++) check_case(golden_cases[i], bf16);
    return unit_finish("test_bf16");
}
