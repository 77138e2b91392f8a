/* What w2v-plot reads: w2v-train's metrics.jsonl (w2v_training_log_read)
 * when the first byte is even, else w2v-eval --json's confusion matrix
 * (w2v_confusion_read); the rest of the input is the file.  Checks: every
 * point is finite; a matrix has labels, counts >= 0 that add up to its
 * total without overflow, its diagonal to correct, and a finite accuracy. */
#include "fuzz.h"
#include "w2v/metrics.h"

#include <math.h>

static void check_series(const w2v_series *s)
{
    for (size_t i = 0; i < s->n; i++) FUZZ_ASSERT(isfinite(s->x[i]) && isfinite(s->y[i]), "point %zu not finite", i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    FILE *in = fmemopen((void *)(data + 1), size - 1, "r");
    if (!in) return 0;
    char err[1024];
    if (data[0] % 2 == 0) {
        w2v_training_log log;
        if (w2v_training_log_read(in, "metrics.jsonl", &log, err, sizeof err) < 0) FUZZ_CHECK_ERR(err);
        else {
            check_series(&log.loss);
            check_series(&log.eval_loss);
            check_series(&log.eval_accuracy);
            w2v_training_log_free(&log);
        }
    } else {
        w2v_confusion c;
        if (w2v_confusion_read(in, "eval.json", &c, err, sizeof err) < 0) FUZZ_CHECK_ERR(err);
        else {
            FUZZ_ASSERT(c.n >= 1 && c.labels && c.count, "an empty matrix was accepted");
            long total = 0, correct = 0;
            for (size_t i = 0; i < c.n; i++) {
                FUZZ_ASSERT(c.labels[i], "label %zu", i);
                for (size_t j = 0; j < c.n; j++) {
                    FUZZ_ASSERT(c.count[i * c.n + j] >= 0, "a negative count");
                    total += c.count[i * c.n + j];
                    if (i == j) correct += c.count[i * c.n + j];
                }
            }
            FUZZ_ASSERT(total == c.total && correct == c.correct && correct <= total, "sums");
            FUZZ_ASSERT(isfinite(c.accuracy), "accuracy");
            w2v_confusion_free(&c);
        }
    }
    fclose(in);
    return 0;
}
