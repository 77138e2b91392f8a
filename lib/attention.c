/* Multi-head scaled dot-product attention (HF's eager path): per example
 * and head, scores = q k^T (q arrives scaled), padded keys masked, softmax,
 * dropout on the probabilities, context = p v.  Heads run in parallel, each
 * thread with its own scratch and the caller's precision for its products
 * (gemm_mode is per thread: the loop's threads take the caller's). */
#include "ops.h"
#include "w2v/rng.h"
#include "w2v/threads.h"

#include <math.h>
#include <omp.h>
#include <string.h>

long attention_scratch(int T) { return 2l * T * T * w2v_threads(); }

static uint64_t head_key(uint64_t key, int bh) { return w2v_hash(key, (uint64_t)bh); }

W2V_HOT void attention_forward(float *ctx, float *probs, const float *q, const float *k, const float *v, const int *valid,
                       int B, int T, int H, int nh, float p, uint64_t key, int b0, float *scratch)
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
                        const float *k, const float *v, int B, int T, int H, int nh, float p, uint64_t key, int b0,
                        float *scratch)
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
        /* dq += dS k ; dk += dS^T q */
        gemm(0, 0, T, hd, T, 1.0f, dP, T, k + off, H, 1.0f, dq + off, H);
        gemm(1, 0, T, hd, T, 1.0f, dP, T, q + off, H, 1.0f, dk + off, H);
        gemm_mode_set(outer);
    }
}
