/* The optimizer step against its definition written out here in double:
 * torch's clip_grad_norm_ (engaged: the gradient norm is many times
 * max_grad_norm), then torch's AdamW with bias correction and decoupled
 * weight decay on Trainer's parameters, over three steps whose gradients
 * differ in size, so that a clip coefficient that is wrong or missing
 * changes the moments' mix (Adam alone is blind to one constant scale). */
#include "unit.h"
#include "w2v/model.h"
#include "w2v/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* any(x[from, to)) */
static int any_nonzero(const float *x, long from, long to)
{
    for (long j = from; j < to; j++)
        if (x[j] != 0) return 1;
    return 0;
}

/* LayerDrop: torch's AdamW steps a parameter from its first gradient on.
 * Before, no step (not even weight decay); after, every step, with a zero
 * gradient in a batch that skipped its layer (Trainer zeroes gradients in
 * place).  Seen from outside: a layer's weights change at a step if and
 * only if some backward so far gave them a gradient. */
static void test_layerdrop(void)
{
    char err[512];
    w2v_config cfg;
    CHECK(w2v_config_preset(&cfg, "tiny", err, sizeof err) == 0, "%s", err);
    cfg.num_hidden_layers = 4;
    cfg.layerdrop = 0.5;
    w2v_model *m = w2v_model_new(&cfg);
    w2v_model_init_weights(m, 3);
    int B = 2, T = 1600, L = cfg.num_hidden_layers, np = w2v_model_num_params(m);
    long n;
    float *p = w2v_model_params(m, &n), *g = w2v_model_grads(m, NULL);
    float *x = malloc((size_t)B * T * sizeof *x), *before = malloc((size_t)n * sizeof *before);
    long from[8], to[8];
    for (int l = 0; l < L; l++) {
        char name[32];
        snprintf(name, sizeof name, ".layers.%d.", l);
        from[l] = n, to[l] = 0;
        for (int i = 0; i < np; i++) {
            const w2v_param *pp = w2v_model_param(m, i);
            if (!strstr(pp->name, name)) continue;
            from[l] = pp->offset < from[l] ? pp->offset : from[l];
            to[l] = pp->offset + pp->size > to[l] ? pp->offset + pp->size : to[l];
        }
    }
    w2v_optim_opts o;
    w2v_optim_defaults(&o);
    o.lr = 1e-2;
    o.weight_decay = 0.1;
    o.total_steps = 100;
    w2v_optim *opt = w2v_optim_new(m, &o);
    int ever[8] = {0}, skipped_first = 0, skipped_later = 0;
    for (int k = 0; k < 8; k++) {
        for (int i = 0; i < B * T; i++) x[i] = sinf(0.013f * (float)i * (float)(k + 1));
        int64_t lengths[2] = {T, T}, labels[2] = {k % 3, 1};
        w2v_input in = {.B = B, .T = T, .x = x, .lengths = lengths, .labels = labels};
        w2v_run run = {1, 5, (uint64_t)k, 0};
        w2v_model_zero_grad(m);
        w2v_model_forward(m, &in, &run, NULL, err, sizeof err);
        w2v_model_backward(m, 1.0f);
        memcpy(before, p, (size_t)n * sizeof *p);
        int got[8];
        for (int l = 0; l < L; l++) {
            got[l] = any_nonzero(g, from[l], to[l]);
            skipped_first += !got[l] && !ever[l];
            skipped_later += !got[l] && ever[l];
            ever[l] |= got[l];
        }
        w2v_optim_step(opt, m, NULL);
        for (int l = 0; l < L; l++) {
            int changed = memcmp(before + from[l], p + from[l], (size_t)(to[l] - from[l]) * sizeof *p) != 0;
            CHECK(changed == ever[l], "step %d, layer %d (gradient %s, %s before): weights %s", k + 1, l,
                  got[l] ? "yes" : "none", ever[l] ? "one" : "none", changed ? "changed" : "unchanged");
        }
    }
    CHECK(skipped_first > 0 && skipped_later > 0,
          "LayerDrop skipped a layer before its first gradient (%d) and one after (%d)", skipped_first, skipped_later);
    w2v_optim_free(opt);
    free(x);
    free(before);
    w2v_model_free(m);
    w2v_config_free(&cfg);
}

int main(void)
{
    char err[512];
    w2v_config cfg;
    CHECK(w2v_config_preset(&cfg, "tiny", err, sizeof err) == 0, "%s", err);
    w2v_model *m = w2v_model_new(&cfg);
    w2v_model_init_weights(m, 11);
    int B = 2, T = 1600, np = w2v_model_num_params(m);
    long n;
    float *p = w2v_model_params(m, &n), *g = w2v_model_grads(m, NULL);
    float *x = malloc((size_t)B * T * sizeof *x);
    double *pr = malloc((size_t)n * sizeof *pr), *mr = calloc((size_t)n, sizeof *mr), *vr = calloc((size_t)n, sizeof *vr);
    for (long j = 0; j < n; j++) pr[j] = p[j];

    w2v_optim_opts o;
    w2v_optim_defaults(&o);
    o.lr = 1e-2;
    o.weight_decay = 0.5; /* a shift of lr * wd = 0.5% of each decayed weight per step */
    o.max_grad_norm = 0.05;
    o.warmup_steps = 0;
    o.total_steps = 6;
    w2v_optim *opt = w2v_optim_new(m, &o);
    const float loss_scale[3] = {1, 20, 0.5f};
    int decayed = 0, skipped = 0;
    unsigned char *ever = calloc((size_t)np, 1); /* had a gradient: stepped from then on */
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < B * T; i++) x[i] = sinf(0.01f * (float)(i % T) * (float)(i / T + 2 + k)) + 0.1f * cosf(0.37f * (float)i);
        int64_t lengths[2] = {T, T - 300}, labels[2] = {k % 3, 2};
        w2v_input in = {.B = B, .T = T, .x = x, .lengths = lengths, .labels = labels};
        w2v_run run = {0, 1, (uint64_t)k, 0};
        w2v_model_zero_grad(m);
        w2v_model_forward(m, &in, &run, NULL, err, sizeof err);
        w2v_model_backward(m, loss_scale[k]);

        /* clip_grad_norm_: the 2-norm of every gradient there is */
        double ss = 0;
        for (int i = 0; i < np; i++) {
            if (!w2v_model_param_has_grad(m, i)) continue;
            const w2v_param *pp = w2v_model_param(m, i);
            for (long j = pp->offset; j < pp->offset + pp->size; j++) ss += (double)g[j] * g[j];
        }
        double norm = sqrt(ss), coef = fmin(1.0, o.max_grad_norm / (norm + 1e-6));
        double lr = w2v_schedule_lr(&o, k), bc1 = 1 - pow(o.beta1, k + 1), bc2 = 1 - pow(o.beta2, k + 1);
        for (int i = 0; i < np; i++) {
            const w2v_param *pp = w2v_model_param(m, i);
            ever[i] |= (unsigned char)w2v_model_param_has_grad(m, i);
            if (!ever[i]) { /* torch skips a grad of None: no decay either */
                skipped += k == 0;
                continue;
            }
            decayed += k == 0 && pp->decay;
            for (long j = pp->offset; j < pp->offset + pp->size; j++) {
                double gj = g[j] * coef;
                pr[j] *= 1 - lr * (pp->decay ? o.weight_decay : 0);
                mr[j] = o.beta1 * mr[j] + (1 - o.beta1) * gj;
                vr[j] = o.beta2 * vr[j] + (1 - o.beta2) * gj * gj;
                pr[j] -= lr / bc1 * mr[j] / (sqrt(vr[j]) / sqrt(bc2) + o.eps);
            }
        }

        double lr_used;
        float got_norm = w2v_optim_step(opt, m, &lr_used);
        CHECK(norm > 10 * o.max_grad_norm, "step %d: the gradient norm %.3g engages clipping at %.3g", k + 1, norm,
              o.max_grad_norm);
        CHECK(fabs(got_norm - norm) <= 1e-5 * norm, "step %d: gradient norm %.8g, clip_grad_norm_ %.8g", k + 1,
              got_norm, norm);
        CHECK(lr_used == lr, "step %d: learning rate %.17g vs %.17g", k + 1, lr_used, lr);
        /* float against double: rounding of about 1e-7 of each value and of
         * the step (lr = 1e-2 at most) */
        double worst = 0;
        for (long j = 0; j < n; j++) {
            double e = fabs(p[j] - pr[j]) / (fabs(pr[j]) + o.lr);
            worst = e > worst ? e : worst;
        }
        CHECK(worst <= 2e-6, "step %d: parameters off the definition by %.3g (relative)", k + 1, worst);
        printf("step %d: gradient norm %.4g (clipped to %.2g), parameters within %.2e of the definition\n", k + 1,
               norm, o.max_grad_norm, worst);
    }
    CHECK(decayed > 0 && skipped > 0, "decayed parameters (%d) and one without a gradient (%d) are both covered",
          decayed, skipped);
    w2v_optim_free(opt);
    free(ever);
    free(x);
    free(pr);
    free(mr);
    free(vr);
    w2v_model_free(m);
    w2v_config_free(&cfg);
    test_layerdrop();
    return unit_finish("test_optim");
}
