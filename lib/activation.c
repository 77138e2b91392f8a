/* GELU, dropout and residual sums: elementwise, parallel over elements. */
#include "ops.h"
#include "w2v/rng.h"

#include <math.h>
#include <string.h>

void gelu_forward(float *out, const float *x, long n)
{
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void gelu_backward(float *dx, const float *x, const float *dout, long n)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) {
        float v = x[i], cdf = 0.5f * (1.0f + erff(v * (float)M_SQRT1_2));
        dx[i] += dout[i] * (cdf + v * inv_sqrt_2pi * expf(-0.5f * v * v));
    }
}

void dropout_forward(float *out, const float *x, long n, float p, uint64_t key)
{
    if (p <= 0) {
        if (out != x) memcpy(out, x, (size_t)n * sizeof *out);
        return;
    }
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for
    for (long i = 0; i < n; i++) out[i] = w2v_hash_uniform(key, (uint64_t)i) < p ? 0.0f : x[i] * scale;
}

void dropout_backward(float *dx, const float *dout, long n, float p, uint64_t key)
{
    float scale = p > 0 ? 1.0f / (1.0f - p) : 1.0f;
    #pragma omp parallel for
    for (long i = 0; i < n; i++)
        if (p <= 0 || w2v_hash_uniform(key, (uint64_t)i) >= p) dx[i] += dout[i] * scale;
}

void residual_forward(float *out, const float *a, const float *b, long n)
{
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}
