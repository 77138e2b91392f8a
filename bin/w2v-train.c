/* w2v-train: fine-tune a Wav2Vec2 classifier on a batches stream, as
 * Hugging Face Trainer(model, args).train() does. */
#include "w2v/classify.h"
#include "w2v/cli.h"
#include "w2v/dist.h"
#include "w2v/fs.h"
#include "w2v/model.h"
#include "w2v/optim.h"
#include "w2v/stream.h"
#include "w2v/trainer.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    "On many processes or machines: `... | mpirun -np 4 w2v-train ... --threads 2` (see mpirun(1)):\n"
    "rank 0 reads the stream and hands each rank its part of every batch; the gradients are summed\n"
    "over the ranks each step; rank 0 alone writes.  Options mean what they mean in one process.\n"
    "--zero-stage 1 splits the optimizer state over the ranks (ZeRO stage 1): each rank keeps and\n"
    "steps its share of it, and the ranks share the stepped parameters; the results are the same.\n"
    "\n"
    "Options:\n"
    "  -m, --model DIR                 model to start from (a Hugging Face directory)\n"
    "  -o, --output-dir DIR            where checkpoints and the final model go (a run directory, or new)\n"
    "  --overwrite-output-dir          write into OUTDIR whatever it holds, even the model's own directory\n"
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
    "  --bf16                          matrix products in bf16 with fp32 accumulation (autocast's);\n"
    "                                  weights, optimizer and checkpoints stay fp32\n"
    "  --seed N                        dropout, LayerDrop and SpecAugment draws [42]\n"
    "  --logging-steps N               log every N steps to metrics.jsonl [10]\n"
    "  --save-steps N                  checkpoint every N steps (default: at each epoch end)\n"
    "  --save-total-limit N            keep at most N checkpoints (the best is kept) [all]\n"
    "  --eval FILE                     a batches stream to evaluate at each epoch end (loss, accuracy)\n"
    "  --load-best-model-at-end        the final model is the checkpoint of best eval accuracy\n"
    "  --resume CHECKPOINT             continue a run from OUTDIR/checkpoint-STEP (same stream and options)\n"
    "  --zero-stage N                  under mpirun: 0, every rank keeps the whole optimizer state;\n"
    "                                  1, each rank its share of it (ZeRO-1; the same results) [0]\n"
    "  --threads N                     threads [the cores available]\n"
    "  --quiet, --progress             no notes; a progress bar even when stderr is not a terminal\n"
    "  -h, --help                      this text\n"
    "  --version                       print the version\n";

enum {
    OPT_LR = 1, OPT_WD, OPT_B1, OPT_B2, OPT_EPS, OPT_SCHED, OPT_WARMUP, OPT_WARMUP_RATIO, OPT_CLIP, OPT_GA,
    OPT_MAX_STEPS, OPT_FREEZE, OPT_SEED, OPT_LOG, OPT_SAVE, OPT_LIMIT, OPT_EVAL, OPT_BEST, OPT_RESUME, OPT_OVERWRITE, OPT_BF16,
    OPT_ZERO
};

typedef struct {
    const char *model, *input, *resume;
    w2v_train_opts t;
    int freeze, overwrite;
} args;

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { stop_requested = sig; }

static void on_event(void *ctx, const w2v_train_event *ev)
{
    (void)ctx;
    if (ev->kind == W2V_TRAIN_SAVED) w2v_note("saved %s", ev->path);
    if (ev->kind == W2V_TRAIN_EVALUATED)
        w2v_note("epoch %.0f: eval loss %.4f, accuracy %.4f (%ld examples)", ev->epoch, ev->loss, ev->accuracy,
                 ev->examples);
}

/* ---- the run ---- */

/* The model with the stream's labels (which replace HF's placeholders
 * LABEL_0, ...). */
static w2v_model *load_model(const char *dir, const w2v_header *h)
{
    char err[1024];
    w2v_config c;
    if (w2v_config_load(&c, dir, err, sizeof err) < 0) w2v_die("%s", err);
    int *map = malloc(((size_t)h->nlabels + 1) * sizeof *map);
    if (!map) w2v_die("out of memory");
    if (w2v_classify_check_header(&c, h, W2V_LABELS_TRAIN, map, err, sizeof err) < 0) w2v_die("%s: %s", dir, err);
    free(map);
    w2v_config_free(&c);
    w2v_model *m = w2v_model_load_labels(dir, h->nlabels, h->labels, err, sizeof err);
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
        {"overwrite-output-dir", no_argument, 0, OPT_OVERWRITE},
        {"bf16", no_argument, 0, OPT_BF16},
        {"zero-stage", required_argument, 0, OPT_ZERO},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {0, 0, 0, 0},
    };
    int opt;
    memset(a, 0, sizeof *a);
    w2v_train_defaults(&a->t);
    while ((opt = getopt_long(argc, argv, "hm:o:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'm': a->model = optarg; break;
        case 'o': a->t.outdir = optarg; break;
        case OPT_LR: a->t.optim.lr = w2v_parse_double("--learning-rate", optarg, 0, 10); break;
        case OPT_WD: a->t.optim.weight_decay = w2v_parse_double("--weight-decay", optarg, 0, 10); break;
        case OPT_B1: a->t.optim.beta1 = w2v_parse_double("--adam-beta1", optarg, 0, 0.999999); break;
        case OPT_B2: a->t.optim.beta2 = w2v_parse_double("--adam-beta2", optarg, 0, 0.999999999); break;
        case OPT_EPS: a->t.optim.eps = w2v_parse_double("--adam-epsilon", optarg, 0, 1); break;
        case OPT_SCHED: {
            int s = w2v_schedule_parse(optarg);
            if (s < 0) w2v_usage_error("--lr-scheduler-type: unknown '%s' (linear, cosine, constant, constant_with_warmup)", optarg);
            a->t.optim.schedule = (w2v_schedule)s;
            break;
        }
        case OPT_WARMUP: a->t.optim.warmup_steps = w2v_parse_long("--warmup-steps", optarg, 0, LONG_MAX); break;
        case OPT_WARMUP_RATIO: a->t.warmup_ratio = w2v_parse_double("--warmup-ratio", optarg, 0, 1); break;
        case OPT_CLIP: a->t.optim.max_grad_norm = w2v_parse_double("--max-grad-norm", optarg, 0, 1e9); break;
        case OPT_GA: a->t.grad_accum = w2v_parse_long("--gradient-accumulation-steps", optarg, 1, 1 << 20); break;
        case OPT_MAX_STEPS: a->t.max_steps = w2v_parse_long("--max-steps", optarg, 1, LONG_MAX); break;
        case OPT_FREEZE: a->freeze = 1; break;
        case OPT_SEED: a->t.seed = w2v_parse_long("--seed", optarg, 0, LONG_MAX); break;
        case OPT_LOG: a->t.logging_steps = w2v_parse_long("--logging-steps", optarg, 1, LONG_MAX); break;
        case OPT_SAVE: a->t.save_steps = w2v_parse_long("--save-steps", optarg, 1, LONG_MAX); break;
        case OPT_LIMIT: a->t.save_total_limit = w2v_parse_long("--save-total-limit", optarg, 1, LONG_MAX); break;
        case OPT_EVAL: a->t.eval = optarg; break;
        case OPT_BEST: a->t.load_best = 1; break;
        case OPT_RESUME: a->resume = optarg; break;
        case OPT_OVERWRITE: a->overwrite = 1; break;
        case OPT_BF16: a->t.bf16 = 1; break;
        case OPT_ZERO: a->t.optim.split_state = (int)w2v_parse_long("--zero-stage", optarg, 0, 1); break;
        }
    }
    if (!a->t.outdir) w2v_usage_error("no output directory (-o OUTDIR)");
    if (!a->model && !a->resume) w2v_usage_error("no model (-m MODEL)");
    if (optind < argc - 1) w2v_usage_error("one input stream at most");
    a->input = optind < argc ? argv[optind] : "-";
    if (a->t.eval && !strcmp(a->t.eval, "-")) w2v_usage_error("--eval needs a file: it is read at every epoch end");
    if (a->t.load_best && !a->t.eval) w2v_usage_error("--load-best-model-at-end needs --eval");
}

int main(int argc, char **argv)
{
    args a;
    char err[1024];
    w2v_cli_init("w2v-train", usage, argv);
    parse_args(argc, argv, &a);

    /* before any work: a run must not write over what it did not make,
     * nor over its own starting model */
    struct stat out, in;
    const char *from = a.resume ? a.resume : a.model;
    if (!a.overwrite && w2v_check_ours(a.t.outdir, err, sizeof err) < 0)
        w2v_die("%s: not written into (--overwrite-output-dir writes there)", err);
    if (!a.overwrite && stat(a.t.outdir, &out) == 0 && stat(from, &in) == 0 && out.st_dev == in.st_dev &&
        out.st_ino == in.st_ino)
        w2v_die("%s: is the model to start from: its final model would replace it (another -o, or --overwrite-output-dir)",
                a.t.outdir);

    /* under mpirun: rank 0 reads the stream and reports, every rank trains
     * its part of each batch (w2v/dist.h) */
    int ranks = w2v_dist_init(err, sizeof err), rank = w2v_dist_rank();
    if (!ranks) w2v_die("%s", err);
    if (rank) w2v_cli_common(W2V_OPT_QUIET, NULL);
    w2v_reader *r = NULL;
    const w2v_header *h = NULL;
    w2v_header copy;
    if (rank == 0) {
        if (!(r = w2v_reader_open(a.input, err, sizeof err))) w2v_die("%s", err);
        h = w2v_reader_header(r);
    }
    h = w2v_dist_share_header(h, &copy);
    if (h->type != W2V_BATCHES) w2v_die("%s: an examples stream: batch it first (ks-batch)", w2v_input_name(a.input));
    w2v_model *m = load_model(a.resume ? a.resume : a.model, h);
    w2v_model_freeze_feature_encoder(m, a.freeze);
    w2v_trainer *t = w2v_trainer_new(m, h, &a.t, on_event, NULL, err, sizeof err);
    if (!t) w2v_die("%s: %s", w2v_input_name(a.input), err);
    if (a.resume) {
        if (w2v_trainer_resume(t, a.resume, err, sizeof err) < 0) w2v_die("%s", err);
        /* the same stream again: skip what the run had consumed */
        for (long i = 0; i < w2v_trainer_batches(t) && rank == 0; i++)
            if (w2v_reader_next(r, err, sizeof err) <= 0)
                w2v_die("%s: the stream ends before the %ld batches the checkpoint consumed", w2v_input_name(a.input),
                        w2v_trainer_batches(t));
        w2v_note("resuming at step %ld (batch %ld)", w2v_trainer_step(t), w2v_trainer_batches(t));
    }

    /* without SA_RESTART: a signal ends a wait for the next batch */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    w2v_progress prog;
    w2v_progress_start(&prog, "training", (double)w2v_trainer_total_steps(t));
    /* what rank 0 decides next, which every rank follows */
    enum { END = 0, BATCH = 1, STOP = -1, BROKEN = -2 };
    int next;
    for (;;) {
        w2v_batch b;
        float loss;
        if (rank == 0) {
            /* a stop request wins over the read it interrupted */
            int got = w2v_trainer_done(t) || stop_requested ? 0 : w2v_reader_next(r, err, sizeof err);
            next = stop_requested ? STOP : got < 0 ? BROKEN : got == 0 ? END : BATCH;
            if (next == BATCH && w2v_reader_batch(r, &b, err, sizeof err) < 0) next = BROKEN;
        }
        if ((next = w2v_dist_share_batch(next, &b)) != BATCH) break;
        if (w2v_trainer_batch(t, &b, &loss, err, sizeof err) < 0) w2v_die("%s: %s", w2v_input_name(a.input), err);
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f", loss);
        w2v_progress_update(&prog, (double)w2v_trainer_step(t), extra);
    }
    w2v_progress_end(&prog);
    if (next == STOP || next == BROKEN) {
        const char *ckpt = NULL;
        if (next == STOP && w2v_trainer_save(t, &ckpt, err, sizeof err) < 0) w2v_die("%s", err);
        w2v_dist_finish();
        if (rank) exit(1); /* rank 0 says why */
        if (next == BROKEN) w2v_die("%s", err);
        w2v_die("interrupted by signal %d at step %ld; continue with: w2v-train --resume %s -o %s [same options and stream]",
                (int)stop_requested, w2v_trainer_step(t), ckpt, a.t.outdir);
    }
    if (w2v_trainer_pending(t))
        w2v_warn("the stream ended inside an accumulation: its last %ld batches made no step", w2v_trainer_pending(t));

    /* the final model at OUTDIR's top */
    if (w2v_trainer_finish(t, err, sizeof err) < 0) w2v_die("%s", err);
    double best_accuracy;
    const char *best = w2v_trainer_best(t, &best_accuracy);
    if (a.t.load_best && best) w2v_note("final model: the best checkpoint, %s (eval accuracy %.4f)", best, best_accuracy);
    w2v_note("%ld steps, %ld batches; model in %s", w2v_trainer_step(t), w2v_trainer_batches(t), a.t.outdir);
    w2v_trainer_free(t);
    w2v_model_free(m);
    w2v_reader_close(r);
    if (h == &copy) w2v_header_free(&copy);
    w2v_dist_finish();
    return 0;
}
