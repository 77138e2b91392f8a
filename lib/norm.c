/* LayerNorm and GroupNorm.  A LayerNorm row (at most a few thousand
 * channels) is summed in float, two passes, so the loops vectorise; GroupNorm
 * runs over thousands of frames and sums in double, where float sums would
 * drift from torch's. */
#include "ops.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>

W2V_HOT void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps)
{
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *xr = x + (long)n * C;
        float *o = out + (long)n * C, s = 0, ss = 0;
        #pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += xr[c];
        float m = s / (float)C;
        #pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += (xr[c] - m) * (xr[c] - m);
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        #pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (xr[c] - m) * r * w[c] + b[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

W2V_HOT void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C)
{
    /* parameter gradients: sums over rows of g xhat and g, by blocks of
     * rows in memory order, added in block order (deterministic) */
    if (dw || db) {
        int nb = N < 64 ? 1 : 16;
        double *part = xcalloc((size_t)nb * C * 2, sizeof *part);
        #pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            double *pw = part + (long)b * 2 * C, *pb = pw + C;
            float *fw = xcalloc((size_t)C * 2, sizeof *fw), *fb = fw + C;
            /* float partial sums over runs of 64 rows, vectorised, then into double */
            for (long n0 = (long)N * b / nb, end = (long)N * (b + 1) / nb; n0 < end; n0 += 64) {
                for (long n = n0; n < end && n < n0 + 64; n++) {
                    float mn = mean[n], rs = rstd[n];
                    #pragma omp simd
                    for (int c = 0; c < C; c++) {
                        float g = dout[n * C + c];
                        fw[c] += g * (x[n * C + c] - mn) * rs;
                        fb[c] += g;
                    }
                }
                for (int c = 0; c < C; c++) pw[c] += fw[c], pb[c] += fb[c], fw[c] = fb[c] = 0;
            }
            free(fw);
        }
        for (int c = 0; c < C; c++) {
            double sw = 0, sb = 0;
            for (int b = 0; b < nb; b++) sw += part[(long)b * 2 * C + c], sb += part[(long)b * 2 * C + C + c];
            if (dw) dw[c] += (float)sw;
            if (db) db[c] += (float)sb;
        }
        free(part);
    }
    if (!dx) return;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *xr = x + (long)n * C, *g = dout + (long)n * C;
        float *d = dx + (long)n * C, m = mean[n], r = rstd[n];
        float s1 = 0, s2 = 0; /* mean of dnorm and of dnorm * xhat */
        #pragma omp simd reduction(+ : s1, s2)
        for (int c = 0; c < C; c++) {
            float dn = g[c] * w[c], xh = (xr[c] - m) * r;
            s1 += dn;
            s2 += dn * xh;
        }
        float a = s1 / (float)C, bq = s2 / (float)C;
        #pragma omp simd
        for (int c = 0; c < C; c++) {
            float dn = g[c] * w[c], xh = (xr[c] - m) * r;
            d[c] += r * (dn - a - xh * bq);
        }
    }
}

W2V_HOT void groupnorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int B,
                       int T, int C, float eps)
{
    #pragma omp parallel for
    for (int bi = 0; bi < B; bi++) {
        const float *xb = x + (long)bi * T * C;
        float *ob = out + (long)bi * T * C;
        double *s = xcalloc((size_t)C * 2, sizeof *s), *ss = s + C;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) s[c] += xb[(long)t * C + c];
        for (int c = 0; c < C; c++) s[c] /= T;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double d = xb[(long)t * C + c] - s[c];
                ss[c] += d * d;
            }
        float *m = mean + (long)bi * C, *r = rstd + (long)bi * C;
        for (int c = 0; c < C; c++) {
            m[c] = (float)s[c];
            r[c] = (float)(1.0 / sqrt(ss[c] / T + eps));
        }
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                long i = (long)t * C + c;
                ob[i] = (xb[i] - m[c]) * r[c] * w[c] + b[c];
            }
        free(s);
    }
}

W2V_HOT void groupnorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const float *mean, const float *rstd, int B, int T, int C)
{
    /* per example and channel: sums of g and g * xhat over time */
    double *sg = xcalloc((size_t)B * C * 2, sizeof *sg), *sgx = sg + (long)B * C;
    #pragma omp parallel for
    for (int bi = 0; bi < B; bi++) {
        const float *xb = x + (long)bi * T * C, *gb = dout + (long)bi * T * C;
        const float *m = mean + (long)bi * C, *r = rstd + (long)bi * C;
        double *a = sg + (long)bi * C, *bx = sgx + (long)bi * C;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                long i = (long)t * C + c;
                a[c] += gb[i];
                bx[c] += gb[i] * (xb[i] - m[c]) * r[c];
            }
    }
    for (int bi = 0; bi < B; bi++)
        for (int c = 0; c < C; c++) {
            if (dw) dw[c] += (float)sgx[(long)bi * C + c];
            if (db) db[c] += (float)sg[(long)bi * C + c];
        }
    if (dx) {
        #pragma omp parallel for
        for (int bi = 0; bi < B; bi++) {
            const float *xb = x + (long)bi * T * C, *gb = dout + (long)bi * T * C;
            const float *m = mean + (long)bi * C, *r = rstd + (long)bi * C;
            float *dxb = dx + (long)bi * T * C;
            /* dxhat = g w; dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) */
            float *ma = xmalloc((size_t)C * 2 * sizeof *ma), *mb = ma + C;
            for (int c = 0; c < C; c++) {
                ma[c] = (float)(sg[(long)bi * C + c] * w[c] / T);
                mb[c] = (float)(sgx[(long)bi * C + c] * w[c] / T);
            }
            for (int t = 0; t < T; t++)
                for (int c = 0; c < C; c++) {
                    long i = (long)t * C + c;
                    float xh = (xb[i] - m[c]) * r[c];
                    dxb[i] += r[c] * (gb[i] * w[c] - ma[c] - xh * mb[c]);
                }
            free(ma);
        }
    }
    free(sg);
}
