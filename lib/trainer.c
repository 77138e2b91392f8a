/* Trainer's loop: accumulation, optimizer steps on HF's schedule, the log,
 * epoch-end evaluation, checkpoints (model, optimizer, trainer state) that
 * resume bit for bit, and the final model. */
#include "w2v/trainer.h"
#include "w2v/classify.h"
#include "w2v/dist.h"
#include "w2v/base.h"
#include "w2v/fs.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Everything a checkpoint must hold, beside the model and the optimizer,
 * to continue bit-identically. */
typedef struct {
    long step;             /* optimizer steps taken */
    long batches;          /* batches consumed from the stream */
    long total_steps, batches_per_epoch;
    double best_metric;    /* eval accuracy; < 0 = none yet */
    double window_loss;    /* losses summed since the last log row, */
    long window_batches;   /* so a resumed run logs what the whole one does */
    char *best_checkpoint; /* NULL: none yet */
    json_t *log;           /* log_history */
} train_state;

struct w2v_trainer {
    w2v_model *m;
    w2v_optim *opt;
    w2v_train_opts o;
    char *outdir, *eval;
    w2v_train_event_fn fn;
    void *ctx;
    train_state s;
    long micro;            /* batches accumulated towards the next step */
    long window_clips;
    double t_window;
    double window_allreduce; /* seconds summing gradients over MPI since the last row */
    double window_allgather; /* seconds sharing the parameters stepped in parts (ZeRO-1) */
    long logged_step;
    char *saved;           /* the last checkpoint written */
};

void w2v_train_defaults(w2v_train_opts *o)
{
    memset(o, 0, sizeof *o);
    w2v_optim_defaults(&o->optim);
    o->optim.lr = 3e-5;
    o->grad_accum = 1;
    o->seed = 42;
    o->logging_steps = 10;
}

/* Over MPI every rank trains the same model; rank 0 alone writes files and
 * reports. */
static int writer(void) { return w2v_dist_rank() == 0; }

static void emit(w2v_trainer *t, w2v_train_event ev)
{
    if (t->fn && writer()) t->fn(t->ctx, &ev);
}

static double epoch_of(const w2v_trainer *t)
{
    return t->s.batches_per_epoch ? (double)t->s.batches / (double)t->s.batches_per_epoch : 0;
}

static char *checkpoint_path(const w2v_trainer *t, long step)
{
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%ld", step);
    return w2v_path_join(t->outdir, name);
}

/* ---- files ---- */

static int write_json(const char *dir, const char *name, const json_t *o, char *err, size_t errlen)
{
    if (!writer()) return 0;
    char *path = w2v_path_join(dir, name);
    /* insertion order: the log history reads back as it was written */
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    int ret = text ? w2v_atomic_write_text(path, text, err, errlen) : set_error(err, errlen, "%s: cannot format", path);
    free(text);
    free(path);
    return ret;
}

/* metrics.jsonl: the log history, a row a line. */
static int write_metrics(const w2v_trainer *t, char *err, size_t errlen)
{
    if (!writer()) return 0;
    size_t len = 0, i;
    char *text = NULL;
    FILE *fp = open_memstream(&text, &len);
    if (!fp) return set_error(err, errlen, "metrics.jsonl: %s", strerror(errno));
    json_t *e;
    json_array_foreach(t->s.log, i, e) w2v_json_line(fp, e);
    fclose(fp);
    char *path = w2v_path_join(t->outdir, "metrics.jsonl");
    int ret = w2v_atomic_write_text(path, text, err, errlen);
    free(path);
    free(text);
    return ret;
}

/* trainer_state.json: HF's keys, ours to resume exactly, and the options
 * a resumed run must share. */
static json_t *state_json(const w2v_trainer *t)
{
    const train_state *s = &t->s;
    const w2v_train_opts *o = &t->o;
    json_t *st = json_pack(
        "{s:I, s:I, s:f, s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:b, s:f, s:I, s:f, s:I, s:s}", "global_step",
        (json_int_t)s->step, "batches_consumed", (json_int_t)s->batches, "epoch", epoch_of(t), "max_steps",
        (json_int_t)s->total_steps, "batches_per_epoch", (json_int_t)s->batches_per_epoch, "best_metric",
        s->best_metric >= 0 ? json_real(s->best_metric) : json_null(), "best_model_checkpoint",
        s->best_checkpoint ? json_string(s->best_checkpoint) : json_null(), "seed", (json_int_t)o->seed,
        "logging_steps", (json_int_t)o->logging_steps, "save_steps", (json_int_t)o->save_steps,
        "gradient_accumulation_steps", (json_int_t)o->grad_accum, "is_world_process_zero", 1, "window_loss",
        s->window_loss, "window_batches", (json_int_t)s->window_batches, "learning_rate", o->optim.lr,
        "warmup_steps", (json_int_t)o->optim.warmup_steps, "lr_scheduler_type",
        w2v_schedule_name(o->optim.schedule));
    json_object_set(st, "log_history", s->log);
    return st;
}

static int checkpoint_step(const char *name)
{
    if (strncmp(name, "checkpoint-", 11)) return -1;
    char *end;
    long v = strtol(name + 11, &end, 10);
    return *end || end == name + 11 ? -1 : (int)v;
}

static int newest_first(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

/* Keeps the newest save_total_limit checkpoints, and the best one. */
static void rotate_checkpoints(const w2v_trainer *t)
{
    if (t->o.save_total_limit <= 0) return;
    DIR *d = opendir(t->outdir);
    if (!d) return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int st = checkpoint_step(e->d_name);
        if (st < 0) continue;
        if (n == cap) steps = xrealloc(steps, (cap = cap ? 2 * cap : 64) * sizeof *steps);
        steps[n++] = st;
    }
    closedir(d);
    if (n > 1) qsort(steps, n, sizeof *steps, newest_first); /* NULL without checkpoints */
    for (size_t i = (size_t)t->o.save_total_limit; i < n; i++) {
        char *path = checkpoint_path(t, steps[i]);
        if ((!t->s.best_checkpoint || strcmp(path, t->s.best_checkpoint)) && w2v_remove_tree(path, NULL, 0) != 0)
            lib_warn("%s: could not remove: %s", path, strerror(errno));
        free(path);
    }
    free(steps);
}

int w2v_trainer_save(w2v_trainer *t, const char **path, char *err, size_t errlen)
{
    char *dir = checkpoint_path(t, t->s.step);
    free(t->saved);
    t->saved = dir;
    if (path) *path = dir;
    /* an optimizer state split over the ranks is gathered from them all
     * as it is written: they follow rank 0 */
    int write = writer() && !w2v_exists(dir);
    if (w2v_optim_split(t->opt)) {
        w2v_dist_bcast(&write, sizeof write, 0);
        if (write && !writer()) return w2v_optim_save(t->opt, t->m, NULL, err, errlen);
    }
    if (!write) return 0;
    char *tmp = w2v_path_join(t->outdir, ".checkpoint.tmp"), *optp = w2v_path_join(tmp, "optimizer.safetensors");
    json_t *st = state_json(t);
    int ret = w2v_remove_tree(tmp, err, errlen);
    if (ret == 0) ret = w2v_mkdirs(tmp, err, errlen);
    if (ret == 0) ret = w2v_model_write_files(t->m, tmp, err, errlen);
    /* called whatever happened before, the other ranks' parts being on their way */
    char why[512];
    if (w2v_optim_save(t->opt, t->m, ret == 0 ? optp : NULL, why, sizeof why) < 0 && ret == 0)
        ret = set_error(err, errlen, "%s", why);
    if (ret == 0) ret = write_json(tmp, "trainer_state.json", st, err, errlen);
    /* a checkpoint appears complete or not at all */
    if (ret == 0) ret = w2v_replace_dir(tmp, dir, err, errlen);
    if (ret < 0) w2v_remove_tree(tmp, NULL, 0);
    json_decref(st);
    free(optp);
    free(tmp);
    if (ret < 0) return -1;
    emit(t, (w2v_train_event){.kind = W2V_TRAIN_SAVED, .step = t->s.step, .epoch = epoch_of(t), .path = dir});
    rotate_checkpoints(t);
    return 0;
}

/* ---- evaluation ---- */

typedef struct {
    const w2v_config *c;
    double loss;
    long examples, correct;
} eval_sums;

static void count_result(void *ctx, const w2v_clip *clip, const float *logits)
{
    eval_sums *e = ctx;
    if (clip->label < 0) return;
    e->loss += w2v_cross_entropy(logits, e->c->num_labels, (int)clip->label);
    e->correct += w2v_argmax(logits, e->c->num_labels) == clip->label;
    e->examples++;
}

/* Opens a batches stream the model can be evaluated on; map gets the
 * stream's label ids as the model's (nlabels + 1 entries). */
static w2v_reader *open_eval(const w2v_trainer *t, int **map, char *err, size_t errlen)
{
    char why[768];
    w2v_reader *r = w2v_reader_open(t->eval, why, sizeof why);
    if (!r) {
        set_error(err, errlen, "--eval: %s", why);
        return NULL;
    }
    const w2v_header *h = w2v_reader_header(r);
    *map = xmalloc((size_t)(h->nlabels + 1) * sizeof **map);
    if (h->type != W2V_BATCHES) set_error(err, errlen, "--eval: %s: not a batches stream (pipe it through ks-batch)", t->eval);
    else if (w2v_classify_check_header(w2v_model_config(t->m), h, W2V_LABELS_SUBSET, *map, why, sizeof why) < 0)
        set_error(err, errlen, "--eval: %s: %s", t->eval, why);
    else return r;
    free(*map);
    *map = NULL;
    w2v_reader_close(r);
    return NULL;
}

/* Loss and accuracy over the eval stream's labelled examples, each batch
 * as it is; over MPI each rank takes every size-th batch and the sums are
 * added up. */
static int evaluate(w2v_trainer *t, char *err, size_t errlen)
{
    int *map;
    w2v_reader *r = open_eval(t, &map, err, errlen);
    if (!r) return -1;
    eval_sums sums = {w2v_model_config(t->m), 0, 0, 0};
    w2v_classifier *cls = w2v_classifier_new(t->m, 1, count_result, &sums);
    w2v_classifier_set_bf16(cls, t->o.bf16);
    w2v_stream_opts so = {.whole_batches = 1, .part = w2v_dist_rank(), .parts = w2v_dist_size()};
    char why[1024];
    int ret = 0;
    if (w2v_classify_stream(cls, r, t->eval, map, &so, why, sizeof why) < 0)
        ret = set_error(err, errlen, "--eval: %s", why);
    w2v_classifier_free(cls);
    w2v_reader_close(r);
    free(map);
    if (ret < 0) return -1;
    double total[3] = {sums.loss, (double)sums.correct, (double)sums.examples};
    w2v_dist_sum_doubles(total, 3);
    sums.loss = total[0], sums.correct = (long)total[1], sums.examples = (long)total[2];
    double loss = sums.examples ? sums.loss / (double)sums.examples : 0,
           acc = sums.examples ? (double)sums.correct / (double)sums.examples : 0;
    json_array_append_new(t->s.log, json_pack("{s:I, s:f, s:f, s:f, s:I}", "step", (json_int_t)t->s.step, "epoch",
                                              epoch_of(t), "eval_loss", loss, "eval_accuracy", acc, "eval_examples",
                                              (json_int_t)sums.examples));
    if (write_metrics(t, err, errlen) < 0) return -1;
    emit(t, (w2v_train_event){.kind = W2V_TRAIN_EVALUATED, .step = t->s.step, .epoch = epoch_of(t), .loss = loss,
                              .accuracy = acc, .examples = sums.examples});
    if (acc > t->s.best_metric) {
        t->s.best_metric = acc;
        free(t->s.best_checkpoint);
        t->s.best_checkpoint = checkpoint_path(t, t->s.step);
    }
    return 0;
}

/* ---- the loop ---- */

w2v_trainer *w2v_trainer_new(w2v_model *m, const w2v_header *h, const w2v_train_opts *o, w2v_train_event_fn fn,
                             void *ctx, char *err, size_t errlen)
{
    if (h->type != W2V_BATCHES) {
        set_error(err, errlen, "an examples stream: batch it first (ks-batch)");
        return NULL;
    }
    w2v_trainer *t = xcalloc(1, sizeof *t);
    t->m = m;
    t->o = *o;
    t->outdir = xstrdup(o->outdir);
    t->eval = o->eval ? xstrdup(o->eval) : NULL;
    t->o.outdir = t->outdir;
    t->o.eval = t->eval;
    t->fn = fn;
    t->ctx = ctx;
    train_state *s = &t->s;
    s->best_metric = -1;
    s->log = json_array();
    s->batches_per_epoch = h->batches_per_epoch > 0 ? h->batches_per_epoch : 0;
    long epochs = h->epochs > 0 ? h->epochs : 1, ga = o->grad_accum;
    /* Trainer: optimizer steps per epoch = batches // accumulation (at least 1) */
    long steps_per_epoch = s->batches_per_epoch ? (s->batches_per_epoch / ga > 0 ? s->batches_per_epoch / ga : 1) : 0;
    s->total_steps = o->max_steps ? o->max_steps : steps_per_epoch * epochs;
    t->o.optim.total_steps = s->total_steps;
    if (t->o.optim.warmup_steps == 0 && o->warmup_ratio > 0)
        t->o.optim.warmup_steps = (long)ceil(o->warmup_ratio * (double)s->total_steps);
    t->opt = w2v_optim_new(m, &t->o.optim);
    t->t_window = w2v_now();
    int *map = NULL;
    w2v_reader *r = NULL;
    if (s->total_steps <= 0) set_error(err, errlen, "the stream header does not give batches_per_epoch: pass --max-steps");
    else if (t->eval && !(r = open_eval(t, &map, err, errlen))) ;
    else if (w2v_mkdirs(t->outdir, err, errlen) == 0) {
        if (writer()) w2v_remove_strays(t->outdir); /* an earlier run's, killed mid-write */
        w2v_reader_close(r);
        free(map);
        return t;
    }
    w2v_reader_close(r);
    free(map);
    w2v_trainer_free(t);
    return NULL;
}

void w2v_trainer_free(w2v_trainer *t)
{
    if (!t) return;
    w2v_optim_free(t->opt);
    json_decref(t->s.log);
    free(t->s.best_checkpoint);
    free(t->saved);
    free(t->outdir);
    free(t->eval);
    free(t);
}

long w2v_trainer_step(const w2v_trainer *t) { return t->s.step; }
long w2v_trainer_total_steps(const w2v_trainer *t) { return t->s.total_steps; }
long w2v_trainer_batches(const w2v_trainer *t) { return t->s.batches; }
int w2v_trainer_done(const w2v_trainer *t) { return t->s.step >= t->s.total_steps; }

/* An option of the checkpoint's run that this run must share: "" when it
 * does, else the difference in words. */
static int differs(json_t *st, const char *key, double want, char *what, size_t len)
{
    json_t *v = json_object_get(st, key);
    if (!v || json_number_value(v) == want) return 0;
    snprintf(what, len, "%s was %.17g, now %.17g", key, json_number_value(v), want);
    return 1;
}

int w2v_trainer_resume(w2v_trainer *t, const char *ckpt, char *err, size_t errlen)
{
    char *path = w2v_path_join(ckpt, "trainer_state.json"), what[256] = "";
    json_error_t je;
    json_t *st = json_load_file(path, 0, &je);
    json_int_t step, batches, wb = 0;
    double wl = 0;
    int ret = 0;
    const w2v_optim_opts *oo = &t->o.optim;
    const char *sched = json_string_value(json_object_get(st, "lr_scheduler_type"));
    if (!st) ret = set_error(err, errlen, "%s: %s", path, je.text);
    else if (json_unpack(st, "{s:I, s:I, s?F, s?I}", "global_step", &step, "batches_consumed", &batches,
                         "window_loss", &wl, "window_batches", &wb) != 0)
        ret = set_error(err, errlen, "%s: not a w2v-train trainer state", path);
    else if (differs(st, "seed", (double)t->o.seed, what, sizeof what) ||
             differs(st, "gradient_accumulation_steps", (double)t->o.grad_accum, what, sizeof what) ||
             differs(st, "max_steps", (double)t->s.total_steps, what, sizeof what) ||
             differs(st, "learning_rate", oo->lr, what, sizeof what) ||
             differs(st, "warmup_steps", (double)oo->warmup_steps, what, sizeof what) ||
             (sched && strcmp(sched, w2v_schedule_name(oo->schedule)) &&
              snprintf(what, sizeof what, "lr_scheduler_type was %s, now %s", sched, w2v_schedule_name(oo->schedule))))
        ret = set_error(err, errlen, "%s: the checkpoint's run had other options (%s): resume with the same options and stream",
                        path, what);
    if (ret == 0) {
        train_state *s = &t->s;
        json_t *best = json_object_get(st, "best_metric"), *bestc = json_object_get(st, "best_model_checkpoint");
        s->step = t->logged_step = (long)step;
        s->batches = (long)batches;
        s->window_loss = wl;
        s->window_batches = (long)wb;
        s->best_metric = json_is_number(best) ? json_number_value(best) : -1;
        free(s->best_checkpoint);
        s->best_checkpoint = json_is_string(bestc) ? xstrdup(json_string_value(bestc)) : NULL;
        json_decref(s->log);
        s->log = json_incref(json_object_get(st, "log_history"));
        if (!json_is_array(s->log)) s->log = json_array();
        char *optp = w2v_path_join(ckpt, "optimizer.safetensors");
        ret = w2v_optim_load(t->opt, t->m, optp, err, errlen);
        free(optp);
        if (ret == 0 && w2v_optim_steps(t->opt) != s->step)
            ret = set_error(err, errlen, "%s: optimizer and trainer state disagree on the step", ckpt);
        if (ret == 0) ret = write_metrics(t, err, errlen);
    }
    json_decref(st);
    free(path);
    return ret;
}

/* Over MPI, the gradients summed over the ranks: one allreduce for each
 * run of parameters that have gradients (the parameter block in HF's
 * order; a frozen conv encoder is left out).  With the optimizer state
 * split too: a reduce-scatter would move fewer bytes, but OpenMPI 4.1's
 * took 3 s here where the allreduce takes 0.06 (bench/mpi-buckets.c). */
static void sum_gradients(w2v_trainer *t)
{
    if (w2v_dist_size() == 1) return;
    double t0 = w2v_now();
    float *g = w2v_model_grads(t->m, NULL);
    long start = -1, end = 0;
    for (int i = 0; i <= w2v_model_num_params(t->m); i++) {
        const w2v_param *p = w2v_model_param(t->m, i);
        if (p && w2v_model_param_has_grad(t->m, i)) {
            if (start < 0) start = p->offset;
            end = p->offset + p->size;
        } else if (start >= 0) {
            w2v_dist_sum_floats(g + start, end - start);
            start = -1;
        }
    }
    t->window_allreduce += w2v_now() - t0;
}

/* The optimizer step that ends an accumulation, and what follows it. */
static int step(w2v_trainer *t, int epoch_end, char *err, size_t errlen)
{
    train_state *s = &t->s;
    double lr;
    sum_gradients(t);
    float grad_norm = w2v_optim_step(t->opt, t->m, &lr);
    double t0 = w2v_now();
    w2v_optim_share(t->opt, t->m);
    t->window_allgather += w2v_now() - t0;
    s->step++;
    if (s->step % t->o.logging_steps == 0 || s->step == s->total_steps || epoch_end) {
        double now = w2v_now(), clips_per_s = (double)t->window_clips / (now - t->t_window > 0 ? now - t->t_window : 1e-9);
        double loss = s->window_loss / (double)s->window_batches;
        json_t *row = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "step", (json_int_t)s->step, "epoch", epoch_of(t),
                                "loss", loss, "learning_rate", lr, "grad_norm", (double)grad_norm, "clips_per_s",
                                clips_per_s);
        /* over MPI: the mean time of a step's allreduce, and the ranks */
        if (w2v_dist_size() > 1) {
            long steps = s->step - t->logged_step;
            json_object_set_new(row, "allreduce_s", json_real(t->window_allreduce / (double)(steps > 0 ? steps : 1)));
            if (w2v_optim_split(t->opt))
                json_object_set_new(row, "allgather_s", json_real(t->window_allgather / (double)(steps > 0 ? steps : 1)));
            json_object_set_new(row, "ranks", json_integer(w2v_dist_size()));
        }
        json_array_append_new(s->log, row);
        if (write_metrics(t, err, errlen) < 0) return -1;
        emit(t, (w2v_train_event){.kind = W2V_TRAIN_LOGGED, .step = s->step, .epoch = epoch_of(t), .loss = loss,
                                  .lr = lr, .grad_norm = grad_norm, .clips_per_s = clips_per_s});
        s->window_loss = 0, s->window_batches = t->window_clips = 0, t->t_window = now;
        t->window_allreduce = t->window_allgather = 0, t->logged_step = s->step;
    }
    if (epoch_end && t->eval && evaluate(t, err, errlen) < 0) return -1;
    if ((t->o.save_steps && s->step % t->o.save_steps == 0) || (!t->o.save_steps && epoch_end))
        return w2v_trainer_save(t, NULL, err, errlen);
    return 0;
}

int w2v_trainer_batch(w2v_trainer *t, const w2v_batch *b, float *loss, char *err, size_t errlen)
{
    train_state *s = &t->s;
    /* this rank's part of the batch (all of it without MPI), and the
     * labelled examples there and in the whole batch, whose mean the loss is */
    int B = b->batch, R = w2v_dist_rank(), N = w2v_dist_size();
    int first = (int)((long)B * R / N), n = (int)((long)B * (R + 1) / N) - first;
    long labelled = 0, mine = 0;
    for (int i = 0; i < B; i++) {
        labelled += b->labels[i] >= 0;
        mine += b->labels[i] >= 0 && i >= first && i < first + n;
    }
    w2v_input in = {.B = n, .T = b->time, .x = b->input_values + (long)first * b->time, .lengths = b->lengths + first,
                    .labels = b->labels + first, .first = first, .whole = N > 1 ? B : 0, .whole_lengths = b->lengths};
    w2v_run run = {.training = 1, .seed = (uint64_t)t->o.seed, .step = (uint64_t)s->batches, .attention_mask = -1,
                   .bf16 = t->o.bf16};
    char why[512];
    if (t->micro == 0) w2v_model_zero_grad(t->m);
    float l = n > 0 ? w2v_model_forward(t->m, &in, &run, NULL, why, sizeof why) : 0;
    if (l < 0) return set_error(err, errlen, "batch %ld: %s", s->batches, why);
    /* the whole batch's loss, which every rank then agrees on */
    double sum = labelled ? (double)l * (double)mine / (double)labelled : 0;
    w2v_dist_sum_doubles(&sum, 1);
    if (!isfinite(sum))
        return set_error(err, errlen,
                         "the loss is %f at step %ld (batch %ld): training stopped; the last good checkpoint is kept in %s",
                         sum, s->step, s->batches, t->outdir);
    if (loss) *loss = (float)sum;
    if (n > 0 && labelled) w2v_model_backward(t->m, (float)mine / (float)labelled / (float)t->o.grad_accum);
    s->batches++;
    t->micro++;
    s->window_loss += sum;
    s->window_batches++;
    t->window_clips += b->batch;
    int epoch_end = s->batches_per_epoch && s->batches % s->batches_per_epoch == 0;
    if (t->micro < t->o.grad_accum && !epoch_end) return 0;
    t->micro = 0;
    return step(t, epoch_end, err, errlen);
}

long w2v_trainer_pending(const w2v_trainer *t) { return t->micro; }

const char *w2v_trainer_best(const w2v_trainer *t, double *accuracy)
{
    if (accuracy) *accuracy = t->s.best_metric;
    return t->s.best_checkpoint;
}

int w2v_trainer_finish(w2v_trainer *t, char *err, size_t errlen)
{
    if (!writer()) return 0;
    if (t->o.load_best && t->s.best_checkpoint) {
        char *w = w2v_path_join(t->s.best_checkpoint, "model.safetensors");
        int ret = w2v_model_load_weights(t->m, w, err, errlen);
        free(w);
        if (ret < 0) return -1;
    }
    if (w2v_model_write_files(t->m, t->outdir, err, errlen) < 0) return -1;
    json_t *st = state_json(t);
    int ret = write_json(t->outdir, "trainer_state.json", st, err, errlen);
    json_decref(st);
    return ret;
}
