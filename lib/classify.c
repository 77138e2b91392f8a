/* Classification with a trained model: stream checks, batching that keeps
 * each example's answer, softmax, top-k and loss. */
#include "w2v/classify.h"
#include "internal.h"
#include "ops.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "a,b,c": labels joined by commas, for messages. */
static char *joined(char *const *labels, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(labels[i]) + 1;
    char *s = xmalloc(len), *p = s;
    *p = 0;
    for (int i = 0; i < n; i++) p += sprintf(p, "%s%s", i ? "," : "", labels[i]);
    return s;
}

/* Whether a model's labels are HF's placeholders, LABEL_0, LABEL_1, ...,
 * which transformers makes for a config without labels of its own. */
static int placeholder_labels(const w2v_config *c)
{
    for (int i = 0; i < c->num_labels; i++) {
        char want[32];
        snprintf(want, sizeof want, "LABEL_%d", i);
        if (strcmp(c->labels[i], want)) return 0;
    }
    return 1;
}

static int same_labels(const w2v_config *c, const w2v_header *h)
{
    if (c->num_labels != h->nlabels) return 0;
    for (int i = 0; i < h->nlabels; i++)
        if (strcmp(c->labels[i], h->labels[i])) return 0;
    return 1;
}

/* The message for labels that do not fit, listing both sides. */
static int labels_error(const w2v_config *c, const w2v_header *h, int i, char *err, size_t errlen)
{
    char *model = joined(c->labels, c->num_labels), *stream = joined(h->labels, h->nlabels);
    if (i >= 0) set_error(err, errlen, "the stream's label '%s' is not one of the model's labels (%s)", h->labels[i], model);
    else set_error(err, errlen, "the model's labels (%s) are not the stream's (%s), in that order", model, stream);
    free(model);
    free(stream);
    return -1;
}

int w2v_classify_check_header(const w2v_config *c, const w2v_header *h, w2v_label_rule rule, int *map, char *err,
                              size_t errlen)
{
    if (h->sample_rate != c->sampling_rate)
        return set_error(err, errlen, "the stream's sample rate is %d Hz, the model's %d Hz (re-extract with ks-extract --rate %d)",
                         h->sample_rate, c->sampling_rate, c->sampling_rate);
    if (rule == W2V_LABELS_ANY) return 0;
    if (rule == W2V_LABELS_TRAIN) {
        if (!same_labels(c, h) && !placeholder_labels(c)) return labels_error(c, h, -1, err, errlen);
        for (int i = 0; i < h->nlabels; i++) map[i] = i;
        return 0;
    }
    for (int i = 0; i < h->nlabels; i++) {
        map[i] = -1;
        for (int j = 0; j < c->num_labels && map[i] < 0; j++)
            if (!strcmp(h->labels[i], c->labels[j])) map[i] = j;
        if (map[i] < 0) return labels_error(c, h, i, err, errlen);
    }
    return 0;
}

/* ---- the classifier ---- */

typedef struct {
    w2v_clip clip; /* key and x are the slot's own copies */
    float *x;
    size_t cap;
} slot;

struct w2v_classifier {
    w2v_model *m;
    int batch_size, pads, nlabels;
    long min_samples;
    w2v_result_fn fn;
    void *ctx;
    slot *queue;
    int queued;
    float *x, *logits;          /* the padded batch and its logits */
    size_t x_cap;
    int64_t *lengths, *labels;  /* [rows] */
    int rows;
    int bf16;                   /* the forward passes' products in bf16 */
};

w2v_classifier *w2v_classifier_new(w2v_model *m, int batch_size, w2v_result_fn fn, void *ctx)
{
    const w2v_config *cfg = w2v_model_config(m);
    w2v_classifier *c = xcalloc(1, sizeof *c);
    c->m = m;
    c->batch_size = batch_size < 1 ? 1 : batch_size;
    c->pads = cfg->return_attention_mask;
    c->nlabels = cfg->num_labels;
    c->min_samples = w2v_config_min_samples(cfg);
    c->fn = fn;
    c->ctx = ctx;
    c->queue = xcalloc((size_t)c->batch_size, sizeof *c->queue);
    return c;
}

void w2v_classifier_free(w2v_classifier *c)
{
    if (!c) return;
    for (int i = 0; i < c->batch_size; i++) {
        free(c->queue[i].x);
        free((char *)c->queue[i].clip.key);
    }
    free(c->queue);
    free(c->x);
    free(c->logits);
    free(c->lengths);
    free(c->labels);
    free(c);
}

static int too_short(const w2v_classifier *c, const char *key, int64_t n, char *err, size_t errlen)
{
    const w2v_config *cfg = w2v_model_config(c->m);
    return set_error(err, errlen, "%s: %lld samples (%.1f ms): the model needs at least %ld (%.1f ms)", key,
                     (long long)n, 1e3 * (double)n / cfg->sampling_rate, c->min_samples,
                     1e3 * (double)c->min_samples / cfg->sampling_rate);
}

/* Runs the model on c->x [B, T] and hands each row to the callback. */
static int forward(w2v_classifier *c, int B, int T, const w2v_clip *clips, char *err, size_t errlen)
{
    w2v_input in = {.B = B, .T = T, .x = c->x, .lengths = c->lengths, .labels = c->labels};
    w2v_run run = {.training = 0, .attention_mask = -1, .bf16 = c->bf16, .inference = 1};
    if (w2v_model_forward(c->m, &in, &run, c->logits, err, errlen) < 0) return -1;
    for (size_t i = 0; i < (size_t)B * c->nlabels; i++)
        if (!isfinite(c->logits[i]))
            return set_error(err, errlen, "%s: the model's logits are not finite (a broken model?)", clips[i / c->nlabels].key);
    for (int b = 0; b < B; b++) c->fn(c->ctx, &clips[b], c->logits + (size_t)b * c->nlabels);
    return 0;
}

int w2v_classifier_set_bf16(w2v_classifier *c, int on)
{
    c->bf16 = on != 0;
    return c->bf16 && gemm_bf16_requested();
}

static void ensure_batch(w2v_classifier *c, int B, int T)
{
    size_t need = (size_t)B * (size_t)T;
    if (need > c->x_cap) c->x = xrealloc(c->x, (c->x_cap = need) * sizeof *c->x);
    if (B > c->rows) {
        c->lengths = xrealloc(c->lengths, (size_t)B * sizeof *c->lengths);
        c->labels = xrealloc(c->labels, (size_t)B * sizeof *c->labels);
        c->logits = xrealloc(c->logits, (size_t)B * (size_t)c->nlabels * sizeof *c->logits);
        c->rows = B;
    }
}

int w2v_classifier_flush(w2v_classifier *c, char *err, size_t errlen)
{
    int B = c->queued, T = 0;
    if (B == 0) return 0;
    for (int b = 0; b < B; b++)
        if (c->queue[b].clip.length > T) T = (int)c->queue[b].clip.length;
    ensure_batch(c, B, T);
    w2v_clip *clips = xmalloc((size_t)B * sizeof *clips);
    for (int b = 0; b < B; b++) {
        const w2v_clip *q = &c->queue[b].clip;
        float *row = c->x + (size_t)b * T;
        memcpy(row, q->x, (size_t)q->length * sizeof *row);
        memset(row + q->length, 0, (size_t)(T - q->length) * sizeof *row);
        c->lengths[b] = q->length;
        c->labels[b] = q->label;
        clips[b] = *q;
    }
    c->queued = 0; /* the slots keep their copies until the next add */
    int ret = forward(c, B, T, clips, err, errlen);
    free(clips);
    return ret;
}

int w2v_classifier_add(w2v_classifier *c, const w2v_clip *clip, char *err, size_t errlen)
{
    if (clip->length < c->min_samples) return too_short(c, clip->key, clip->length, err, errlen);
    if (clip->length > INT32_MAX) return set_error(err, errlen, "%s: %lld samples is too long for one input", clip->key, (long long)clip->length);
    int full = c->queued == c->batch_size;
    int other_length = c->queued > 0 && !c->pads && clip->length != c->queue[0].clip.length;
    if ((full || other_length) && w2v_classifier_flush(c, err, errlen) < 0) return -1;
    slot *s = &c->queue[c->queued++];
    if ((size_t)clip->length > s->cap) s->x = xrealloc(s->x, (s->cap = (size_t)clip->length) * sizeof *s->x);
    memcpy(s->x, clip->x, (size_t)clip->length * sizeof *s->x);
    free((char *)s->clip.key);
    s->clip = *clip;
    s->clip.key = xstrdup(clip->key);
    s->clip.x = s->x;
    return 0;
}

int w2v_classifier_run(w2v_classifier *c, int B, int T, const float *x, const int64_t *lengths,
                       const int64_t *labels, char *const *keys, char *err, size_t errlen)
{
    if (w2v_classifier_flush(c, err, errlen) < 0) return -1;
    if (B < 1) return 0;
    for (int b = 0; b < B; b++) {
        /* what the model sees: the row's own samples when it masks the padding */
        int64_t seen = c->pads ? lengths[b] : T;
        if (seen < c->min_samples) return too_short(c, keys[b], seen, err, errlen);
    }
    ensure_batch(c, B, T);
    memcpy(c->x, x, (size_t)B * T * sizeof *x);
    w2v_clip *clips = xmalloc((size_t)B * sizeof *clips);
    for (int b = 0; b < B; b++) {
        c->lengths[b] = lengths[b];
        c->labels[b] = labels ? labels[b] : -1;
        clips[b] = (w2v_clip){.key = keys[b], .x = x + (size_t)b * T, .length = lengths[b],
                              .label = c->labels[b], .end = -1};
    }
    int ret = forward(c, B, T, clips, err, errlen);
    free(clips);
    return ret;
}

static int64_t model_label(const int *map, int64_t label) { return label < 0 ? -1 : map[label]; }

int w2v_classify_stream(w2v_classifier *c, w2v_reader *r, const char *name, const int *map, const w2v_stream_opts *o,
                        char *err, size_t errlen)
{
    const w2v_header *h = w2v_reader_header(r);
    int64_t *labels = NULL;
    char why[700];
    int ret = 0, got = 0;
    for (long i = 0; ret == 0 && (got = w2v_reader_next(r, err, sizeof err)) > 0; i++) {
        if (o->parts > 1 && i % o->parts != o->part) continue;
        if (h->type == W2V_EXAMPLES) {
            w2v_example ex;
            if (w2v_reader_example(r, &ex, err, sizeof err) < 0) {
                got = -1;
                break;
            }
            w2v_clip clip = {.key = ex.key, .x = ex.input_values, .length = ex.length,
                             .label = model_label(map, ex.label), .end = -1};
            ret = w2v_classifier_add(c, &clip, why, sizeof why);
            continue;
        }
        w2v_batch b;
        if (w2v_reader_batch(r, &b, err, sizeof err) < 0) {
            got = -1;
            break;
        }
        labels = xrealloc(labels, (size_t)b.batch * sizeof *labels);
        for (int k = 0; k < b.batch; k++) labels[k] = model_label(map, b.labels[k]);
        if (o->whole_batches) {
            ret = w2v_classifier_run(c, b.batch, b.time, b.input_values, b.lengths, labels, b.keys, why, sizeof why);
            continue;
        }
        for (int k = 0; k < b.batch && ret == 0; k++) {
            w2v_clip clip = {.key = b.keys[k], .x = b.input_values + (size_t)k * b.time, .length = b.lengths[k],
                             .label = labels[k], .end = -1};
            ret = w2v_classifier_add(c, &clip, why, sizeof why);
        }
    }
    free(labels);
    if (ret == 0 && got < 0) return set_error(err, errlen, "%s", err);
    if (ret == 0) ret = w2v_classifier_flush(c, why, sizeof why);
    return ret < 0 ? set_error(err, errlen, "%s: %s", name, why) : 0;
}

/* ---- arithmetic on logits ---- */

void w2v_softmax(const float *logits, int n, double *probs) { softmax_row(logits, n, probs); }

int w2v_argmax(const float *logits, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

void w2v_top_k(const double *probs, int n, int k, int *idx)
{
    /* insertion into a sorted prefix: n is a label count */
    int have = 0;
    for (int i = 0; i < n; i++) {
        int pos = have < k ? have : k;
        while (pos > 0 && probs[i] > probs[idx[pos - 1]]) pos--;
        if (pos >= k) continue;
        int last = have < k ? have : k - 1;
        memmove(idx + pos + 1, idx + pos, (size_t)(last - pos) * sizeof *idx);
        idx[pos] = i;
        if (have < k) have++;
    }
}

double w2v_cross_entropy(const float *logits, int n, int label) { return softmax_row(logits, n, NULL) - logits[label]; }

/* ---- results as JSON ---- */

/* A JSON string of s, with the bytes that are not UTF-8 replaced by '?'. */
static json_t *string_json(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    char *copy = xstrdup(s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80) *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

int w2v_result_write(FILE *fp, const w2v_config *c, const w2v_clip *clip, const float *logits, int top_k,
                     int flags)
{
    int n = c->num_labels;
    double *probs = xmalloc((size_t)n * sizeof *probs);
    w2v_softmax(logits, n, probs);
    int best = w2v_argmax(logits, n);
    json_t *o = json_object();
    json_object_set_new(o, "key", string_json(clip->key));
    if (clip->end >= 0) {
        json_object_set_new(o, "start", json_real(clip->start));
        json_object_set_new(o, "end", json_real(clip->end));
    }
    json_object_set_new(o, "label", string_json(c->labels[best]));
    json_object_set_new(o, "score", json_real(probs[best]));
    if (clip->label >= 0) json_object_set_new(o, "true_label", string_json(c->labels[clip->label]));
    if (clip->label >= 0 && (flags & W2V_RESULT_LOSS))
        json_object_set_new(o, "loss", json_real(w2v_cross_entropy(logits, n, (int)clip->label)));
    if (top_k > 0) {
        int k = top_k < n ? top_k : n;
        int *idx = xmalloc((size_t)k * sizeof *idx);
        w2v_top_k(probs, n, k, idx);
        json_t *list = json_array();
        for (int i = 0; i < k; i++)
            json_array_append_new(list, json_pack("{s:o, s:f}", "label", string_json(c->labels[idx[i]]), "score", probs[idx[i]]));
        json_object_set_new(o, "top_k", list);
        free(idx);
    }
    if (flags & W2V_RESULT_LOGITS) {
        json_t *list = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(list, json_real(logits[i]));
        json_object_set_new(o, "logits", list);
    }
    free(probs);
    int ret = w2v_json_line(fp, o);
    json_decref(o);
    return ret;
}
