/* w2v-predict: classify audio files, w2v streams, or windows of a long (or
 * endless) recording with a trained model; one JSON line per example. */
#include "w2v/audio.h"
#include "w2v/classify.h"
#include "w2v/cli.h"
#include "w2v/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOO_LARGE "samples too large to normalise (their float32 sums overflow)"

static const char usage[] =
    "w2v-predict: classify audio files or w2v streams with a trained model,\n"
    "one JSON line per example: {\"key\", \"label\", \"score\", ...}\n"
    "\n"
    "Usage: w2v-predict -m MODEL [options] [INPUT...]    (no INPUT or '-' reads stdin)\n"
    " e.g.: w2v-predict -m model/ --top-k 3 clip1.wav clip2.flac\n"
    "       ks-extract data/test.tsv | w2v-predict -m model/ -\n"
    "       arecord -f S16_LE -r 16000 | w2v-predict -m model/ --window 1 --hop 0.25 -\n"
    "\n"
    "An INPUT is an audio file (anything libsndfile reads; decoded, mixed to\n"
    "mono, resampled to the model's rate and normalised when the model's\n"
    "preprocessor_config.json says do_normalize, as ks-extract does) or a w2v\n"
    "examples or batches stream (told apart by the first byte).  A stream's\n"
    "sample rate must be the model's and its label names among the model's.\n"
    "Examples of equal length are classified together; a model that takes an\n"
    "attention mask also pads different lengths together.\n"
    "\n"
    "Options:\n"
    "  -m, --model DIR       the model (config.json, model.safetensors, preprocessor_config.json)\n"
    "  -o, --output FILE     write the JSON lines to FILE (default: stdout)\n"
    "  -b, --batch-size N    examples per forward pass (default: 8)\n"
    "  -k, --top-k K         add the K most likely labels: \"top_k\": [{label, score}]\n"
    "                        (default: 0 = none)\n"
    "  --logits              add the raw logits: \"logits\": [...] in the model's label order\n"
    "  --window SECONDS      classify audio in windows of SECONDS, one line per\n"
    "                        window with \"start\" and \"end\" in seconds (default: 0 =\n"
    "                        whole files); works on endless pipes\n"
    "  --hop SECONDS         distance between window starts (default: the window)\n"
    "  --bf16                mixed precision: matrix products in bf16 with fp32\n"
    "                        accumulation (as torch.autocast); about twice as fast\n"
    "                        on CPUs with avx512_bf16, elsewhere a note and fp32;\n"
    "                        scores move by about 1%, labels only where nearly tied\n"
    "  --threads N           threads (default: the cores available)\n"
    "  --quiet               no notes on stderr\n"
    "  -h, --help            this text\n"
    "  --version             print the version\n";

enum { OPT_LOGITS = 1, OPT_WINDOW, OPT_HOP, OPT_BF16 };

typedef struct {
    const w2v_config *cfg;
    w2v_classifier *cls;
    int64_t window, hop; /* samples; window 0: whole files */
    int top_k, logits;
    FILE *out;
    const char *out_name;
} predictor;

static void print_result(void *ctx, const w2v_clip *clip, const float *logits)
{
    predictor *p = ctx;
    if (w2v_result_write(p->out, p->cfg, clip, logits, p->top_k, p->logits ? W2V_RESULT_LOGITS : 0) < 0)
        w2v_write_failed(p->out_name);
}

/* Dies with a classifier's error, which names the example by its key:
 * prefixed with the input's name unless that key is the name (audio). */
static void classify_failed(const char *input, const char *err)
{
    size_t n = strlen(input);
    if (!strncmp(err, input, n) && !strncmp(err + n, ": ", 2)) w2v_die("%s", err);
    w2v_die("%s: %s", input, err);
}

static void add(predictor *p, const char *input, const w2v_clip *clip)
{
    char err[700];
    if (w2v_classifier_add(p->cls, clip, err, sizeof err) < 0) classify_failed(input, err);
}

static void flush(predictor *p, const char *input)
{
    char err[700];
    if (w2v_classifier_flush(p->cls, err, sizeof err) < 0) classify_failed(input, err);
}

/* ---- telling a stream from audio ---- */

/* The first byte of an input, read without consuming it, so that the
 * decoder that takes the input over sees it whole: pread on a file, tee(2)
 * on a pipe, MSG_PEEK on a socket.  -1 for an empty input, -2 when the
 * input cannot be peeked at (a terminal). */
static int peek_byte(int fd, const char *name)
{
    struct stat st;
    unsigned char c;
    ssize_t n;
    if (fstat(fd, &st) < 0) w2v_die("%s: %s", name, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        n = pread(fd, &c, 1, pos < 0 ? 0 : pos);
    } else if (S_ISFIFO(st.st_mode)) {
        int p[2];
        if (pipe(p) < 0) w2v_die("cannot make a pipe: %s", strerror(errno));
        do n = tee(fd, p[1], 1, 0); /* waits for the first byte */
        while (n < 0 && errno == EINTR);
        if (n > 0) n = read(p[0], &c, 1);
        close(p[0]);
        close(p[1]);
    } else if (S_ISSOCK(st.st_mode)) {
        n = recv(fd, &c, 1, MSG_PEEK);
    } else return -2;
    if (n < 0) w2v_die("%s: read failed: %s", name, strerror(errno));
    return n == 0 ? -1 : c;
}

/* A w2v stream starts with its header, a msgpack map; audio files start
 * with an ASCII magic ("RIFF", "fLaC", "OggS", ...). */
static int is_stream_byte(int c) { return (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf; }

/* ---- inputs ---- */

static void predict_stream(predictor *p, const char *path)
{
    const char *name = w2v_input_name(path);
    char err[1024];
    w2v_reader *r = w2v_reader_open(path, err, sizeof err);
    if (!r) w2v_die("%s", err);
    const w2v_header *h = w2v_reader_header(r);
    int *map = malloc(((size_t)h->nlabels + 1) * sizeof *map);
    if (!map) w2v_die("out of memory");
    if (w2v_classify_check_header(p->cfg, h, W2V_LABELS_SUBSET, map, err, sizeof err) < 0) w2v_die("%s: %s", name, err);
    /* a batch's examples without the padding, batched as any others */
    w2v_stream_opts so = {.whole_batches = 0};
    if (w2v_classify_stream(p->cls, r, name, map, &so, err, sizeof err) < 0) w2v_die("%s", err);
    free(map);
    w2v_reader_close(r);
}

static void predict_file(predictor *p, const char *path)
{
    const char *name = w2v_input_name(path);
    char err[700];
    float *x;
    int64_t n;
    if (w2v_audio_load(path, p->cfg->sampling_rate, W2V_AUDIO_DEFAULT_CONVERTER, &x, &n, err, sizeof err) < 0)
        w2v_die("%s", err);
    if (p->cfg->do_normalize && w2v_audio_normalize(x, n) < 0) w2v_die("%s: %s", name, TOO_LARGE);
    w2v_clip clip = {.key = name, .x = x, .length = n, .label = -1, .end = -1};
    add(p, name, &clip);
    free(x);
}

/* Windows of p->window samples every p->hop samples, read as they come:
 * memory holds one window, and on a pipe (no known length: a live
 * recording) each window is classified and printed as soon as it is
 * complete.  A remainder shorter than a window is not classified; a
 * recording shorter than one window is classified whole. */
static void predict_windows(predictor *p, const char *path)
{
    const char *name = w2v_input_name(path);
    const double rate = p->cfg->sampling_rate;
    const int64_t W = p->window, H = p->hop;
    char err[700];
    w2v_audio *a = w2v_audio_open(path, p->cfg->sampling_rate, W2V_AUDIO_DEFAULT_CONVERTER, err, sizeof err);
    if (!a) w2v_die("%s", err);
    int live = w2v_audio_length(a) < 0;
    float *buf = malloc((size_t)W * sizeof *buf), *win = malloc((size_t)W * sizeof *win);
    if (!buf || !win) w2v_die("out of memory");
    int64_t have = 0, start = 0, skip = 0, windows = 0;
    for (;;) {
        while (skip > 0) { /* a hop longer than the window skips samples */
            long got = w2v_audio_read(a, buf, (long)(skip < W ? skip : W), err, sizeof err);
            if (got <= 0) break;
            skip -= got;
        }
        long got = w2v_audio_read(a, buf + have, (long)(W - have), err, sizeof err);
        if (got < 0) w2v_die("%s", err);
        have += got;
        if (have < W) break;
        memcpy(win, buf, (size_t)W * sizeof *win);
        if (p->cfg->do_normalize && w2v_audio_normalize(win, W) < 0) w2v_die("%s: %s", name, TOO_LARGE);
        w2v_clip clip = {.key = name, .x = win, .length = W, .label = -1, .start = start / rate, .end = (start + W) / rate};
        add(p, name, &clip);
        if (live) flush(p, name);
        windows++;
        if (H < W) {
            memmove(buf, buf + H, (size_t)(W - H) * sizeof *buf);
            have = W - H;
        } else {
            have = 0;
            skip = H - W;
        }
        start += H;
    }
    if (windows == 0) {
        if (have == 0) w2v_die("%s: no audio samples (empty)", name);
        if (p->cfg->do_normalize && w2v_audio_normalize(buf, have) < 0) w2v_die("%s: %s", name, TOO_LARGE);
        w2v_clip clip = {.key = name, .x = buf, .length = have, .label = -1, .start = 0, .end = have / rate};
        add(p, name, &clip);
    }
    w2v_audio_close(a);
    free(buf);
    free(win);
}

static void predict_input(predictor *p, const char *path)
{
    const char *name = w2v_input_name(path);
    int from_stdin = !strcmp(path, "-");
    /* the descriptor stays open while the decoder opens the path itself, so
     * that a named pipe keeps a reader throughout */
    int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) w2v_die("%s: cannot open: %s", name, strerror(errno));
    int c = peek_byte(fd, name);
    if (c == -1) w2v_die("%s: empty input", name);
    if (is_stream_byte(c)) predict_stream(p, path);
    else if (p->window) predict_windows(p, path);
    else predict_file(p, path);
    if (!from_stdin) close(fd);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"model", required_argument, 0, 'm'},
        {"output", required_argument, 0, 'o'},
        {"batch-size", required_argument, 0, 'b'},
        {"top-k", required_argument, 0, 'k'},
        {"logits", no_argument, 0, OPT_LOGITS},
        {"window", required_argument, 0, OPT_WINDOW},
        {"hop", required_argument, 0, OPT_HOP},
        {"bf16", no_argument, 0, OPT_BF16},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {0, 0, 0, 0},
    };
    const char *model_dir = NULL, *output = NULL;
    long batch_size = 8;
    double window = 0, hop = 0;
    predictor p = {0};
    int opt, bf16 = 0;
    w2v_cli_init("w2v-predict", usage, argv);
    while ((opt = getopt_long(argc, argv, "hm:o:b:k:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'm': model_dir = optarg; break;
        case 'o': output = optarg; break;
        case 'b': batch_size = w2v_parse_long("--batch-size", optarg, 1, 4096); break;
        case 'k': p.top_k = (int)w2v_parse_long("--top-k", optarg, 0, 1000000); break;
        case OPT_LOGITS: p.logits = 1; break;
        case OPT_WINDOW: window = w2v_parse_double("--window", optarg, 0, 1e5); break;
        case OPT_HOP: hop = w2v_parse_double("--hop", optarg, 0, 1e5); break;
        case OPT_BF16: bf16 = 1; break;
        }
    }
    if (!model_dir) w2v_usage_error("no model: use -m MODEL");
    if (hop > 0 && window <= 0) w2v_usage_error("--hop needs --window");

    char err[700];
    w2v_model *m = w2v_model_load(model_dir, err, sizeof err);
    if (!m) w2v_die("%s", err);
    p.cfg = w2v_model_config(m);
    if (window > 0) {
        long min = w2v_config_min_samples(p.cfg);
        p.window = (int64_t)(window * p.cfg->sampling_rate + 0.5);
        p.hop = hop > 0 ? (int64_t)(hop * p.cfg->sampling_rate + 0.5) : p.window;
        if (p.window < min)
            w2v_usage_error("--window: %g s is %lld samples; the model needs at least %ld (%g s)", window,
                            (long long)p.window, min, (double)min / p.cfg->sampling_rate);
        if (p.hop < 1) w2v_usage_error("--hop: %g s is less than one sample", hop);
    }

    w2v_output *out = w2v_output_open(output, 0);
    p.out = w2v_output_file(out);
    p.out_name = output ? output : "stdout";
    /* a line as soon as it is known: a live recording must not wait for a buffer to fill */
    setvbuf(p.out, NULL, _IOLBF, 0);
    p.cls = w2v_classifier_new(m, (int)batch_size, print_result, &p);
    w2v_classifier_set_bf16(p.cls, bf16);

    char *stdin_only[] = {"-"};
    char **inputs = optind < argc ? argv + optind : stdin_only;
    int ninputs = optind < argc ? argc - optind : 1;
    for (int i = 0; i < ninputs; i++) predict_input(&p, inputs[i]);
    flush(&p, w2v_input_name(inputs[ninputs - 1]));

    w2v_classifier_free(p.cls);
    w2v_output_close(out);
    w2v_model_free(m);
    return 0;
}
