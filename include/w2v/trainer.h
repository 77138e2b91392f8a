/* Hugging Face Trainer's loop over a batches stream, as a library object
 * (Kaldi's NnetTrainer to w2v-train's nnet3-train): it takes batches one at
 * a time, steps the optimizer when an accumulation is complete, logs,
 * evaluates at epoch ends, writes checkpoints into its output directory and
 * resumes from one bit for bit.  Reading the stream, signals and progress
 * are the caller's. */
#ifndef W2V_TRAINER_H
#define W2V_TRAINER_H

#include <stddef.h>

#include "w2v/model.h"
#include "w2v/optim.h"
#include "w2v/stream.h"

typedef struct {
    const char *outdir;         /* checkpoint-STEP/, metrics.jsonl, the final model */
    w2v_optim_opts optim;       /* total_steps is the trainer's to set */
    double warmup_ratio;        /* warmup as a fraction of the steps, when optim.warmup_steps is 0 */
    long grad_accum;            /* batches per optimizer step */
    long max_steps;             /* 0: batches_per_epoch x epochs of the stream header */
    long seed;                  /* keys dropout, LayerDrop and SpecAugment draws */
    long logging_steps;         /* a metrics row every N steps (and at epoch ends) */
    long save_steps;            /* 0: a checkpoint at each epoch end */
    long save_total_limit;      /* 0: keep all */
    const char *eval;           /* a batches stream evaluated at epoch ends, or NULL */
    int load_best;              /* the final model is the checkpoint of best eval accuracy */
    int bf16;                   /* products in bf16, accumulated in fp32 (w2v_run.bf16) */
} w2v_train_opts;

/* Trainer's defaults, with w2v-train's learning rate of 3e-5. */
void w2v_train_defaults(w2v_train_opts *o);

/* What the trainer reports as it goes. */
typedef enum { W2V_TRAIN_LOGGED, W2V_TRAIN_EVALUATED, W2V_TRAIN_SAVED } w2v_train_event_kind;
typedef struct {
    w2v_train_event_kind kind;
    long step;
    double epoch;
    double loss;        /* LOGGED: mean training loss since the last row; EVALUATED: eval loss */
    double lr, grad_norm, clips_per_s;  /* LOGGED */
    double accuracy;    /* EVALUATED */
    long examples;      /* EVALUATED */
    const char *path;   /* SAVED: the checkpoint directory */
} w2v_train_event;
typedef void (*w2v_train_event_fn)(void *ctx, const w2v_train_event *ev);

typedef struct w2v_trainer w2v_trainer;

/* A trainer of m (borrowed) on a stream with header h: the schedule's
 * length comes from the header or max_steps; the eval stream is opened and
 * checked against the model now, not at the first epoch end.  NULL with
 * the reason in err. */
w2v_trainer *w2v_trainer_new(w2v_model *m, const w2v_header *h, const w2v_train_opts *o, w2v_train_event_fn fn,
                             void *ctx, char *err, size_t errlen);
void w2v_trainer_free(w2v_trainer *t);

/* Restores model, optimizer, schedule and log from a checkpoint directory
 * the trainer wrote; refuses one whose run had other options that shape
 * the steps (seed, accumulation, steps, learning rate, warmup, schedule),
 * saying which.  The caller then skips w2v_trainer_batches() batches of
 * the same stream.  0, or -1 with err. */
int w2v_trainer_resume(w2v_trainer *t, const char *checkpoint, char *err, size_t errlen);

long w2v_trainer_step(const w2v_trainer *t);        /* optimizer steps taken */
long w2v_trainer_total_steps(const w2v_trainer *t);
long w2v_trainer_batches(const w2v_trainer *t);     /* batches consumed */
int w2v_trainer_done(const w2v_trainer *t);         /* every step of the schedule taken */
long w2v_trainer_pending(const w2v_trainer *t);     /* batches accumulated towards no step yet */
/* The checkpoint of best eval accuracy so far (NULL: none) and that accuracy. */
const char *w2v_trainer_best(const w2v_trainer *t, double *accuracy);

/* One batch: forward and backward, then, when the accumulation is complete
 * or the epoch ends, the optimizer step, its log row, the epoch-end
 * evaluation and the checkpoint the options ask for.  *loss gets the
 * batch's loss.  0, or -1 with err (a non-finite loss among the reasons:
 * the last checkpoint stays as it was). */
int w2v_trainer_batch(w2v_trainer *t, const w2v_batch *b, float *loss, char *err, size_t errlen);

/* Writes OUTDIR/checkpoint-STEP now, unless it exists (as after a stop
 * request); its path in *path (owned by the trainer).  0, or -1 with err. */
int w2v_trainer_save(w2v_trainer *t, const char **path, char *err, size_t errlen);

/* The end of training: the final model at OUTDIR's top (the best
 * checkpoint's with load_best) and trainer_state.json, written by rank 0
 * alone over MPI.  0, or -1 with err. */
int w2v_trainer_finish(w2v_trainer *t, char *err, size_t errlen);

#endif
