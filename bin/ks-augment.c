/* ks-augment: a batches (or examples) stream with every example augmented
 * (lib/augment.c), record by record. */
#include "w2v/audio.h"
#include "w2v/augment.h"
#include "w2v/cli.h"
#include "w2v/stream.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "ks-augment: augment the examples of a stream: noise, time shift, speed, gain, rooms\n"
    "\n"
    "Usage: ks-augment [options] [STREAM]     (no STREAM or '-' reads stdin)\n"
    " e.g.: ks-batch -b 32 --shuffle --epochs 5 train.stream |\n"
    "         ks-augment --noise corpus/_background_noise_ --time-shift 100 --speed 0.9,1.1 |\n"
    "         w2v-train ...\n"
    "\n"
    "Writes the stream it reads (batches or examples), keys, labels, lengths\n"
    "and padding unchanged.  Each example's draws come from --seed, its key, its\n"
    "epoch (a batch's index over the header's batches_per_epoch; 0 in an\n"
    "examples stream) and how often its key came before in the epoch.  A changed\n"
    "example is normalised again (zero mean, unit variance) unless the header\n"
    "says do_normalize false.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE    write the stream to FILE (default: stdout)\n"
    "  --seed S             seed of every draw (default: 42)\n"
    "  --noise DIR|LIST     noise recordings: a directory's audio files, or a list\n"
    "  --noise-prob P       chance an example gets noise (default: 0.8)\n"
    "  --snr-db LO,HI       speech-to-noise ratio in dB, uniform (default: 0,20)\n"
    "  --time-shift MS      shift by up to MS ms either way, zeros filling (default: 0)\n"
    "  --speed LO,HI        speed factor, uniform; length kept (default: none)\n"
    "  --gain-db LO,HI      gain in dB, uniform (default: none; raw audio only)\n"
    "  --reverb P           chance an example is reverberated (default: 0)\n"
    "  --rir DIR|LIST       impulse responses for --reverb (default: 32 simulated\n"
    "                       rooms drawn from --seed)\n"
    "  --converter NAME     resampler: best, medium, fastest, zoh, linear\n"
    "                       (default: fastest)\n"
    "  -j, --threads N      threads over a batch's examples (default: the cores)\n"
    "  --progress           progress bar even when stderr is not a terminal\n"
    "  --quiet              no progress bar or summary\n"
    "  -h, --help           this text\n"
    "  --version            print the version\n";

enum { OPT_SEED = 1, OPT_NOISE, OPT_NOISE_PROB, OPT_SNR, OPT_SHIFT, OPT_SPEED, OPT_GAIN, OPT_REVERB, OPT_RIR, OPT_CONVERTER };

/* "LO,HI" within [min, max], LO <= HI */
static void parse_range(const char *option, const char *arg, double min, double max, double *lo, double *hi)
{
    const char *comma = strchr(arg, ',');
    if (!comma) w2v_usage_error("%s: '%s' is not LO,HI", option, arg);
    char *first = strndup(arg, (size_t)(comma - arg));
    if (!first) w2v_die("out of memory");
    *lo = w2v_parse_double(option, first, min, max);
    *hi = w2v_parse_double(option, comma + 1, min, max);
    free(first);
    if (*lo > *hi) w2v_usage_error("%s: LO %g is above HI %g", option, *lo, *hi);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"output", required_argument, 0, 'o'},
        {"seed", required_argument, 0, OPT_SEED},
        {"noise", required_argument, 0, OPT_NOISE},
        {"noise-prob", required_argument, 0, OPT_NOISE_PROB},
        {"snr-db", required_argument, 0, OPT_SNR},
        {"time-shift", required_argument, 0, OPT_SHIFT},
        {"speed", required_argument, 0, OPT_SPEED},
        {"gain-db", required_argument, 0, OPT_GAIN},
        {"reverb", required_argument, 0, OPT_REVERB},
        {"rir", required_argument, 0, OPT_RIR},
        {"converter", required_argument, 0, OPT_CONVERTER},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {0, 0, 0, 0},
    };
    w2v_augment_options o = {.seed = 42, .noise_prob = 0.8, .snr_lo = 0, .snr_hi = 20,
                             .converter = w2v_audio_converter("fastest")};
    const char *output = NULL;
    int opt, noise_opts = 0;
    w2v_cli_init("ks-augment", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:j:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case 'j': w2v_set_threads((int)w2v_parse_long("-j", optarg, 1, 1024)); break;
        case OPT_SEED: o.seed = (uint64_t)w2v_parse_long("--seed", optarg, 0, LONG_MAX); break;
        case OPT_NOISE: o.noise = optarg; break;
        case OPT_NOISE_PROB: o.noise_prob = w2v_parse_double("--noise-prob", optarg, 0, 1), noise_opts = 1; break;
        case OPT_SNR: parse_range("--snr-db", optarg, -50, 100, &o.snr_lo, &o.snr_hi), noise_opts = 1; break;
        case OPT_SHIFT: o.shift_ms = w2v_parse_double("--time-shift", optarg, 0, 60000); break;
        case OPT_SPEED: parse_range("--speed", optarg, 0.5, 2, &o.speed_lo, &o.speed_hi); break;
        case OPT_GAIN: parse_range("--gain-db", optarg, -60, 60, &o.gain_lo, &o.gain_hi); break;
        case OPT_REVERB: o.reverb_prob = w2v_parse_double("--reverb", optarg, 0, 1); break;
        case OPT_RIR: o.rirs = optarg; break;
        case OPT_CONVERTER:
            if ((o.converter = w2v_audio_converter(optarg)) < 0)
                w2v_usage_error("--converter: unknown converter '%s' (best, medium, fastest, zoh, linear)", optarg);
            break;
        }
    }
    if (argc - optind > 1) w2v_usage_error("one input at most");
    if (noise_opts && !o.noise) w2v_usage_error("--noise-prob and --snr-db need --noise");
    if (o.rirs && o.reverb_prob == 0) w2v_usage_error("--rir needs --reverb P");
    const char *input = optind < argc ? argv[optind] : NULL;

    char err[1024];
    w2v_reader *r = w2v_reader_open(input, err, sizeof err);
    if (!r) w2v_die("%s", err);
    const w2v_header *h = w2v_reader_header(r);
    o.sample_rate = h->sample_rate;
    o.normalize = h->do_normalize != 0;
    if (o.normalize && (o.gain_lo != 0 || o.gain_hi != 0))
        w2v_warn("--gain-db changes nothing in a normalised stream (its header does not say do_normalize false)");
    w2v_augment *a = w2v_augment_new(&o, err, sizeof err);
    if (!a) w2v_die("%s", err);

    w2v_output *out = w2v_output_open(output, 1);
    const char *out_name = output ? output : "stdout";
    w2v_writer *w = w2v_writer_new(w2v_output_file(out));
    /* the header as it came, keys we do not know included */
    if (w2v_write_record(w, r) < 0) w2v_write_failed(out_name);

    int batches = h->type == W2V_BATCHES;
    w2v_progress prog;
    w2v_progress_start(&prog, batches ? "batches" : "examples",
                       batches && h->batches_per_epoch > 0 && h->epochs > 0 ? (double)h->batches_per_epoch * (double)h->epochs : 0);
    long records = 0, examples = 0, counts[5] = {0};
    int ret;
    double t0 = w2v_now();
    while ((ret = w2v_reader_next(r, err, sizeof err)) > 0) {
        if (batches) {
            w2v_batch b;
            long epoch = h->batches_per_epoch > 0 ? records / h->batches_per_epoch : 0;
            if (w2v_reader_batch(r, &b, err, sizeof err) < 0) w2v_die("%s", err);
            if (w2v_augment_batch(a, epoch, &b, counts, err, sizeof err) < 0) w2v_die("%s", err);
            if (w2v_write_batch(w, &b) < 0) w2v_write_failed(out_name);
            examples += b.batch;
        } else {
            w2v_example ex;
            if (w2v_reader_example(r, &ex, err, sizeof err) < 0) w2v_die("%s", err);
            int done = w2v_augment_example(a, ex.key, 0, w2v_augment_repeat(a, ex.key, 0), ex.input_values,
                                           ex.length, err, sizeof err);
            if (done < 0) w2v_die("%s: %s", ex.key, err);
            for (int k = 0; k < 5; k++) counts[k] += (done >> k) & 1;
            if (w2v_write_example(w, &ex) < 0) w2v_write_failed(out_name);
            examples++;
        }
        w2v_progress_update(&prog, (double)++records, NULL);
    }
    if (ret < 0) w2v_die("%s", err); /* exit removes -o's temporary file */
    w2v_progress_end(&prog);
    w2v_writer_free(w);
    w2v_output_close(out);
    double dt = w2v_now() - t0;
    w2v_note("%ld examples in %.1f s (%.0f/s): noise %ld, shift %ld, speed %ld, gain %ld, reverb %ld", examples, dt,
             dt > 0 ? (double)examples / dt : 0.0, counts[0], counts[1], counts[2], counts[3], counts[4]);
    w2v_augment_free(a);
    w2v_reader_close(r);
    return 0;
}
