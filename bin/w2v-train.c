/* w2v-train: fine-tune a Wav2Vec2 classifier on a batches stream, as
 * Hugging Face Trainer(model, args).train() does. */
#include "w2v/classify.h"
#include "w2v/cli.h"
#include "w2v/fs.h"
#include "w2v/model.h"
#include "w2v/optim.h"
#include "w2v/stream.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "w2v-train: fine-tune a Wav2Vec2 audio classifier on a batches stream (HF Trainer's loop)\n"
    "\n"
    "Usage: w2v-train [options] -m MODEL -o OUTDIR [BATCHES]     (BATCHES: a file or '-' for stdin)\n"
    " e.g.: ks-extract -j2 train.tsv | ks-batch -b 32 --shuffle --epochs 5 | \\\n"
    "         w2v-train -m base -o run --learning-rate 3e-5 --warmup-ratio 0.1 \\\n"
    "           --gradient-accumulation-steps 4 --freeze-feature-encoder --eval valid.batches\n"
    "\n"
    "Schedule length: the stream header's batches_per_epoch x epochs, or --max-steps; training ends\n"
    "there or at the end of the stream.  OUTDIR gets checkpoint-STEP/ directories, metrics.jsonl\n"
    "and the final model (config.json, model.safetensors, preprocessor_config.json) at its top.\n"
    "\n"
    "Options:\n"
    "  -m, --model DIR                 model to start from (a Hugging Face directory)\n"
    "  -o, --output-dir DIR            where checkpoints and the final model go\n"
    "  --learning-rate X               peak learning rate [3e-5]\n"
    "  --weight-decay X                AdamW decay, not on biases and LayerNorm weights [0]\n"
    "  --adam-beta1 X, --adam-beta2 X  [0.9, 0.999]\n"
    "  --adam-epsilon X                [1e-8]\n"
    "  --lr-scheduler-type NAME        linear, cosine, constant, constant_with_warmup [linear]\n"
    "  --warmup-steps N                [0]\n"
    "  --warmup-ratio X                warmup as a fraction of the steps, when --warmup-steps is 0 [0]\n"
    "  --max-grad-norm X               clip the total gradient norm; 0 = no clipping [1.0]\n"
    "  --gradient-accumulation-steps N batches per optimizer step [1]\n"
    "  --max-steps N                   optimizer steps (default: from the stream header)\n"
    "  --freeze-feature-encoder        do not train the conv feature encoder\n"
    "  --seed N                        dropout, LayerDrop and SpecAugment draws [42]\n"
    "  --logging-steps N               log every N steps to metrics.jsonl [10]\n"
    "  --save-steps N                  checkpoint every N steps (default: at each epoch end)\n"
    "  --save-total-limit N            keep at most N checkpoints (the best is kept) [all]\n"
    "  --eval FILE                     a batches stream to evaluate at each epoch end (loss, accuracy)\n"
    "  --load-best-model-at-end        the final model is the checkpoint of best eval accuracy\n"
    "  --resume CHECKPOINT             continue a run from OUTDIR/checkpoint-STEP (same stream)\n"
    "  --threads N                     threads [the cores available]\n"
    "  --quiet, --progress             no notes; a progress bar even when stderr is not a terminal\n"
    "  -h, --help                      this text\n"
    "  --version                       print the version\n";

enum {
    OPT_LR = 1, OPT_WD, OPT_B1, OPT_B2, OPT_EPS, OPT_SCHED, OPT_WARMUP, OPT_WARMUP_RATIO, OPT_CLIP, OPT_GA,
    OPT_MAX_STEPS, OPT_FREEZE, OPT_SEED, OPT_LOG, OPT_SAVE, OPT_LIMIT, OPT_EVAL, OPT_BEST, OPT_RESUME
};

typedef struct {
    const char *model, *outdir, *input, *eval, *resume;
    w2v_optim_opts o;
    double warmup_ratio;
    long ga, max_steps, seed, logging_steps, save_steps, save_total_limit;
    int freeze, load_best;
} args;

/* Everything a checkpoint must hold to continue bit-identically. */
typedef struct {
    long step;             /* optimizer steps taken */
    long batches;          /* batches consumed from the stream */
    long total_steps, batches_per_epoch;
    double best_metric;    /* eval accuracy; < 0 = none yet */
    double window_loss;    /* losses summed since the last log, */
    long window_batches;   /* so a resumed run logs what the whole one does */
    char best_checkpoint[4096];
    json_t *log;           /* log_history */
} state;

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { stop_requested = sig; }

static void note_cb(const char *msg) { w2v_note("%s", msg); }

static void write_json(const char *dir, const char *name, json_t *o)
{
    char *path = w2v_path_join(dir, name), *tmp = w2v_path_join(dir, ".tmp.json");
    /* insertion order: the log history reads back as it was written */
    if (json_dump_file(o, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) != 0 || rename(tmp, path) != 0)
        w2v_die("%s: cannot write: %s", path, strerror(errno));
    free(path);
    free(tmp);
}

static void write_metrics(const char *outdir, json_t *log)
{
    char *path = w2v_path_join(outdir, "metrics.jsonl"), *tmp = w2v_path_join(outdir, ".metrics.jsonl.tmp");
    FILE *fp = fopen(tmp, "w");
    if (!fp) w2v_die("%s: cannot write: %s", path, strerror(errno));
    size_t i;
    json_t *e;
    json_array_foreach(log, i, e) {
        char *s = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        fprintf(fp, "%s\n", s);
        free(s);
    }
    if (fclose(fp) != 0 || rename(tmp, path) != 0) w2v_die("%s: cannot write: %s", path, strerror(errno));
    free(path);
    free(tmp);
}

/* ---- evaluation at epoch ends ---- */

typedef struct {
    const w2v_config *c;
    double loss, accuracy;
    long examples, correct;
} eval_result;

static void count_result(void *ctx, const w2v_clip *clip, const float *logits)
{
    eval_result *e = ctx;
    if (clip->label < 0) return;
    e->loss += w2v_cross_entropy(logits, e->c->num_labels, (int)clip->label);
    e->correct += w2v_argmax(logits, e->c->num_labels) == clip->label;
    e->examples++;
}

/* Loss and accuracy over a batches stream, each batch as it is. */
static void evaluate(w2v_model *m, const char *path, eval_result *res)
{
    char err[1024];
    w2v_reader *r = w2v_reader_open(path, err, sizeof err);
    if (!r) w2v_die("--eval: %s", err);
    const w2v_header *h = w2v_reader_header(r);
    if (h->type != W2V_BATCHES) w2v_die("--eval: %s: not a batches stream (pipe it through ks-batch)", path);
    int *map = malloc((size_t)(h->nlabels + 1) * sizeof *map);
    if (!map) w2v_die("out of memory");
    if (w2v_classify_check_header(w2v_model_config(m), h, map, err, sizeof err) < 0) w2v_die("--eval: %s: %s", path, err);
    memset(res, 0, sizeof *res);
    res->c = w2v_model_config(m);
    w2v_classifier *cls = w2v_classifier_new(m, 1, count_result, res);
    int64_t *labels = NULL;
    int ret;
    while ((ret = w2v_reader_next(r)) > 0) {
        w2v_batch b;
        if (w2v_reader_batch(r, &b) < 0) w2v_die("--eval: %s", w2v_reader_error(r));
        labels = realloc(labels, (size_t)b.batch * sizeof *labels);
        if (!labels) w2v_die("out of memory");
        for (int i = 0; i < b.batch; i++) labels[i] = b.labels[i] < 0 ? -1 : map[b.labels[i]];
        if (w2v_classifier_run(cls, b.batch, b.time, b.input_values, b.lengths, labels, b.keys, err, sizeof err) < 0)
            w2v_die("--eval: %s: %s", path, err);
    }
    if (ret < 0) w2v_die("--eval: %s", w2v_reader_error(r));
    w2v_classifier_free(cls);
    w2v_reader_close(r);
    free(labels);
    free(map);
    if (res->examples) {
        res->loss /= (double)res->examples;
        res->accuracy = (double)res->correct / (double)res->examples;
    }
}

/* ---- checkpoints ---- */

static json_t *state_json(const state *s, const args *a, double epoch)
{
    return json_pack("{s:I, s:I, s:f, s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:b, s:f, s:I}", "global_step", (json_int_t)s->step,
                     "batches_consumed", (json_int_t)s->batches, "epoch", epoch, "max_steps", (json_int_t)s->total_steps,
                     "batches_per_epoch", (json_int_t)s->batches_per_epoch,
                     "best_metric", s->best_metric >= 0 ? json_real(s->best_metric) : json_null(),
                     "best_model_checkpoint", s->best_checkpoint[0] ? json_string(s->best_checkpoint) : json_null(),
                     "seed", (json_int_t)a->seed, "logging_steps", (json_int_t)a->logging_steps,
                     "save_steps", (json_int_t)a->save_steps, "gradient_accumulation_steps", (json_int_t)a->ga,
                     "is_world_process_zero", 1, "window_loss", s->window_loss, "window_batches",
                     (json_int_t)s->window_batches);
}

static int checkpoint_step(const char *name)
{
    if (strncmp(name, "checkpoint-", 11)) return -1;
    char *end;
    long v = strtol(name + 11, &end, 10);
    return *end || end == name + 11 ? -1 : (int)v;
}

/* Keeps the newest save_total_limit checkpoints, and the best one. */
static void rotate_checkpoints(const args *a, const state *s)
{
    if (a->save_total_limit <= 0) return;
    DIR *d = opendir(a->outdir);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        int st = checkpoint_step(e->d_name);
        if (st >= 0) steps[n++] = st;
    }
    closedir(d);
    for (int i = 0; i < n; i++) /* newest first */
        for (int j = i + 1; j < n; j++)
            if (steps[j] > steps[i]) { long t = steps[i]; steps[i] = steps[j]; steps[j] = t; }
    for (int i = (int)a->save_total_limit; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%ld", steps[i]);
        char *path = w2v_path_join(a->outdir, name);
        if ((!s->best_checkpoint[0] || strcmp(path, s->best_checkpoint)) && w2v_remove_tree(path, NULL, 0) != 0)
            w2v_warn("%s: could not remove: %s", path, strerror(errno));
        free(path);
    }
}

static void save_checkpoint(w2v_model *m, w2v_optim *opt, const args *a, const state *s, double epoch)
{
    char name[64], err[1024];
    snprintf(name, sizeof name, "checkpoint-%ld", s->step);
    char *dir = w2v_path_join(a->outdir, name), *tmp = w2v_path_join(a->outdir, ".checkpoint.tmp");
    if (w2v_remove_tree(tmp, NULL, 0) != 0 || mkdir(tmp, 0777) != 0) w2v_die("%s: cannot create: %s", tmp, strerror(errno));
    if (w2v_model_write_files(m, tmp, err, sizeof err) < 0) w2v_die("%s", err);
    char *optp = w2v_path_join(tmp, "optimizer.safetensors");
    if (w2v_optim_save(opt, m, optp, err, sizeof err) < 0) w2v_die("%s", err);
    free(optp);
    json_t *st = state_json(s, a, epoch);
    json_object_set(st, "log_history", s->log);
    write_json(tmp, "trainer_state.json", st);
    json_decref(st);
    /* a checkpoint appears complete or not at all */
    if (w2v_replace_dir(tmp, dir, err, sizeof err) < 0) w2v_die("%s", err);
    w2v_note("saved %s", dir);
    free(dir);
    free(tmp);
    rotate_checkpoints(a, s);
}

static void load_state(const char *ckpt, state *s, w2v_optim *opt, const w2v_model *m, const args *a)
{
    char err[1024];
    char *path = w2v_path_join(ckpt, "trainer_state.json");
    json_error_t je;
    json_t *st = json_load_file(path, 0, &je);
    if (!st) w2v_die("%s: %s", path, je.text);
    json_int_t step, batches, seed, wb = 0;
    double wl = 0;
    json_t *best = json_object_get(st, "best_metric"), *bestc = json_object_get(st, "best_model_checkpoint");
    if (json_unpack(st, "{s:I, s:I, s:I, s?F, s?I}", "global_step", &step, "batches_consumed", &batches, "seed", &seed,
                    "window_loss", &wl, "window_batches", &wb) != 0)
        w2v_die("%s: not a w2v-train trainer state", path);
    if (seed != a->seed) w2v_die("%s: the run used --seed %lld; resume with the same seed", path, (long long)seed);
    s->step = (long)step;
    s->batches = (long)batches;
    s->window_loss = wl;
    s->window_batches = (long)wb;
    s->best_metric = json_is_number(best) ? json_number_value(best) : -1;
    snprintf(s->best_checkpoint, sizeof s->best_checkpoint, "%s", json_is_string(bestc) ? json_string_value(bestc) : "");
    json_decref(s->log);
    s->log = json_incref(json_object_get(st, "log_history"));
    if (!json_is_array(s->log)) s->log = json_array();
    json_decref(st);
    free(path);
    path = w2v_path_join(ckpt, "optimizer.safetensors");
    if (w2v_optim_load(opt, m, path, err, sizeof err) < 0) w2v_die("%s", err);
    if (w2v_optim_steps(opt) != s->step) w2v_die("%s: optimizer and trainer state disagree on the step", ckpt);
    free(path);
}

/* ---- the run ---- */

static int labels_match(const w2v_config *c, const w2v_header *h)
{
    if (c->num_labels != h->nlabels) return 0;
    for (int i = 0; i < h->nlabels; i++)
        if (strcmp(c->labels[i], h->labels[i])) return 0;
    return 1;
}

/* HF makes LABEL_0, LABEL_1, ... when a config has no labels of its own. */
static int default_labels(const w2v_config *c)
{
    for (int i = 0; i < c->num_labels; i++) {
        char want[32];
        snprintf(want, sizeof want, "LABEL_%d", i);
        if (strcmp(c->labels[i], want)) return 0;
    }
    return 1;
}

static w2v_model *load_model(const char *dir, const w2v_header *h)
{
    char err[1024];
    w2v_config c;
    if (w2v_config_load(&c, dir, err, sizeof err) < 0) w2v_die("%s", err);
    int same = labels_match(&c, h), adopt = !same && default_labels(&c);
    if (!same && !adopt) {
        char have[512] = "", want[512] = "";
        for (int i = 0; i < c.num_labels; i++) snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? "," : "", c.labels[i]);
        for (int i = 0; i < h->nlabels; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", i ? "," : "", h->labels[i]);
        w2v_die("%s: the model's labels (%s) are not the stream's (%s)", dir, have, want);
    }
    if (c.sampling_rate != h->sample_rate)
        w2v_die("%s: the model expects %d Hz, the stream is at %d Hz", dir, c.sampling_rate, h->sample_rate);
    w2v_config_free(&c);
    w2v_model *m = w2v_model_load_labels(dir, h->nlabels, h->labels, note_cb, err, sizeof err);
    if (!m) w2v_die("%s", err);
    return m;
}

static void parse_args(int argc, char **argv, args *a)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"model", required_argument, 0, 'm'},
        {"output-dir", required_argument, 0, 'o'},
        {"learning-rate", required_argument, 0, OPT_LR},
        {"weight-decay", required_argument, 0, OPT_WD},
        {"adam-beta1", required_argument, 0, OPT_B1},
        {"adam-beta2", required_argument, 0, OPT_B2},
        {"adam-epsilon", required_argument, 0, OPT_EPS},
        {"lr-scheduler-type", required_argument, 0, OPT_SCHED},
        {"warmup-steps", required_argument, 0, OPT_WARMUP},
        {"warmup-ratio", required_argument, 0, OPT_WARMUP_RATIO},
        {"max-grad-norm", required_argument, 0, OPT_CLIP},
        {"gradient-accumulation-steps", required_argument, 0, OPT_GA},
        {"max-steps", required_argument, 0, OPT_MAX_STEPS},
        {"freeze-feature-encoder", no_argument, 0, OPT_FREEZE},
        {"seed", required_argument, 0, OPT_SEED},
        {"logging-steps", required_argument, 0, OPT_LOG},
        {"save-steps", required_argument, 0, OPT_SAVE},
        {"save-total-limit", required_argument, 0, OPT_LIMIT},
        {"eval", required_argument, 0, OPT_EVAL},
        {"load-best-model-at-end", no_argument, 0, OPT_BEST},
        {"resume", required_argument, 0, OPT_RESUME},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {0, 0, 0, 0},
    };
    int opt;
    memset(a, 0, sizeof *a);
    w2v_optim_defaults(&a->o);
    a->o.lr = 3e-5;
    a->ga = 1;
    a->seed = 42;
    a->logging_steps = 10;
    while ((opt = getopt_long(argc, argv, "hm:o:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'm': a->model = optarg; break;
        case 'o': a->outdir = optarg; break;
        case OPT_LR: a->o.lr = w2v_parse_double("--learning-rate", optarg, 0, 10); break;
        case OPT_WD: a->o.weight_decay = w2v_parse_double("--weight-decay", optarg, 0, 10); break;
        case OPT_B1: a->o.beta1 = w2v_parse_double("--adam-beta1", optarg, 0, 0.999999); break;
        case OPT_B2: a->o.beta2 = w2v_parse_double("--adam-beta2", optarg, 0, 0.999999999); break;
        case OPT_EPS: a->o.eps = w2v_parse_double("--adam-epsilon", optarg, 0, 1); break;
        case OPT_SCHED: {
            int s = w2v_schedule_parse(optarg);
            if (s < 0) w2v_usage_error("--lr-scheduler-type: unknown '%s' (linear, cosine, constant, constant_with_warmup)", optarg);
            a->o.schedule = (w2v_schedule)s;
            break;
        }
        case OPT_WARMUP: a->o.warmup_steps = w2v_parse_long("--warmup-steps", optarg, 0, LONG_MAX); break;
        case OPT_WARMUP_RATIO: a->warmup_ratio = w2v_parse_double("--warmup-ratio", optarg, 0, 1); break;
        case OPT_CLIP: a->o.max_grad_norm = w2v_parse_double("--max-grad-norm", optarg, 0, 1e9); break;
        case OPT_GA: a->ga = w2v_parse_long("--gradient-accumulation-steps", optarg, 1, 1 << 20); break;
        case OPT_MAX_STEPS: a->max_steps = w2v_parse_long("--max-steps", optarg, 1, LONG_MAX); break;
        case OPT_FREEZE: a->freeze = 1; break;
        case OPT_SEED: a->seed = w2v_parse_long("--seed", optarg, 0, LONG_MAX); break;
        case OPT_LOG: a->logging_steps = w2v_parse_long("--logging-steps", optarg, 1, LONG_MAX); break;
        case OPT_SAVE: a->save_steps = w2v_parse_long("--save-steps", optarg, 1, LONG_MAX); break;
        case OPT_LIMIT: a->save_total_limit = w2v_parse_long("--save-total-limit", optarg, 1, LONG_MAX); break;
        case OPT_EVAL: a->eval = optarg; break;
        case OPT_BEST: a->load_best = 1; break;
        case OPT_RESUME: a->resume = optarg; break;
        }
    }
    if (!a->outdir) w2v_usage_error("no output directory (-o OUTDIR)");
    if (!a->model && !a->resume) w2v_usage_error("no model (-m MODEL)");
    if (optind < argc - 1) w2v_usage_error("one input stream at most");
    a->input = optind < argc ? argv[optind] : "-";
    if (a->eval && !strcmp(a->eval, "-")) w2v_usage_error("--eval needs a file: it is read at every epoch end");
    if (a->load_best && !a->eval) w2v_usage_error("--load-best-model-at-end needs --eval");
}

int main(int argc, char **argv)
{
    args a;
    char err[1024];
    w2v_cli_init("w2v-train", usage, argv);
    parse_args(argc, argv, &a);

    w2v_reader *r = w2v_reader_open(a.input, err, sizeof err);
    if (!r) w2v_die("%s", err);
    const w2v_header *h = w2v_reader_header(r);
    if (h->type != W2V_BATCHES) w2v_die("%s: an examples stream: batch it first (ks-batch)", w2v_input_name(a.input));
    if (w2v_mkdirs(a.outdir, err, sizeof err) < 0) w2v_die("%s", err);

    w2v_model *m = load_model(a.resume ? a.resume : a.model, h);
    w2v_model_freeze_feature_encoder(m, a.freeze);

    state s = {0};
    s.best_metric = -1;
    s.log = json_array();
    s.batches_per_epoch = h->batches_per_epoch > 0 ? h->batches_per_epoch : 0;
    long epochs = h->epochs > 0 ? h->epochs : 1;
    /* Trainer: optimizer steps per epoch = batches // accumulation (at least 1) */
    long steps_per_epoch = s.batches_per_epoch ? (s.batches_per_epoch / a.ga > 0 ? s.batches_per_epoch / a.ga : 1) : 0;
    s.total_steps = a.max_steps ? a.max_steps : steps_per_epoch * epochs;
    if (s.total_steps <= 0)
        w2v_die("%s: the stream header does not give batches_per_epoch: pass --max-steps", w2v_input_name(a.input));
    a.o.total_steps = s.total_steps;
    if (a.o.warmup_steps == 0 && a.warmup_ratio > 0) a.o.warmup_steps = (long)ceil(a.warmup_ratio * (double)s.total_steps);
    w2v_optim *opt = w2v_optim_new(m, &a.o);
    if (a.resume) {
        load_state(a.resume, &s, opt, m, &a);
        /* the same stream again: skip what the run had consumed */
        for (long i = 0; i < s.batches; i++) {
            int ret = w2v_reader_next(r);
            if (ret <= 0) w2v_die("%s: the stream ends before the %ld batches the checkpoint consumed", w2v_input_name(a.input), s.batches);
        }
        write_metrics(a.outdir, s.log);
        w2v_note("resuming at step %ld (batch %ld)", s.step, s.batches);
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const w2v_config *c = w2v_model_config(m);
    w2v_progress prog;
    w2v_progress_start(&prog, "training", (double)s.total_steps);
    double t_window = w2v_now();
    long window_clips = 0, micro = 0;
    float grad_norm = 0;
    double lr = 0;
    int ret = 1;
    while (s.step < s.total_steps && !stop_requested && (ret = w2v_reader_next(r)) > 0) {
        w2v_batch b;
        if (w2v_reader_batch(r, &b) < 0) w2v_die("%s", w2v_reader_error(r));
        w2v_input in = {b.batch, b.time, b.input_values, b.lengths, b.labels};
        w2v_run run = {1, (uint64_t)a.seed, (uint64_t)s.batches, -1};
        if (micro == 0) w2v_model_zero_grad(m);
        float loss = w2v_model_forward(m, &in, &run, NULL, err, sizeof err);
        if (loss < 0) w2v_die("%s: batch %ld: %s", w2v_input_name(a.input), s.batches, err);
        if (!isfinite(loss))
            w2v_die("the loss is %f at step %ld (batch %ld): training stopped; the last good checkpoint is kept in %s",
                    loss, s.step, s.batches, a.outdir);
        w2v_model_backward(m, 1.0f / (float)a.ga);
        s.batches++;
        micro++;
        s.window_loss += loss;
        s.window_batches++;
        window_clips += b.batch;
        int epoch_end = s.batches_per_epoch && s.batches % s.batches_per_epoch == 0;
        if (micro < a.ga && !epoch_end) continue;
        micro = 0;
        grad_norm = w2v_optim_step(opt, m, &lr);
        s.step++;
        double epoch = s.batches_per_epoch ? (double)s.batches / s.batches_per_epoch : 0;
        if (s.step % a.logging_steps == 0 || s.step == s.total_steps || epoch_end) {
            double now = w2v_now();
            json_array_append_new(s.log, json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "step", (json_int_t)s.step, "epoch",
                                                   epoch, "loss", s.window_loss / s.window_batches, "learning_rate", lr,
                                                   "grad_norm", (double)grad_norm, "clips_per_s",
                                                   window_clips / (now - t_window > 0 ? now - t_window : 1e-9)));
            write_metrics(a.outdir, s.log);
            s.window_loss = 0, s.window_batches = window_clips = 0, t_window = now;
        }
        if (epoch_end && a.eval) {
            eval_result er;
            evaluate(m, a.eval, &er);
            json_array_append_new(s.log, json_pack("{s:I, s:f, s:f, s:f, s:I}", "step", (json_int_t)s.step, "epoch", epoch,
                                                   "eval_loss", er.loss, "eval_accuracy", er.accuracy, "eval_examples",
                                                   (json_int_t)er.examples));
            write_metrics(a.outdir, s.log);
            w2v_note("epoch %.0f: eval loss %.4f, accuracy %.4f (%ld examples)", epoch, er.loss, er.accuracy, er.examples);
            if (er.accuracy > s.best_metric) {
                s.best_metric = er.accuracy;
                char name[64];
                snprintf(name, sizeof name, "checkpoint-%ld", s.step);
                char *p = w2v_path_join(a.outdir, name);
                snprintf(s.best_checkpoint, sizeof s.best_checkpoint, "%s", p);
                free(p);
            }
        }
        if ((a.save_steps && s.step % a.save_steps == 0) || (!a.save_steps && epoch_end) || stop_requested)
            save_checkpoint(m, opt, &a, &s, epoch);
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f lr %.2e", loss, lr);
        w2v_progress_update(&prog, (double)s.step, extra);
    }
    w2v_progress_end(&prog);
    if (ret < 0) w2v_die("%s", w2v_reader_error(r));
    if (stop_requested) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%ld", s.step);
        char *p = w2v_path_join(a.outdir, name);
        struct stat sb;
        if (stat(p, &sb) != 0) save_checkpoint(m, opt, &a, &s, s.batches_per_epoch ? (double)s.batches / s.batches_per_epoch : 0);
        w2v_die("interrupted by signal %d at step %ld; continue with: w2v-train --resume %s -o %s [same options and stream]",
                (int)stop_requested, s.step, p, a.outdir);
    }
    if (micro > 0) w2v_warn("the stream ended inside an accumulation: its last %ld batches made no step", micro);

    /* the final model at OUTDIR's top */
    if (a.load_best && s.best_checkpoint[0]) {
        char *w = w2v_path_join(s.best_checkpoint, "model.safetensors");
        if (w2v_model_load_weights(m, w, NULL, err, sizeof err) < 0) w2v_die("%s", err);
        free(w);
        w2v_note("final model: the best checkpoint, %s (eval accuracy %.4f)", s.best_checkpoint, s.best_metric);
    }
    if (w2v_model_write_files(m, a.outdir, err, sizeof err) < 0) w2v_die("%s", err);
    json_t *st = state_json(&s, &a, s.batches_per_epoch ? (double)s.batches / s.batches_per_epoch : 0);
    json_object_set(st, "log_history", s.log);
    write_json(a.outdir, "trainer_state.json", st);
    json_decref(st);
    w2v_note("%ld steps, %ld batches; model in %s", s.step, s.batches, a.outdir);
    (void)c;
    json_decref(s.log);
    w2v_optim_free(opt);
    w2v_model_free(m);
    w2v_reader_close(r);
    return 0;
}
