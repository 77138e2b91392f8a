/* w2v-eval: accuracy, loss, per-class precision/recall/F1 and the
 * confusion matrix of a model on a labelled w2v stream. */
#include "w2v/classify.h"
#include "w2v/cli.h"
#include "w2v/stream.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "w2v-eval: evaluate a model on a labelled examples or batches stream:\n"
    "accuracy, mean loss, per-class precision/recall/F1, macro-F1, confusion matrix\n"
    "\n"
    "Usage: w2v-eval -m MODEL [options] [STREAM]     (no STREAM or '-' reads stdin)\n"
    " e.g.: ks-extract data/test.tsv | w2v-eval -m model/\n"
    "       ks-extract data/test.tsv | ks-batch -b 32 | w2v-eval -m model/ --json test.json\n"
    "\n"
    "The stream's label names must be among the model's (any order: ids are\n"
    "mapped by name); metrics are over the model's labels.  A batches stream\n"
    "is evaluated batch by batch as it is (the model decides whether padding\n"
    "is masked); an examples stream is batched as w2v-predict does.  An\n"
    "example without a label is classified but not scored, as training leaves\n"
    "it out of the loss (the table and the JSON count them as unlabelled).\n"
    "The loss is the mean over labelled examples of their cross-entropy;\n"
    "macro-F1 is the mean F1 over the labels that occur as true or predicted\n"
    "labels.\n"
    "\n"
    "Options:\n"
    "  -m, --model DIR       the model (config.json, model.safetensors, preprocessor_config.json)\n"
    "  -b, --batch-size N    examples per forward pass for examples streams (default: 8)\n"
    "  --json FILE           write the metrics as JSON to FILE ('-': stdout, instead of the table)\n"
    "  --predictions FILE    write one JSON line per example to FILE:\n"
    "                        {key, label, score, true_label, loss}\n"
    "  --bf16                mixed precision: matrix products in bf16 with fp32\n"
    "                        accumulation (as torch.autocast); about twice as fast\n"
    "                        on CPUs with avx512_bf16, elsewhere a note and fp32\n"
    "  --threads N           threads (default: the cores available)\n"
    "  --progress            progress on stderr even when it is not a terminal\n"
    "  --quiet               no notes or progress on stderr\n"
    "  -h, --help            this text\n"
    "  --version             print the version\n";

enum { OPT_JSON = 1, OPT_PREDICTIONS, OPT_BF16 };

typedef struct {
    const w2v_config *cfg;
    int n;               /* labels */
    long examples;       /* scored: those with a label */
    long unlabelled;     /* classified, not scored */
    long *confusion;     /* [true][predicted] */
    double loss;         /* summed */
    FILE *pred;          /* --predictions, or NULL */
    const char *pred_name;
    w2v_progress progress;
} tally;

static void count_result(void *ctx, const w2v_clip *clip, const float *logits)
{
    tally *t = ctx;
    double loss = 0;
    if (clip->label >= 0) {
        loss = w2v_cross_entropy(logits, t->n, (int)clip->label);
        t->confusion[clip->label * t->n + w2v_argmax(logits, t->n)]++;
        t->loss += loss;
        t->examples++;
    } else t->unlabelled++;
    if (t->pred) {
        if (w2v_result_write(t->pred, t->cfg, clip, logits, 0, W2V_RESULT_LOSS) < 0) w2v_write_failed(t->pred_name);
    }
    w2v_progress_update(&t->progress, (double)(t->examples + t->unlabelled), NULL);
}

typedef struct {
    double precision, recall, f1;
    long support;
} class_metrics;

typedef struct {
    double accuracy, loss, macro_f1;
    class_metrics *per_class;
} metrics;

/* As scikit-learn computes them, 0 where a ratio has no denominator. */
static metrics compute(const tally *t)
{
    int n = t->n;
    metrics m = {0};
    m.per_class = calloc((size_t)n, sizeof *m.per_class);
    if (!m.per_class) w2v_die("out of memory");
    long correct = 0;
    int present = 0;
    for (int i = 0; i < n; i++) {
        long tp = t->confusion[i * n + i], predicted = 0, support = 0;
        for (int j = 0; j < n; j++) {
            support += t->confusion[i * n + j];
            predicted += t->confusion[j * n + i];
        }
        class_metrics *c = &m.per_class[i];
        c->support = support;
        c->precision = predicted ? (double)tp / predicted : 0;
        c->recall = support ? (double)tp / support : 0;
        c->f1 = c->precision + c->recall > 0 ? 2 * c->precision * c->recall / (c->precision + c->recall) : 0;
        correct += tp;
        if (support || predicted) {
            present++;
            m.macro_f1 += c->f1;
        }
    }
    m.accuracy = (double)correct / t->examples;
    m.loss = t->loss / t->examples;
    m.macro_f1 /= present;
    return m;
}

static void print_table(FILE *fp, const tally *t, const metrics *m)
{
    int n = t->n, width = 5;
    long correct = 0;
    for (int i = 0; i < n; i++) {
        int len = (int)strlen(t->cfg->labels[i]);
        width = len > width ? len : width;
        correct += t->confusion[i * n + i];
    }
    fprintf(fp, "examples  %ld\n", t->examples);
    if (t->unlabelled) fprintf(fp, "unlabelled  %ld  (not scored)\n", t->unlabelled);
    fprintf(fp, "accuracy  %.4f  (%ld/%ld)\nloss      %.6f\nmacro-F1  %.4f\n\n", m->accuracy, correct, t->examples,
            m->loss, m->macro_f1);
    fprintf(fp, "%4s  %-*s  %9s  %9s  %9s  %8s\n", "id", width, "label", "precision", "recall", "f1", "support");
    for (int i = 0; i < n; i++) {
        const class_metrics *c = &m->per_class[i];
        fprintf(fp, "%4d  %-*s  %9.4f  %9.4f  %9.4f  %8ld\n", i, width, t->cfg->labels[i], c->precision, c->recall,
                c->f1, c->support);
    }
    /* columns by id: the names would make the matrix too wide to read */
    int cw = 3;
    for (long k = 0; k < (long)n * n; k++) {
        int digits = snprintf(NULL, 0, "%ld", t->confusion[k]);
        cw = digits > cw ? digits : cw;
    }
    fprintf(fp, "\nconfusion matrix (rows: true label, columns: predicted label id)\n%4s  %-*s", "id", width, "label");
    for (int j = 0; j < n; j++) fprintf(fp, " %*d", cw, j);
    fputc('\n', fp);
    for (int i = 0; i < n; i++) {
        fprintf(fp, "%4d  %-*s", i, width, t->cfg->labels[i]);
        for (int j = 0; j < n; j++) fprintf(fp, " %*ld", cw, t->confusion[i * n + j]);
        fputc('\n', fp);
    }
}

static json_t *metrics_json(const tally *t, const metrics *m)
{
    int n = t->n;
    json_t *labels = json_array(), *per_class = json_object(), *confusion = json_array();
    for (int i = 0; i < n; i++) {
        const class_metrics *c = &m->per_class[i];
        json_array_append_new(labels, json_string(t->cfg->labels[i]));
        json_object_set_new(per_class, t->cfg->labels[i],
                            json_pack("{s:f, s:f, s:f, s:I}", "precision", c->precision, "recall", c->recall, "f1",
                                      c->f1, "support", (json_int_t)c->support));
        json_t *row = json_array();
        for (int j = 0; j < n; j++) json_array_append_new(row, json_integer(t->confusion[i * n + j]));
        json_array_append_new(confusion, row);
    }
    return json_pack("{s:I, s:I, s:f, s:f, s:f, s:o, s:o, s:o}", "examples", (json_int_t)t->examples, "unlabelled",
                     (json_int_t)t->unlabelled, "accuracy",
                     m->accuracy, "loss", m->loss, "macro_f1", m->macro_f1, "labels", labels, "per_class",
                     per_class, "confusion", confusion);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"model", required_argument, 0, 'm'},
        {"batch-size", required_argument, 0, 'b'},
        {"json", required_argument, 0, OPT_JSON},
        {"predictions", required_argument, 0, OPT_PREDICTIONS},
        {"bf16", no_argument, 0, OPT_BF16},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {0, 0, 0, 0},
    };
    const char *model_dir = NULL, *json_path = NULL, *pred_path = NULL;
    long batch_size = 8;
    int opt, bf16 = 0;
    w2v_cli_init("w2v-eval", usage, argv);
    while ((opt = getopt_long(argc, argv, "hm:b:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'm': model_dir = optarg; break;
        case 'b': batch_size = w2v_parse_long("--batch-size", optarg, 1, 4096); break;
        case OPT_JSON: json_path = optarg; break;
        case OPT_PREDICTIONS: pred_path = optarg; break;
        case OPT_BF16: bf16 = 1; break;
        }
    }
    if (!model_dir) w2v_usage_error("no model: use -m MODEL");
    if (argc - optind > 1) w2v_usage_error("one stream at most");
    const char *input = optind < argc ? argv[optind] : "-";
    const char *name = w2v_input_name(input);
    int json_stdout = json_path && !strcmp(json_path, "-");
    if (json_stdout && pred_path && !strcmp(pred_path, "-"))
        w2v_usage_error("--json and --predictions cannot both go to stdout");

    char err[700];
    w2v_model *model = w2v_model_load(model_dir, err, sizeof err);
    if (!model) w2v_die("%s", err);
    w2v_reader *r = w2v_reader_open(input, err, sizeof err);
    if (!r) w2v_die("%s", err);
    const w2v_header *h = w2v_reader_header(r);
    tally t = {.cfg = w2v_model_config(model)};
    t.n = t.cfg->num_labels;
    int *map = malloc(((size_t)h->nlabels + 1) * sizeof *map);
    t.confusion = calloc((size_t)t.n * (size_t)t.n, sizeof *t.confusion);
    if (!map || !t.confusion) w2v_die("out of memory");
    if (w2v_classify_check_header(t.cfg, h, W2V_LABELS_SUBSET, map, err, sizeof err) < 0) w2v_die("%s: %s", name, err);

    w2v_output *pred = pred_path ? w2v_output_open(pred_path, 0) : NULL;
    if (pred) {
        t.pred = w2v_output_file(pred);
        t.pred_name = strcmp(pred_path, "-") ? pred_path : "stdout";
    }
    w2v_classifier *cls = w2v_classifier_new(model, (int)batch_size, count_result, &t);
    w2v_classifier_set_bf16(cls, bf16);
    w2v_stream_opts so = {.whole_batches = 1};
    w2v_progress_start(&t.progress, "examples", 0);
    if (w2v_classify_stream(cls, r, name, map, &so, err, sizeof err) < 0) w2v_die("%s", err);
    w2v_progress_end(&t.progress);
    if (t.examples + t.unlabelled == 0) w2v_die("%s: no examples", name);
    if (t.examples == 0) w2v_die("%s: no labelled examples (examples without a label are not scored)", name);
    if (pred) w2v_output_close(pred);

    metrics m = compute(&t);
    if (json_path) {
        w2v_output *out = w2v_output_open(json_path, 0);
        json_t *o = metrics_json(&t, &m);
        if (w2v_json_line(w2v_output_file(out), o) < 0) w2v_write_failed(json_stdout ? "stdout" : json_path);
        json_decref(o);
        w2v_output_close(out);
    }
    if (!json_stdout) {
        print_table(stdout, &t, &m);
        if (fflush(stdout) != 0 || ferror(stdout)) w2v_write_failed("stdout");
    }

    free(m.per_class);
    free(map);
    free(t.confusion);
    w2v_classifier_free(cls);
    w2v_reader_close(r);
    w2v_model_free(model);
    return 0;
}
