/* SpecAugment span masks, drawn as transformers' _compute_mask_indices
 * draws them (with our generator in place of numpy's). */
#include "ops.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int num_spans(double prob, int len, int span, int min_masks, int n, double eps)
{
    int k = (int)(prob * len / span + eps);
    if (k < min_masks) k = min_masks;
    if (k * span > n) k = n / span;
    if (len - (span - 1) < k) k = len - (span - 1) > 0 ? len - (span - 1) : 0;
    return k;
}

long specaug_mask(uint8_t *mask, int B, int n, const int *lengths, double prob, int span, int min_masks,
                  w2v_rng *rng)
{
    memset(mask, 0, (size_t)B * n);
    if (prob <= 0 || span < 1) return 0;
    double eps = w2v_rng_uniform(rng);
    long masked = 0, *starts = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *starts);
    for (int b = 0; b < B; b++) {
        int len = lengths ? lengths[b] : n, choices = len - (span - 1);
        int k = num_spans(prob, len, span, min_masks, n, eps);
        if (k <= 0 || choices <= 0) continue;
        /* k distinct starts: a partial Fisher-Yates over 0..choices-1 */
        for (int i = 0; i < choices; i++) starts[i] = i;
        for (int i = 0; i < k; i++) {
            long j = i + (long)w2v_rng_below(rng, (uint64_t)(choices - i)), t = starts[i];
            starts[i] = starts[j];
            starts[j] = t;
        }
        for (int i = 0; i < k; i++)
            for (int o = 0; o < span; o++) {
                long p = starts[i] + o;
                if (p > n - 1) p = n - 1;
                if (!mask[(long)b * n + p]) masked++;
                mask[(long)b * n + p] = 1;
            }
    }
    free(starts);
    return masked;
}
