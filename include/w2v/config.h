/* The configuration of a Wav2Vec2-family audio classifier: what config.json
 * and preprocessor_config.json say, read and written as Hugging Face
 * transformers does. */
#ifndef W2V_CONFIG_H
#define W2V_CONFIG_H

#include <stddef.h>

#define W2V_MAX_CONV_LAYERS 16
#define W2V_MAX_HIDDEN_LAYERS 1024
#define W2V_MAX_POS_LAYERS 16 /* data2vec-audio's positional convs */

/* The encoders of AutoModelForAudioClassification this library runs: one
 * model whose blocks take the family's options (config.json's model_type). */
typedef enum {
    W2V_WAV2VEC2,       /* "wav2vec2", Wav2Vec2ForSequenceClassification */
    W2V_HUBERT,         /* "hubert": the feature projection's LayerNorm optional */
    W2V_DATA2VEC_AUDIO, /* "data2vec-audio": LayerNorm conv encoder, a stack of plain positional convs */
    W2V_WAVLM,          /* "wavlm": attention with a gated relative position bias */
} w2v_family;

typedef struct {
    w2v_family family;
    /* conv feature encoder */
    int num_conv_layers;
    int conv_dim[W2V_MAX_CONV_LAYERS], conv_kernel[W2V_MAX_CONV_LAYERS], conv_stride[W2V_MAX_CONV_LAYERS];
    int conv_bias;
    int feat_extract_norm_layer; /* 0: "group" (GroupNorm on layer 0 only), 1: "layer" */
    /* transformer */
    int hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    int num_conv_pos_embeddings, num_conv_pos_embedding_groups; /* data2vec-audio: layers, not taps */
    int conv_pos_kernel_size;   /* data2vec-audio: each positional conv's taps */
    int feat_proj_layer_norm;   /* HuBERT's flag; 1 in the other families */
    int num_buckets, max_bucket_distance; /* WavLM's relative position bias */
    int do_stable_layer_norm;
    double layer_norm_eps;
    /* classification head */
    int use_weighted_layer_sum, classifier_proj_size;
    int num_labels;
    char **labels; /* id2label in id order */
    /* training-time regularisation */
    double hidden_dropout, attention_dropout, activation_dropout, feat_proj_dropout, layerdrop;
    int apply_spec_augment;
    double mask_time_prob, mask_feature_prob;
    int mask_time_length, mask_time_min_masks, mask_feature_length, mask_feature_min_masks;
    double initializer_range;
    /* preprocessor_config.json */
    int sampling_rate, do_normalize, return_attention_mask;
    /* the JSON documents as read (unknown keys are kept and written back) */
    void *json, *preprocessor_json;
} w2v_config;

/* The family's model_type, its parameters' prefix ("wav2vec2",
 * "data2vec_audio", ...) and its classifier's class name. */
const char *w2v_config_model_type(const w2v_config *c);
const char *w2v_config_prefix(const w2v_config *c);
const char *w2v_config_architecture(const w2v_config *c);
/* The positional embedding's conv layers and each one's taps: one weight-
 * normed conv of num_conv_pos_embeddings taps, or data2vec-audio's stack. */
int w2v_config_pos_layers(const w2v_config *c);
int w2v_config_pos_kernel(const w2v_config *c);
/* Whether the model has masked_spec_embed (HF creates it only then). */
int w2v_config_has_masked_spec_embed(const w2v_config *c);
/* Conv encoder output length for an input of n samples (HF's
 * _get_feat_extract_output_lengths); 0 or less when too short. */
long w2v_config_frames(const w2v_config *c, long n);
/* Shortest input giving one frame. */
long w2v_config_min_samples(const w2v_config *c);

/* Reads DIR/config.json and, when present, DIR/preprocessor_config.json. */
int w2v_config_load(w2v_config *c, const char *dir, char *err, size_t errlen);
/* Parses a config.json text (with an optional preprocessor_config.json text). */
int w2v_config_parse(w2v_config *c, const char *config_json, const char *preprocessor_json, char *err,
                     size_t errlen);
/* A preset: "base" (facebook/wav2vec2-base, exactly), "small" (what the demo
 * trains from scratch), "tiny" (tests); the other families' base shapes, each
 * hub model's architecture over its config class's defaults (the keys
 * transformers writes for the class; the hub files' training values, such as
 * dropouts, were not at hand): "hubert-base" (facebook/hubert-base-ls960),
 * "distilhubert" (ntu-spml/distilhubert), "wavlm-base" (microsoft/wavlm-base),
 * "data2vec-audio-base" (facebook/data2vec-audio-base). */
int w2v_config_preset(w2v_config *c, const char *name, char *err, size_t errlen);
/* Sets config.json keys from a JSON object text (e.g. {"hidden_size": 128})
 * and checks the result; on error c is unchanged. */
int w2v_config_update(w2v_config *c, const char *json_object, char *err, size_t errlen);
/* Label names from a comma-separated list ("a,b,c"), the one rule for
 * every --labels: at least one name, none empty, none twice.  Returns the
 * count with *names (copies; free with w2v_labels_free), or -1 with the
 * reason in err. */
int w2v_labels_parse(const char *list, char ***names, char *err, size_t errlen);
void w2v_labels_free(char **names, int n);
/* Replaces the labels (id2label/label2id). */
void w2v_config_set_labels(w2v_config *c, int n, char *const *labels);
/* Writes DIR/config.json and DIR/preprocessor_config.json atomically. */
int w2v_config_save(const w2v_config *c, const char *dir, char *err, size_t errlen);
void w2v_config_copy(w2v_config *dst, const w2v_config *src);
void w2v_config_free(w2v_config *c);

#endif
