/* Multi-head scaled dot-product attention (HF's eager path): per example
 * and head, scores = q k^T (q arrives scaled) plus an optional bias (WavLM's
 * gated relative position bias, below), padded keys masked, softmax,
 * dropout on the probabilities, context = p v.  Heads run in parallel, each
 * thread with its own scratch and the caller's precision for its products
 * (gemm_mode is per thread: the loop's threads take the caller's). */
#include "ops.h"
#include "w2v/rng.h"
#include "w2v/threads.h"

#include "internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

long attention_scratch(int T) { return 2l * T * T * w2v_threads(); }

static uint64_t head_key(uint64_t key, int bh) { return w2v_hash(key, (uint64_t)bh); }

W2V_HOT void attention_forward(float *ctx, float *probs, const float *q, const float *k, const float *v, const int *valid,
                               const attn_bias *rb, int B, int T, int H, int nh, float p, uint64_t key, int b0,
                               float *scratch)
{
    int hd = H / nh;
    gemm_mode mode = gemm_mode_get();
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * nh; bh++) {
        gemm_mode outer = gemm_mode_set(mode);
        int b = bh / nh, h = bh % nh;
        long off = (long)b * T * H + (long)h * hd;
        float *P = probs + (long)bh * T * T, *drop = scratch + 2l * T * T * omp_get_thread_num();
        gemm(0, 1, T, T, hd, 1.0f, q + off, H, k + off, H, 0.0f, P, T);
        int nv = valid ? valid[b] : T;
        for (int i = 0; i < T && rb; i++) {
            const float *bias = rb->bias + ((long)h * T + i) * T;
            float g = rb->gate[((long)b * T + i) * nh + h], *row = P + (long)i * T;
            for (int j = 0; j < T; j++) row[j] += g * bias[j];
        }
        for (int i = 0; i < T; i++) {
            float *row = P + (long)i * T, mx = -INFINITY, sum = 0;
            /* a masked key adds finfo.min to its score: its weight is exactly 0 */
            for (int j = 0; j < nv; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < nv; j++) sum += (row[j] = expf(row[j] - mx));
            for (int j = 0; j < nv; j++) row[j] /= sum;
            for (int j = nv; j < T; j++) row[j] = 0;
        }
        const float *A = P;
        if (p > 0) {
            dropout_forward(drop, P, (long)T * T, p, head_key(key, b0 * nh + bh), 0);
            A = drop;
        }
        gemm(0, 0, T, hd, T, 1.0f, A, T, v + off, H, 0.0f, ctx + off, H);
        gemm_mode_set(outer);
    }
}

W2V_HOT void attention_backward(float *dq, float *dk, float *dv, const float *dctx, const float *probs, const float *q,
                                const float *k, const float *v, const attn_bias *rb, int B, int T, int H, int nh, float p,
                                uint64_t key, int b0, float *scratch)
{
    int hd = H / nh;
    gemm_mode mode = gemm_mode_get();
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * nh; bh++) {
        gemm_mode outer = gemm_mode_set(mode);
        int b = bh / nh, h = bh % nh;
        long off = (long)b * T * H + (long)h * hd;
        float *dP = scratch + 2l * T * T * omp_get_thread_num(), *A = dP + (long)T * T;
        const float *P = probs + (long)bh * T * T, *Pd = P;
        uint64_t hk = head_key(key, b0 * nh + bh);
        if (p > 0) {
            dropout_forward(A, P, (long)T * T, p, hk, 0);
            Pd = A;
        }
        /* dv += Pd^T dctx ; dPd = dctx v^T */
        gemm(1, 0, T, hd, T, 1.0f, Pd, T, dctx + off, H, 1.0f, dv + off, H);
        gemm(0, 1, T, T, hd, 1.0f, dctx + off, H, v + off, H, 0.0f, dP, T);
        if (p > 0) {
            memset(A, 0, (size_t)T * T * sizeof *A);
            dropout_backward(A, dP, (long)T * T, p, hk, 0);
            memcpy(dP, A, (size_t)T * T * sizeof *A);
        }
        /* softmax backward: dS = P (dP - sum_j P dP) */
        for (int i = 0; i < T; i++) {
            const float *pr = P + (long)i * T;
            float *d = dP + (long)i * T, dot = 0;
            for (int j = 0; j < T; j++) dot += pr[j] * d[j];
            for (int j = 0; j < T; j++) d[j] = pr[j] * (d[j] - dot);
        }
        /* the bias: d bias = gate dS, d gate = sum over keys of bias dS */
        for (int i = 0; i < T && rb; i++) {
            const float *bias = rb->bias + ((long)h * T + i) * T, *d = dP + (long)i * T;
            float g = rb->gate[((long)b * T + i) * nh + h], *db = rb->dbias + ((long)bh * T + i) * T, dg = 0;
            for (int j = 0; j < T; j++) {
                dg += bias[j] * d[j];
                db[j] = g * d[j];
            }
            rb->dgate[((long)b * T + i) * nh + h] += dg;
        }
        /* dq += dS k ; dk += dS^T q */
        gemm(0, 0, T, hd, T, 1.0f, dP, T, k + off, H, 1.0f, dq + off, H);
        gemm(1, 0, T, hd, T, 1.0f, dP, T, q + off, H, 1.0f, dk + off, H);
        gemm_mode_set(outer);
    }
}

int relpos_bucket(int d, int num_buckets, int max_distance)
{
    int half = num_buckets / 2, exact = half / 2, a = abs(d), base = d > 0 ? half : 0;
    if (a < exact) return base + a;
    /* in float, as torch computes it: log(a / exact) / log(max / exact) of
     * the remaining buckets, truncated, the last one for all beyond */
    float f = logf((float)a / (float)exact) / (float)log((double)max_distance / exact) * (float)(half - exact);
    int large = (int)((float)exact + f);
    return base + (large < half - 1 ? large : half - 1);
}

/* The bucket of each distance d = j - i in [-(T - 1), T - 1], at d + T - 1. */
static int *buckets(int T, int num_buckets, int max_distance)
{
    int *bk = xmalloc((size_t)(2 * T - 1) * sizeof *bk);
    for (int d = -(T - 1); d < T; d++) bk[d + T - 1] = relpos_bucket(d, num_buckets, max_distance);
    return bk;
}

void relpos_bias_forward(float *bias, const float *embed, int T, int nh, int num_buckets, int max_distance)
{
    int *bk = buckets(T, num_buckets, max_distance);
    #pragma omp parallel for
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) bias[((long)h * T + i) * T + j] = embed[(long)bk[j - i + T - 1] * nh + h];
    free(bk);
}

void relpos_bias_backward(float *dembed, const float *dbias, int B, int T, int nh, int num_buckets, int max_distance)
{
    int *bk = buckets(T, num_buckets, max_distance);
    /* per head, in double, over the examples in order: deterministic */
    double *acc = xcalloc((size_t)num_buckets * nh, sizeof *acc);
    #pragma omp parallel for
    for (int h = 0; h < nh; h++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++) {
                const float *row = dbias + (((long)b * nh + h) * T + i) * T;
                for (int j = 0; j < T; j++) acc[(long)bk[j - i + T - 1] * nh + h] += row[j];
            }
    for (long e = 0; e < (long)num_buckets * nh; e++) dembed[e] += (float)acc[e];
    free(acc);
    free(bk);
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void relgate_forward(float *gate, float *gl, const float *x, const float *w, const float *b, const float *c, int N,
                     int nh, int hd)
{
    /* rows of hd: each frame's heads one after another */
    linear_forward(gl, x, w, b, N * nh, hd, 8);
    #pragma omp parallel for
    for (long r = 0; r < (long)N * nh; r++) {
        const float *g = gl + r * 8;
        float sa = sigmoid(g[0] + g[1] + g[2] + g[3]), sb = sigmoid(g[4] + g[5] + g[6] + g[7]);
        gate[r] = sa * (sb * c[r % nh] - 1.0f) + 2.0f;
    }
}

void relgate_backward(float *dx, float *dw, float *db, float *dc, float *dgl, const float *dgate, const float *x,
                      const float *w, const float *gl, const float *c, int N, int nh, int hd)
{
    double *dcs = xcalloc((size_t)nh, sizeof *dcs);
    for (long r = 0; r < (long)N * nh; r++) {
        const float *g = gl + r * 8;
        float sa = sigmoid(g[0] + g[1] + g[2] + g[3]), sb = sigmoid(g[4] + g[5] + g[6] + g[7]), ch = c[r % nh];
        float dg = dgate[r], da = dg * (sb * ch - 1.0f) * sa * (1 - sa), dbb = dg * sa * ch * sb * (1 - sb);
        dcs[r % nh] += (double)dg * sa * sb;
        for (int k = 0; k < 4; k++) dgl[r * 8 + k] = da, dgl[r * 8 + 4 + k] = dbb;
    }
    for (int h = 0; h < nh; h++) dc[h] += (float)dcs[h];
    free(dcs);
    linear_backward(dx, dw, db, dgl, x, w, N * nh, hd, 8);
}
