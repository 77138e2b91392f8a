/* The classification head: weighted layer sum, mean pooling over frames,
 * and the cross-entropy loss. */
#include "internal.h"
#include "ops.h"
#include "w2v/config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void softmax_weights(float *out, const float *lw, int L)
{
    float mx = lw[0], sum = 0;
    for (int l = 1; l < L; l++) mx = lw[l] > mx ? lw[l] : mx;
    for (int l = 0; l < L; l++) sum += (out[l] = expf(lw[l] - mx));
    for (int l = 0; l < L; l++) out[l] /= sum;
}

/* L is at most the embeddings' output and every layer's */
#define MAX_L (W2V_MAX_HIDDEN_LAYERS + 1)

W2V_HOT void layersum_forward(float *out, float *const *hs, const float *lw, int L, long n)
{
    float w[MAX_L];
    softmax_weights(w, lw, L);
    #pragma omp parallel for
    for (long i = 0; i < n; i++) {
        float s = 0;
        for (int l = 0; l < L; l++) s += w[l] * hs[l][i];
        out[i] = s;
    }
}

W2V_HOT void layersum_backward(float *const *dhs, float *dlw, const float *dout, float *const *hs, const float *lw, int L,
                       long n)
{
    float w[MAX_L];
    double dw[MAX_L] = {0}, dot = 0;
    softmax_weights(w, lw, L);
    for (int l = 0; l < L; l++) {
        double s = 0;
        for (long i = 0; i < n; i++) s += (double)dout[i] * hs[l][i];
        dw[l] = s; /* d loss / d w_l */
        if (dhs[l]) {
            #pragma omp parallel for
            for (long i = 0; i < n; i++) dhs[l][i] += w[l] * dout[i];
        }
    }
    if (!dlw) return;
    for (int l = 0; l < L; l++) dot += w[l] * dw[l];
    for (int l = 0; l < L; l++) dlw[l] += (float)(w[l] * (dw[l] - dot));
}

W2V_HOT void meanpool_forward(float *out, const float *x, const int *valid, int B, int T, int C)
{
    for (int b = 0; b < B; b++) {
        int n = valid ? valid[b] : T;
        for (int c = 0; c < C; c++) {
            float s = 0;
            for (int t = 0; t < n; t++) s += x[((long)b * T + t) * C + c];
            out[(long)b * C + c] = s / (float)n;
        }
    }
}

W2V_HOT void meanpool_backward(float *dx, const float *dout, const int *valid, int B, int T, int C)
{
    for (int b = 0; b < B; b++) {
        int n = valid ? valid[b] : T;
        for (int t = 0; t < n; t++)
            for (int c = 0; c < C; c++) dx[((long)b * T + t) * C + c] += dout[(long)b * C + c] / (float)n;
    }
}

double softmax_row(const float *z, int n, double *p)
{
    double max = z[0], sum = 0;
    for (int i = 1; i < n; i++) max = z[i] > max ? z[i] : max;
    for (int i = 0; i < n; i++) {
        double e = exp((double)z[i] - max);
        sum += e;
        if (p) p[i] = e;
    }
    if (p)
        for (int i = 0; i < n; i++) p[i] /= sum;
    return max + log(sum);
}

float crossentropy_forward(float *probs, const float *logits, const int64_t *labels, int B, int n)
{
    double loss = 0, *p = xmalloc((size_t)n * sizeof *p);
    int counted = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (long)b * n;
        double lse = softmax_row(z, n, p);
        for (int i = 0; i < n; i++) probs[(long)b * n + i] = (float)p[i];
        if (labels[b] >= 0) {
            loss += lse - z[labels[b]];
            counted++;
        }
    }
    free(p);
    return counted ? (float)(loss / counted) : 0.0f;
}

void crossentropy_backward(float *dlogits, const float *probs, const int64_t *labels, int B, int n)
{
    int counted = 0;
    for (int b = 0; b < B; b++) counted += labels[b] >= 0;
    if (!counted) return;
    for (int b = 0; b < B; b++) {
        if (labels[b] < 0) continue;
        for (int i = 0; i < n; i++)
            dlogits[(long)b * n + i] += (probs[(long)b * n + i] - (i == labels[b])) / (float)counted;
    }
}
