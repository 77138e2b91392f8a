/* bf16 products through oneDNN: the only file that calls oneDNN.
 *
 * gemm() (gemm.c) comes here when the calling thread's mode is bf16: both
 * operands are rounded to bf16 (to nearest even, as torch's casts do) and
 * oneDNN's matmul multiplies them, accumulating in fp32 into the fp32 C;
 * here that is brgemm or its jit gemm with avx512_bf16's dot products, 2-4x
 * OpenBLAS's sgemm on 2048^3 (w2v-bench --mode sgemm [--bf16]).  No GEMM
 * kernel is written here.
 *
 * Operands.  An operand that lies in the model's parameter block (the
 * gemm_weights the mode names: Linear weights) is read from a bf16 copy of
 * that block, converted on first use and kept until gemm_weights_changed()
 * (conv.c declares its reordered weight the weights of its call the same
 * way); any other (activations, gradients) is converted into this thread's
 * buffers on every call.
 *
 * Threads, as gemm.c does it for sgemm: a product large enough is cut into
 * one block of rows (or columns) per thread, each a single-threaded oneDNN
 * call; measured here, that ran 1.5-5x faster than oneDNN splitting the
 * product over the same two threads itself.
 *
 * Primitives are made once per shape and kept per thread (no locks; a
 * thread's cache is emptied when full).  The scratchpad is the caller's
 * (user mode), a per-thread buffer, so that threads never share one.
 *
 * Written against oneDNN 2.x's C API (Debian 12 has 2.6.3).  3.x removed the
 * operation descriptors (dnnl_matmul_desc_init) and moved scales to
 * execution-time arguments: porting changes matmul_make() and
 * matmul_run(), nothing outside this file. */
#include "ops.h"
#include "internal.h"
#include "w2v/threads.h"

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if DNNL_VERSION_MAJOR != 2
#error "gemm_dnnl.c is written against oneDNN 2.x's C API (3.x changed it): port matmul_make() and matmul_run()"
#endif

/* Below this many multiply-adds a product is not worth splitting (gemm.c's). */
#define SPLIT_MIN (1l << 18)

/* ---- rounding ---- */

/* Round to nearest even, NaN kept quiet (what torch's float -> bfloat16 and
 * vcvtneps2bf16 do); vectorised by the compiler. */
W2V_HOT void float_to_bf16(uint16_t *dst, const float *src, long n)
{
    const uint32_t *bits = (const uint32_t *)(const void *)src;
    #pragma omp simd
    for (long i = 0; i < n; i++) {
        uint32_t u = bits[i];
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, q = (u >> 16) | 0x40u;
        dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
    }
}

/* The same with avx512_bf16's vcvtne2ps2bf16, for the operands: also to
 * nearest even, but subnormal inputs become 0, as the bf16 dot products
 * that read them treat them anyway.  Measured here: 7x float_to_bf16's
 * speed in L2, 2x in L3.  Only called where the CPU has avx512_bf16, which
 * every bf16 product needs. */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void to_bf16(uint16_t *dst, const float *src, long n)
{
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)r);
    }
    if (i < n) float_to_bf16(dst + i, src + i, n - i);
}
#else
#define to_bf16 float_to_bf16
#endif

/* rows of cols floats, ld apart, into rows of cols bf16 */
static void convert_rows(uint16_t *dst, const float *src, int rows, int cols, long ld)
{
    #pragma omp parallel for schedule(static) if ((long)rows * cols >= (1l << 16))
    for (int r = 0; r < rows; r++) to_bf16(dst + (long)r * cols, src + r * ld, cols);
}

/* ---- the engine ---- */

static dnnl_engine_t engine;
static int available;

static void setup(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    /* the ISA values are bit sets: avx512_core_amx contains avx512_core_bf16 */
    int bf16 = (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
    if (bf16 && dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success) available = 1;
}

int gemm_bf16_available(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, setup);
    return available;
}

int gemm_bf16_requested(void)
{
    int ok = gemm_bf16_available();
    static int noted;
    if (!ok && !__atomic_exchange_n(&noted, 1, __ATOMIC_RELAXED))
        lib_note("bf16 asked for, but this CPU has no avx512_bf16 (oneDNN's ISA query): the products run in fp32");
    return ok;
}

/* ---- per-thread state: stream, buffers, primitives ---- */

typedef struct {
    void *p;
    size_t cap;
} tbuf;

static void *tbuf_get(tbuf *b, size_t bytes)
{
    if (bytes > b->cap) {
        free(b->p);
        b->cap = bytes + bytes / 4;
        b->p = xaligned(b->cap);
    }
    return b->p;
}

/* one product's shape, as oneDNN sees it (leading dimensions of the bf16
 * operands) */
typedef struct {
    int ta, tb, M, N, K;
    long lda, ldb, ldc;
    float alpha, beta;
} shape;

typedef struct {
    shape s;
    int used;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, pad; /* handles set per call */
    size_t pad_bytes;
} prim_entry;

#define CACHE_SIZE 512 /* a power of two; emptied at three quarters */

static __thread dnnl_stream_t stream;
static __thread tbuf buf_a, buf_b, buf_pad;
static __thread prim_entry *cache;
static __thread int cached;

static uint64_t shape_hash(const shape *s)
{
    uint64_t h = 1469598103934665603u;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < sizeof *s; i++) h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static void entry_free(prim_entry *e)
{
    dnnl_primitive_destroy(e->prim);
    dnnl_memory_destroy(e->a);
    dnnl_memory_destroy(e->b);
    dnnl_memory_destroy(e->c);
    dnnl_memory_destroy(e->pad);
    e->used = 0;
}

/* 2-D descriptors: a [r, c] matrix stored row-major with leading dimension
 * ld, or (t) its transpose stored so */
static dnnl_status_t md2(dnnl_memory_desc_t *md, int r, int c, int t, long ld, dnnl_data_type_t dt)
{
    dnnl_dims_t dims = {r, c}, strides = {t ? 1 : ld, t ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

/* ---- oneDNN 2.x's API: a matmul primitive, and running it ---- */

static int matmul_make(prim_entry *e, const shape *s)
{
    dnnl_memory_desc_t a, b, c, pad;
    dnnl_matmul_desc_t op;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_post_ops_t po = NULL;
    int ok = md2(&a, s->M, s->K, s->ta, s->lda, dnnl_bf16) == dnnl_success &&
             md2(&b, s->K, s->N, s->tb, s->ldb, dnnl_bf16) == dnnl_success &&
             md2(&c, s->M, s->N, 0, s->ldc, dnnl_f32) == dnnl_success &&
             dnnl_matmul_desc_init(&op, &a, &b, NULL, &c) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && s->alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &s->alpha) == dnnl_success;
    if (ok && s->beta != 0.0f)
        ok = dnnl_post_ops_create(&po) == dnnl_success && dnnl_post_ops_append_sum(po, s->beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    ok = ok && dnnl_primitive_desc_create(&pd, &op, attr, engine, NULL) == dnnl_success;
    if (ok) {
        pad = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        e->pad_bytes = dnnl_memory_desc_get_size(&pad);
        ok = dnnl_primitive_create(&e->prim, pd) == dnnl_success;
        if (ok) {
            int mem = dnnl_memory_create(&e->a, &a, engine, DNNL_MEMORY_NONE) == dnnl_success;
            mem &= dnnl_memory_create(&e->b, &b, engine, DNNL_MEMORY_NONE) == dnnl_success;
            mem &= dnnl_memory_create(&e->c, &c, engine, DNNL_MEMORY_NONE) == dnnl_success;
            mem &= dnnl_memory_create(&e->pad, &pad, engine, DNNL_MEMORY_NONE) == dnnl_success;
            if (!mem) {
                e->used = 1;
                entry_free(e);
                ok = 0;
            }
        }
    }
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    dnnl_primitive_desc_destroy(pd);
    if (ok) e->s = *s, e->used = 1;
    return ok ? 0 : -1;
}

static int matmul_run(prim_entry *e, const uint16_t *A, const uint16_t *B, float *C)
{
    void *pad = e->pad_bytes ? tbuf_get(&buf_pad, e->pad_bytes) : NULL;
    if (dnnl_memory_set_data_handle(e->a, (void *)A) != dnnl_success ||
        dnnl_memory_set_data_handle(e->b, (void *)B) != dnnl_success ||
        dnnl_memory_set_data_handle(e->c, C) != dnnl_success ||
        dnnl_memory_set_data_handle(e->pad, pad) != dnnl_success)
        return -1;
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}, {DNNL_ARG_SCRATCHPAD, e->pad}};
    if (dnnl_primitive_execute(e->prim, stream, 4, args) != dnnl_success) return -1;
    return dnnl_stream_wait(stream) == dnnl_success ? 0 : -1;
}

/* The primitive for shape s in this thread's cache, made when missing. */
static prim_entry *lookup(const shape *s)
{
    if (!stream && dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) return NULL;
    if (!cache) cache = xcalloc(CACHE_SIZE, sizeof *cache);
    uint64_t i = shape_hash(s) & (CACHE_SIZE - 1);
    for (; cache[i].used; i = (i + 1) & (CACHE_SIZE - 1))
        if (!memcmp(&cache[i].s, s, sizeof *s)) return &cache[i];
    if (cached >= CACHE_SIZE * 3 / 4) {
        for (int j = 0; j < CACHE_SIZE; j++)
            if (cache[j].used) entry_free(&cache[j]);
        cached = 0;
        i = shape_hash(s) & (CACHE_SIZE - 1);
    }
    if (matmul_make(&cache[i], s) < 0) return NULL;
    cached++;
    return &cache[i];
}

/* C [M, N] = alpha op(A) op(B) + beta C on bf16 operands, one
 * single-threaded oneDNN call.  oneDNN threads a primitive over
 * omp_get_max_threads() unless it runs inside a parallel region; outside
 * one, this thread's thread count is 1 for the call (an ICV of the calling
 * thread only), so that oneDNN never splits a product itself. */
static int matmul1(int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, long lda, const uint16_t *B,
                   long ldb, float beta, float *C, long ldc)
{
    shape s;
    memset(&s, 0, sizeof s); /* the padding is hashed */
    s.ta = ta, s.tb = tb, s.M = M, s.N = N, s.K = K;
    s.lda = lda, s.ldb = ldb, s.ldc = ldc, s.alpha = alpha, s.beta = beta;
    int nthr = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nthr > 1) omp_set_num_threads(1);
    prim_entry *e = lookup(&s);
    int ret = e ? matmul_run(e, A, B, C) : -1;
    if (nthr > 1) omp_set_num_threads(nthr);
    return ret;
}

/* ---- the bf16 copy of a parameter block ---- */

typedef struct {
    long off, len;
    unsigned long epoch;
} made_t;

struct gemm_weights {
    const float *base;
    long n;
    uint16_t *copy; /* [n], written only where an operand was converted */
    unsigned long epoch;
    made_t *made;   /* the conversions made, by offset */
    int nmade, cap;
    pthread_mutex_t lock;
};

gemm_weights *gemm_weights_new(const float *block, long n)
{
    gemm_weights *w = xcalloc(1, sizeof *w);
    w->base = block;
    w->n = n;
    w->epoch = 1;
    pthread_mutex_init(&w->lock, NULL);
    return w;
}

void gemm_weights_changed(gemm_weights *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->epoch++;
    pthread_mutex_unlock(&w->lock);
}

void gemm_weights_free(gemm_weights *w)
{
    if (!w) return;
    pthread_mutex_destroy(&w->lock);
    free(w->copy);
    free(w->made);
    free(w);
}

/* The bf16 copy of block[off, off + len), converted unless it is current. */
static const uint16_t *weights_copy(gemm_weights *w, long off, long len)
{
    pthread_mutex_lock(&w->lock);
    /* untouched pages of a large allocation are never mapped: the copy
     * takes memory only for the operands converted */
    if (!w->copy) w->copy = xmalloc((size_t)w->n * sizeof *w->copy);
    made_t *m = NULL;
    for (int i = 0; i < w->nmade && !m; i++)
        if (w->made[i].off == off) m = &w->made[i];
    if (!m || m->epoch != w->epoch || m->len < len) {
        if (!m) {
            if (w->nmade == w->cap) w->made = xrealloc(w->made, (size_t)(w->cap = w->cap ? 2 * w->cap : 64) * sizeof *w->made);
            m = &w->made[w->nmade++];
            m->off = off, m->len = 0;
        }
        long per = 1l << 16, chunks = (len + per - 1) / per;
        #pragma omp parallel for schedule(static) if (chunks > 1)
        for (long c = 0; c < chunks; c++) {
            long s = c * per, e = s + per < len ? s + per : len;
            to_bf16(w->copy + off + s, w->base + off + s, e - s);
        }
        m->len = len > m->len ? len : m->len;
        m->epoch = w->epoch;
    }
    pthread_mutex_unlock(&w->lock);
    return w->copy + off;
}

/* Operand X (rows x cols, leading dimension ld) in bf16: from w's copy when
 * it lies in the parameter block (same leading dimension), else converted
 * into buf (contiguous).  (A transposed operand stays so: converting it
 * transposed made the weight gradients' products no faster.) */
static const uint16_t *operand(gemm_weights *w, const float *X, int rows, int cols, long ld, tbuf *buf, long *ld16)
{
    long extent = (long)(rows - 1) * ld + cols;
    uintptr_t x = (uintptr_t)X, base = w ? (uintptr_t)w->base : 0;
    if (w && x >= base && x + (uintptr_t)extent * sizeof *X <= base + (uintptr_t)w->n * sizeof *X) {
        *ld16 = ld;
        return weights_copy(w, (long)(X - w->base), extent);
    }
    uint16_t *d = tbuf_get(buf, (size_t)rows * cols * sizeof *d);
    convert_rows(d, X, rows, cols, ld);
    *ld16 = cols;
    return d;
}

/* ---- the entry ---- */

int gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc, gemm_weights *w)
{
    if (!gemm_bf16_available()) return -1;
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) { /* no products: C = beta C */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
        return 0;
    }
    long lda16, ldb16;
    const uint16_t *a16 = operand(w, A, ta ? K : M, ta ? M : K, lda, &buf_a, &lda16);
    const uint16_t *b16 = operand(w, B, tb ? N : K, tb ? K : N, ldb, &buf_b, &ldb16);
    int nt = omp_in_parallel() ? 1 : w2v_threads();
    if (nt <= 1 || (long)M * N * K < SPLIT_MIN)
        return matmul1(ta, tb, M, N, K, alpha, a16, lda16, b16, ldb16, beta, C, ldc);
    int by_rows = M >= N;
    int len = by_rows ? M : N, chunk = (len + nt - 1) / nt;
    chunk = (chunk + 15) / 16 * 16;
    int failed = 0;
    #pragma omp parallel for num_threads(nt) reduction(| : failed)
    for (int t = 0; t < nt; t++) {
        int s = t * chunk, n = len - s < chunk ? len - s : chunk;
        if (n <= 0) continue;
        if (by_rows)
            failed |= matmul1(ta, tb, n, N, K, alpha, ta ? a16 + s : a16 + s * lda16, lda16, b16, ldb16, beta,
                              C + (long)s * ldc, ldc) < 0;
        else
            failed |= matmul1(ta, tb, M, n, K, alpha, a16, lda16, tb ? b16 + s * ldb16 : b16 + s, ldb16, beta,
                              C + s, ldc) < 0;
    }
    /* a failure leaves C alone only where no piece ran: such a C cannot be
     * redone in fp32, so fail loudly instead */
    if (failed) {
        fprintf(stderr, "w2v: oneDNN failed on a bf16 product of %d x %d x %d\n", M, N, K);
        abort();
    }
    return 0;
}
