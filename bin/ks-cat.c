/* ks-cat: print a w2v stream as JSON lines, check it, or take its head. */
#include "w2v/cli.h"
#include "w2v/stream.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "ks-cat: print w2v streams as JSON lines, check them, or take their head\n"
    "\n"
    "Usage: ks-cat [options] [FILE...]      (no FILE or '-' reads stdin)\n"
    " e.g.: ks-extract train.tsv | ks-cat | head\n"
    "       ks-cat --check train.stream\n"
    "       ks-extract train.tsv | ks-cat --head 64 | ks-batch -b 8 > sample.stream\n"
    "\n"
    "Prints the header, then one line per record.  Several FILEs read as their\n"
    "concatenation: one header, which the others must agree with.\n"
    "\n"
    "Options:\n"
    "  --full           print tensor data in full: {\"dtype\", \"shape\", \"data\": [...]}\n"
    "                   (default: dtype, shape, min, max, mean)\n"
    "  --check          validate every record; print record counts only\n"
    "  --head N         write the header and the first N records as a stream\n"
    "  -o, --output F   where --head writes (default: stdout)\n"
    "  -h, --help       this text\n"
    "  --version        print the version\n";

enum { OPT_FULL = 1, OPT_CHECK, OPT_HEAD };

static void print_str(FILE *out, const char *s, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
    fputc('"', out);
}

/* digits: 9 for float32 values, 17 for float64: enough to read back exactly */
static void print_number(FILE *out, double v, int digits)
{
    if (isfinite(v)) fprintf(out, "%.*g", digits, v);
    else fputs(isnan(v) ? "\"nan\"" : v > 0 ? "\"inf\"" : "\"-inf\"", out);
}

static void print_tensor(FILE *out, const w2v_tensor *t, int full)
{
    fprintf(out, "{\"dtype\":\"%s\",\"shape\":[", w2v_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim; i++) fprintf(out, "%s%" PRId64, i ? "," : "", t->shape[i]);
    fputc(']', out);
    /* Values as double (exact for every float dtype), integers as int64 too. */
    double *v = malloc((t->count ? t->count : 1) * sizeof *v);
    float *f = malloc((t->count ? t->count : 1) * sizeof *f);
    int64_t *n = malloc((t->count ? t->count : 1) * sizeof *n);
    if (!v || !f || !n) w2v_die("out of memory");
    int integer = t->dtype == W2V_I64 || t->dtype == W2V_I32 || t->dtype == W2V_U8;
    int digits = t->dtype == W2V_F64 ? 17 : 9;
    if (t->dtype == W2V_F64) memcpy(v, t->data, t->count * sizeof *v);
    else if (integer) {
        w2v_tensor_to_i64(t, n);
        for (size_t i = 0; i < t->count; i++) v[i] = (double)n[i];
    } else {
        w2v_tensor_to_f32(t, f);
        for (size_t i = 0; i < t->count; i++) v[i] = f[i];
    }
    if (full) {
        fputs(",\"data\":[", out);
        for (size_t i = 0; i < t->count; i++) {
            if (i) fputc(',', out);
            if (integer) fprintf(out, "%" PRId64, n[i]);
            else print_number(out, v[i], digits);
        }
        fputc(']', out);
    } else if (t->count) {
        /* min and max exact, integers as integers; a NaN anywhere makes min,
         * max and mean NaN, wherever it sits */
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        int64_t ilo = INT64_MAX, ihi = INT64_MIN;
        for (size_t i = 0; i < t->count; i++) {
            if (integer) {
                ilo = n[i] < ilo ? n[i] : ilo;
                ihi = n[i] > ihi ? n[i] : ihi;
            } else if (isnan(v[i]) || isnan(lo)) lo = hi = NAN;
            else {
                lo = v[i] < lo ? v[i] : lo;
                hi = v[i] > hi ? v[i] : hi;
            }
            sum += v[i];
        }
        if (integer) fprintf(out, ",\"min\":%" PRId64 ",\"max\":%" PRId64, ilo, ihi);
        else {
            fputs(",\"min\":", out);
            print_number(out, lo, digits);
            fputs(",\"max\":", out);
            print_number(out, hi, digits);
        }
        fputs(",\"mean\":", out);
        print_number(out, sum / (double)t->count, digits);
    }
    fputc('}', out);
    free(v);
    free(f);
    free(n);
}

static void print_object(FILE *out, const msgpack_object *o, int full)
{
    w2v_tensor t;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: fputs("null", out); break;
    case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", out); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(out, "%" PRIu64, o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(out, "%" PRId64, o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32: print_number(out, o->via.f64, 9); break;
    case MSGPACK_OBJECT_FLOAT64: print_number(out, o->via.f64, 17); break;
    case MSGPACK_OBJECT_STR: print_str(out, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: fprintf(out, "{\"bin\":%u}", o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT: fprintf(out, "{\"ext\":%d,\"size\":%u}", o->via.ext.type, o->via.ext.size); break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', out);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fputc(',', out);
            print_object(out, &o->via.array.ptr[i], full);
        }
        fputc(']', out);
        break;
    case MSGPACK_OBJECT_MAP:
        if (w2v_tensor_decode(o, &t, NULL, 0) == 0) {
            print_tensor(out, &t, full);
            break;
        }
        fputc('{', out);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i) fputc(',', out);
            if (kv->key.type == MSGPACK_OBJECT_STR) print_object(out, &kv->key, full);
            else fputs("\"?\"", out); /* not a w2v map (keys are strings); JSON needs a string */
            fputc(':', out);
            print_object(out, &kv->val, full);
        }
        fputc('}', out);
        break;
    }
}

/* Validates a record as what the header says the stream holds. */
static int check_record(w2v_reader *r)
{
    if (w2v_reader_header(r)->type == W2V_EXAMPLES) {
        w2v_example ex;
        return w2v_reader_example(r, &ex);
    }
    w2v_batch b;
    return w2v_reader_batch(r, &b);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"full", no_argument, 0, OPT_FULL},
        {"check", no_argument, 0, OPT_CHECK},
        {"head", required_argument, 0, OPT_HEAD},
        {"output", required_argument, 0, 'o'},
        {0, 0, 0, 0},
    };
    int full = 0, check = 0, opt;
    long head = -1;
    const char *output = NULL;
    w2v_cli_init("ks-cat", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case OPT_FULL: full = 1; break;
        case OPT_CHECK: check = 1; break;
        case OPT_HEAD: head = w2v_parse_long("--head", optarg, 0, LONG_MAX); break;
        case 'o': output = optarg; break;
        }
    }
    if (check + (head >= 0) > 1) w2v_usage_error("--check and --head exclude each other");
    if (output && head < 0) w2v_usage_error("-o is for --head");

    char *stdin_only[] = {"-"};
    char **files = optind < argc ? argv + optind : stdin_only;
    int nfiles = optind < argc ? argc - optind : 1;
    w2v_output *out = w2v_output_open(head >= 0 ? output : NULL, head >= 0);
    FILE *fp = w2v_output_file(out);
    w2v_writer *w = head >= 0 ? w2v_writer_new(fp) : NULL;
    long written = 0, total = 0;
    const char *out_name = output && strcmp(output, "-") ? output : "stdout";
    w2v_header first = {0};
    char err[512];

    /* Several files read as their concatenation: one header, which the
     * others must agree with, as w2v_reader_next demands inside a file. */
    for (int f = 0; f < nfiles; f++) {
        w2v_reader *r = w2v_reader_open(files[f], err, sizeof err);
        if (!r) w2v_die("%s", err);
        const w2v_header *h = w2v_reader_header(r);
        if (f == 0) {
            w2v_header_init(&first, h->type, h->nlabels, h->labels);
            first.sample_rate = h->sample_rate;
            if (w && w2v_write_object(w, w2v_reader_object(r)) < 0) w2v_write_failed(out_name);
            if (!check && !w) {
                print_object(fp, w2v_reader_object(r), full);
                fputc('\n', fp);
            }
        } else if (!w2v_header_compatible(h, &first))
            w2v_die("%s: record 0 at byte 0: header conflicts with that of %s (type, sample_rate or labels differ)",
                    w2v_input_name(files[f]), w2v_input_name(files[0]));
        long records = 0;
        int ret = 0;
        while ((head < 0 || written < head) && (ret = w2v_reader_next(r)) > 0) {
            records++;
            if (check) {
                if (check_record(r) < 0) w2v_die("%s", w2v_reader_error(r));
            } else if (w) {
                if (w2v_write_object(w, w2v_reader_object(r)) < 0) w2v_write_failed(out_name);
                written++;
            } else {
                print_object(fp, w2v_reader_object(r), full);
                if (fputc('\n', fp) == EOF) w2v_write_failed("stdout");
            }
        }
        if ((head < 0 || written < head) && ret < 0) w2v_die("%s", w2v_reader_error(r));
        if (check)
            printf("%s: %s stream, %d labels, %ld records\n", w2v_input_name(files[f]),
                   h->type == W2V_EXAMPLES ? "examples" : "batches", h->nlabels, records);
        total += records;
        w2v_reader_close(r);
    }
    if (check && nfiles > 1) printf("total: %ld records\n", total);
    w2v_header_free(&first);
    if (w) w2v_writer_free(w);
    w2v_output_close(out);
    return 0;
}
