/* AdamW (torch 1.13's single-tensor path), clip_grad_norm_ and HF's
 * learning-rate schedules.  Scalars are computed in double as Python does,
 * then applied in float as torch's kernels do. */
#include "w2v/optim.h"
#include "w2v/dist.h"
#include "w2v/safetensors.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct w2v_optim {
    w2v_optim_opts o;
    long steps;
    long n;
    long *bounds;  /* [ranks + 1]: rank r keeps and steps elements [bounds[r], bounds[r + 1]) */
    long lo, hi;   /* this rank's: the whole block unless the state is split */
    float *m, *v;  /* moments of block elements [lo, hi) */
    int64_t *t;    /* per parameter, on every rank: steps in which it had a gradient */
    int nparams;
};

void w2v_optim_defaults(w2v_optim_opts *o)
{
    memset(o, 0, sizeof *o);
    o->lr = 5e-5;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->max_grad_norm = 1.0;
    o->schedule = W2V_SCHED_LINEAR;
}

static const char *const sched_names[] = {"linear", "cosine", "constant", "constant_with_warmup"};

const char *w2v_schedule_name(w2v_schedule s) { return sched_names[s]; }

int w2v_schedule_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, sched_names[i])) return i;
    return -1;
}


double w2v_schedule_lr(const w2v_optim_opts *o, long step)
{
    double w = (double)o->warmup_steps, t = (double)step, n = (double)o->total_steps, f;
    if (o->schedule == W2V_SCHED_CONSTANT) return o->lr;
    if (step < o->warmup_steps) return o->lr * (t / (w > 1 ? w : 1));
    switch (o->schedule) {
    case W2V_SCHED_LINEAR:
        f = (n - t) / (n - w > 1 ? n - w : 1);
        return o->lr * (f > 0 ? f : 0);
    case W2V_SCHED_COSINE:
        f = (t - w) / (n - w > 1 ? n - w : 1);
        f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * f));
        return o->lr * (f > 0 ? f : 0);
    default: return o->lr;
    }
}

w2v_optim *w2v_optim_new(w2v_model *m, const w2v_optim_opts *o)
{
    w2v_optim *opt = xcalloc(1, sizeof *opt);
    opt->o = *o;
    w2v_model_params(m, &opt->n);
    opt->nparams = w2v_model_num_params(m);
    int ranks = o->split_state ? w2v_dist_size() : 1, r = o->split_state ? w2v_dist_rank() : 0;
    opt->bounds = xmalloc(((size_t)ranks + 1) * sizeof *opt->bounds);
    /* at the parameters' starts nearest an even split: a rank takes whole
     * tensors */
    opt->bounds[0] = 0, opt->bounds[ranks] = opt->n;
    for (int k = 1, i = 0; k < ranks; k++) {
        long even = opt->n * k / ranks;
        while (i < opt->nparams && w2v_model_param(m, i)->offset < even) i++;
        long past = i < opt->nparams ? w2v_model_param(m, i)->offset : opt->n;
        long before = i > 0 ? w2v_model_param(m, i - 1)->offset : 0;
        opt->bounds[k] = past - even <= even - before || before < opt->bounds[k - 1] ? past : before;
    }
    opt->lo = opt->bounds[r], opt->hi = opt->bounds[r + 1];
    opt->m = xalloc_floats((size_t)(opt->hi - opt->lo));
    opt->v = xalloc_floats((size_t)(opt->hi - opt->lo));
    opt->t = xcalloc((size_t)opt->nparams, sizeof *opt->t);
    return opt;
}

void w2v_optim_free(w2v_optim *opt)
{
    if (!opt) return;
    free(opt->bounds);
    free(opt->m);
    free(opt->v);
    free(opt->t);
    free(opt);
}

long w2v_optim_steps(const w2v_optim *opt) { return opt->steps; }

/* torch's AdamW skips a parameter whose grad is None.  Trainer zeroes
 * gradients in place (zero_grad(set_to_none=False), torch 1.13), so a
 * parameter has a grad, zero or not, from its first backward on: it is
 * stepped from then, LayerDrop or not.  Its own step count says whether it
 * had one before, which a resumed run reads back. */
static int stepped(const w2v_optim *opt, const w2v_model *m, int i)
{
    return opt->t[i] > 0 || w2v_model_param_has_grad(m, i);
}

float w2v_optim_step(w2v_optim *opt, w2v_model *m, double *lr_used)
{
    float *p = w2v_model_params(m, NULL), *g = w2v_model_grads(m, NULL);
    int np = w2v_model_num_params(m);
    const w2v_optim_opts *o = &opt->o;
    double *norms = xcalloc((size_t)np, sizeof *norms);

    /* clip_grad_norm_: the norm of the per-parameter norms.  One parallel
     * region over the tensors (a region per tensor costs more than the
     * work when the cores are shared); each tensor summed serially, so the
     * result does not depend on the threads. */
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < np; i++) {
        if (!stepped(opt, m, i)) continue;
        const w2v_param *pp = w2v_model_param(m, i);
        double ss = 0;
        for (long j = 0; j < pp->size; j++) ss += (double)g[pp->offset + j] * g[pp->offset + j];
        float norm = (float)sqrt(ss);
        norms[i] = (double)norm * norm;
    }
    double total = 0;
    for (int i = 0; i < np; i++) total += norms[i];
    free(norms);
    float total_norm = (float)sqrt(total);
    float coef = 1.0f;
    if (o->max_grad_norm > 0) {
        double c = o->max_grad_norm / ((double)total_norm + 1e-6);
        coef = (float)(c < 1.0 ? c : 1.0);
    }

    double lr = w2v_schedule_lr(o, opt->steps);
    if (lr_used) *lr_used = lr;
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < np; i++) {
        if (!stepped(opt, m, i)) continue;
        const w2v_param *pp = w2v_model_param(m, i);
        long t = ++opt->t[i];
        double wd = pp->decay ? o->weight_decay : 0.0;
        double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
        float decay = (float)(1.0 - lr * wd), b1 = (float)o->beta1, b2 = (float)o->beta2;
        float a1 = (float)(1.0 - o->beta1), a2 = (float)(1.0 - o->beta2);
        float bc2s = (float)sqrt(bc2), eps = (float)o->eps, step = (float)(-(lr / bc1));
        if (pp->offset < opt->lo || pp->offset >= opt->hi) continue; /* another rank's */
        float *pv = p + pp->offset, *gv = g + pp->offset;
        float *mv = opt->m + (pp->offset - opt->lo), *vv = opt->v + (pp->offset - opt->lo);
        #pragma omp simd
        for (long j = 0; j < pp->size; j++) {
            float gj = gv[j] * coef;
            pv[j] *= decay;
            mv[j] = mv[j] * b1 + a1 * gj;
            vv[j] = vv[j] * b2 + a2 * gj * gj;
            float denom = sqrtf(vv[j]) / bc2s + eps;
            pv[j] += step * (mv[j] / denom);
        }
    }
    opt->steps++;
    return total_norm;
}

int w2v_optim_split(const w2v_optim *opt) { return opt->hi - opt->lo < opt->n; }

void w2v_optim_share(w2v_optim *opt, w2v_model *m)
{
    if (w2v_optim_split(opt)) w2v_dist_allgather_floats(w2v_model_params(m, NULL), 0, opt->n, opt->bounds);
}

/* A moment tensor of a checkpoint, gathered from the ranks' parts. */
typedef struct {
    const w2v_optim *opt;
    const float *part;
    long offset, size;
} moment_tensor;

static void gather_moment(void *ctx, void *dst)
{
    const moment_tensor *mt = ctx;
    w2v_dist_gather_floats(dst, mt->part, mt->offset, mt->offset + mt->size, mt->opt->bounds, 0);
}

int w2v_optim_save(const w2v_optim *opt, const w2v_model *m, const char *path, char *err, size_t errlen)
{
    w2v_st_writer *w = w2v_st_writer_new();
    w2v_st_add_metadata(w, "format", "w2vtools-adamw");
    int64_t one = 1, steps = opt->steps;
    char (*names)[128] = xcalloc((size_t)opt->nparams * 3, sizeof *names);
    moment_tensor *mt = xcalloc((size_t)opt->nparams * 2, sizeof *mt);
    for (int i = 0; i < opt->nparams; i++) {
        const w2v_param *p = w2v_model_param(m, i);
        snprintf(names[3 * i], 128, "exp_avg.%s", p->name);
        snprintf(names[3 * i + 1], 128, "exp_avg_sq.%s", p->name);
        snprintf(names[3 * i + 2], 128, "step.%s", p->name);
        for (int k = 0; k < 2; k++) {
            const float *part = k ? opt->v : opt->m;
            if (w2v_optim_split(opt)) {
                mt[2 * i + k] = (moment_tensor){opt, part, p->offset, p->size};
                w2v_st_add_fill(w, names[3 * i + k], W2V_ST_F32, p->ndim, p->shape, gather_moment, &mt[2 * i + k]);
            } else
                w2v_st_add(w, names[3 * i + k], W2V_ST_F32, p->ndim, p->shape, part + p->offset);
        }
        w2v_st_add(w, names[3 * i + 2], W2V_ST_I64, 1, &one, &opt->t[i]);
    }
    w2v_st_add(w, "scheduler.steps", W2V_ST_I64, 1, &one, &steps);
    int ret = w2v_st_write(w, path, err, errlen);
    w2v_st_writer_free(w);
    free(mt);
    free(names);
    return ret;
}

int w2v_optim_load(w2v_optim *opt, const w2v_model *m, const char *path, char *err, size_t errlen)
{
    w2v_safetensors *st = w2v_st_open(path, err, errlen);
    if (!st) return -1;
    int ret = 0;
    for (int i = 0; i < opt->nparams && ret == 0; i++) {
        const w2v_param *p = w2v_model_param(m, i);
        int mine = p->offset >= opt->lo && p->offset < opt->hi;
        char name[128];
        const char *kinds[3] = {"exp_avg", "exp_avg_sq", "step"};
        for (int k = 0; k < 3 && ret == 0; k++) {
            snprintf(name, sizeof name, "%s.%s", kinds[k], p->name);
            int idx = w2v_st_find(st, name);
            const w2v_st_tensor *t = w2v_st_tensor_at(st, idx);
            if (!t || (k < 2 && (t->dtype != W2V_ST_F32 || t->count != (size_t)p->size)) ||
                (k == 2 && (t->dtype != W2V_ST_I64 || t->count != 1)))
                ret = set_error(err, errlen, "%s: no usable '%s'", path, name);
            else if (k < 2 && mine) w2v_st_to_f32(t, (k ? opt->v : opt->m) + (p->offset - opt->lo));
            else if (k == 2) w2v_st_to_i64(t, &opt->t[i]);
        }
    }
    const w2v_st_tensor *t = w2v_st_tensor_at(st, w2v_st_find(st, "scheduler.steps"));
    if (ret == 0 && (!t || t->dtype != W2V_ST_I64 || t->count != 1))
        ret = set_error(err, errlen, "%s: no scheduler.steps", path);
    if (ret == 0) {
        int64_t s;
        w2v_st_to_i64(t, &s);
        opt->steps = s;
    }
    w2v_st_close(st);
    return ret;
}
