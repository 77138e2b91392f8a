/* 1-D convolutions (the conv feature encoder and the positional conv
 * embedding) as im2col + GEMM over channels-last activations, and the
 * weight normalisation of the positional conv.
 *
 * Channels-last makes the receptive field of output frame t a run of K
 * input frames, so im2col copies rows; the products read the weight
 * reordered from torch's [Cout, Cin/G, K] to [Cout, K, Cin/G] to match
 * (conv1d_reorder: the caller's, so that a weight every shard reads is
 * reordered once per batch).  The backward comes in two halves: the data's
 * gradient, per shard, and the weight's, one group at a time, so that the
 * positional conv can take its weight's gradient for the whole batch at
 * once, with groups in parallel, rather than one copy per thread.
 *
 * In bf16 (gemm_mode), the reordered weight is an operand of every GEMM
 * of the call (one per example and slice, or per group): it is declared
 * the call's weights, so that gemm converts it to bf16 once per call, not
 * once per GEMM. */
#include "ops.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* Rows of im2col per GEMM: whole examples, up to about this many floats
 * (4 MiB: a shard's scratch, one per thread). */
#define COL_BUDGET (1l << 20)

/* Examples per im2col chunk: the budget's, whatever the batch, so that a
 * scratch sized for one shard serves another shard's examples too. */
static int chunk_examples(const conv_shape *s)
{
    long per = (long)s->Tout * s->K * (s->Cin / s->G);
    long nb = per > 0 ? COL_BUDGET / per : 1;
    return nb < 1 ? 1 : nb > INT_MAX ? INT_MAX : (int)nb;
}

/* Without padding or groups, im2col is not needed: the receptive field of
 * frame t is m = ceil(K / S) runs of input frames, run j the S frames from
 * (t + j) S on (the last one the K - (m - 1) S left), each run S*Cin
 * contiguous floats, so the product is m GEMMs that read x in place with a
 * leading dimension of S*Cin, each against its slice of the reordered
 * weight.  (For wav2vec2-base's kernel-3, stride-2 layers this saves
 * writing, then packing, an input three times the size.) */
static int direct(const conv_shape *s) { return s->G == 1 && s->P == 0; }
static int slices(const conv_shape *s) { return s->S >= s->K ? 1 : (s->K + s->S - 1) / s->S; }
static int slice_width(const conv_shape *s, int j)
{
    int taps = s->K - j * s->S;
    return (taps < s->S ? taps : s->S) * s->Cin;
}

/* im2col's columns (or their gradient), and one group's weight gradient
 * in the products' order. */
long conv1d_scratch(const conv_shape *s)
{
    long row = (long)s->K * (s->Cin / s->G);
    return (direct(s) ? 0 : (long)chunk_examples(s) * s->Tout * row) + (long)(s->Cout / s->G) * row;
}

/* Declares wr (n floats) the weights of the calling thread's bf16 products
 * until weights_end(); nothing in fp32. */
static gemm_weights *weights_begin(const float *wr, long n, gemm_mode *outer)
{
    *outer = gemm_mode_get();
    if (!outer->bf16) return NULL;
    gemm_weights *w = gemm_weights_new(wr, n);
    gemm_mode_set((gemm_mode){1, w});
    return w;
}

static void weights_end(gemm_weights *w, gemm_mode outer)
{
    if (!w) return;
    gemm_mode_set(outer);
    gemm_weights_free(w);
}

W2V_HOT void conv1d_reorder(float *wr, const float *w, const conv_shape *s)
{
    int cg = s->Cin / s->G;
    #pragma omp parallel for
    for (int o = 0; o < s->Cout; o++)
        for (int c = 0; c < cg; c++)
            for (int k = 0; k < s->K; k++) wr[((long)o * s->K + k) * cg + c] = w[((long)o * cg + c) * s->K + k];
}

/* col[(b*Tout + t), k*cg + c] = x[b0 + b, t*S + k - P, g*cg + c] */
W2V_HOT static void im2col(float *col, const float *x, int b0, int nb, int g, const conv_shape *s)
{
    int cg = s->Cin / s->G;
    long row = (long)s->K * cg;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < s->Tout; t++) {
            float *dst = col + ((long)b * s->Tout + t) * row;
            const float *xb = x + (long)(b0 + b) * s->Tin * s->Cin + (long)g * cg;
            for (int k = 0; k < s->K; k++) {
                int ti = t * s->S + k - s->P;
                if (ti < 0 || ti >= s->Tin) memset(dst + (long)k * cg, 0, (size_t)cg * sizeof *dst);
                else memcpy(dst + (long)k * cg, xb + (long)ti * s->Cin, (size_t)cg * sizeof *dst);
            }
        }
}

W2V_HOT static void col2im(float *dx, const float *dcol, int b0, int nb, int g, const conv_shape *s)
{
    int cg = s->Cin / s->G;
    long row = (long)s->K * cg;
    /* output frames of one example overlap in their inputs: parallel over examples only */
    #pragma omp parallel for
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < s->Tout; t++) {
            const float *src = dcol + ((long)b * s->Tout + t) * row;
            float *xb = dx + (long)(b0 + b) * s->Tin * s->Cin + (long)g * cg;
            for (int k = 0; k < s->K; k++) {
                int ti = t * s->S + k - s->P;
                if (ti < 0 || ti >= s->Tin) continue;
                float *d = xb + (long)ti * s->Cin;
                const float *q = src + (long)k * cg;
                for (int c = 0; c < cg; c++) d[c] += q[c];
            }
        }
}

void conv1d_forward(float *out, const float *x, const float *wr, const float *bias, const conv_shape *s,
                    float *scratch)
{
    int cgo = s->Cout / s->G, nbmax = chunk_examples(s);
    long row = (long)s->K * (s->Cin / s->G);
    gemm_mode outer;
    gemm_weights *w16 = weights_begin(wr, (long)s->Cout * row, &outer);
    long n = (long)s->B * s->Tout;
    if (bias) {
        #pragma omp parallel for
        for (long i = 0; i < n; i++) memcpy(out + i * s->Cout, bias, (size_t)s->Cout * sizeof *out);
    }
    float beta = bias ? 1.0f : 0.0f;
    if (direct(s)) {
        int m = slices(s);
        for (int b = 0; b < s->B; b++)
            for (int j = 0; j < m; j++)
                gemm(0, 1, s->Tout, s->Cout, slice_width(s, j), 1.0f, x + ((long)b * s->Tin + (long)j * s->S) * s->Cin,
                     s->S * s->Cin, wr + (long)j * s->S * s->Cin, (int)row, j || bias ? 1.0f : 0.0f,
                     out + (long)b * s->Tout * s->Cout, s->Cout);
        weights_end(w16, outer);
        return;
    }
    for (int b0 = 0; b0 < s->B; b0 += nbmax) {
        int nb = s->B - b0 < nbmax ? s->B - b0 : nbmax;
        for (int g = 0; g < s->G; g++) {
            im2col(scratch, x, b0, nb, g, s);
            gemm(0, 1, nb * s->Tout, cgo, (int)row, 1.0f, scratch, (int)row, wr + (long)g * cgo * row, (int)row, beta,
                 out + (long)b0 * s->Tout * s->Cout + (long)g * cgo, s->Cout);
        }
    }
    weights_end(w16, outer);
}

void conv1d_backward_data(float *dx, const float *dout, const float *wr, const conv_shape *s, float *scratch)
{
    int cgo = s->Cout / s->G, nbmax = chunk_examples(s);
    long row = (long)s->K * (s->Cin / s->G);
    gemm_mode outer;
    gemm_weights *w16 = weights_begin(wr, (long)s->Cout * row, &outer);
    if (direct(s)) {
        int m = slices(s);
        for (int b = 0; b < s->B; b++)
            for (int j = 0; j < m; j++) {
                long xo = ((long)b * s->Tin + (long)j * s->S) * s->Cin;
                gemm(0, 0, s->Tout, slice_width(s, j), s->Cout, 1.0f, dout + (long)b * s->Tout * s->Cout, s->Cout,
                     wr + (long)j * s->S * s->Cin, (int)row, 1.0f, dx + xo, s->S * s->Cin);
            }
        weights_end(w16, outer);
        return;
    }
    for (int b0 = 0; b0 < s->B; b0 += nbmax) {
        int nb = s->B - b0 < nbmax ? s->B - b0 : nbmax;
        for (int g = 0; g < s->G; g++) {
            gemm(0, 0, nb * s->Tout, (int)row, cgo, 1.0f, dout + (long)b0 * s->Tout * s->Cout + (long)g * cgo, s->Cout,
                 wr + (long)g * cgo * row, (int)row, 0.0f, scratch, (int)row);
            col2im(dx, scratch, b0, nb, g, s);
        }
    }
    weights_end(w16, outer);
}

void conv1d_backward_weight(float *dw, const float *dout, const float *x, const conv_shape *s, int g, float *scratch)
{
    int cg = s->Cin / s->G, cgo = s->Cout / s->G, nbmax = chunk_examples(s);
    long row = (long)s->K * cg;
    float *col = scratch, *dwr = scratch + (direct(s) ? 0 : (long)nbmax * s->Tout * row);
    memset(dwr, 0, (size_t)cgo * row * sizeof *dwr);
    if (direct(s)) {
        int m = slices(s);
        for (int b = 0; b < s->B; b++)
            for (int j = 0; j < m; j++)
                gemm(1, 0, s->Cout, slice_width(s, j), s->Tout, 1.0f, dout + (long)b * s->Tout * s->Cout, s->Cout,
                     x + ((long)b * s->Tin + (long)j * s->S) * s->Cin, s->S * s->Cin, 1.0f, dwr + (long)j * s->S * s->Cin,
                     (int)row);
    } else {
        for (int b0 = 0; b0 < s->B; b0 += nbmax) {
            int nb = s->B - b0 < nbmax ? s->B - b0 : nbmax;
            im2col(col, x, b0, nb, g, s);
            gemm(1, 0, cgo, (int)row, nb * s->Tout, 1.0f, dout + (long)b0 * s->Tout * s->Cout + (long)g * cgo, s->Cout,
                 col, (int)row, 1.0f, dwr, (int)row);
        }
    }
    /* back to torch's order, group g's rows */
    #pragma omp parallel for
    for (int o = g * cgo; o < (g + 1) * cgo; o++)
        for (int c = 0; c < cg; c++)
            for (int k = 0; k < s->K; k++)
                dw[((long)o * cg + c) * s->K + k] += dwr[((long)(o - g * cgo) * s->K + k) * cg + c];
}

/* Sums over the rows of [rows, K] per column k, row by row (the tensor's
 * memory order): ss[k] = sum v^2, and dot[k] = sum a v when a is given. */
static void column_sums(double *ss, double *dot, const float *v, const float *a, int rows, int K)
{
    for (int k = 0; k < K; k++) ss[k] = dot ? (dot[k] = 0) : 0;
    for (long r = 0; r < rows; r++)
        for (int k = 0; k < K; k++) {
            double x = v[r * K + k];
            ss[k] += x * x;
            if (a) dot[k] += (double)a[r * K + k] * x;
        }
}

W2V_HOT void weightnorm_forward(float *w, const float *g, const float *v, int rows, int K)
{
    double ss[K];
    float scale[K];
    column_sums(ss, NULL, v, NULL, rows, K);
    for (int k = 0; k < K; k++) scale[k] = g[k] / (float)sqrt(ss[k]);
    #pragma omp parallel for
    for (long r = 0; r < rows; r++)
        for (int k = 0; k < K; k++) w[r * K + k] = v[r * K + k] * scale[k];
}

W2V_HOT void weightnorm_backward(float *dg, float *dv, const float *dw, const float *g, const float *v, int rows, int K)
{
    double ss[K], dot[K];
    float a[K], bq[K];
    column_sums(ss, dot, v, dw, rows, K);
    for (int k = 0; k < K; k++) {
        double norm = sqrt(ss[k]);
        if (dg) dg[k] += (float)(dot[k] / norm);
        a[k] = (float)(g[k] / norm);
        bq[k] = (float)(g[k] * dot[k] / (norm * ss[k]));
    }
    if (!dv) return;
    #pragma omp parallel for
    for (long r = 0; r < rows; r++)
        for (int k = 0; k < K; k++) dv[r * K + k] += a[k] * dw[r * K + k] - bq[k] * v[r * K + k];
}
