/* The layers of the model, each a forward and a backward over flat float
 * arrays in the manner of llm.c.  Activations are channels-last:
 * [batch, time, channels].  Every backward ACCUMULATES (+=) into the
 * gradients it is given (inputs and parameters); a NULL gradient pointer is
 * skipped.  Parallel loops use OpenMP; so do GEMMs (gemm.c), with OpenBLAS
 * single-threaded inside: one pool of threads for everything. */
#ifndef W2V_OPS_H
#define W2V_OPS_H

#include <stdint.h>

/* The elementwise and reduction loops are compiled twice, for x86-64-v3
 * (AVX2, FMA) and for the baseline the build targets, and the loader picks
 * what the CPU runs (GCC's function multiversioning): on this project's
 * 2-core AMD EPYC, AVX2 made a training step of the demo's model 18%
 * faster.  The GEMMs are OpenBLAS's, which chooses its own kernels. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define W2V_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define W2V_HOT
#endif

/* ---- gemm.c: C = alpha op(A) op(B) + beta C, row-major (cblas_sgemm's
 * arguments, transposes as 0/1), split over the library's threads ----
 *
 * The precision of the products, in the manner of torch.autocast: each
 * thread has a mode, read by every gemm() it calls.  fp32 (the default) is
 * OpenBLAS's sgemm, bit for bit what it was before bf16 existed.  bf16
 * rounds both operands to bf16 and accumulates in fp32 (oneDNN, in
 * gemm_dnnl.c); everything else (norms, softmax, GELU, the loss, the
 * optimizer) stays fp32, and the fp32 weights stay the master copy.
 *
 * Who sets it: the model's passes, in each thread that runs a shard
 * (model.c's shard_forward and shard_backward: w2v_run.bf16 of the forward,
 * kept for its backward, as autocast's casts are), restoring the thread's
 * previous mode after.  A parallel loop inside a pass that calls gemm()
 * hands its caller's mode to its threads (attention.c); gemm() hands it to
 * the pieces it cuts a product into.  Being per thread, the mode of one
 * pass never leaks into another running elsewhere. */
typedef struct gemm_weights gemm_weights;
typedef struct {
    int bf16;              /* products in bf16 */
    gemm_weights *weights; /* NULL, or the parameter block: operands in it are converted once per change */
} gemm_mode;
/* Sets the calling thread's mode; returns the one it replaces. */
gemm_mode gemm_mode_set(gemm_mode m);
gemm_mode gemm_mode_get(void);
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc);

/* ---- gemm_dnnl.c: the bf16 products (every oneDNN call is there) ---- */
/* Whether bf16 products can run: the CPU has avx512_bf16 (oneDNN's ISA
 * query, which DNNL_MAX_CPU_ISA=AVX512_CORE lowers, for tests). */
int gemm_bf16_available(void);
/* The same for a pass that asks for bf16: where the CPU cannot, says so
 * once (lib_note) and returns 0: the products run in fp32. */
int gemm_bf16_requested(void);
/* gemm() in bf16: operands rounded to bf16 (those inside w's block from its
 * kept copy), fp32 accumulation.  0, or -1 when oneDNN could not make the
 * product (C untouched; gemm() then runs it in fp32). */
int gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc, gemm_weights *w);
/* A bf16 copy of a parameter block block[0, n) for gemm_bf16's operands:
 * each operand converted on first use and kept until gemm_weights_changed()
 * (never called while a pass runs). */
gemm_weights *gemm_weights_new(const float *block, long n);
void gemm_weights_changed(gemm_weights *w);
void gemm_weights_free(gemm_weights *w);
/* Rounds to the nearest bf16 (ties to even; NaN stays NaN): the upper half
 * of the float's bits. */
void float_to_bf16(uint16_t *dst, const float *src, long n);

/* ---- linear.c: out[N,O] = in[N,I] W[O,I]^T + b[O] ---- */
/* acc[c] += sum over rows of x[n, c], for x [N, C]: bias gradients. */
void column_sum(float *acc, const float *x, long N, int C);
void linear_forward(float *out, const float *in, const float *w, const float *b, int N, int nin, int nout);
void linear_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w, int N,
                     int nin, int nout);

/* ---- norm.c ---- */
/* LayerNorm over the last dimension of N rows of C; mean/rstd [N]. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                       int C, float eps);
void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const float *mean, const float *rstd, int N, int C);
/* GroupNorm with one group per channel: statistics per example and channel
 * over all T frames; x [B, T, C], mean/rstd [B, C]. */
void groupnorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int B,
                       int T, int C, float eps);
void groupnorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const float *mean, const float *rstd, int B, int T, int C);

/* ---- activation.c ---- */
/* The vectorisable erf and e^x (x <= 0) the GELU uses, for tests. */
float w2v_erf(float x);
float w2v_exp_neg(float x);
/* Exact GELU, 0.5 x (1 + erf(x / sqrt 2)); out may alias x. */
void gelu_forward(float *out, const float *x, long n);
void gelu_backward(float *dx, const float *x, const float *dout, long n);
/* Dropout with probability p: out = x * keep / (1 - p), keep drawn from
 * (key, i) for element i of a tensor (under 2^32 elements) of which x holds
 * the n elements from index first on (a shard's part), so the backward, and
 * any other cut of the tensor, draws the same mask.  out may alias x; p = 0
 * copies. */
void dropout_forward(float *out, const float *x, long n, float p, uint64_t key, long first);
void dropout_backward(float *dx, const float *dout, long n, float p, uint64_t key, long first);
/* out = a + b (residual connections); out may alias a or b. */
void residual_forward(float *out, const float *a, const float *b, long n);

/* ---- conv.c ---- */
/* Grouped 1-D convolution, channels-last: x [B, Tin, Cin], bias [Cout] or
 * NULL, out [B, Tout, Cout] with out[t] reading x[t*S - P + k], zeros
 * outside; the weight as torch stores it is w [Cout, Cin/G, K], which
 * conv1d_reorder() turns into wr [Cout, K, Cin/G], what the products read.
 * scratch holds conv1d_scratch() floats. */
typedef struct {
    int B, Tin, Tout, Cin, Cout, K, S, P, G;
} conv_shape;
long conv1d_scratch(const conv_shape *s);
void conv1d_reorder(float *wr, const float *w, const conv_shape *s);
void conv1d_forward(float *out, const float *x, const float *wr, const float *bias, const conv_shape *s,
                    float *scratch);
/* dx += d x from dout = d out (the bias's gradient is column_sum's). */
void conv1d_backward_data(float *dx, const float *dout, const float *wr, const conv_shape *s, float *scratch);
/* dw (torch's order) += group g's rows of d w, from these examples. */
void conv1d_backward_weight(float *dw, const float *dout, const float *x, const conv_shape *s, int g, float *scratch);
/* Weight normalisation over dim 2 (one norm per tap k, over output and
 * input channels): w[:, :, k] = g[k] v[:, :, k] / ||v[:, :, k]||. */
void weightnorm_forward(float *w, const float *g, const float *v, int rows, int K);
void weightnorm_backward(float *dg, float *dv, const float *dw, const float *g, const float *v, int rows, int K);

/* ---- attention.c ---- */
/* A bias added to the scores (WavLM's gated relative position bias):
 * scores[b, h, i, j] += gate[b, i, h] bias[h, i, j], bias [nh, T, T], gate
 * [B, T, nh].  The backward SETS dbias [B, nh, T, T] (each example's d bias)
 * and accumulates into dgate [B, T, nh]. */
typedef struct {
    const float *bias, *gate;
    float *dbias, *dgate;
} attn_bias;
/* Scaled dot-product attention of nh heads over q, k, v [B, T, H] (q
 * already scaled); keys at frames >= valid[b] are masked (valid NULL: none);
 * rb NULL or a bias.  probs [B, nh, T, T] keeps the softmax for the
 * backward; attention dropout p uses key, per head and example, b0 being
 * the index of the first example in the whole batch. */
void attention_forward(float *ctx, float *probs, const float *q, const float *k, const float *v,
                       const int *valid, const attn_bias *rb, int B, int T, int H, int nh, float p, uint64_t key,
                       int b0, float *scratch);
void attention_backward(float *dq, float *dk, float *dv, const float *dctx, const float *probs, const float *q,
                        const float *k, const float *v, const attn_bias *rb, int B, int T, int H, int nh, float p,
                        uint64_t key, int b0, float *scratch);
long attention_scratch(int T);
/* WavLM's bucket of a relative distance d = key frame - query frame:
 * exact up to num_buckets / 4, then logarithmic up to max_distance, the
 * sign in the upper half of the buckets (_relative_positions_bucket). */
int relpos_bucket(int d, int num_buckets, int max_distance);
/* bias [nh, T, T]: bias[h, i, j] = embed[bucket(j - i), h], embed
 * [num_buckets, nh]; the backward adds dbias [B, nh, T, T], summed over
 * the examples, into dembed. */
void relpos_bias_forward(float *bias, const float *embed, int T, int nh, int num_buckets, int max_distance);
void relpos_bias_backward(float *dembed, const float *dbias, int B, int T, int nh, int num_buckets, int max_distance);
/* WavLM's gate, per frame and head, from x [N, nh * hd] (N frames):
 * gl [N, nh, 8] = head h's slice [hd] times w [8, hd]^T + b;
 * gate [N, nh] = sa (sb c[h] - 1) + 2, sa and sb the sigmoids of the sums of
 * gl's first and last four.  The backward takes dgl [N, nh, 8] as scratch. */
void relgate_forward(float *gate, float *gl, const float *x, const float *w, const float *b, const float *c, int N,
                     int nh, int hd);
void relgate_backward(float *dx, float *dw, float *db, float *dc, float *dgl, const float *dgate, const float *x,
                      const float *w, const float *gl, const float *c, int N, int nh, int hd);

/* ---- head.c: the classification head ---- */
/* Weighted sum of L hidden states hs[l] (each n floats) with softmax(lw). */
void layersum_forward(float *out, float *const *hs, const float *lw, int L, long n);
void layersum_backward(float *const *dhs, float *dlw, const float *dout, float *const *hs, const float *lw, int L,
                       long n);
/* Mean over frames of x [B, T, C]: over frames < valid[b], or all (valid NULL). */
void meanpool_forward(float *out, const float *x, const int *valid, int B, int T, int C);
void meanpool_backward(float *dx, const float *dout, const int *valid, int B, int T, int C);
/* The softmax of one row of n logits, in double: p[i] = exp(z[i] - max) /
 * sum (p may be NULL).  Returns the row's log-sum-exp, max + log(sum): a
 * label's cross-entropy is that minus its logit.  Training's loss and the
 * evaluation's (classify.c) both come from here. */
double softmax_row(const float *z, int n, double *p);
/* Mean cross-entropy over the examples with a label >= 0; probs [B, n]
 * keeps the softmax.  Returns the loss (0 when no example has a label). */
float crossentropy_forward(float *probs, const float *logits, const int64_t *labels, int B, int n);
void crossentropy_backward(float *dlogits, const float *probs, const int64_t *labels, int B, int n);

/* ---- specaug.c: SpecAugment masks as HF's _compute_mask_indices ---- */
#include "w2v/rng.h"
/* Marks spans of `span` positions in each of B rows of n (1 = masked):
 * int(prob * len / span + eps) spans (eps one uniform draw per call, at
 * least min_masks), starts drawn without replacement from the first
 * len - span + 1 positions, len = lengths[b] or n.  Returns how many
 * positions were masked. */
long specaug_mask(uint8_t *mask, int B, int n, const int *lengths, double prob, int span, int min_masks,
                  w2v_rng *rng);

#endif
