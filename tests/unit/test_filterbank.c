/* w2v_model_init_filterbank: the conv encoder it starts is a mel-like
 * spectrogram.  A tone lights the band of its frequency, whatever its
 * phase; a band's envelope follows the tone's level. */
#include "unit.h"
#include "w2v/model.h"

#include <string.h>

enum { T = 16000 };

/* The small preset's encoder (64 bands), eval mode, on x [B, T]; the
 * envelope layer's output (conv_layer.1) of example b, frame f. */
static const float *envelopes(w2v_model *m, const float *x, int B, int64_t shape[3])
{
    char err[256];
    w2v_input in = {.B = B, .T = T, .x = x};
    w2v_run run = {0, 0, 0, 0};
    CHECK(w2v_model_forward(m, &in, &run, NULL, err, sizeof err) >= 0, "forward: %s", err);
    return w2v_model_activation(m, "conv_layer.1", shape);
}

static int loudest_band(const float *e, int bands)
{
    int best = 0;
    for (int i = 1; i < bands; i++) best = e[i] > e[best] ? i : best;
    return best;
}

int main(void)
{
    char err[256];
    w2v_config c;
    CHECK(w2v_config_preset(&c, "small", err, sizeof err) == 0, "%s", err);
    char *labels[2] = {"a", "b"};
    w2v_config_set_labels(&c, 2, labels);
    w2v_model *m = w2v_model_new(&c);
    w2v_model_init_weights(m, 3);
    CHECK(w2v_model_init_filterbank(m, 60, 7600, err, sizeof err) == 2, "%s", err);
    int bands = c.conv_dim[0] / 4;
    CHECK(c.conv_dim[1] == bands, "the small preset's second layer has a channel per band");

    /* every filter of unit norm; the envelope layer reads its band's four phases only */
    const w2v_param *w0 = w2v_model_find_param(m, "wav2vec2.feature_extractor.conv_layers.0.conv.weight"),
                    *w1 = w2v_model_find_param(m, "wav2vec2.feature_extractor.conv_layers.1.conv.weight");
    const float *p = w2v_model_params(m, NULL);
    for (int o = 0; o < c.conv_dim[0]; o++) {
        double ss = 0;
        for (int k = 0; k < c.conv_kernel[0]; k++) ss += (double)p[w0->offset + (long)o * c.conv_kernel[0] + k] * p[w0->offset + (long)o * c.conv_kernel[0] + k];
        CHECK(fabs(ss - 1) < 1e-5, "filter %d: norm^2 %g", o, ss);
    }
    int stray = 0;
    for (int i = 0; i < bands; i++)
        for (int ch = 0; ch < c.conv_dim[0]; ch++)
            for (int k = 0; k < c.conv_kernel[1]; k++) {
                float v = p[w1->offset + ((long)i * c.conv_dim[0] + ch) * c.conv_kernel[1] + k];
                stray += ch / 4 == i ? v != 1.0f / c.conv_kernel[1] : v != 0;
            }
    CHECK(stray == 0, "%d envelope weights outside their band's phases", stray);

    /* tones at the centres of bands 4, 12 and 24, in three phases each: in
     * the middle frame, for every phase, the tone's band is the loudest, or
     * within 10% of a neighbour that is (low bands lie closer than a 25 ms
     * window resolves, and GroupNorm scales each band to its own level over
     * the clip, so bands that both pass the tone light alike) */
    double mlo = 2595 * log10(1 + 60 / 700.0), mhi = 2595 * log10(1 + 7600 / 700.0);
    int tests[3] = {4, 12, 24};
    float *x = calloc((size_t)9 * T, sizeof *x);
    for (int j = 0; j < 3; j++) {
        double f = 700 * (pow(10, (mlo + (mhi - mlo) * tests[j] / (bands - 1)) / 2595) - 1);
        for (int ph = 0; ph < 3; ph++)
            for (int t = 0; t < T; t++) {
                /* a quiet tone everywhere (about 1 kHz), the test's tone in the middle half second */
                double noise = 0.01 * sin(12.9898 * t + 78.233 * (3 * j + ph));
                x[(long)(3 * j + ph) * T + t] =
                    (float)(noise + (t > T / 4 && t < 3 * T / 4 ? sin(2 * M_PI * f * t / 16000 + ph * 2.1) : 0));
            }
    }
    int64_t shape[3];
    const float *e = envelopes(m, x, 9, shape);
    CHECK(shape[2] == bands, "conv_layer.1 has %lld channels", (long long)shape[2]);
    for (int j = 0; j < 9; j++) {
        const float *mid = e + ((long)j * shape[1] + shape[1] / 2) * shape[2];
        int want = tests[j / 3], got = loudest_band(mid, bands);
        CHECK(abs(got - want) <= 1 && mid[want] > 0.9f * mid[got], "tone at band %d, phase %d: loudest band %d (%.3g against %.3g)",
              want, j % 3, got, mid[got], mid[want]);
        /* where the tone is off, its band is quiet */
        const float *edge = e + ((long)j * shape[1] + 2) * shape[2];
        CHECK(mid[got] > 4 * edge[got], "band %d: %.3g with the tone, %.3g without", got, mid[got], edge[got]);
    }

    /* a layer that cannot hold a filterbank is refused */
    w2v_config bad;
    w2v_config_copy(&bad, &c);
    bad.conv_dim[0] = 30;
    w2v_model *mb = w2v_model_new(&bad);
    CHECK(w2v_model_init_filterbank(mb, 60, 7600, err, sizeof err) < 0 && strstr(err, "divisible by 4"), "%s", err);
    CHECK(w2v_model_init_filterbank(m, 60, 9000, err, sizeof err) < 0 && strstr(err, "fmax"), "%s", err);
    w2v_model_free(mb);
    w2v_config_free(&bad);

    free(x);
    w2v_model_free(m);
    w2v_config_free(&c);
    return unit_finish("test_filterbank");
}
