/* Random numbers: a seeded sequence for initialisation and sampling, and a
 * counter-based hash for dropout masks, so that a mask can be recomputed in
 * the backward pass and does not depend on the thread count. */
#ifndef W2V_RNG_H
#define W2V_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
    double spare; /* the second normal of a Box-Muller pair */
    int has_spare;
} w2v_rng;

void w2v_rng_seed(w2v_rng *r, uint64_t seed);
uint64_t w2v_rng_next(w2v_rng *r);
/* Uniform in [0, 1). */
double w2v_rng_uniform(w2v_rng *r);
/* Uniform integer in [0, n). */
uint64_t w2v_rng_below(w2v_rng *r, uint64_t n);
/* Standard normal. */
double w2v_rng_normal(w2v_rng *r);
/* Shuffles idx[0..n-1] (Fisher-Yates). */
void w2v_rng_shuffle(w2v_rng *r, long *idx, long n);

/* A well-mixed 64-bit value of (key, i): the i-th draw of stream key. */
uint64_t w2v_hash(uint64_t key, uint64_t i);
/* Uniform float in [0, 1) from w2v_hash. */
static inline float w2v_hash_uniform(uint64_t key, uint64_t i)
{
    return (float)(w2v_hash(key, i) >> 40) * (1.0f / 16777216.0f);
}

#endif
