/* Fully connected layers through OpenBLAS, weights stored [out, in] as torch does. */
#include "ops.h"
#include "internal.h"

#include <stdlib.h>


W2V_HOT void linear_forward(float *out, const float *in, const float *w, const float *b, int N, int nin, int nout)
{
    if (b) {
        #pragma omp parallel for
        for (int n = 0; n < N; n++)
            for (int o = 0; o < nout; o++) out[(long)n * nout + o] = b[o];
    }
    gemm(0, 1, N, nout, nin, 1.0f, in, nin, w, nin, b ? 1.0f : 0.0f, out, nout);
}

void linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int N,
                     int nin, int nout)
{
    if (din) gemm(0, 0, N, nin, nout, 1.0f, dout, nout, w, nin, 1.0f, din, nin);
    if (dw) gemm(1, 0, nout, nin, N, 1.0f, dout, nout, in, nin, 1.0f, dw, nin);
    if (db) column_sum(db, dout, N, nout);
}

W2V_HOT void column_sum(float *acc, const float *x, long N, int C)
{
    /* Row by row, in memory order: a partial sum per block of rows, added in
     * block order, so the result does not depend on the threads' timing. */
    int nb = N < 64 ? 1 : 16;
    double *part = xcalloc((size_t)nb * C, sizeof *part);
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++)
        for (long n = N * b / nb; n < N * (b + 1) / nb; n++)
            for (int c = 0; c < C; c++) part[(long)b * C + c] += x[n * C + c];
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int b = 0; b < nb; b++) s += part[(long)b * C + c];
        acc[c] += (float)s;
    }
    free(part);
}
