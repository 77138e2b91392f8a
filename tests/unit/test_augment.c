/* lib/augment.c: the shoebox room model against acoustics (the direct
 * path's delay and level, the decay Sabine's formula predicts), and the
 * count of keys drawn again within an epoch. */
#include "unit.h"
#include "w2v/augment.h"

#include <stdint.h>

#define RATE 16000

static double dist(const double *a, const double *b)
{
    return sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]));
}

/* Reverberation time from the Schroeder integral: the slope of the decay
 * from -5 to -25 dB, extrapolated to 60 dB (T20). */
static double measured_t60(const float *h, int64_t n)
{
    double *edc = malloc((size_t)n * sizeof *edc), total = 0;
    for (int64_t t = n - 1; t >= 0; t--) edc[t] = total += (double)h[t] * h[t];
    int64_t t5 = -1, t25 = -1;
    for (int64_t t = 0; t < n; t++) {
        double db = 10 * log10(edc[t] / total);
        if (t5 < 0 && db <= -5) t5 = t;
        if (t25 < 0 && db <= -25) t25 = t;
    }
    free(edc);
    return t5 < 0 || t25 < 0 ? -1 : 3.0 * (double)(t25 - t5) / RATE;
}

static void test_rooms(void)
{
    w2v_rng r;
    w2v_rng_seed(&r, 7);
    double lo = INFINITY, hi = 0;
    for (int k = 0; k < 12; k++) {
        w2v_room room;
        w2v_room_draw(&r, &room);
        for (int d = 0; d < 3; d++)
            CHECK(room.source[d] >= 0.5 && room.source[d] <= room.size[d] - 0.5 && room.mic[d] >= 0.5 &&
                      room.mic[d] <= room.size[d] - 0.5,
                  "room %d: source and microphone inside, 0.5 m from the walls", k);
        CHECK(room.beta > 0 && room.beta < 1, "room %d: reflection coefficient %g", k, room.beta);
        int64_t n;
        float *h = w2v_room_rir(&room, RATE, &n);
        CHECK(n == (int64_t)ceil(fmin(room.t60, 1.0) * RATE) + 1, "room %d: %lld samples for T60 %g s", k,
              (long long)n, room.t60);
        /* the direct path arrives first, at distance / c, with 1 / (4 pi d) */
        double d = dist(room.source, room.mic);
        int64_t first = 0;
        while (first < n && h[first] == 0) first++;
        CHECK(first == llround(d / 343.0 * RATE), "room %d: first arrival at %lld, distance %g m", k,
              (long long)first, d);
        CHECK(fabs(h[first] - 1 / (4 * M_PI * d)) < 1e-6 / d, "room %d: direct path %g, want %g", k, h[first],
              1 / (4 * M_PI * d));
        /* the image sources decay about as Sabine's formula says a diffuse
         * field would; a shoebox's specular field is not quite diffuse (its
         * flutter between the least absorbing walls outlasts the rest) and
         * decays up to half again slower */
        double ratio = measured_t60(h, n) / room.t60;
        CHECK(ratio > 0.8 && ratio < 1.5, "room %d: measured T60 %g s, Sabine %g s", k, ratio * room.t60, room.t60);
        lo = fmin(lo, ratio);
        hi = fmax(hi, ratio);
        /* the same draw gives the same bytes */
        int64_t n2;
        float *h2 = w2v_room_rir(&room, RATE, &n2);
        CHECK(n2 == n && !memcmp(h, h2, (size_t)n * sizeof *h), "room %d: repeatable", k);
        free(h);
        free(h2);
    }
    printf("rooms: measured T60 %.2f to %.2f times Sabine's\n", lo, hi);
}

static void test_repeats(void)
{
    w2v_augment_options o = {.seed = 1, .sample_rate = RATE};
    char err[256];
    w2v_augment *a = w2v_augment_new(&o, err, sizeof err);
    CHECK(a != NULL, "new: %s", err);
    CHECK(w2v_augment_repeat(a, "k1", 0) == 0 && w2v_augment_repeat(a, "k2", 0) == 0, "first times");
    CHECK(w2v_augment_repeat(a, "k1", 0) == 1 && w2v_augment_repeat(a, "k1", 0) == 2, "again");
    /* past the first table's size: every key still counted on its own */
    char key[32];
    long wrong = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 5000; i++) {
            snprintf(key, sizeof key, "many/%d", i);
            wrong += w2v_augment_repeat(a, key, 0) != pass;
        }
    CHECK(wrong == 0, "%ld of 10000 counts wrong", wrong);
    CHECK(w2v_augment_repeat(a, "k1", 0) == 3, "k1 kept across growth");
    CHECK(w2v_augment_repeat(a, "k1", 1) == 0 && w2v_augment_repeat(a, "many/7", 1) == 0, "a new epoch forgets");
    w2v_augment_free(a);
}

int main(void)
{
    test_rooms();
    test_repeats();
    return unit_finish("test_augment");
}
