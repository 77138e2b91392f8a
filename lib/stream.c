/* The w2v stream: reading and writing msgpack records (w2v-stream(5)). */
#include "internal.h"
#include "stream_msgpack.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* ---- dtypes and tensors ---- */

static const struct { const char *name; size_t size; } dtypes[] = {
    [W2V_F32] = {"f32", 4}, [W2V_F64] = {"f64", 8}, [W2V_I64] = {"i64", 8},
    [W2V_I32] = {"i32", 4}, [W2V_U8] = {"u8", 1},
};

size_t w2v_dtype_size(w2v_dtype t) { return dtypes[t].size; }
const char *w2v_dtype_name(w2v_dtype t) { return dtypes[t].name; }

static int str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && !memcmp(o->via.str.ptr, s, n);
}

const msgpack_object *w2v_map_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

/* Up to 16 bytes of a string from the input, for a message: bytes outside
 * printable ASCII as \xNN, so damaged input cannot garble the terminal. */
static const char *printable(const msgpack_object *o, char buf[static 68])
{
    char *q = buf;
    for (uint32_t i = 0; i < o->via.str.size && i < 16; i++) {
        unsigned char c = (unsigned char)o->via.str.ptr[i];
        q += c >= 0x20 && c < 0x7f && c != '\\' ? sprintf(q, "%c", c) : sprintf(q, "\\x%02x", c);
    }
    *q = 0;
    return buf;
}

int w2v_tensor_decode(const msgpack_object *o, w2v_tensor *t, char *err, size_t errlen)
{
    if (!o || o->type != MSGPACK_OBJECT_MAP) return set_error(err, errlen, "not a tensor map");
    const msgpack_object *dt = w2v_map_get(o, "dtype"), *sh = w2v_map_get(o, "shape"),
                         *da = w2v_map_get(o, "data");
    if (!dt || dt->type != MSGPACK_OBJECT_STR) return set_error(err, errlen, "tensor without a dtype string");
    if (!sh || sh->type != MSGPACK_OBJECT_ARRAY) return set_error(err, errlen, "tensor without a shape array");
    if (!da || da->type != MSGPACK_OBJECT_BIN) return set_error(err, errlen, "tensor without binary data");
    int found = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (str_eq(dt, dtypes[i].name)) { t->dtype = (w2v_dtype)i; found = 1; }
    char shown[68];
    if (!found) return set_error(err, errlen, "unknown dtype '%s'", printable(dt, shown));
    if (sh->via.array.size > W2V_MAX_DIMS) return set_error(err, errlen, "tensor has %u dimensions (at most %d)", sh->via.array.size, W2V_MAX_DIMS);
    t->ndim = (int)sh->via.array.size;
    uint64_t count = 1;
    for (int i = 0; i < t->ndim; i++) {
        const msgpack_object *d = &sh->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > (1ull << 40))
            return set_error(err, errlen, "shape[%d] is not a dimension", i);
        t->shape[i] = (int64_t)d->via.u64;
        /* checked before multiplying: two dimensions of 2^40 would wrap */
        if (d->via.u64 && count > (1ull << 40) / d->via.u64) return set_error(err, errlen, "tensor too large");
        count *= d->via.u64;
    }
    t->count = (size_t)count;
    if ((uint64_t)da->via.bin.size != count * dtypes[t->dtype].size)
        return set_error(err, errlen, "tensor data is %u bytes, but %s %s needs %" PRIu64, da->via.bin.size,
                         dtypes[t->dtype].name, t->ndim ? "of that shape" : "scalar", count * dtypes[t->dtype].size);
    t->data = da->via.bin.ptr;
    return 0;
}

void w2v_tensor_to_f32(const w2v_tensor *t, float *dst)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->count; i++) {
        switch (t->dtype) {
        case W2V_F32: { float v; memcpy(&v, p + 4 * i, 4); dst[i] = v; break; }
        case W2V_F64: { double v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; break; }
        case W2V_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; break; }
        case W2V_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = (float)v; break; }
        case W2V_U8: dst[i] = p[i]; break;
        }
    }
}

void w2v_tensor_to_i64(const w2v_tensor *t, int64_t *dst)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->count; i++) {
        switch (t->dtype) {
        case W2V_F32: { float v; memcpy(&v, p + 4 * i, 4); dst[i] = (int64_t)v; break; }
        case W2V_F64: { double v; memcpy(&v, p + 8 * i, 8); dst[i] = (int64_t)v; break; }
        case W2V_I64: memcpy(&dst[i], p + 8 * i, 8); break;
        case W2V_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = v; break; }
        case W2V_U8: dst[i] = p[i]; break;
        }
    }
}

/* ---- headers ---- */

void w2v_header_init(w2v_header *h, w2v_stream_type type, int nlabels, char *const *labels)
{
    memset(h, 0, sizeof *h);
    h->type = type;
    h->sample_rate = 16000;
    h->batches_per_epoch = h->epochs = h->batch_size = -1;
    h->do_normalize = -1;
    h->nlabels = nlabels;
    h->labels = xcalloc((size_t)nlabels + 1, sizeof *h->labels);
    for (int i = 0; i < nlabels; i++) h->labels[i] = xstrdup(labels[i]);
}

void w2v_header_free(w2v_header *h)
{
    if (!h->labels) return;
    for (int i = 0; i < h->nlabels; i++) free(h->labels[i]);
    free(h->labels);
    h->labels = NULL;
}

int w2v_header_label(const w2v_header *h, const char *name)
{
    for (int i = 0; i < h->nlabels; i++)
        if (!strcmp(h->labels[i], name)) return i;
    return -1;
}

static char *strndup_obj(const msgpack_object *o)
{
    char *s = xmalloc(o->via.str.size + 1);
    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = 0;
    return s;
}

static long opt_long(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = w2v_map_get(map, key);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 < (1ull << 62) ? (long)o->via.u64 : -1;
}

static int header_decode(const msgpack_object *o, w2v_header *h, char *err, size_t errlen)
{
    const msgpack_object *f = w2v_map_get(o, "format"), *v = w2v_map_get(o, "version"),
                         *t = w2v_map_get(o, "type"), *sr = w2v_map_get(o, "sample_rate"),
                         *lab = w2v_map_get(o, "labels");
    if (!f || !str_eq(f, "w2v-stream")) return set_error(err, errlen, "not a w2v stream header (no \"format\": \"w2v-stream\")");
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return set_error(err, errlen, "header without a version");
    if (v->via.u64 != W2V_STREAM_VERSION)
        return set_error(err, errlen, "stream version %" PRIu64 " is not supported (this reader knows version %d)", v->via.u64, W2V_STREAM_VERSION);
    memset(h, 0, sizeof *h);
    if (t && str_eq(t, "examples")) h->type = W2V_EXAMPLES;
    else if (t && str_eq(t, "batches")) h->type = W2V_BATCHES;
    else return set_error(err, errlen, "header type must be \"examples\" or \"batches\"");
    if (!sr || sr->type != MSGPACK_OBJECT_POSITIVE_INTEGER || sr->via.u64 == 0 || sr->via.u64 > 10000000)
        return set_error(err, errlen, "header without a valid sample_rate");
    h->sample_rate = (int)sr->via.u64;
    if (!lab || lab->type != MSGPACK_OBJECT_ARRAY) return set_error(err, errlen, "header without a labels array");
    for (uint32_t i = 0; i < lab->via.array.size; i++)
        if (lab->via.array.ptr[i].type != MSGPACK_OBJECT_STR) return set_error(err, errlen, "label %u is not a string", i);
    h->nlabels = (int)lab->via.array.size;
    h->labels = xcalloc((size_t)h->nlabels + 1, sizeof *h->labels);
    for (int i = 0; i < h->nlabels; i++) h->labels[i] = strndup_obj(&lab->via.array.ptr[i]);
    h->batches_per_epoch = opt_long(o, "batches_per_epoch");
    h->epochs = opt_long(o, "epochs");
    h->batch_size = opt_long(o, "batch_size");
    const msgpack_object *dn = w2v_map_get(o, "do_normalize");
    h->do_normalize = dn && dn->type == MSGPACK_OBJECT_BOOLEAN ? dn->via.boolean : -1;
    return 0;
}

/* ---- reading ---- */

struct w2v_reader {
    FILE *fp;
    int own_fp, seekable, eof;
    char *name;
    unsigned char *buf;  /* bytes from buf_pos .. buf_len are unread */
    size_t buf_cap, buf_pos, buf_len;
    int64_t buf_offset;  /* file offset of buf[0] */
    msgpack_zone zone;
    msgpack_object obj;
    long index;
    int64_t rec_offset;
    size_t rec_size;
    w2v_header header;
    char error[512];
    /* decoded record storage, reused */
    float *floats;
    int64_t *ints;
    uint8_t *bytes;
    char **strs, *strbuf;
    size_t floats_cap, ints_cap, bytes_cap, strs_cap, strbuf_cap;
};

/* Length of the msgpack object that starts at p, if it lies whole within
 * n bytes: 0 when more bytes are needed, -1 when malformed.  msgpack-c
 * allocates a container's declared size before reading its elements, so a
 * corrupt count could ask for gigabytes; this walk first checks that every
 * count fits in the bytes actually there (each element takes at least one)
 * and finds where the record ends without decoding it. */
static long skim(const unsigned char *p, size_t n)
{
    uint64_t todo[33];
    int depth = 0;
    size_t i = 0;
    todo[0] = 1;
    for (;;) {
        while (depth >= 0 && todo[depth] == 0) depth--;
        if (depth < 0) return (long)i;
        todo[depth]--;
        if (i >= n) return 0;
        unsigned c = p[i++];
        uint64_t len = 0, items = 0;
        int lenbytes = 0, mul = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) continue;
        if ((c & 0xe0) == 0xa0) { len = c & 0x1f; }
        else if ((c & 0xf0) == 0x90) { items = c & 0x0f; mul = 1; }
        else if ((c & 0xf0) == 0x80) { items = c & 0x0f; mul = 2; }
        else switch (c) {
            case 0xcc: case 0xd0: len = 1; break;
            case 0xcd: case 0xd1: len = 2; break;
            case 0xce: case 0xd2: case 0xca: len = 4; break;
            case 0xcf: case 0xd3: case 0xcb: len = 8; break;
            case 0xd4: len = 2; break;
            case 0xd5: len = 3; break;
            case 0xd6: len = 5; break;
            case 0xd7: len = 9; break;
            case 0xd8: len = 17; break;
            case 0xc4: case 0xd9: lenbytes = 1; break;
            case 0xc5: case 0xda: lenbytes = 2; break;
            case 0xc6: case 0xdb: lenbytes = 4; break;
            case 0xc7: lenbytes = 1; len = 1; break; /* ext: + type byte */
            case 0xc8: lenbytes = 2; len = 1; break;
            case 0xc9: lenbytes = 4; len = 1; break;
            case 0xdc: lenbytes = 2; mul = 1; break;
            case 0xdd: lenbytes = 4; mul = 1; break;
            case 0xde: lenbytes = 2; mul = 2; break;
            case 0xdf: lenbytes = 4; mul = 2; break;
            default: return -1; /* 0xc1: never used */
            }
        if (lenbytes) {
            if (n - i < (size_t)lenbytes) return 0;
            uint64_t v = 0;
            for (int k = 0; k < lenbytes; k++) v = v << 8 | p[i + k];
            i += lenbytes;
            if (mul) items = v; else len += v;
        }
        if (mul) {
            if (items == 0) continue;
            if (depth == 32) return -1;
            todo[++depth] = items * mul;
            /* Needs at least one byte per element: wait for them, so the
             * decoder never allocates for elements that are not there. */
            if (items * mul > n - i) return 0;
        } else {
            if (len > n - i) return 0;
            i += len;
        }
    }
}

static int reader_error(w2v_reader *r, const char *fmt, ...)
{
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(r->error, sizeof r->error, "%s: record %ld at byte %" PRId64 ": %s", r->name, r->index,
             r->rec_offset, what);
    return -1;
}

/* Reads the next map into r->obj: 1, 0 at a clean end, -1 on error. */
static int read_map(w2v_reader *r)
{
    r->index++;
    r->rec_offset = r->buf_offset + (int64_t)r->buf_pos;
    for (;;) {
        size_t avail = r->buf_len - r->buf_pos;
        long len = avail ? skim(r->buf + r->buf_pos, avail) : 0;
        if (len < 0) return reader_error(r, "malformed msgpack");
        if (len > 0) {
            size_t off = 0;
            msgpack_zone_clear(&r->zone);
            msgpack_unpack_return ret = msgpack_unpack((const char *)r->buf + r->buf_pos, (size_t)len, &off, &r->zone, &r->obj);
            if (ret != MSGPACK_UNPACK_SUCCESS || off != (size_t)len)
                return reader_error(r, "malformed msgpack");
            r->buf_pos += (size_t)len;
            r->rec_size = (size_t)len;
            if (r->obj.type != MSGPACK_OBJECT_MAP) return reader_error(r, "not a map");
            return 1;
        }
        if (r->eof) {
            if (avail == 0) return 0;
            return reader_error(r, "truncated: the stream ends inside the record (%zu bytes of it present)", avail);
        }
        /* Need more bytes: compact, grow, read. */
        if (r->buf_pos > 0) {
            memmove(r->buf, r->buf + r->buf_pos, avail);
            r->buf_offset += (int64_t)r->buf_pos;
            r->buf_pos = 0;
            r->buf_len = avail;
        }
        if (r->buf_cap - r->buf_len < 65536) {
            r->buf_cap = r->buf_cap * 2 > r->buf_len + 65536 ? r->buf_cap * 2 : r->buf_len + 65536;
            r->buf = xrealloc(r->buf, r->buf_cap);
        }
        /* what is there, not a full buffer: a record from a slow producer
         * is taken as it arrives (fread would wait for 64 KiB more), and a
         * signal that interrupts the wait ends it (EINTR) */
        int fd = fileno(r->fp);
        ssize_t got = fd >= 0 ? read(fd, r->buf + r->buf_len, r->buf_cap - r->buf_len)
                              : (ssize_t)fread(r->buf + r->buf_len, 1, r->buf_cap - r->buf_len, r->fp);
        if (got < 0 || (fd < 0 && got == 0 && ferror(r->fp))) return reader_error(r, "read failed: %s", strerror(errno));
        r->buf_len += (size_t)got;
        if (got == 0) r->eof = 1;
    }
}

int w2v_header_compatible(const w2v_header *a, const w2v_header *b)
{
    if (a->type != b->type || a->sample_rate != b->sample_rate || a->nlabels != b->nlabels) return 0;
    for (int i = 0; i < a->nlabels; i++)
        if (strcmp(a->labels[i], b->labels[i])) return 0;
    return 1;
}

w2v_reader *w2v_reader_from_file(FILE *fp, const char *name, char *err, size_t errlen)
{
    w2v_reader *r = xcalloc(1, sizeof *r);
    r->fp = fp;
    r->name = xstrdup(name);
    msgpack_zone_init(&r->zone, 4096);
    struct stat st;
    r->seekable = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode);
    r->index = -1;
    int ret = read_map(r);
    if (ret == 0) reader_error(r, "empty stream: no header");
    else if (ret > 0) {
        char why[256];
        if (header_decode(&r->obj, &r->header, why, sizeof why) < 0) {
            reader_error(r, "%s", why);
            ret = -1;
        }
    }
    if (ret <= 0) {
        set_error(err, errlen, "%s", r->error);
        w2v_reader_close(r);
        return NULL;
    }
    return r;
}

w2v_reader *w2v_reader_open(const char *path, char *err, size_t errlen)
{
    if (!path || !strcmp(path, "-")) return w2v_reader_from_file(stdin, "stdin", err, errlen);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    w2v_reader *r = w2v_reader_from_file(fp, path, err, errlen);
    if (!r) fclose(fp);
    else r->own_fp = 1;
    return r;
}

void w2v_reader_close(w2v_reader *r)
{
    if (!r) return;
    if (r->own_fp) fclose(r->fp);
    msgpack_zone_destroy(&r->zone);
    w2v_header_free(&r->header);
    free(r->name);
    free(r->buf);
    free(r->floats);
    free(r->ints);
    free(r->bytes);
    free(r->strs);
    free(r->strbuf);
    free(r);
}

const w2v_header *w2v_reader_header(const w2v_reader *r) { return &r->header; }
const msgpack_object *w2v_reader_object(const w2v_reader *r) { return &r->obj; }
long w2v_reader_index(const w2v_reader *r) { return r->index; }
int64_t w2v_reader_offset(const w2v_reader *r) { return r->rec_offset; }
size_t w2v_reader_size(const w2v_reader *r) { return r->rec_size; }
int w2v_reader_seekable(const w2v_reader *r) { return r->seekable; }

static int next_record(w2v_reader *r)
{
    for (;;) {
        int ret = read_map(r);
        if (ret <= 0) return ret;
        if (!w2v_map_get(&r->obj, "format")) return 1;
        /* A header from concatenation: it must agree with the first. */
        w2v_header h;
        char why[256];
        if (header_decode(&r->obj, &h, why, sizeof why) < 0) return reader_error(r, "%s", why);
        int same = w2v_header_compatible(&h, &r->header);
        w2v_header_free(&h);
        if (!same) return reader_error(r, "header conflicts with the first header (type, sample_rate or labels differ)");
    }
}

static int seek_record(w2v_reader *r, int64_t offset, long index)
{
    if (!r->seekable) return reader_error(r, "cannot seek: not a regular file");
    /* the descriptor's offset: the reader reads the descriptor, past stdio */
    if (lseek(fileno(r->fp), (off_t)offset, SEEK_SET) < 0) return reader_error(r, "seek failed: %s", strerror(errno));
    r->buf_pos = r->buf_len = 0;
    r->buf_offset = offset;
    r->eof = 0;
    r->index = index - 1;
    return 0;
}

/* ---- decoding records ---- */

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    free(p);
    *cap = need;
    /* 64-byte alignment for the float arrays handed to the model */
    return xaligned(need * elem);
}

/* Copies n msgpack strings into the reader's string storage (NUL-terminated),
 * filling r->strs[0..n-1]. */
static void copy_strs(w2v_reader *r, const msgpack_object *const *o, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += o[i] ? o[i]->via.str.size + 1 : 0;
    r->strbuf = grow(r->strbuf, &r->strbuf_cap, total + 1, 1);
    r->strs = grow(r->strs, &r->strs_cap, n + 1, sizeof(char *));
    char *q = r->strbuf;
    for (size_t i = 0; i < n; i++) {
        if (!o[i]) { r->strs[i] = NULL; continue; }
        r->strs[i] = q;
        memcpy(q, o[i]->via.str.ptr, o[i]->via.str.size);
        q += o[i]->via.str.size;
        *q++ = 0;
    }
}

static int get_label(w2v_reader *r, const msgpack_object *lab, int64_t *out)
{
    if (!lab || (lab->type != MSGPACK_OBJECT_POSITIVE_INTEGER && lab->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
        return reader_error(r, "example without an integer label");
    int64_t v = lab->type == MSGPACK_OBJECT_POSITIVE_INTEGER && lab->via.u64 > INT32_MAX ? INT32_MAX : lab->via.i64;
    return *out = v, 0;
}

static int check_label(w2v_reader *r, int64_t label)
{
    if (label < -1 || label >= r->header.nlabels)
        return reader_error(r, "label %" PRId64 " is out of range (%d labels)", label, r->header.nlabels);
    return 0;
}

static int decode_example(w2v_reader *r, w2v_example *ex)
{
    const msgpack_object *m = &r->obj, *key = w2v_map_get(m, "key"), *path = w2v_map_get(m, "path");
    char why[256];
    w2v_tensor t;
    if (r->header.type != W2V_EXAMPLES) return reader_error(r, "not an examples stream");
    if (!key || key->type != MSGPACK_OBJECT_STR) return reader_error(r, "example without a key string");
    if (path && path->type != MSGPACK_OBJECT_STR) return reader_error(r, "path is not a string");
    if (get_label(r, w2v_map_get(m, "label"), &ex->label) < 0 || check_label(r, ex->label) < 0) return -1;
    if (w2v_tensor_decode(w2v_map_get(m, "input_values"), &t, why, sizeof why) < 0)
        return reader_error(r, "input_values: %s", why);
    if (t.dtype != W2V_F32 || t.ndim != 1) return reader_error(r, "input_values must be f32 [T]");
    r->floats = grow(r->floats, &r->floats_cap, t.count + 1, sizeof(float));
    w2v_tensor_to_f32(&t, r->floats);
    const msgpack_object *strs[2] = {key, path};
    copy_strs(r, strs, 2);
    ex->key = r->strs[0];
    ex->path = r->strs[1];
    ex->length = (int64_t)t.count;
    ex->input_values = r->floats;
    return 0;
}

static int decode_batch(w2v_reader *r, w2v_batch *b)
{
    const msgpack_object *m = &r->obj, *keys = w2v_map_get(m, "keys");
    char why[256];
    w2v_tensor lab, iv, am, len;
    if (r->header.type != W2V_BATCHES) return reader_error(r, "not a batches stream");
    if (w2v_tensor_decode(w2v_map_get(m, "input_values"), &iv, why, sizeof why) < 0)
        return reader_error(r, "input_values: %s", why);
    if (iv.dtype != W2V_F32 || iv.ndim != 2) return reader_error(r, "input_values must be f32 [B, T]");
    int64_t B = iv.shape[0], T = iv.shape[1];
    if (B < 1 || B > 1000000 || T > INT32_MAX) return reader_error(r, "input_values has an unusable shape");
    if (w2v_tensor_decode(w2v_map_get(m, "labels"), &lab, why, sizeof why) < 0) return reader_error(r, "labels: %s", why);
    if (w2v_tensor_decode(w2v_map_get(m, "attention_mask"), &am, why, sizeof why) < 0)
        return reader_error(r, "attention_mask: %s", why);
    if (w2v_tensor_decode(w2v_map_get(m, "lengths"), &len, why, sizeof why) < 0) return reader_error(r, "lengths: %s", why);
    if (lab.ndim != 1 || lab.shape[0] != B || (lab.dtype != W2V_I64 && lab.dtype != W2V_I32))
        return reader_error(r, "labels must be an integer tensor [%" PRId64 "]", B);
    if (len.ndim != 1 || len.shape[0] != B || (len.dtype != W2V_I64 && len.dtype != W2V_I32))
        return reader_error(r, "lengths must be an integer tensor [%" PRId64 "]", B);
    if (am.ndim != 2 || am.shape[0] != B || am.shape[1] != T || am.dtype != W2V_U8)
        return reader_error(r, "attention_mask must be u8 [%" PRId64 ", %" PRId64 "]", B, T);
    if (!keys || keys->type != MSGPACK_OBJECT_ARRAY || keys->via.array.size != B)
        return reader_error(r, "keys must be an array of %" PRId64 " strings", B);
    for (int64_t i = 0; i < B; i++)
        if (keys->via.array.ptr[i].type != MSGPACK_OBJECT_STR) return reader_error(r, "keys[%" PRId64 "] is not a string", i);
    size_t n = (size_t)(B * T);
    r->floats = grow(r->floats, &r->floats_cap, n + 1, sizeof(float));
    r->bytes = grow(r->bytes, &r->bytes_cap, n + 1, 1);
    r->ints = grow(r->ints, &r->ints_cap, (size_t)(2 * B), sizeof(int64_t));
    w2v_tensor_to_f32(&iv, r->floats);
    memcpy(r->bytes, am.data, n);
    w2v_tensor_to_i64(&lab, r->ints);
    w2v_tensor_to_i64(&len, r->ints + B);
    for (int64_t i = 0; i < B; i++) {
        if (check_label(r, r->ints[i]) < 0) return -1;
        if (r->ints[B + i] < 0 || r->ints[B + i] > T)
            return reader_error(r, "lengths[%" PRId64 "] = %" PRId64 " is outside [0, %" PRId64 "]", i, r->ints[B + i], T);
        /* the mask is the lengths spelt out: 1s, then 0s for the padding */
        const uint8_t *row = r->bytes + i * T;
        for (int64_t t = 0; t < T; t++)
            if (row[t] != (t < r->ints[B + i]))
                return reader_error(r, "attention_mask[%" PRId64 "][%" PRId64 "] = %u disagrees with lengths[%" PRId64 "] = %" PRId64,
                                    i, t, row[t], i, r->ints[B + i]);
    }
    const msgpack_object **ko = xmalloc((size_t)B * sizeof *ko);
    for (int64_t i = 0; i < B; i++) ko[i] = &keys->via.array.ptr[i];
    copy_strs(r, ko, (size_t)B);
    free(ko);
    b->batch = (int)B;
    b->time = (int)T;
    b->keys = r->strs;
    b->labels = r->ints;
    b->lengths = r->ints + B;
    b->input_values = r->floats;
    b->attention_mask = r->bytes;
    return 0;
}

/* The public calls: the reader composes its error (file, record, byte),
 * the caller's buffer receives it. */
static int reported(const w2v_reader *r, int ret, char *err, size_t errlen)
{
    if (ret < 0) set_error(err, errlen, "%s", r->error);
    return ret;
}
int w2v_reader_next(w2v_reader *r, char *err, size_t errlen) { return reported(r, next_record(r), err, errlen); }
int w2v_reader_seek(w2v_reader *r, int64_t offset, long index, char *err, size_t errlen)
{
    return reported(r, seek_record(r, offset, index), err, errlen);
}
int w2v_reader_example(w2v_reader *r, w2v_example *ex, char *err, size_t errlen)
{
    return reported(r, decode_example(r, ex), err, errlen);
}
int w2v_reader_batch(w2v_reader *r, w2v_batch *b, char *err, size_t errlen)
{
    return reported(r, decode_batch(r, b), err, errlen);
}

/* ---- writing ---- */

struct w2v_writer {
    FILE *fp;
    msgpack_packer pk;
    int failed, err;
};

static int write_cb(void *data, const char *buf, size_t len)
{
    w2v_writer *w = data;
    if (w->failed) return -1;
    if (len && fwrite(buf, 1, len, w->fp) != len) {
        w->failed = 1;
        w->err = errno;
        return -1;
    }
    return 0;
}

w2v_writer *w2v_writer_new(FILE *fp)
{
    w2v_writer *w = xcalloc(1, sizeof *w);
    w->fp = fp;
    msgpack_packer_init(&w->pk, w, write_cb);
    return w;
}

void w2v_writer_free(w2v_writer *w) { free(w); }
msgpack_packer *w2v_writer_packer(w2v_writer *w) { return &w->pk; }

int w2v_writer_status(w2v_writer *w)
{
    if (!w->failed && ferror(w->fp)) {
        w->failed = 1;
        w->err = EIO;
    }
    if (w->failed) {
        errno = w->err;
        return -1;
    }
    return 0;
}

void w2v_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void w2v_pack_tensor(msgpack_packer *pk, w2v_dtype t, int ndim, const int64_t *shape, const void *data)
{
    size_t count = 1;
    msgpack_pack_map(pk, 3);
    w2v_pack_str(pk, "dtype");
    w2v_pack_str(pk, dtypes[t].name);
    w2v_pack_str(pk, "shape");
    msgpack_pack_array(pk, (size_t)ndim);
    for (int i = 0; i < ndim; i++) {
        msgpack_pack_uint64(pk, (uint64_t)shape[i]);
        count *= (size_t)shape[i];
    }
    w2v_pack_str(pk, "data");
    msgpack_pack_bin(pk, count * dtypes[t].size);
    msgpack_pack_bin_body(pk, data, count * dtypes[t].size);
}

int w2v_write_header(w2v_writer *w, const w2v_header *h)
{
    msgpack_packer *pk = &w->pk;
    int extra = (h->batches_per_epoch >= 0) + (h->epochs >= 0) + (h->batch_size >= 0) + (h->do_normalize >= 0);
    msgpack_pack_map(pk, 5 + (size_t)extra);
    w2v_pack_str(pk, "format");
    w2v_pack_str(pk, "w2v-stream");
    w2v_pack_str(pk, "version");
    msgpack_pack_int(pk, W2V_STREAM_VERSION);
    w2v_pack_str(pk, "type");
    w2v_pack_str(pk, h->type == W2V_EXAMPLES ? "examples" : "batches");
    w2v_pack_str(pk, "sample_rate");
    msgpack_pack_int(pk, h->sample_rate);
    w2v_pack_str(pk, "labels");
    msgpack_pack_array(pk, (size_t)h->nlabels);
    for (int i = 0; i < h->nlabels; i++) w2v_pack_str(pk, h->labels[i]);
    if (h->batches_per_epoch >= 0) {
        w2v_pack_str(pk, "batches_per_epoch");
        msgpack_pack_long(pk, h->batches_per_epoch);
    }
    if (h->epochs >= 0) {
        w2v_pack_str(pk, "epochs");
        msgpack_pack_long(pk, h->epochs);
    }
    if (h->batch_size >= 0) {
        w2v_pack_str(pk, "batch_size");
        msgpack_pack_long(pk, h->batch_size);
    }
    if (h->do_normalize >= 0) {
        w2v_pack_str(pk, "do_normalize");
        if (h->do_normalize) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
    }
    return w2v_writer_status(w);
}

int w2v_write_example(w2v_writer *w, const w2v_example *ex)
{
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, ex->path ? 4 : 3);
    w2v_pack_str(pk, "key");
    w2v_pack_str(pk, ex->key);
    w2v_pack_str(pk, "label");
    msgpack_pack_int64(pk, ex->label);
    if (ex->path) {
        w2v_pack_str(pk, "path");
        w2v_pack_str(pk, ex->path);
    }
    w2v_pack_str(pk, "input_values");
    w2v_pack_tensor(pk, W2V_F32, 1, &ex->length, ex->input_values);
    return w2v_writer_status(w);
}

int w2v_write_batch(w2v_writer *w, const w2v_batch *b)
{
    msgpack_packer *pk = &w->pk;
    int64_t B = b->batch, shape[2] = {b->batch, b->time};
    msgpack_pack_map(pk, 5);
    w2v_pack_str(pk, "keys");
    msgpack_pack_array(pk, (size_t)B);
    for (int i = 0; i < b->batch; i++) w2v_pack_str(pk, b->keys[i]);
    w2v_pack_str(pk, "labels");
    w2v_pack_tensor(pk, W2V_I64, 1, &B, b->labels);
    w2v_pack_str(pk, "input_values");
    w2v_pack_tensor(pk, W2V_F32, 2, shape, b->input_values);
    w2v_pack_str(pk, "attention_mask");
    w2v_pack_tensor(pk, W2V_U8, 2, shape, b->attention_mask);
    w2v_pack_str(pk, "lengths");
    w2v_pack_tensor(pk, W2V_I64, 1, &B, b->lengths);
    return w2v_writer_status(w);
}

int w2v_write_object(w2v_writer *w, const msgpack_object *o)
{
    msgpack_pack_object(&w->pk, *o);
    return w2v_writer_status(w);
}

int w2v_write_record(w2v_writer *w, const w2v_reader *r) { return w2v_write_object(w, w2v_reader_object(r)); }
