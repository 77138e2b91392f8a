/* Classification with a trained model, as w2v-predict and w2v-eval do it:
 * streams checked against the model, examples batched without changing the
 * model's answer, and the arithmetic on logits (softmax, top-k, loss). */
#ifndef W2V_CLASSIFY_H
#define W2V_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "w2v/model.h"
#include "w2v/stream.h"

/* What a stream's labels must be to a model. */
typedef enum {
    W2V_LABELS_SUBSET, /* each one of the model's, in any order (evaluation, prediction) */
    W2V_LABELS_TRAIN,  /* the model's, in its order; or the model's are HF's
                        * placeholders LABEL_0, LABEL_1, ..., which the
                        * stream's replace (training) */
    W2V_LABELS_ANY,    /* any (the stream's labels make a new model's) */
} w2v_label_rule;

/* The one check that a stream suits a model: the model's sample rate, and
 * labels by the rule.  Fills map[stream id] = model id for the header's
 * nlabels ids (not for W2V_LABELS_ANY: map may be NULL).  0, or -1 with
 * the reason in err. */
int w2v_classify_check_header(const w2v_config *c, const w2v_header *h, w2v_label_rule rule, int *map, char *err,
                              size_t errlen);

/* One example to classify. */
typedef struct {
    const char *key;
    const float *x;     /* [length] samples as the model takes them (normalised when it says so) */
    int64_t length;
    int64_t label;      /* the true label as a model id; -1 = none */
    double start, end;  /* its span in seconds within a longer recording; end < 0: none */
} w2v_clip;

/* Called for every classified example, in the order they were given;
 * logits [num_labels]. */
typedef void (*w2v_result_fn)(void *ctx, const w2v_clip *clip, const float *logits);

typedef struct w2v_classifier w2v_classifier;

/* A classifier running batches of up to batch_size examples. */
w2v_classifier *w2v_classifier_new(w2v_model *m, int batch_size, w2v_result_fn fn, void *ctx);
void w2v_classifier_free(w2v_classifier *c);
/* Queues a copy of one example.  The queue is classified first when it is
 * full, or when the example's length differs from the queued ones' and the
 * model takes no attention mask.  An example shorter than the model's
 * shortest input is an error naming its key.  0, or -1 with err set. */
int w2v_classifier_add(w2v_classifier *c, const w2v_clip *clip, char *err, size_t errlen);
/* Mixed precision for the classifier's forward passes (w2v_run.bf16): the
 * matrix products take bf16 inputs and accumulate in fp32, about twice as
 * fast where the CPU has avx512_bf16; logits move by about 1% of their
 * scale, so a label can change where two labels are nearly tied.  Returns
 * whether the products will run in bf16: 0 when off, or where the CPU
 * cannot (a note says so once; the passes then run in fp32). */
int w2v_classifier_set_bf16(w2v_classifier *c, int on);
/* Classifies what is queued. */
int w2v_classifier_flush(w2v_classifier *c, char *err, size_t errlen);
/* Classifies a padded batch as it is (after the queue): x [B, T] row-major,
 * lengths, labels (model ids, or NULL) and keys per row; the model decides
 * whether the padding is masked. */
int w2v_classifier_run(w2v_classifier *c, int B, int T, const float *x, const int64_t *lengths,
                       const int64_t *labels, char *const *keys, char *err, size_t errlen);

/* How w2v_classify_stream hands a stream's examples to a classifier. */
typedef struct {
    int whole_batches; /* a batches stream's batches run as they are, padding
                        * and all, as Trainer evaluates (w2v-eval, w2v-train's
                        * --eval); 0: each example alone, queued by
                        * w2v_classifier_add (w2v-predict) */
    int part, parts;   /* only the records i with i % parts == part (MPI
                        * ranks); parts 0: every record */
} w2v_stream_opts;

/* The one loop from a stream to the classifier, for w2v-eval, w2v-predict
 * and w2v-train's evaluation: classifies every example of an open stream
 * whose header passed w2v_classify_check_header (map: its label ids as the
 * model's), then flushes the queue.  An example without a label reaches
 * the callback with label -1: classified, and (the one rule of every
 * evaluation, as of training's loss) not scored.  0 at the stream's end,
 * or -1 with err naming the stream (name) and the record or example. */
int w2v_classify_stream(w2v_classifier *c, w2v_reader *r, const char *name, const int *map, const w2v_stream_opts *o,
                        char *err, size_t errlen);

/* ---- results as JSON ---- */

/* Writes one result as a compact JSON line: key, start and end (when the
 * clip has a span), label (the predicted name), score (its probability),
 * true_label and, with W2V_RESULT_LOSS, loss (when the label is known),
 * top_k (top_k > 0: [{label, score}], most likely first), and with
 * W2V_RESULT_LOGITS the logits.  Floats carry 9 significant digits, enough
 * for a float32 to read back exactly; bytes of a key that are not UTF-8
 * become '?'.  0, or -1 with errno set. */
enum { W2V_RESULT_LOGITS = 1, W2V_RESULT_LOSS = 2 };
int w2v_result_write(FILE *fp, const w2v_config *c, const w2v_clip *clip, const float *logits, int top_k,
                     int flags);

/* ---- arithmetic on logits, in double ---- */

/* probs[i] = softmax(logits)[i]. */
void w2v_softmax(const float *logits, int n, double *probs);
/* Index of the largest value (the first of ties). */
int w2v_argmax(const float *logits, int n);
/* The k indices of the largest probabilities, largest first (ties by index). */
void w2v_top_k(const double *probs, int n, int k, int *idx);
/* Cross-entropy of the true label: logsumexp(logits) - logits[label]. */
double w2v_cross_entropy(const float *logits, int n, int label);

#endif
