/* safetensors: an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, then the raw data. */
#include "w2v/safetensors.h"
#include "internal.h"
#include "w2v/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct { const char *name; size_t size; } dtypes[] = {
    [W2V_ST_F64] = {"F64", 8}, [W2V_ST_F32] = {"F32", 4}, [W2V_ST_F16] = {"F16", 2},
    [W2V_ST_BF16] = {"BF16", 2}, [W2V_ST_I64] = {"I64", 8}, [W2V_ST_I32] = {"I32", 4},
    [W2V_ST_I16] = {"I16", 2}, [W2V_ST_I8] = {"I8", 1}, [W2V_ST_U8] = {"U8", 1},
    [W2V_ST_BOOL] = {"BOOL", 1},
};
#define NDTYPES (int)(sizeof dtypes / sizeof *dtypes)

size_t w2v_st_dtype_size(w2v_st_dtype t) { return dtypes[t].size; }
const char *w2v_st_dtype_name(w2v_st_dtype t) { return dtypes[t].name; }

struct w2v_safetensors {
    void *map;
    size_t map_size;
    int count;
    w2v_st_tensor *tensors;
    json_t *header;   /* owns the tensor names */
    json_t *metadata; /* borrowed from header */
};

/* Headers beyond this are not model files (HF caps them at 100 MB). */
#define MAX_HEADER (100u << 20)

w2v_safetensors *w2v_st_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        set_error(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        set_error(err, errlen, "%s: too short for a safetensors file (%zu bytes)", path, size);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        set_error(err, errlen, "%s: cannot map: %s", path, strerror(errno));
        return NULL;
    }
    w2v_safetensors *st = xcalloc(1, sizeof *st);
    st->map = map;
    st->map_size = size;
    const unsigned char *p = map;
    uint64_t hlen;
    memcpy(&hlen, p, 8);
    json_error_t jerr;
    json_t *root;
    if (hlen > MAX_HEADER || hlen > size - 8) {
        set_error(err, errlen, "%s: header length %llu does not fit in the file (%zu bytes)", path,
                  (unsigned long long)hlen, size);
        goto fail;
    }
    root = st->header = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        set_error(err, errlen, "%s: header is not a JSON object%s%s", path, root ? "" : ": ", root ? "" : jerr.text);
        goto fail;
    }
    size_t data_size = size - 8 - (size_t)hlen;
    const unsigned char *data = p + 8 + hlen;
    st->tensors = xcalloc(json_object_size(root) + 1, sizeof *st->tensors);
    const char *name;
    json_t *val;
    json_object_foreach(root, name, val) {
        if (!strcmp(name, "__metadata__")) {
            if (!json_is_object(val)) {
                set_error(err, errlen, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            st->metadata = val;
            continue;
        }
        w2v_st_tensor *t = &st->tensors[st->count];
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
            set_error(err, errlen, "%s: tensor '%s': needs dtype, shape and data_offsets", path, name);
            goto fail;
        }
        int dt = -1;
        for (int i = 0; i < NDTYPES; i++)
            if (!strcmp(json_string_value(jd), dtypes[i].name)) dt = i;
        if (dt < 0) {
            set_error(err, errlen, "%s: tensor '%s': unsupported dtype %s", path, name, json_string_value(jd));
            goto fail;
        }
        if (json_array_size(js) > W2V_ST_MAX_DIMS) {
            set_error(err, errlen, "%s: tensor '%s': too many dimensions", path, name);
            goto fail;
        }
        uint64_t count = 1;
        t->ndim = (int)json_array_size(js);
        for (int i = 0; i < t->ndim; i++) {
            json_t *d = json_array_get(js, (size_t)i);
            if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1ll << 40)) {
                set_error(err, errlen, "%s: tensor '%s': bad shape", path, name);
                goto fail;
            }
            t->shape[i] = json_integer_value(d);
            /* each factor is below 2^41, but eight of them can wrap 2^64 */
            if (__builtin_mul_overflow(count, (uint64_t)t->shape[i], &count) || count > (1ull << 40)) {
                set_error(err, errlen, "%s: tensor '%s': too large", path, name);
                goto fail;
            }
        }
        json_t *b = json_array_get(jo, 0), *e = json_array_get(jo, 1);
        if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
            json_integer_value(e) < json_integer_value(b) || (uint64_t)json_integer_value(e) > data_size) {
            set_error(err, errlen, "%s: tensor '%s': data_offsets outside the data (%zu bytes)", path, name, data_size);
            goto fail;
        }
        uint64_t nbytes = (uint64_t)(json_integer_value(e) - json_integer_value(b));
        if (nbytes != count * dtypes[dt].size) {
            set_error(err, errlen, "%s: tensor '%s': %llu bytes of data, but %s of that shape needs %llu", path,
                      name, (unsigned long long)nbytes, dtypes[dt].name, (unsigned long long)(count * dtypes[dt].size));
            goto fail;
        }
        t->name = name;
        t->dtype = (w2v_st_dtype)dt;
        t->count = (size_t)count;
        t->data = data + json_integer_value(b);
        st->count++;
    }
    return st;
fail:
    w2v_st_close(st);
    return NULL;
}

void w2v_st_close(w2v_safetensors *st)
{
    if (!st) return;
    if (st->map) munmap(st->map, st->map_size);
    json_decref(st->header);
    free(st->tensors);
    free(st);
}

int w2v_st_count(const w2v_safetensors *st) { return st->count; }

const w2v_st_tensor *w2v_st_tensor_at(const w2v_safetensors *st, int i)
{
    return i >= 0 && i < st->count ? &st->tensors[i] : NULL;
}

int w2v_st_find(const w2v_safetensors *st, const char *name)
{
    for (int i = 0; i < st->count; i++)
        if (!strcmp(st->tensors[i].name, name)) return i;
    return -1;
}

const char *w2v_st_metadata(const w2v_safetensors *st, const char *key)
{
    return json_string_value(json_object_get(st->metadata, key));
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | exp << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | man << 13;
    else bits = sign | (exp + 127 - 15) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int w2v_st_to_f32(const w2v_st_tensor *t, float *dst)
{
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case W2V_ST_F32: memcpy(dst, p, t->count * 4); return 0;
    case W2V_ST_F64:
        for (size_t i = 0; i < t->count; i++) { double v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; }
        return 0;
    case W2V_ST_F16:
        for (size_t i = 0; i < t->count; i++) { uint16_t v; memcpy(&v, p + 2 * i, 2); dst[i] = half_to_float(v); }
        return 0;
    case W2V_ST_BF16:
        for (size_t i = 0; i < t->count; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            uint32_t bits = (uint32_t)v << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return 0;
    default: return -1;
    }
}

int w2v_st_to_i64(const w2v_st_tensor *t, int64_t *dst)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->count; i++) {
        switch (t->dtype) {
        case W2V_ST_I64: memcpy(&dst[i], p + 8 * i, 8); break;
        case W2V_ST_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = v; break; }
        case W2V_ST_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); dst[i] = v; break; }
        case W2V_ST_I8: dst[i] = (int8_t)p[i]; break;
        case W2V_ST_U8: case W2V_ST_BOOL: dst[i] = p[i]; break;
        default: return -1;
        }
    }
    return 0;
}

/* ---- writing ---- */

typedef struct {
    char *name;
    w2v_st_dtype dtype;
    int ndim;
    int64_t shape[W2V_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
    void (*fill)(void *ctx, void *dst); /* or the bytes made when written */
    void *ctx;
} entry;

struct w2v_st_writer {
    entry *e;
    int n, cap;
    json_t *metadata;
};

w2v_st_writer *w2v_st_writer_new(void)
{
    w2v_st_writer *w = xcalloc(1, sizeof *w);
    w->metadata = json_object();
    return w;
}

void w2v_st_writer_free(w2v_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    json_decref(w->metadata);
    free(w);
}

static entry *add_entry(w2v_st_writer *w, const char *name, w2v_st_dtype dtype, int ndim, const int64_t *shape)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->e = xrealloc(w->e, (size_t)w->cap * sizeof *w->e);
    }
    entry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    size_t count = 1;
    for (int i = 0; i < ndim; i++) count *= (size_t)(e->shape[i] = shape[i]);
    e->nbytes = count * dtypes[dtype].size;
    return e;
}

void w2v_st_add(w2v_st_writer *w, const char *name, w2v_st_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    add_entry(w, name, dtype, ndim, shape)->data = data;
}

void w2v_st_add_fill(w2v_st_writer *w, const char *name, w2v_st_dtype dtype, int ndim, const int64_t *shape,
                     void (*fill)(void *ctx, void *dst), void *ctx)
{
    entry *e = add_entry(w, name, dtype, ndim, shape);
    e->fill = fill;
    e->ctx = ctx;
}

void w2v_st_add_metadata(w2v_st_writer *w, const char *key, const char *value)
{
    json_object_set_new(w->metadata, key, json_string(value));
}

/* The order HF's writer uses: larger elements first, then by name, so every
 * tensor stays aligned to its element size. */
static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    size_t sx = dtypes[x->dtype].size, sy = dtypes[y->dtype].size;
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

int w2v_st_write(w2v_st_writer *w, const char *path, char *err, size_t errlen)
{
    if (w->n > 1) qsort(w->e, (size_t)w->n, sizeof *w->e, entry_cmp); /* w->e is NULL when empty */
    json_t *root = json_object();
    if (json_object_size(w->metadata)) json_object_set(root, "__metadata__", w->metadata);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        entry *e = &w->e[i];
        json_t *t = json_object(), *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        json_object_set_new(t, "dtype", json_string(dtypes[e->dtype].name));
        json_object_set_new(t, "shape", shape);
        json_object_set_new(t, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + e->nbytes)));
        json_object_set_new(root, e->name, t);
        off += e->nbytes;
    }
    char *header = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8, most = 0;
    w2v_atomic_file f;
    int ok = path && w2v_atomic_open(&f, path, err, errlen) == 0, opened = ok;
    uint64_t h64 = padded;
    ok = ok && fwrite(&h64, 8, 1, f.fp) == 1 && fwrite(header, 1, hlen, f.fp) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f.fp) != EOF;
    for (int i = 0; i < w->n; i++)
        if (w->e[i].fill && w->e[i].nbytes > most) most = w->e[i].nbytes;
    void *made = most && path ? xmalloc(most) : NULL;
    /* every fill runs, in file order, whether or not the file is written */
    int why = ok ? 0 : errno; /* what failed, before a fill changes errno */
    for (int i = 0; i < w->n; i++) {
        const entry *e = &w->e[i];
        if (e->fill) e->fill(e->ctx, made);
        const void *data = e->fill ? made : e->data;
        if (ok && e->nbytes && fwrite(data, 1, e->nbytes, f.fp) != e->nbytes) ok = 0, why = errno;
    }
    free(made);
    free(header);
    if (!path) return 0;
    errno = why;
    return opened ? w2v_atomic_commit(&f, ok, err, errlen) : -1;
}
