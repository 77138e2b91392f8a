/* w2v-bench: time the library's forward pass or training step on one
 * configuration and print one JSON line.  One configuration per process, so
 * that the peak RSS (getrusage) is that configuration's alone. */
#include "ops.h"
#include "w2v/cli.h"
#include "w2v/config.h"
#include "w2v/corpus.h"
#include "w2v/model.h"
#include "w2v/optim.h"
#include "w2v/rng.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char usage[] =
    "w2v-bench: time Wav2Vec2 inference or training steps (libw2v) on random audio\n"
    "\n"
    "Usage: w2v-bench [options]            (prints one JSON line on stdout)\n"
    " e.g.: w2v-bench --mode infer --batch 1 --iters 20\n"
    "       w2v-bench --mode train-frozen --config model --threads 2\n"
    "\n"
    "A randomly initialised model (12 labels) runs warm-up iterations, then\n"
    "timed ones; the median gives clips/s, the real-time factor (seconds of\n"
    "compute per second of audio) and, for inference, GFLOP/s (2 per\n"
    "multiply-add of the forward pass, counted from the config).  Peak RSS is\n"
    "the whole process's.  Training steps are forward (train mode: dropout on,\n"
    "SpecAugment off), backward and AdamW with clipping at 1.0.\n"
    "\n"
    "Options:\n"
    "  --mode M          infer (eval-mode forward), train (forward, backward, AdamW),\n"
    "                    train-frozen (the same, conv feature encoder frozen), or sgemm:\n"
    "                    the ceiling, a 2048^3 product through libw2v's gemm (cut over\n"
    "                    the threads, OpenBLAS single-threaded in each) [infer]\n"
    "  --preset NAME     base (facebook/wav2vec2-base), small, tiny, or another family's:\n"
    "                    hubert-base, distilhubert, wavlm-base, data2vec-audio-base [base]\n"
    "  --config DIR      a model directory's config.json instead of a preset\n"
    "  --batch N         clips per forward pass [8]\n"
    "  --samples N       samples per clip, 16 kHz [16000]\n"
    "  --warmup N        untimed iterations first [2]\n"
    "  --iters N         timed iterations [10]\n"
    "  --seed N          weights, audio and dropout seed [0]\n"
    "  --bf16            mixed precision (w2v_run.bf16, as torch.autocast): the products in\n"
    "                    bf16 with fp32 accumulation (oneDNN); with --mode sgemm, the\n"
    "                    2048^3 product so\n"
    "  --threads N       threads [the cores available]\n"
    "  -h, --help        this text\n"
    "  --version         print the version\n";

enum { OPT_MODE = 1, OPT_PRESET, OPT_CONFIG, OPT_BATCH, OPT_SAMPLES, OPT_WARMUP, OPT_ITERS, OPT_SEED, OPT_BF16 };
enum { MODE_INFER, MODE_TRAIN, MODE_TRAIN_FROZEN, MODE_SGEMM, NMODES };
static const char *const mode_names[] = {"infer", "train", "train-frozen", "sgemm"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Multiply-adds of one clip's forward pass of T samples: the products
 * (convolutions, linear layers, attention); the elementwise work is left
 * out. */
static double forward_macs(const w2v_config *c, long T)
{
    double macs = 0, n = T;
    for (int l = 0; l < c->num_conv_layers; l++) {
        n = floor((n - c->conv_kernel[l]) / c->conv_stride[l]) + 1;
        macs += n * c->conv_dim[l] * (l ? c->conv_dim[l - 1] : 1) * c->conv_kernel[l];
    }
    double F = n, H = c->hidden_size, C = c->conv_dim[c->num_conv_layers - 1];
    macs += F * C * H;                                                              /* feature projection */
    macs += F * H * (H / c->num_conv_pos_embedding_groups) * w2v_config_pos_kernel(c) * w2v_config_pos_layers(c); /* positional convs */
    macs += c->num_hidden_layers * F * (4 * H * H + 2 * H * c->intermediate_size + 2 * F * H);
    macs += F * H * c->classifier_proj_size + c->classifier_proj_size * c->num_labels;
    return macs;
}

/* The ceiling: one n^3 product through libw2v's own gemm (cut over the
 * threads, OpenBLAS single-threaded in each; or oneDNN in bf16, operands
 * converted per call as an activation's are). */
static double sgemm_seconds(const float *a, const float *b, float *c, int n, int bf16)
{
    gemm_mode old = gemm_mode_set((gemm_mode){bf16, NULL});
    double t = w2v_now();
    gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    t = w2v_now() - t;
    gemm_mode_set(old);
    return t;
}

/* Sorts t[0..n-1] and returns its median. */
static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"mode", required_argument, 0, OPT_MODE},
        {"preset", required_argument, 0, OPT_PRESET},
        {"config", required_argument, 0, OPT_CONFIG},
        {"batch", required_argument, 0, OPT_BATCH},
        {"samples", required_argument, 0, OPT_SAMPLES},
        {"warmup", required_argument, 0, OPT_WARMUP},
        {"iters", required_argument, 0, OPT_ITERS},
        {"seed", required_argument, 0, OPT_SEED},
        {"bf16", no_argument, 0, OPT_BF16},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {0, 0, 0, 0},
    };
    const char *preset = NULL, *config = NULL;
    int opt, mode = MODE_INFER, B = 8, T = 16000, warmup = 2, iters = 10, bf16 = 0;
    long seed = 0;
    char err[1024];
    w2v_cli_init("w2v-bench", usage, argv);
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case OPT_MODE:
            for (mode = 0; mode < NMODES && strcmp(optarg, mode_names[mode]); mode++) {}
            if (mode == NMODES) w2v_usage_error("--mode: infer, train, train-frozen or sgemm, not '%s'", optarg);
            break;
        case OPT_PRESET: preset = optarg; break;
        case OPT_CONFIG: config = optarg; break;
        case OPT_BATCH: B = (int)w2v_parse_long("--batch", optarg, 1, 4096); break;
        case OPT_SAMPLES: T = (int)w2v_parse_long("--samples", optarg, 1, 16000 * 600); break;
        case OPT_WARMUP: warmup = (int)w2v_parse_long("--warmup", optarg, 0, 100000); break;
        case OPT_ITERS: iters = (int)w2v_parse_long("--iters", optarg, 1, 100000); break;
        case OPT_SEED: seed = w2v_parse_long("--seed", optarg, 0, LONG_MAX); break;
        case OPT_BF16: bf16 = 1; break;
        }
    }
    if (optind < argc) w2v_usage_error("unexpected argument '%s'", argv[optind]);
    if (preset && config) w2v_usage_error("--preset and --config exclude each other");
    /* what ran: bf16 asked for on a CPU without it runs (and says) fp32 */
    if (bf16) bf16 = gemm_bf16_requested();
    const char *precision = bf16 ? "bf16" : "fp32";
    if (mode == MODE_SGEMM) {
        enum { N = 2048 };
        double *t = malloc((size_t)(warmup + iters) * sizeof *t);
        float *a = malloc((size_t)N * N * sizeof *a), *b = malloc((size_t)N * N * sizeof *b),
              *cc = malloc((size_t)N * N * sizeof *cc);
        if (!t || !a || !b || !cc) w2v_die("out of memory");
        for (long j = 0; j < (long)N * N; j++) a[j] = b[j] = (float)(j % 7) * 0.1f;
        for (int it = 0; it < warmup + iters; it++) t[it] = sgemm_seconds(a, b, cc, N, bf16);
        double med = median(t + warmup, iters);
        if (printf("{\"impl\":\"c\",\"mode\":\"sgemm\",\"size\":%d,\"threads\":%d,\"iters\":%d,"
                   "\"median_s\":%g,\"gflops\":%g,\"precision\":\"%s\"}\n", N, w2v_threads(), iters, med,
                   2.0 * N * N * N / med / 1e9, precision) < 0 ||
            fflush(stdout) != 0)
            w2v_write_failed("stdout");
        free(t);
        free(a);
        free(b);
        free(cc);
        return 0;
    }

    w2v_config c;
    if (config) {
        if (w2v_config_load(&c, config, err, sizeof err) < 0) w2v_die("%s", err);
    } else if (w2v_config_preset(&c, preset ? preset : "base", err, sizeof err) < 0)
        w2v_usage_error("--preset: %s", err);
    /* SpecAugment is left out of the timing (the PyTorch twin has none);
     * masked_spec_embed stays, so the parameter count is unchanged */
    if (w2v_config_update(&c, "{\"apply_spec_augment\":false}", err, sizeof err) < 0) w2v_die("%s", err);
    w2v_config_set_labels(&c, W2V_KS_NLABELS, (char *const *)w2v_ks_labels);
    if (w2v_config_frames(&c, T) < 1)
        w2v_usage_error("--samples: %d samples give no frame (at least %ld)", T, w2v_config_min_samples(&c));

    double t_setup = w2v_now();
    w2v_model *m = w2v_model_new(&c);
    w2v_model_init_weights(m, (uint64_t)seed);
    long nparams = 0;
    for (int i = 0; i < w2v_model_num_params(m); i++) nparams += w2v_model_param(m, i)->size;

    /* audio: unit-variance noise, as normalised clips are */
    float *x = malloc((size_t)B * T * sizeof *x);
    int64_t *lengths = malloc((size_t)B * sizeof *lengths), *labels = malloc((size_t)B * sizeof *labels);
    /* per timed iteration: the whole step, then its forward, backward and optimizer parts */
    enum { STEP, FWD, BWD, OPT, NPHASES };
    double *times[NPHASES];
    for (int p = 0; p < NPHASES; p++)
        if (!(times[p] = malloc((size_t)iters * sizeof *times[p]))) w2v_die("out of memory");
    if (!x || !lengths || !labels) w2v_die("out of memory");
    w2v_rng r;
    w2v_rng_seed(&r, (uint64_t)seed + 1);
    for (long j = 0; j < (long)B * T; j++) x[j] = (float)w2v_rng_normal(&r);
    for (int b = 0; b < B; b++) {
        lengths[b] = T;
        labels[b] = (int64_t)w2v_rng_below(&r, W2V_KS_NLABELS);
    }

    int train = mode != MODE_INFER;
    w2v_optim *o = NULL;
    if (train) {
        w2v_model_freeze_feature_encoder(m, mode == MODE_TRAIN_FROZEN);
        w2v_optim_opts oo;
        w2v_optim_defaults(&oo);
        oo.schedule = W2V_SCHED_CONSTANT; /* lr stays 5e-5: every timed step moves the weights */
        o = w2v_optim_new(m, &oo);
    }
    t_setup = w2v_now() - t_setup;
    w2v_input in = {.B = B, .T = T, .x = x, .lengths = lengths, .labels = train ? labels : NULL};
    float loss = 0;
    for (int it = 0; it < warmup + iters; it++) {
        /* inference as w2v-predict runs it (and torch.inference_mode) */
        w2v_run run = {.training = train, .seed = (uint64_t)seed, .step = (uint64_t)it, .attention_mask = -1,
                       .bf16 = bf16, .inference = !train};
        double t[NPHASES + 1];
        t[0] = w2v_now();
        loss = w2v_model_forward(m, &in, &run, NULL, err, sizeof err);
        if (loss < 0) w2v_die("forward: %s", err);
        t[1] = w2v_now();
        if (train) w2v_model_backward(m, 1.0f);
        t[2] = w2v_now();
        double lr;
        if (train) {
            w2v_optim_step(o, m, &lr);
            w2v_model_zero_grad(m); /* as Trainer, after the step */
        }
        t[3] = w2v_now();
        if (it < warmup) continue;
        times[STEP][it - warmup] = t[3] - t[0];
        for (int p = FWD; p <= OPT; p++) times[p][it - warmup] = t[p] - t[p - 1];
    }

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double med = median(times[STEP], iters), audio_s = (double)B * T / c.sampling_rate;
    json_t *out = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                            "impl", "c", "mode", mode_names[mode], "config", config ? config : preset ? preset : "base",
                            "batch", B, "samples", T, "threads", w2v_threads(), "warmup", warmup, "iters", iters,
                            "params", (json_int_t)nparams, "setup_s", t_setup, "median_s", med, "min_s",
                            times[STEP][0], "max_s", times[STEP][iters - 1], "clips_per_s", B / med, "rtf",
                            med / audio_s, "peak_rss_mib", ru.ru_maxrss / 1024.0);
    if (out && !train) {
        double gflop = 2 * forward_macs(&c, T) / 1e9;
        json_object_update_new(out, json_pack("{s:f, s:f}", "gflop_per_clip", gflop, "gflops", gflop * B / med));
    }
    if (out && train)
        json_object_update_new(out, json_pack("{s:f, s:f, s:f}", "forward_s", median(times[FWD], iters), "backward_s",
                                              median(times[BWD], iters), "optim_s", median(times[OPT], iters)));
    if (!out) w2v_die("out of memory");
    json_object_set_new(out, "precision", json_string(precision));
    if (train && isfinite(loss)) json_object_set_new(out, "loss", json_real(loss));
    if (json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6)) < 0 || putchar('\n') == EOF) w2v_write_failed("stdout");
    json_decref(out);
    if (fflush(stdout) != 0 || ferror(stdout)) w2v_write_failed("stdout");

    free(x);
    free(lengths);
    free(labels);
    for (int p = 0; p < NPHASES; p++) free(times[p]);
    w2v_optim_free(o);
    w2v_model_free(m);
    w2v_config_free(&c);
    return 0;
}
