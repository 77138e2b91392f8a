/* Wav2Vec2ForSequenceClassification, or the HuBERT, data2vec-audio or WavLM
 * classifier the config's model_type names: parameters, the forward and
 * backward passes, and Hugging Face checkpoint directories. */
#ifndef W2V_MODEL_H
#define W2V_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "w2v/config.h"

typedef struct w2v_model w2v_model;

/* One parameter tensor: a named view into the model's parameter block,
 * and the same view into its gradient block. */
typedef struct {
    char name[96];    /* Hugging Face name, e.g. wav2vec2.encoder.layers.0.attention.q_proj.weight */
    int ndim;
    int64_t shape[4];  /* ndim sizes (up to 4: WavLM's gru_rel_pos_const [1, heads, 1, 1]) */
    long offset, size; /* in floats, within the blocks */
    int decay;         /* Trainer's rule: not a bias, not inside an nn.LayerNorm */
    int feature_encoder; /* frozen by --freeze-feature-encoder */
} w2v_param;

/* A model with zeroed parameters for config c (copied). */
w2v_model *w2v_model_new(const w2v_config *c);
void w2v_model_free(w2v_model *m);
const w2v_config *w2v_model_config(const w2v_model *m);
/* Initialises every parameter as transformers' _init_weights does. */
void w2v_model_init_weights(w2v_model *m, uint64_t seed);
/* Replaces conv layer 0's weights by a mel-spaced Gabor filterbank over
 * fmin..fmax Hz (conv_dim[0] / 4 bands, four phases each) and, when conv
 * layer 1 has a channel per band, layer 1's by the bands' envelopes (the sum
 * of each band's four phases, averaged over the taps); their biases become
 * zeros.  The encoder then starts as a mel-like spectrogram: from scratch,
 * with the encoder frozen, a model learns far faster than from
 * _init_weights' kaiming normal.  Returns the number of layers set (1 or
 * 2), or -1 with err set when layer 0 cannot hold a filterbank. */
int w2v_model_init_filterbank(w2v_model *m, double fmin, double fmax, char *err, size_t errlen);
/* One parameter, as _init_weights would (for what a checkpoint lacks). */
int w2v_model_init_param(w2v_model *m, const char *name, uint64_t seed);

int w2v_model_num_params(const w2v_model *m);
const w2v_param *w2v_model_param(const w2v_model *m, int i);
const w2v_param *w2v_model_find_param(const w2v_model *m, const char *name);
float *w2v_model_params(w2v_model *m, long *count);
float *w2v_model_grads(w2v_model *m, long *count);

/* Checkpoints: a Hugging Face model directory (config.json,
 * model.safetensors or a sharded index, preprocessor_config.json).
 * Notes on what was skipped or initialised go to the message function
 * (w2v/base.h) as W2V_NOTE. */
w2v_model *w2v_model_load(const char *dir, char *err, size_t errlen);
/* The same with the labels replaced first (as from_pretrained(num_labels=,
 * id2label=) does): a checkpoint whose classifier has another size is an
 * error; one without a head gets a new one. */
w2v_model *w2v_model_load_labels(const char *dir, int nlabels, char *const *labels, char *err, size_t errlen);
/* Loads the weights of a safetensors file (or index) into m. */
int w2v_model_load_weights(w2v_model *m, const char *path, char *err, size_t errlen);
/* Writes dir as a whole (a temporary directory renamed into place), in the
 * names transformers loads with every torch version (weight_g/weight_v). */
int w2v_model_save(const w2v_model *m, const char *dir, char *err, size_t errlen);
/* The same files into an existing directory (for checkpoints with more). */
int w2v_model_write_files(const w2v_model *m, const char *dir, char *err, size_t errlen);

/* ---- compute ---- */
typedef struct {
    int B, T;                /* batch, samples */
    const float *x;          /* [B, T] normalised audio */
    const int64_t *lengths;  /* [B] samples; used when the attention mask is (see below) */
    const int64_t *labels;   /* [B] or NULL; -1 = none */
    /* Part of a larger batch (data parallelism over processes): these B
     * examples are [first, first + B) of a batch of `whole` examples with
     * lengths whole_lengths[whole].  Every random draw depends on an
     * example's place in the whole batch, so the parts of a batch give what
     * the batch gives.  whole = 0: the input is the whole batch. */
    int first, whole;
    const int64_t *whole_lengths;
} w2v_input;

typedef struct {
    int training;    /* dropout, LayerDrop, SpecAugment as the config says */
    uint64_t seed;   /* with step, keys every random draw */
    uint64_t step;
    int attention_mask; /* 1: pass the mask; 0: do not; -1: as preprocessor_config.json says */
    /* Mixed precision as torch.autocast("cpu", dtype=torch.bfloat16): 1 =
     * the matrix products (Linear layers, attention, convolutions) of this
     * forward and of its backward take bf16 inputs and accumulate in fp32;
     * norms, softmax, GELU, the loss and the optimizer stay fp32, and the
     * fp32 weights stay the master copy.  The bf16 copy of the weights
     * that enter products is made at each training forward; inference
     * forwards keep it until w2v_model_params() is called (it hands out a
     * writable pointer), a load or an init: after writing through a pointer
     * kept from earlier, call w2v_model_params() again before an inference
     * pass.  On a CPU without avx512_bf16 a note says so once and the pass
     * runs in fp32.  0 = fp32. */
    int bf16;
    /* 1: no backward follows (torch.inference_mode): the forward keeps
     * only what a later op reads, so that its memory is about a layer's,
     * not the model's (hidden states and the head's outputs stay for
     * w2v_model_activation); w2v_model_backward after it does nothing.
     * Needs training 0. */
    int inference;
} w2v_run;

/* Forward pass; logits [B, num_labels] are copied to logits when not NULL.
 * Returns the mean cross-entropy over labelled examples (0 without labels),
 * or a negative value with err set when the input is unusable. */
float w2v_model_forward(w2v_model *m, const w2v_input *in, const w2v_run *run, float *logits, char *err,
                        size_t errlen);
/* Backward pass of the last forward; accumulates into the gradients the
 * gradient of scale * loss (scale 1/N averages N accumulated batches). */
void w2v_model_backward(w2v_model *m, float scale);
void w2v_model_zero_grad(w2v_model *m);
/* Skip the conv feature encoder's gradients (HF freeze_feature_encoder). */
void w2v_model_freeze_feature_encoder(w2v_model *m, int frozen);
/* Whether a parameter got a gradient from a backward since the last
 * w2v_model_zero_grad: not a frozen encoder's, not a layer that LayerDrop
 * skipped in every forward since, not masked_spec_embed when no frame was
 * masked (autograd's grad of None).  The optimizer's rule for what it
 * updates is in w2v/optim.h. */
int w2v_model_param_has_grad(const w2v_model *m, int i);

/* Activations of the last forward, by the names of golden/README.md:
 * conv_layer.N, conv_features, extract_features, projected_features,
 * position_embeddings, hidden_states.N, pooled_output, logits.  Channels-last
 * [B, frames, C] (conv_layer.N too).  NULL when unknown. */
const float *w2v_model_activation(const w2v_model *m, const char *name, int64_t shape[3]);
/* Frames after the conv encoder for each example of the last forward
 * (valid frames when the mask was used, else all). */
const int *w2v_model_valid_frames(const w2v_model *m);

#endif
