/* The conv feature encoder: num_conv_layers of (conv, norm, GELU) from the
 * audio [B, T] to frames [B, F, C].  Layer l takes [B, Tl[l], C(l-1)] to
 * [B, Tl[l+1], Cl] with a kernel of Kl taps and stride Sl; its norm is a
 * LayerNorm over channels on every layer (feat_extract_norm "layer") or a
 * GroupNorm with a group per channel on layer 0 only ("group"). */
#include "blocks.h"
#include "internal.h"

#include <math.h>

void conv_declare(param_walk *w, conv_params *p, const w2v_config *c)
{
    const char *pre = w2v_config_prefix(c);
    /* HuBERT's _init_weights zeroes every conv bias */
    double bias_init = c->family == W2V_HUBERT ? 0 : 1;
    for (int l = 0; l < c->num_conv_layers; l++) {
        int cin = l ? c->conv_dim[l - 1] : 1, cout = c->conv_dim[l], k = c->conv_kernel[l];
        param_add(w, &p->w[l], INIT_KAIMING_NORMAL, sqrt(2.0 / (cin * k)), 1, 1, 3, cout, cin, k, 0,
                  "%s.feature_extractor.conv_layers.%d.conv.weight", pre, l);
        if (c->conv_bias)
            param_add(w, &p->b[l], INIT_UNIFORM, bias_init / sqrt(cin * k), 0, 1, 1, cout, 0, 0, 0,
                      "%s.feature_extractor.conv_layers.%d.conv.bias", pre, l);
        if (c->feat_extract_norm_layer || l == 0) {
            /* a GroupNorm weight decays, a LayerNorm weight does not */
            param_add(w, &p->norm_w[l], INIT_ONE, 0, !c->feat_extract_norm_layer, 1, 1, cout, 0, 0, 0,
                      "%s.feature_extractor.conv_layers.%d.layer_norm.weight", pre, l);
            param_add(w, &p->norm_b[l], INIT_ZERO, 0, 0, 1, 1, cout, 0, 0, 0,
                      "%s.feature_extractor.conv_layers.%d.layer_norm.bias", pre, l);
        }
    }
}

static int normed(const w2v_config *c, int l) { return c->feat_extract_norm_layer || l == 0; }

void conv_layout(const block_run *r, arena *ar, conv_acts *a, arena *gr, conv_grads *d)
{
    const w2v_config *c = r->cfg;
    long big = 0, inner = 0; /* the largest layer; the largest input of layers 1 and up */
    long even = 0, odd = 0;  /* the largest of the even layers, of the odd */
    for (int l = 0; l < c->num_conv_layers; l++) {
        long n = (long)r->Tl[l + 1] * c->conv_dim[l];
        big = n > big ? n : big;
        if (l < c->num_conv_layers - 1) inner = n > inner ? n : inner;
        if (l % 2) odd = n > odd ? n : odd;
        else even = n > even ? n : even;
    }
    /* inference: layer l reads only act[l - 1], so the acts take two
     * buffers in turn, and every layer's out and norm one each */
    float *act[2] = {0}, *out = NULL, *norm = NULL;
    if (r->inference) {
        act[0] = arena_take(ar, even), act[1] = arena_take(ar, odd);
        out = arena_take(ar, big), norm = arena_take(ar, big);
    }
    for (int l = 0; l < c->num_conv_layers; l++) {
        long n = (long)r->Tl[l + 1] * c->conv_dim[l];
        a->out[l] = r->inference ? out : arena_take(ar, n);
        a->norm[l] = !normed(c, l) ? a->out[l] : r->inference ? norm : arena_take(ar, n);
        a->act[l] = r->inference ? act[l % 2] : arena_take(ar, n);
        long stats = c->feat_extract_norm_layer ? r->Tl[l + 1] : c->conv_dim[l];
        a->mean[l] = normed(c, l) ? arena_take(ar, stats) : NULL;
        a->rstd[l] = normed(c, l) ? arena_take(ar, stats) : NULL;
    }
    if (!gr) return; /* no backward, or a frozen encoder */
    d->act = arena_take(gr, inner);
    d->norm = arena_take(gr, big);
    d->out = arena_take(gr, big);
}

static conv_shape layer_shape(const w2v_config *c, const block_run *r, int l)
{
    conv_shape s = {r->B, r->Tl[l], r->Tl[l + 1], l ? c->conv_dim[l - 1] : 1, c->conv_dim[l], c->conv_kernel[l],
                    c->conv_stride[l], 0, 1};
    return s;
}

/* A layer's weight reordered for the products (the first floats of
 * scratch), then the convolution's own scratch. */
static long weight_size(const conv_shape *s) { return (long)s->Cout * s->K * (s->Cin / s->G); }

long conv_scratch(const block_run *r)
{
    const w2v_config *c = r->cfg;
    long most = 0;
    for (int l = 0; l < c->num_conv_layers; l++) {
        conv_shape s = layer_shape(c, r, l);
        long n = weight_size(&s) + conv1d_scratch(&s);
        most = n > most ? n : most;
    }
    return most;
}

/* Sets the precision of layer l's products and returns the caller's.
 * Layer 0 reads the raw waveform, which bf16's 8-bit significand would
 * quantise to about -48 dB: its products stay fp32 under --bf16 (the
 * demo's model run with --bf16 changed 1.5% of its test labels with layer
 * 0 in bf16, 0.07% with it in fp32; a few MFLOP a clip of wav2vec2-base's
 * 14 GFLOP). */
static gemm_mode layer_precision(int l)
{
    gemm_mode outer = gemm_mode_get();
    if (l == 0 && outer.bf16) gemm_mode_set((gemm_mode){0});
    return outer;
}

void conv_forward(const block_run *r, const conv_params *p, conv_acts *a, const float *audio)
{
    const w2v_config *c = r->cfg;
    const float *x = audio;
    for (int l = 0; l < c->num_conv_layers; l++) {
        conv_shape s = layer_shape(c, r, l);
        long cnt = (long)r->B * s.Tout * s.Cout;
        gemm_mode outer = layer_precision(l);
        conv1d_reorder(r->scratch, p->w[l], &s);
        conv1d_forward(a->out[l], x, r->scratch, p->b[l], &s, r->scratch + weight_size(&s));
        gemm_mode_set(outer);
        /* nn.LayerNorm and nn.GroupNorm here keep torch's default eps */
        if (c->feat_extract_norm_layer)
            layernorm_forward(a->norm[l], a->mean[l], a->rstd[l], a->out[l], p->norm_w[l], p->norm_b[l],
                              r->B * s.Tout, s.Cout, 1e-5f);
        else if (l == 0)
            groupnorm_forward(a->norm[l], a->mean[l], a->rstd[l], a->out[l], p->norm_w[l], p->norm_b[l], r->B,
                              s.Tout, s.Cout, 1e-5f);
        gelu_forward(a->act[l], a->norm[l], cnt);
        x = a->act[l];
    }
}

void conv_backward(const block_run *r, const conv_params *p, conv_params *g, const conv_acts *a, conv_grads *d,
                   const float *audio, const float *dout)
{
    const w2v_config *c = r->cfg;
    const float *dact = dout; /* d act[l] */
    for (int l = c->num_conv_layers - 1; l >= 0; l--) {
        conv_shape s = layer_shape(c, r, l);
        long cnt = (long)r->B * s.Tout * s.Cout;
        zero(d->norm, cnt);
        gelu_backward(d->norm, a->norm[l], dact, cnt);
        const float *dconv = d->norm; /* d out[l]: d norm[l] where the layer has no norm */
        if (normed(c, l)) {
            zero(d->out, cnt);
            if (c->feat_extract_norm_layer)
                layernorm_backward(d->out, g->norm_w[l], g->norm_b[l], d->norm, a->out[l], p->norm_w[l], a->mean[l],
                                   a->rstd[l], r->B * s.Tout, s.Cout);
            else
                groupnorm_backward(d->out, g->norm_w[l], g->norm_b[l], d->norm, a->out[l], p->norm_w[l], a->mean[l],
                                   a->rstd[l], r->B, s.Tout, s.Cout);
            dconv = d->out;
        }
        /* the input of layer 0 is the audio: no gradient needed there */
        float *dx = NULL;
        if (l > 0) {
            dx = d->act; /* d act[l] has been read: d->act now takes d act[l - 1] */
            zero(dx, (long)r->B * s.Tin * s.Cin);
        }
        gemm_mode outer = layer_precision(l);
        const float *x = l ? a->act[l - 1] : audio;
        float *own = r->scratch + weight_size(&s);
        conv1d_reorder(r->scratch, p->w[l], &s);
        if (dx) conv1d_backward_data(dx, dconv, r->scratch, &s, own);
        conv1d_backward_weight(g->w[l], dconv, x, &s, 0, own);
        if (g->b[l]) column_sum(g->b[l], dconv, (long)r->B * s.Tout, s.Cout);
        gemm_mode_set(outer);
        dact = d->act;
    }
}

/* Learning filters from raw audio is what makes a Wav2Vec2 slow to start
 * from scratch: HF's kaiming-normal first layer is white noise.  Here each
 * centre frequency, mel-spaced from fmin to fmax, gets four unit-norm
 * Hann-windowed cosines a quarter period apart (0, 90, 180, 270 degrees):
 * after the GroupNorm and GELU, their sum is the band's envelope whatever
 * the signal's phase at the frame.  A second layer with a channel per band
 * starts as that sum, averaged over its taps: the encoder then computes a
 * mel-like spectrogram, which a frozen encoder keeps. */
int conv_init_filterbank(const w2v_config *c, const conv_params *p, double fmin, double fmax, char *err,
                         size_t errlen)
{
    int C = c->conv_dim[0], K = c->conv_kernel[0], bands = C / 4;
    double rate = c->sampling_rate;
    if (C % 4) return set_error(err, errlen, "a filterbank needs conv_dim[0] divisible by 4, not %d", C);
    if (K < 16) return set_error(err, errlen, "a filterbank needs a first conv kernel of at least 16 taps, not %d", K);
    if (!(fmin > 0 && fmin < fmax && fmax <= rate / 2))
        return set_error(err, errlen, "filterbank range %g-%g Hz: need 0 < fmin < fmax <= %g", fmin, fmax, rate / 2);
    double mlo = 2595 * log10(1 + fmin / 700), mhi = 2595 * log10(1 + fmax / 700);
    for (int i = 0; i < bands; i++) {
        double mel = bands > 1 ? mlo + (mhi - mlo) * i / (bands - 1) : mlo;
        double f = 700 * (pow(10, mel / 2595) - 1);
        for (int q = 0; q < 4; q++) {
            float *w = p->w[0] + (long)(4 * i + q) * K;
            double ss = 0;
            for (int k = 0; k < K; k++) {
                double t = (k - (K - 1) / 2.0) / rate, hann = 0.5 - 0.5 * cos(2 * M_PI * k / (K - 1));
                w[k] = (float)(hann * cos(2 * M_PI * f * t + q * M_PI / 2));
                ss += (double)w[k] * w[k];
            }
            for (int k = 0; k < K; k++) w[k] = (float)(w[k] / sqrt(ss));
        }
    }
    if (c->conv_bias) memset(p->b[0], 0, (size_t)C * sizeof(float));
    if (c->num_conv_layers < 2 || c->conv_dim[1] != bands) return 1;
    /* the envelope layer: [bands, C, K1], band i reads channels 4i .. 4i + 3 */
    int K1 = c->conv_kernel[1];
    float *w1 = p->w[1];
    memset(w1, 0, (size_t)bands * C * K1 * sizeof(float));
    for (int i = 0; i < bands; i++)
        for (int q = 0; q < 4; q++)
            for (int k = 0; k < K1; k++) w1[((long)i * C + 4 * i + q) * K1 + k] = 1.0f / (float)K1;
    if (c->conv_bias) memset(p->b[1], 0, (size_t)bands * sizeof(float));
    return 2;
}
