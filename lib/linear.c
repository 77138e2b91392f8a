/* Fully connected layers through OpenBLAS, weights stored [out, in] as torch does. */
#include "ops.h"


void linear_forward(float *out, const float *in, const float *w, const float *b, int N, int nin, int nout)
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
    if (db) {
        #pragma omp parallel for
        for (int o = 0; o < nout; o++) {
            float s = 0;
            for (int n = 0; n < N; n++) s += dout[(long)n * nout + o];
            db[o] += s;
        }
    }
}
