/* GELU, dropout and residual sums: elementwise, parallel over elements. */
#include "ops.h"
#include "w2v/rng.h"

#include <math.h>
#include <string.h>

/* erf and exp without branches or calls, so that the GELU loops vectorise
 * (libm's erff, called per element, was a tenth of a training step).  erf is
 * a rational function of x (odd over even polynomials, clamped at |x| = 4
 * where erf is 1 in float): within 4.3e-7 of erf everywhere (test_ops). */
static inline float erf_approx(float a)
{
    float x = a > 4.0f ? 4.0f : a < -4.0f ? -4.0f : a, x2 = x * x;
    float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p - 2.10102402082508e-06f;
    p = x2 * p - 5.69250639462346e-05f;
    p = x2 * p - 7.34990630326855e-04f;
    p = x2 * p - 2.95459980854025e-03f;
    p = x2 * p - 1.60960333262415e-02f;
    float q = x2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
    q = x2 * q - 1.68282697438203e-03f;
    q = x2 * q - 7.37332916720468e-03f;
    q = x2 * q - 1.42647390514189e-02f;
    return x * p / q;
}

/* e^x for x <= 0 (the GELU density): 2^n e^r with |r| <= ln 2 / 2, n found
 * by the add-and-subtract rounding trick, e^r by its Taylor series to r^7
 * (relative error below 2e-7). */
static inline float exp_neg(float x)
{
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float e = 1.0f / 5040, t;
    e = e * r + 1.0f / 720;
    e = e * r + 1.0f / 120;
    e = e * r + 1.0f / 24;
    e = e * r + 1.0f / 6;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    memcpy(&t, &bits, sizeof t);
    return e * t;
}

float w2v_erf(float x) { return erf_approx(x); }
float w2v_exp_neg(float x) { return exp_neg(x); }

W2V_HOT void gelu_forward(float *out, const float *x, long n)
{
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * (float)M_SQRT1_2));
}

W2V_HOT void gelu_backward(float *dx, const float *x, const float *dout, long n)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) {
        float v = x[i], cdf = 0.5f * (1.0f + erf_approx(v * (float)M_SQRT1_2));
        dx[i] += dout[i] * (cdf + v * inv_sqrt_2pi * exp_neg(-0.5f * v * v));
    }
}

/* Dropout's draw for element i of the tensor keyed by key: murmur3's 32-bit
 * finaliser of a Weyl sequence, 16 bits compared with p (so p is taken to
 * 1/65536).  32-bit multiplies vectorise (a 64-bit hash per element, or per
 * four, did not, and was a tenth of a training step). */
static inline float keep(uint32_t key, uint32_t i, uint32_t threshold, float scale)
{
    uint32_t h = key + i * 0x9e3779b9u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return (h >> 16) < threshold ? 0.0f : scale;
}

static uint32_t threshold16(float p) { return (uint32_t)(p * 65536.0f + 0.5f); }
static uint32_t key32(uint64_t key) { return (uint32_t)(w2v_hash(key, 0) >> 32); }

W2V_HOT void dropout_forward(float *out, const float *x, long n, float p, uint64_t key, long first)
{
    if (p <= 0) {
        if (out != x) memcpy(out, x, (size_t)n * sizeof *out);
        return;
    }
    float scale = 1.0f / (1.0f - p);
    uint32_t th = threshold16(p), k = key32(key), f0 = (uint32_t)first;
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) out[i] = x[i] * keep(k, f0 + (uint32_t)i, th, scale);
}

W2V_HOT void dropout_backward(float *dx, const float *dout, long n, float p, uint64_t key, long first)
{
    if (p <= 0) {
        #pragma omp parallel for simd
        for (long i = 0; i < n; i++) dx[i] += dout[i];
        return;
    }
    float scale = 1.0f / (1.0f - p);
    uint32_t th = threshold16(p), k = key32(key), f0 = (uint32_t)first;
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) dx[i] += dout[i] * keep(k, f0 + (uint32_t)i, th, scale);
}

W2V_HOT void residual_forward(float *out, const float *a, const float *b, long n)
{
    #pragma omp parallel for simd
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}
