/* The model against transformers: every golden case's activations, loss,
 * logits and the gradient of every parameter (../shared/golden). */
#include "golden.h"
#include "w2v/model.h"

#include <stdlib.h>
#include <string.h>


/* Compares activation `name` (ours channels-last [B, T, C]) with the golden
 * tensor; conv_layer.N is stored [B, C, T] by torch. */
static void check_activation(w2v_model *m, w2v_safetensors *ex, const char *cname, const char *name, double atol,
                             double rtol)
{
    size_t n;
    float *want = golden_f32(ex, name, &n);
    int64_t shape[3];
    const float *got = w2v_model_activation(m, name, shape);
    if (!want && !got) return; /* a tensor the family has not (extract_features without the LayerNorm) */
    CHECK(want && got, "%s %s: missing %s", cname, name, want ? "here" : "in the golden data");
    if (!want || !got) return;
    long count = shape[0] * shape[1] * (shape[2] ? shape[2] : 1);
    CHECK((size_t)count == n, "%s %s: %ld values, golden has %zu", cname, name, count, n);
    if ((size_t)count != n) return;
    float *ours = malloc(n * sizeof *ours);
    if (!strncmp(name, "conv_layer.", 11)) {
        long B = shape[0], T = shape[1], C = shape[2];
        for (long b = 0; b < B; b++)
            for (long t = 0; t < T; t++)
                for (long c = 0; c < C; c++) ours[(b * C + c) * T + t] = got[(b * T + t) * C + c];
    } else
        memcpy(ours, got, n * sizeof *ours);
    double r = tol_ratio(ours, want, n, atol, rtol), mb, d = max_abs_diff(ours, want, n, &mb);
    CHECK(r <= 1, "%s %s: max |diff| %.3g (max |golden| %.3g) exceeds atol %g rtol %g", cname, name, d, mb, atol, rtol);
    printf("  %-22s max|diff| %.2e  (max|golden| %.2e)\n", name, d, mb);
    free(ours);
    free(want);
}

/* How many grad.* tensors the golden data has: one per HF parameter. */
static int count_grads(w2v_safetensors *ex)
{
    int n = 0;
    for (int i = 0; i < w2v_st_count(ex); i++) n += !strncmp(w2v_st_tensor_at(ex, i)->name, "grad.", 5);
    return n;
}

static void check_case(const char *cname)
{
    golden_case g;
    if (golden_case_open(&g, cname) < 0) return;
    printf("%s\n", cname);
    char err[512];
    w2v_model *m = g.m;
    w2v_safetensors *in = g.in, *ex = g.ex;
    const int64_t *lengths = g.lengths;
    int has_mask = w2v_st_find(in, "attention_mask") >= 0;
    CHECK(has_mask == w2v_model_config(m)->return_attention_mask,
          "%s: the case passes a mask iff its preprocessor returns one", cname);
    w2v_run run = {1, 0, 0, -1};
    float logits[3 * 12];
    float loss = w2v_model_forward(m, &g.input, &run, logits, err, sizeof err);
    CHECK(loss >= 0, "%s: forward: %s", cname, err);

    /* frame lengths */
    int64_t *fl = golden_i64(ex, "frame_lengths", NULL);
    for (int b = 0; b < 3; b++)
        CHECK(w2v_config_frames(w2v_model_config(m), (long)lengths[b]) == fl[b], "%s: frame length %d", cname, b);
    if (has_mask)
        for (int b = 0; b < 3; b++)
            CHECK(w2v_model_valid_frames(m)[b] == fl[b], "%s: valid frames of %d: %d vs %lld", cname, b,
                  w2v_model_valid_frames(m)[b], (long long)fl[b]);

    static const char *const acts[] = {"conv_layer.0", "conv_features", "extract_features", "projected_features",
                                       "position_embeddings", "hidden_states.0", "hidden_states.1", "hidden_states.2"};
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) check_activation(m, ex, cname, acts[i], 1e-4, 1e-4);
    check_activation(m, ex, cname, "pooled_output", 1e-6, 0);
    check_activation(m, ex, cname, "logits", 1e-6, 0);
    float *want_loss = golden_f32(ex, "loss", NULL);
    CHECK(fabsf(loss - *want_loss) <= 1e-6f, "%s: loss %.8f vs %.8f", cname, loss, *want_loss);
    printf("  loss %.8f (golden %.8f)\n", loss, *want_loss);

    /* gradients of every parameter; a case whose conv encoder got no
     * gradients ran with freeze_feature_encoder() */
    const char *none = w2v_st_metadata(ex, "grad_none");
    w2v_model_freeze_feature_encoder(m, g.frozen);
    w2v_model_zero_grad(m);
    w2v_model_backward(m, 1.0f);
    const float *grads = w2v_model_grads(m, NULL);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < w2v_model_num_params(m); i++) {
        const w2v_param *p = w2v_model_param(m, i);
        size_t n;
        float *want = golden_grad(ex, p, &n);
        CHECK(want != NULL && n == (size_t)p->size, "%s: grad.%s missing or of another size", cname, p->name);
        if (!want) continue;
        int listed_none = golden_listed(none, p->name);
        CHECK(listed_none == !w2v_model_param_has_grad(m, i), "%s: %s: grad None in HF: %d, here: %d", cname, p->name,
              listed_none, !w2v_model_param_has_grad(m, i));
        double mb, d = max_abs_diff(grads + p->offset, want, n, &mb);
        double tol = strstr(p->name, "k_proj.bias") ? 1e-10 : 1e-4 * mb + 1e-10;
        CHECK(d <= tol, "%s: grad.%s: max |diff| %.3g exceeds %.3g (max |golden| %.3g)", cname, p->name, d, tol, mb);
        if (mb > 0 && d / mb > worst && !strstr(p->name, "k_proj.bias")) worst = d / mb, worst_name = p->name;
        free(want);
    }
    CHECK(w2v_model_num_params(m) == count_grads(ex), "%s: %d parameters, HF has %d", cname, w2v_model_num_params(m),
          count_grads(ex));
    printf("  gradients: worst max|diff|/max|golden| %.2e (%s)\n", worst, worst_name);
    free(fl);
    free(want_loss);
    golden_case_close(&g);
}

int main(void)
{
    for (int i = 0; i < GOLDEN_NCASES; i++) check_case(golden_cases[i]);
    return unit_finish("test_golden_model");
}
