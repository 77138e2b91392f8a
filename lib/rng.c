/* xoshiro256** seeded through splitmix64, and a splitmix-style hash. */
#include "w2v/rng.h"

#include <math.h>

uint64_t w2v_splitmix64(uint64_t *x) { return w2v_mix64(*x += W2V_GOLDEN_GAMMA); }

void w2v_rng_seed(w2v_rng *r, uint64_t seed)
{
    r->has_spare = 0;
    r->spare = 0;
    for (int i = 0; i < 4; i++) r->s[i] = w2v_splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t w2v_rng_next(w2v_rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double w2v_rng_uniform(w2v_rng *r) { return (double)(w2v_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t w2v_rng_below(w2v_rng *r, uint64_t n)
{
    /* rejection keeps it unbiased */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = w2v_rng_next(r);
    while (x >= limit);
    return x % n;
}

double w2v_rng_normal(w2v_rng *r)
{
    /* Box-Muller makes two: the second is kept for the next call */
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u = 1.0 - w2v_rng_uniform(r), v = w2v_rng_uniform(r), rad = sqrt(-2.0 * log(u));
    r->spare = rad * sin(2.0 * M_PI * v);
    r->has_spare = 1;
    return rad * cos(2.0 * M_PI * v);
}

void w2v_rng_shuffle(w2v_rng *r, long *idx, long n)
{
    for (long i = n - 1; i > 0; i--) {
        long j = (long)w2v_rng_below(r, (uint64_t)i + 1), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
