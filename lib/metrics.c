/* metrics.jsonl and confusion matrices read back (w2v/metrics.h). */
#include "w2v/metrics.h"
#include "internal.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void series_add(w2v_series *s, size_t *cap, double x, double y)
{
    if (s->n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        s->x = xrealloc(s->x, *cap * sizeof *s->x);
        s->y = xrealloc(s->y, *cap * sizeof *s->y);
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
}

/* The finite number under key, or NAN where it is absent or no number. */
static double number_field(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    return isfinite(d) ? d : NAN;
}

int w2v_training_log_read(FILE *in, const char *name, w2v_training_log *log, char *err, size_t errlen)
{
    memset(log, 0, sizeof *log);
    w2v_series *curve[] = {&log->loss, &log->eval_loss, &log->eval_accuracy};
    static const char *const key[] = {"loss", "eval_loss", "eval_accuracy"};
    size_t cap[3] = {0};
    char *line = NULL;
    size_t linecap = 0;
    long lineno = 0;
    int ret = 0;
    ssize_t len;
    while (ret == 0 && (len = getline(&line, &linecap, in)) > 0) {
        lineno++;
        if (!line[strspn(line, " \t\r\n")]) continue;
        json_error_t je;
        /* by length: a NUL inside the line is malformed JSON, not its end */
        json_t *o = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &je);
        if (!o) ret = set_error(err, errlen, "%s: line %ld: malformed JSON: %s", name, lineno, je.text);
        else if (!json_is_object(o)) ret = set_error(err, errlen, "%s: line %ld: not a JSON object", name, lineno);
        else {
            double step = number_field(o, "step"), v;
            if (isnan(step)) log->stepless++;
            else
                for (int k = 0; k < 3; k++)
                    if (!isnan(v = number_field(o, key[k]))) series_add(curve[k], &cap[k], step, v);
        }
        json_decref(o);
    }
    if (ret == 0 && ferror(in)) ret = set_error(err, errlen, "%s: read failed: %s", name, strerror(errno));
    free(line);
    if (ret < 0) w2v_training_log_free(log);
    return ret;
}

void w2v_training_log_free(w2v_training_log *log)
{
    w2v_series *curve[] = {&log->loss, &log->eval_loss, &log->eval_accuracy};
    for (int k = 0; k < 3; k++) {
        free(curve[k]->x);
        free(curve[k]->y);
        curve[k]->x = curve[k]->y = NULL;
        curve[k]->n = 0;
    }
}

/* The matrix's fields, checked; the object is o. */
static int confusion_fields(const json_t *o, const char *name, w2v_confusion *c, char *err, size_t errlen)
{
    json_t *labels = json_object_get(o, "labels"), *conf = json_object_get(o, "confusion");
    size_t n = json_array_size(labels);
    if (!json_is_array(labels) || !n) return set_error(err, errlen, "%s: no \"labels\" array of label names", name);
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(labels, i)))
            return set_error(err, errlen, "%s: \"labels\"[%zu] is not a string", name, i);
    if (!json_is_array(conf) || json_array_size(conf) != n)
        return set_error(err, errlen, "%s: \"confusion\" is not an array of %zu rows (one per label)", name, n);
    /* n rows of n counts are in the text, so n * n fits in memory's terms */
    c->count = xcalloc(n * n, sizeof *c->count);
    c->labels = xcalloc(n, sizeof *c->labels);
    c->n = n;
    for (size_t i = 0; i < n; i++) c->labels[i] = xstrdup(json_string_value(json_array_get(labels, i)));
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array_get(conf, i);
        if (!json_is_array(row) || json_array_size(row) != n)
            return set_error(err, errlen, "%s: \"confusion\"[%zu] is not an array of %zu counts (one per label)", name, i, n);
        for (size_t j = 0; j < n; j++) {
            json_t *v = json_array_get(row, j);
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return set_error(err, errlen, "%s: \"confusion\"[%zu][%zu] is not a count (an integer >= 0)", name, i, j);
            long k = (long)json_integer_value(v);
            c->count[i * n + j] = k;
            if (__builtin_add_overflow(c->total, k, &c->total))
                return set_error(err, errlen, "%s: the counts of \"confusion\" add up past %ld", name, LONG_MAX);
            if (i == j) c->correct += k;
        }
    }
    c->accuracy = number_field(o, "accuracy");
    if (isnan(c->accuracy)) c->accuracy = c->total ? (double)c->correct / (double)c->total : 0;
    return 0;
}

int w2v_confusion_read(FILE *in, const char *name, w2v_confusion *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *o = json_loadf(in, JSON_DECODE_ANY, &je);
    int ret;
    if (!o) ret = set_error(err, errlen, "%s: line %d: malformed JSON: %s", name, je.line, je.text);
    else if (!json_is_object(o)) ret = set_error(err, errlen, "%s: not a JSON object", name);
    else ret = confusion_fields(o, name, c, err, errlen);
    json_decref(o);
    if (ret < 0) w2v_confusion_free(c);
    return ret;
}

void w2v_confusion_free(w2v_confusion *c)
{
    for (size_t i = 0; c->labels && i < c->n; i++) free(c->labels[i]);
    free(c->labels);
    free(c->count);
    memset(c, 0, sizeof *c);
}
