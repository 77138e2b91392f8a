/* w2v-init: make a randomly initialised Wav2Vec2-family classifier directory. */
#include "w2v/classify.h"
#include "w2v/cli.h"
#include "w2v/fs.h"
#include "w2v/config.h"
#include "w2v/model.h"
#include "w2v/stream.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "w2v-init: make a randomly initialised Wav2Vec2-family audio classifier (a Hugging Face model\n"
    "directory: Wav2Vec2, HuBERT, data2vec-audio or WavLM)\n"
    "\n"
    "Usage: w2v-init [options] -o DIR\n"
    " e.g.: w2v-init --preset small --filterbank --labels-from train.stream -o model\n"
    "       w2v-init --config config.json --set num_hidden_layers=6 --labels yes,no,_unknown_ -o model\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR          the model directory to write (a model directory there is replaced;\n"
    "                            a directory holding anything else is refused)\n"
    "  --overwrite               replace DIR whatever it holds\n"
    "  --preset NAME             base: facebook/wav2vec2-base's architecture; small: the demo's model,\n"
    "                            trained from scratch; tiny: for tests; the other families' base models:\n"
    "                            hubert-base, distilhubert, wavlm-base, data2vec-audio-base [small]\n"
    "  --config PATH             a config.json, or a model directory (config and preprocessor); its\n"
    "                            model_type: wav2vec2, hubert, data2vec-audio or wavlm\n"
    "  --set KEY=VALUE           set a config.json key to a JSON value (repeatable),\n"
    "                            e.g. --set hidden_size=128 --set 'conv_dim=[64,64,64,64,64,64,64]'\n"
    "  --labels A,B,...          label names in id order\n"
    "  --labels-from STREAM      the labels of a w2v stream's header ('-' reads stdin)\n"
    "  --attention-mask yes|no   whether the feature extractor passes an attention mask\n"
    "                            (preprocessor_config.json return_attention_mask) [as the config]\n"
    "  --filterbank              start the conv encoder as a mel-like spectrogram instead of random:\n"
    "                            layer 0 a Gabor filterbank (60 Hz to 0.95 x Nyquist, four phases\n"
    "                            a band), layer 1, if it has a channel per band, the envelopes\n"
    "  --seed N                  initialisation seed [0]\n"
    "  --quiet                   no summary on stderr\n"
    "  -h, --help                this text\n"
    "  --version                 print the version\n";

enum { OPT_PRESET = 1, OPT_CONFIG, OPT_SET, OPT_LABELS, OPT_LABELS_FROM, OPT_MASK, OPT_SEED, OPT_FILTERBANK, OPT_OVERWRITE };

static char *read_file(const char *path)
{
    FILE *fp = w2v_input_open(path);
    size_t cap = 1 << 16, n = 0, got;
    char *s = malloc(cap);
    while (s && (got = fread(s + n, 1, cap - n - 1, fp)) > 0) {
        n += got;
        if (n + 1 == cap) s = realloc(s, cap *= 2);
    }
    if (!s) w2v_die("out of memory");
    s[n] = 0;
    w2v_input_close(fp);
    return s;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"output", required_argument, 0, 'o'},
        {"preset", required_argument, 0, OPT_PRESET},
        {"config", required_argument, 0, OPT_CONFIG},
        {"set", required_argument, 0, OPT_SET},
        {"labels", required_argument, 0, OPT_LABELS},
        {"labels-from", required_argument, 0, OPT_LABELS_FROM},
        {"attention-mask", required_argument, 0, OPT_MASK},
        {"seed", required_argument, 0, OPT_SEED},
        {"filterbank", no_argument, 0, OPT_FILTERBANK},
        {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {0, 0, 0, 0},
    };
    const char *output = NULL, *preset = NULL, *config = NULL, *labels_from = NULL;
    char *labels_arg = NULL, err[1024];
    int opt, mask = -1, filterbank = 0, fb_layers = 0, overwrite = 0;
    long seed = 0;
    size_t sets_cap = 64, sets_len = 0;
    char *sets = malloc(sets_cap);
    if (!sets) w2v_die("out of memory");
    strcpy(sets, "{");
    w2v_cli_init("w2v-init", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case OPT_PRESET: preset = optarg; break;
        case OPT_CONFIG: config = optarg; break;
        case OPT_SET: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) w2v_usage_error("--set: expected KEY=VALUE, got '%s'", optarg);
            size_t need = strlen(optarg) + 8;
            sets = realloc(sets, sets_cap += need);
            if (!sets) w2v_die("out of memory");
            sets_len = strlen(sets);
            snprintf(sets + sets_len, sets_cap - sets_len, "%s\"%.*s\":%s", sets_len > 1 ? "," : "",
                     (int)(eq - optarg), optarg, eq + 1);
            break;
        }
        case OPT_LABELS: labels_arg = optarg; break;
        case OPT_LABELS_FROM: labels_from = optarg; break;
        case OPT_MASK:
            if (!strcmp(optarg, "yes")) mask = 1;
            else if (!strcmp(optarg, "no")) mask = 0;
            else w2v_usage_error("--attention-mask: yes or no, not '%s'", optarg);
            break;
        case OPT_FILTERBANK: filterbank = 1; break;
        case OPT_OVERWRITE: overwrite = 1; break;
        case OPT_SEED: seed = w2v_parse_long("--seed", optarg, 0, LONG_MAX); break;
        }
    }
    if (!output) w2v_usage_error("no output directory (-o DIR)");
    if (optind < argc) w2v_usage_error("unexpected argument '%s'", argv[optind]);
    if (preset && config) w2v_usage_error("--preset and --config exclude each other");
    if (labels_arg && labels_from) w2v_usage_error("--labels and --labels-from exclude each other");
    /* before any work: a mistyped -o must not cost a directory */
    if (!overwrite && w2v_check_ours(output, err, sizeof err) < 0) w2v_die("%s: not replaced (--overwrite replaces it)", err);

    w2v_config c;
    if (config) {
        struct stat sb;
        if (stat(config, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if (w2v_config_load(&c, config, err, sizeof err) < 0) w2v_die("%s", err);
        } else {
            char *text = read_file(config);
            if (w2v_config_parse(&c, text, NULL, err, sizeof err) < 0) w2v_die("%s: %s", config, err);
            free(text);
        }
    } else if (w2v_config_preset(&c, preset ? preset : "small", err, sizeof err) < 0)
        w2v_usage_error("--preset: %s", err);
    strcat(sets, "}");
    if (strlen(sets) > 2 && w2v_config_update(&c, sets, err, sizeof err) < 0) w2v_usage_error("--set: %s", err);
    free(sets);
    if (mask >= 0) c.return_attention_mask = mask;

    if (labels_arg) {
        char **labels;
        int n = w2v_labels_parse(labels_arg, &labels, err, sizeof err);
        if (n < 0) w2v_usage_error("--labels: %s", err);
        w2v_config_set_labels(&c, n, labels);
        w2v_labels_free(labels, n);
    } else if (labels_from) {
        w2v_reader *r = w2v_reader_open(labels_from, err, sizeof err);
        if (!r) w2v_die("%s", err);
        const w2v_header *h = w2v_reader_header(r);
        if (h->nlabels < 1) w2v_die("%s: the stream's header has no labels", w2v_input_name(labels_from));
        if (w2v_classify_check_header(&c, h, W2V_LABELS_ANY, NULL, err, sizeof err) < 0)
            w2v_die("%s: %s", w2v_input_name(labels_from), err);
        w2v_config_set_labels(&c, h->nlabels, h->labels);
        w2v_reader_close(r);
    }

    w2v_model *m = w2v_model_new(&c);
    w2v_model_init_weights(m, (uint64_t)seed);
    if (filterbank && (fb_layers = w2v_model_init_filterbank(m, 60, 0.95 * c.sampling_rate / 2, err, sizeof err)) < 0)
        w2v_usage_error("--filterbank: %s", err);
    if (w2v_model_save(m, output, err, sizeof err) < 0) w2v_die("%s", err);
    long count = 0;
    for (int i = 0; i < w2v_model_num_params(m); i++) count += w2v_model_param(m, i)->size;
    w2v_note("%s: %s, %ld parameters, %d labels, %s encoder, hidden %d x %d layers%s", output,
             w2v_config_model_type(&c), count, c.num_labels,
             c.do_stable_layer_norm ? "pre-LN" : "post-LN", c.hidden_size, c.num_hidden_layers,
             fb_layers == 2 ? ", conv layers 0-1 a filterbank and its envelopes" : fb_layers ? ", conv layer 0 a filterbank" : "");
    w2v_model_free(m);
    w2v_config_free(&c);
    return 0;
}
