/* A stream record as one line of JSON (w2v_reader_print_json, ks-cat). */
#include "internal.h"
#include "stream_msgpack.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    double *v = xmalloc(t->count * sizeof *v);
    float *f = xmalloc(t->count * sizeof *f);
    int64_t *n = xmalloc(t->count * sizeof *n);
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

int w2v_reader_print_json(const w2v_reader *r, FILE *fp, int full)
{
    print_object(fp, w2v_reader_object(r), full);
    return ferror(fp) ? -1 : 0;
}
