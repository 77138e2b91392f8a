/* The one entry to BLAS.  OpenBLAS runs single-threaded inside the
 * library's OpenMP threads: a large product is cut into one block of rows
 * (or columns) per thread.  Two thread pools taking turns on the same cores
 * spend their time spinning (measured: over half of a forward pass in
 * libgomp's wait loop); one pool does not.
 *
 * The precision of the products is the calling thread's gemm_mode (see
 * ops.h): fp32 is OpenBLAS's sgemm, exactly as before bf16 existed; bf16
 * goes to gemm_dnnl.c, the one place that calls oneDNN. */
#include "ops.h"
#include "w2v/threads.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>

/* OpenBLAS single-threaded, set once before the first product. */
static void blas_single(void) { openblas_set_num_threads(1); }

/* The calling thread's mode: thread-local, as torch.autocast's state is. */
static __thread gemm_mode mode;

gemm_mode gemm_mode_set(gemm_mode m)
{
    gemm_mode old = mode;
    mode = m;
    return old;
}

gemm_mode gemm_mode_get(void) { return mode; }

/* Below this many multiply-adds a product is not worth splitting. */
#define SPLIT_MIN (1l << 18)

static void gemm1(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc)
{
    /* bf16 falls back to fp32 only where oneDNN could not make the product */
    if (mode.bf16 && gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, mode.weights) == 0) return;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, blas_single);
    int nt = omp_in_parallel() ? 1 : w2v_threads();
    if (nt <= 1 || (long)M * N * K < SPLIT_MIN) {
        gemm1(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int by_rows = M >= N;
    int len = by_rows ? M : N, chunk = (len + nt - 1) / nt;
    chunk = (chunk + 15) / 16 * 16; /* whole micro-kernel tiles */
    #pragma omp parallel for num_threads(nt)
    for (int t = 0; t < nt; t++) {
        int s = t * chunk, n = len - s < chunk ? len - s : chunk;
        if (n <= 0) continue;
        if (by_rows)
            gemm1(ta, tb, n, N, K, alpha, ta ? A + s : A + (long)s * lda, lda, B, ldb, beta, C + (long)s * ldc, ldc);
        else
            gemm1(ta, tb, M, n, K, alpha, A, lda, tb ? B + (long)s * ldb : B + s, ldb, beta, C + s, ldc);
    }
}
