/* AdamW, gradient clipping and learning-rate schedules as Hugging Face
 * Trainer configures them by default (torch.optim.AdamW, clip_grad_norm_,
 * get_*_schedule_with_warmup). */
#ifndef W2V_OPTIM_H
#define W2V_OPTIM_H

#include "w2v/model.h"

typedef enum { W2V_SCHED_LINEAR, W2V_SCHED_COSINE, W2V_SCHED_CONSTANT, W2V_SCHED_CONSTANT_WITH_WARMUP } w2v_schedule;

typedef struct {
    double lr, beta1, beta2, eps, weight_decay, max_grad_norm; /* max_grad_norm <= 0: no clipping */
    w2v_schedule schedule;
    long warmup_steps, total_steps;
    int split_state; /* over MPI, ZeRO stage 1: each rank keeps and steps 1/N of the moments */
} w2v_optim_opts;

/* Trainer's defaults: lr 5e-5, betas (0.9, 0.999), eps 1e-8, no weight
 * decay, clipping at 1.0, linear schedule without warmup. */
void w2v_optim_defaults(w2v_optim_opts *o);
/* Parses "linear", "cosine", "constant", "constant_with_warmup"; -1 if unknown. */
int w2v_schedule_parse(const char *name);
const char *w2v_schedule_name(w2v_schedule s);
/* HF's learning rate for the step-th optimizer step (0-based). */
double w2v_schedule_lr(const w2v_optim_opts *o, long step);

typedef struct w2v_optim w2v_optim;
w2v_optim *w2v_optim_new(w2v_model *m, const w2v_optim_opts *o);
void w2v_optim_free(w2v_optim *opt);
/* Steps taken so far. */
long w2v_optim_steps(const w2v_optim *opt);
/* One step: clip the gradients, AdamW with decay by Trainer's rule, advance
 * the schedule.  As torch's AdamW under Trainer, a parameter is stepped
 * from its first gradient on (w2v_model_param_has_grad), with a zero
 * gradient when LayerDrop or an unmasked batch leaves it out later, and
 * not before (its step count starts then).  Returns the total gradient
 * norm before clipping; *lr_used gets the learning rate of this step. */
float w2v_optim_step(w2v_optim *opt, w2v_model *m, double *lr_used);
/* With split_state under MPI: whether the state is split (a job of more
 * than one).  Each rank then keeps the moments of its own share of the
 * tensors and steps those parameters alone, from the whole summed
 * gradient (the same clipping everywhere), and w2v_optim_share gives every
 * rank every share (an allgather; a no-op unsplit).  The parameters are
 * the unsplit optimizer's to the bit. */
int w2v_optim_split(const w2v_optim *opt);
void w2v_optim_share(w2v_optim *opt, w2v_model *m);
/* Optimizer state (moments, step counts, schedule position) in a
 * safetensors file, the same split or not.  Split, saving is collective:
 * every rank calls it, rank 0 with the path, the others with NULL (their
 * parts are gathered as the file is written).  Loading takes this rank's
 * part from the whole file. */
int w2v_optim_save(const w2v_optim *opt, const w2v_model *m, const char *path, char *err, size_t errlen);
int w2v_optim_load(w2v_optim *opt, const w2v_model *m, const char *path, char *err, size_t errlen);

#endif
