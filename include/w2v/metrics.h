/* Reading back what the programs log: w2v-train's metrics.jsonl and
 * w2v-eval --json's confusion matrix (w2v-plot draws them).  Both are
 * checked as hostile input: every error names the file and the line or
 * field. */
#ifndef W2V_METRICS_H
#define W2V_METRICS_H

#include <stddef.h>
#include <stdio.h>

/* Points (x[i], y[i]), finite. */
typedef struct {
    double *x, *y;
    size_t n;
} w2v_series;

/* The curves of a metrics.jsonl, against the step. */
typedef struct {
    w2v_series loss, eval_loss, eval_accuracy;
    long stepless; /* lines without a finite numeric "step", left out */
} w2v_training_log;

/* Reads JSON lines (blank lines skipped), each an object; a line with a
 * finite "step" adds its finite "loss", "eval_loss" and "eval_accuracy".
 * 0, or -1 with "NAME: line N: why" in err. */
int w2v_training_log_read(FILE *in, const char *name, w2v_training_log *log, char *err, size_t errlen);
void w2v_training_log_free(w2v_training_log *log);

/* A confusion matrix: count[i * n + j] examples of true label i predicted
 * as j. */
typedef struct {
    size_t n;
    char **labels;   /* [n] */
    long *count;     /* [n * n], each >= 0 */
    long total, correct;
    double accuracy; /* the file's "accuracy" when it has a finite one, else correct / total (0 for none) */
} w2v_confusion;

/* Reads one JSON object with "labels" (n strings) and "confusion" (n rows
 * of n integer counts >= 0 whose sum fits a long), as w2v-eval --json
 * writes it.  0, or -1 with "NAME: why" in err. */
int w2v_confusion_read(FILE *in, const char *name, w2v_confusion *c, char *err, size_t errlen);
void w2v_confusion_free(w2v_confusion *c);

#endif
