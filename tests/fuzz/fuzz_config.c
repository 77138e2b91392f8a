/* config.json and preprocessor_config.json (w2v_config_parse), then
 * w2v_config_update, the frame arithmetic every program does with a
 * config, and a save/load round trip that must give the same config.
 *
 * Input: CONFIG [NUL PREPROCESSOR [NUL UPDATE]], each a JSON text. */
#include "fuzz.h"
#include "w2v/config.h"

static void same_config(const w2v_config *a, const w2v_config *b)
{
#define SAME(f) FUZZ_ASSERT(a->f == b->f, "round trip changed " #f)
    SAME(num_conv_layers);
    for (int i = 0; i < a->num_conv_layers; i++) {
        SAME(conv_dim[i]);
        SAME(conv_kernel[i]);
        SAME(conv_stride[i]);
    }
    SAME(conv_bias); SAME(feat_extract_norm_layer); SAME(hidden_size); SAME(num_hidden_layers);
    SAME(num_attention_heads); SAME(intermediate_size); SAME(num_conv_pos_embeddings);
    SAME(num_conv_pos_embedding_groups); SAME(do_stable_layer_norm); SAME(layer_norm_eps);
    SAME(use_weighted_layer_sum); SAME(classifier_proj_size); SAME(num_labels);
    SAME(hidden_dropout); SAME(attention_dropout); SAME(activation_dropout); SAME(feat_proj_dropout);
    SAME(layerdrop); SAME(apply_spec_augment); SAME(mask_time_prob); SAME(mask_feature_prob);
    SAME(mask_time_length); SAME(mask_time_min_masks); SAME(mask_feature_length); SAME(mask_feature_min_masks);
    SAME(initializer_range); SAME(sampling_rate); SAME(do_normalize); SAME(return_attention_mask);
#undef SAME
    for (int i = 0; i < a->num_labels; i++)
        FUZZ_ASSERT(!strcmp(a->labels[i], b->labels[i]), "round trip changed label %d", i);
}

static void use_config(const w2v_config *c)
{
    FUZZ_ASSERT(c->num_conv_layers >= 1 && c->num_conv_layers <= W2V_MAX_CONV_LAYERS, "conv layers");
    FUZZ_ASSERT(c->num_labels >= 1 && c->labels, "labels");
    for (int i = 0; i < c->num_labels; i++) FUZZ_ASSERT(c->labels[i], "label %d", i);
    /* what programs do with any config they load (conv_kernel and
     * conv_stride that overflow the long arithmetic of
     * w2v_config_min_samples: regress/config/crash-min-samples-overflow) */
    long min = w2v_config_min_samples(c);
    (void)w2v_config_frames(c, min);
    (void)w2v_config_frames(c, 16000);
    (void)w2v_config_frames(c, 0);
    (void)w2v_config_has_masked_spec_embed(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    char *pre = NULL, *update = NULL, *end = text + size;
    char *nul = memchr(text, 0, size);
    if (nul && nul < end) {
        pre = nul + 1;
        char *nul2 = memchr(pre, 0, (size_t)(end - pre) + 1);
        if (nul2 && nul2 < end) update = nul2 + 1;
    }
    char err[512];
    w2v_config c;
    if (w2v_config_parse(&c, text, pre, err, sizeof err) < 0) {
        FUZZ_CHECK_ERR(err);
        free(text);
        return 0;
    }
    use_config(&c);
    if (update) {
        if (w2v_config_update(&c, update, err, sizeof err) < 0) FUZZ_CHECK_ERR(err);
        else use_config(&c);
    }
    w2v_config copy;
    w2v_config_copy(&copy, &c);
    same_config(&c, &copy);
    w2v_config_free(&copy);
    /* save and load: the same config back */
    const char *dir = fuzz_path("model");
    mkdir(dir, 0700);
    if (w2v_config_save(&c, dir, err, sizeof err) == 0) {
        w2v_config back;
        FUZZ_ASSERT(w2v_config_load(&back, dir, err, sizeof err) == 0, "saved config does not load: %s", err);
        same_config(&c, &back);
        w2v_config_free(&back);
    }
    w2v_config_free(&c);
    free(text);
    return 0;
}
