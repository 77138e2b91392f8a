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

/* splitmix64: its increment (2^64 / the golden ratio), its finaliser (a
 * well-mixed 64-bit value of z), and the next value of its sequence from
 * state *x, which seeds xoshiro and makes small keyed streams (ks-synth). */
#define W2V_GOLDEN_GAMMA 0x9e3779b97f4a7c15ull
static inline uint64_t w2v_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
uint64_t w2v_splitmix64(uint64_t *x);

/* A well-mixed 64-bit value of (key, i): the i-th draw of stream key
 * (inline, as dropout calls it per element). */
static inline uint64_t w2v_hash(uint64_t key, uint64_t i)
{
    return w2v_mix64((key ^ (i * 0xd1b54a32d192ed03ull)) + W2V_GOLDEN_GAMMA);
}

#endif
