/* torch.save checkpoints: a zip archive (read with libarchive) of PREFIX/
 * data.pkl, a pickle of the state dict whose tensors name their storages by
 * persistent ids, and PREFIX/data/KEY, the raw little-endian storages.
 *
 * The pickle is interpreted by a small stack machine that knows only the
 * opcodes torch writes for a dict of tensors and calls nothing: the few
 * whitelisted globals are recognised by name and their effect (a new dict,
 * a tensor view of a storage) is built here. */
#include "w2v/torchfile.h"
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the pickle objects ---- */

typedef enum { K_NONE, K_BOOL, K_INT, K_FLOAT, K_STR, K_TUPLE, K_LIST, K_DICT, K_GLOBAL, K_STORAGE, K_TENSOR } kind;
static const char *const kind_names[] = {"None",   "a bool",   "an int",  "a float",   "a str",   "a tuple",
                                         "a list", "a dict",   "a global", "a storage", "a tensor"};

typedef struct obj obj;
struct obj {
    kind kind;
    int64_t i;    /* BOOL, INT; GLOBAL: which (see below); STORAGE, TENSOR: index */
    char *s;      /* STR */
    obj **items;  /* TUPLE, LIST: n items; DICT: n key-value pairs as 2n items */
    size_t n, cap;
    obj *next;    /* every object, for freeing */
};

/* The whitelist: callables, then the storage types (GLOBAL i >= G_STORAGE). */
enum { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_STORAGE };
static const struct { const char *module, *name; } callables[] = {
    [G_ORDERED_DICT] = {"collections", "OrderedDict"},
    [G_REBUILD_TENSOR] = {"torch._utils", "_rebuild_tensor_v2"},
    [G_REBUILD_PARAMETER] = {"torch._utils", "_rebuild_parameter"},
};
static const struct { const char *name; w2v_st_dtype dtype; } storage_types[] = {
    {"FloatStorage", W2V_ST_F32}, {"HalfStorage", W2V_ST_F16}, {"BFloat16Storage", W2V_ST_BF16},
    {"DoubleStorage", W2V_ST_F64}, {"LongStorage", W2V_ST_I64}, {"IntStorage", W2V_ST_I32},
    {"ShortStorage", W2V_ST_I16}, {"CharStorage", W2V_ST_I8}, {"ByteStorage", W2V_ST_U8},
    {"BoolStorage", W2V_ST_BOOL},
};
#define NSTORAGE_TYPES (int)(sizeof storage_types / sizeof *storage_types)

/* Names of every pickle opcode, for the message that refuses one. */
static const struct { unsigned char code; const char *name; } opcode_names[] = {
    {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"}, {'F', "FLOAT"},
    {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"}, {'M', "BININT2"}, {'N', "NONE"},
    {'P', "PERSID"}, {'Q', "BINPERSID"}, {'R', "REDUCE"}, {'S', "STRING"}, {'T', "BINSTRING"},
    {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"}, {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"},
    {'c', "GLOBAL"}, {'d', "DICT"}, {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"},
    {'i', "INST"}, {'j', "LONG_BINGET"}, {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"},
    {'q', "BINPUT"}, {'r', "LONG_BINPUT"}, {'s', "SETITEM"}, {'t', "TUPLE"}, {')', "EMPTY_TUPLE"},
    {'u', "SETITEMS"}, {'G', "BINFLOAT"}, {0x80, "PROTO"}, {0x81, "NEWOBJ"}, {0x82, "EXT1"},
    {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"}, {0x86, "TUPLE2"}, {0x87, "TUPLE3"},
    {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"}, {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'B', "BINBYTES"},
    {'C', "SHORT_BINBYTES"}, {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},
    {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"},
    {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
    {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
};

/* Limits beyond any real checkpoint, so that products and sums of checked
 * values cannot overflow 64 bits. */
#define MAX_ELEMENTS (1ull << 40)
/* torch.save stores its records uncompressed; a compressed archive may
 * unpack to a few times its size, and more is a zip bomb. */
#define MAX_EXPANSION 8
#define MAX_INDEX (1ll << 50)

typedef struct {
    char *key;
    w2v_st_dtype dtype;
    int64_t numel;
} storage;

typedef struct {
    int storage;
    int64_t offset;
    int ndim;
    int64_t shape[W2V_ST_MAX_DIMS], stride[W2V_ST_MAX_DIMS];
    size_t count;
} tensor_view;

typedef struct {
    const char *path;
    const unsigned char *start, *p, *end, *op; /* op: the opcode being run */
    obj **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    obj **memo;
    size_t memo_cap, memo_used;
    obj *objects;
    storage *storages;
    size_t nstorages, storages_cap;
    tensor_view *views;
    size_t nviews, views_cap;
    char *err;
    size_t errlen;
} unpickler;

static void grow(void *pp, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    *(void **)pp = xrealloc(*(void **)pp, c * size);
    memset((char *)*(void **)pp + *cap * size, 0, (c - *cap) * size);
    *cap = c;
}

static int fail(unpickler *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(unpickler *u, const char *fmt, ...)
{
    set_error(u->err, u->errlen, "%s: data.pkl, byte %td: ", u->path, u->op - u->start);
    size_t n = u->err ? strlen(u->err) : 0;
    if (n + 1 < u->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->err + n, u->errlen - n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static obj *new_obj(unpickler *u, kind k)
{
    obj *o = xcalloc(1, sizeof *o);
    o->kind = k;
    o->next = u->objects;
    u->objects = o;
    return o;
}

static void add_item(obj *o, obj *item)
{
    grow(&o->items, &o->cap, o->n + 1, sizeof *o->items);
    o->items[o->n++] = item;
}

static void push(unpickler *u, obj *o)
{
    grow(&u->stack, &u->stack_cap, u->sp + 1, sizeof *u->stack);
    u->stack[u->sp++] = o;
}

/* The stack above the last MARK (Python's "fence"). */
static size_t fence(const unpickler *u) { return u->nmarks ? u->marks[u->nmarks - 1] : 0; }

static obj *pop(unpickler *u)
{
    if (u->sp <= fence(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[--u->sp];
}

static obj *top(unpickler *u)
{
    if (u->sp <= fence(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[u->sp - 1];
}

/* The items pushed since the last MARK start at *k; the MARK is dropped. */
static int pop_mark(unpickler *u, size_t *k)
{
    if (!u->nmarks) return fail(u, "no MARK to pop");
    *k = u->marks[--u->nmarks];
    return 0;
}

static const unsigned char *take(unpickler *u, size_t n)
{
    if ((size_t)(u->end - u->p) < n) {
        fail(u, "truncated: the pickle ends inside an opcode");
        return NULL;
    }
    const unsigned char *q = u->p;
    u->p += n;
    return q;
}

static uint64_t le(const unsigned char *q, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | q[i];
    return v;
}

/* n bytes as a C string. */
static char *dup_bytes(const void *q, size_t n)
{
    char *s = xmalloc(n + 1);
    memcpy(s, q, n);
    s[n] = 0;
    return s;
}

static obj *new_int(unpickler *u, int64_t v)
{
    obj *o = new_obj(u, K_INT);
    o->i = v;
    return o;
}

static obj *new_str(unpickler *u, const unsigned char *q, size_t n)
{
    /* Names become C strings and JSON keys: no NUL, valid UTF-8 (checked by
     * jansson, which refuses anything else). */
    json_t *check = memchr(q, 0, n) ? NULL : json_stringn((const char *)q, n);
    if (!check) {
        fail(u, "a string that is not valid UTF-8 or holds a NUL byte");
        return NULL;
    }
    json_decref(check);
    obj *o = new_obj(u, K_STR);
    o->s = dup_bytes(q, n);
    return o;
}

static obj *new_tuple(unpickler *u, obj *const *items, size_t n)
{
    obj *o = new_obj(u, K_TUPLE);
    for (size_t i = 0; i < n; i++) add_item(o, items[i]);
    return o;
}

/* A whitelisted global, or an error that names the one refused. */
static obj *global(unpickler *u, const char *module, const char *name)
{
    for (const char *c = module; *c; c++)
        if (*c < 0x21 || *c > 0x7e) goto refuse;
    for (const char *c = name; *c; c++)
        if (*c < 0x21 || *c > 0x7e) goto refuse;
    for (int i = 0; i < G_STORAGE; i++)
        if (!strcmp(module, callables[i].module) && !strcmp(name, callables[i].name)) {
            obj *o = new_obj(u, K_GLOBAL);
            o->i = i;
            return o;
        }
    if (!strcmp(module, "torch"))
        for (int i = 0; i < NSTORAGE_TYPES; i++)
            if (!strcmp(name, storage_types[i].name)) {
                obj *o = new_obj(u, K_GLOBAL);
                o->i = G_STORAGE + i;
                return o;
            }
    fail(u, "refusing global %s.%s: only collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
            "torch._utils._rebuild_parameter and torch.*Storage are allowed in a state dict",
         module, name);
    return NULL;
refuse:
    fail(u, "refusing a global whose name is not printable");
    return NULL;
}

static int memo_put(unpickler *u, uint64_t idx)
{
    /* A real pickle has fewer memo entries than bytes. */
    if (idx >= (uint64_t)(u->end - u->start)) return fail(u, "memo index %llu is out of range", (unsigned long long)idx);
    obj *o = top(u);
    if (!o) return -1;
    grow(&u->memo, &u->memo_cap, idx + 1, sizeof *u->memo);
    if (!u->memo[idx]) u->memo_used++;
    u->memo[idx] = o;
    return 0;
}

static int memo_get(unpickler *u, uint64_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx]) return fail(u, "memo entry %llu is empty", (unsigned long long)idx);
    push(u, u->memo[idx]);
    return 0;
}

static int same_key(const obj *a, const obj *b)
{
    return a->kind == b->kind && (a->kind == K_STR ? !strcmp(a->s, b->s) : a->i == b->i);
}

static int dict_set(unpickler *u, obj *d, obj *k, obj *v)
{
    if (d->kind != K_DICT) return fail(u, "SETITEM on %s, not a dict", kind_names[d->kind]);
    if (k->kind != K_STR && k->kind != K_INT) return fail(u, "a dict key that is %s", kind_names[k->kind]);
    for (size_t i = 0; i < d->n; i++)
        if (same_key(d->items[2 * i], k)) {
            d->items[2 * i + 1] = v;
            return 0;
        }
    grow(&d->items, &d->cap, 2 * d->n + 2, sizeof *d->items);
    d->items[2 * d->n] = k;
    d->items[2 * d->n + 1] = v;
    d->n++;
    return 0;
}

/* BINPERSID: ('storage', torch.XStorage, key, location, numel). */
static obj *persistent_load(unpickler *u, const obj *pid)
{
    if (pid->kind != K_TUPLE || pid->n != 5 || pid->items[0]->kind != K_STR || strcmp(pid->items[0]->s, "storage") ||
        pid->items[1]->kind != K_GLOBAL || pid->items[1]->i < G_STORAGE || pid->items[2]->kind != K_STR ||
        pid->items[3]->kind != K_STR || pid->items[4]->kind != K_INT) {
        fail(u, "a persistent id that is not ('storage', torch.XStorage, key, location, numel)");
        return NULL;
    }
    w2v_st_dtype dtype = storage_types[pid->items[1]->i - G_STORAGE].dtype;
    const char *key = pid->items[2]->s;
    int64_t numel = pid->items[4]->i;
    if (numel < 0 || numel > MAX_INDEX) {
        fail(u, "storage '%s': %lld elements", key, (long long)numel);
        return NULL;
    }
    size_t s;
    for (s = 0; s < u->nstorages; s++)
        if (!strcmp(u->storages[s].key, key)) break;
    if (s < u->nstorages) {
        if (u->storages[s].dtype != dtype || u->storages[s].numel != numel) {
            fail(u, "storage '%s' is referenced as %s[%lld] and as %s[%lld]", key,
                 w2v_st_dtype_name(u->storages[s].dtype), (long long)u->storages[s].numel, w2v_st_dtype_name(dtype),
                 (long long)numel);
            return NULL;
        }
    } else {
        grow(&u->storages, &u->storages_cap, s + 1, sizeof *u->storages);
        u->storages[u->nstorages++] = (storage){xstrdup(key), dtype, numel};
    }
    obj *o = new_obj(u, K_STORAGE);
    o->i = (int64_t)s;
    return o;
}

static int int_tuple(const obj *o, int64_t *v)
{
    if (o->kind != K_TUPLE || o->n > W2V_ST_MAX_DIMS) return -1;
    for (size_t i = 0; i < o->n; i++) {
        if (o->items[i]->kind != K_INT || o->items[i]->i < 0 || o->items[i]->i > MAX_INDEX) return -1;
        v[i] = o->items[i]->i;
    }
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
 * backward_hooks[, metadata]): a view of the storage, which must hold every
 * element the view can reach. */
static obj *rebuild_tensor(unpickler *u, const obj *args)
{
    obj *const *a = args->items;
    tensor_view v = {0};
    if ((args->n != 6 && args->n != 7) || a[0]->kind != K_STORAGE || a[1]->kind != K_INT || a[4]->kind != K_BOOL ||
        a[5]->kind != K_DICT) {
        fail(u, "_rebuild_tensor_v2 called with arguments other than (storage, offset, size, stride, "
                "requires_grad, hooks)");
        return NULL;
    }
    if (args->n == 7 && !(a[6]->kind == K_NONE || (a[6]->kind == K_DICT && a[6]->n == 0))) {
        fail(u, "a tensor with metadata (a conjugate or negative view), which is not supported");
        return NULL;
    }
    const storage *s = &u->storages[a[0]->i];
    v.storage = (int)a[0]->i;
    v.offset = a[1]->i;
    if (int_tuple(a[2], v.shape) < 0 || int_tuple(a[3], v.stride) < 0 || a[2]->n != a[3]->n) {
        fail(u, "a tensor on storage '%s' whose size and stride are not tuples of the same length (up to %d) "
                "of ints in [0, 2^50]",
             s->key, W2V_ST_MAX_DIMS);
        return NULL;
    }
    v.ndim = (int)a[2]->n;
    uint64_t count = 1, last = (uint64_t)v.offset, step;
    for (int d = 0; d < v.ndim; d++)
        if (__builtin_mul_overflow(count, (uint64_t)v.shape[d], &count) || count > MAX_ELEMENTS) {
            fail(u, "a tensor on storage '%s' with more than 2^40 elements", s->key);
            return NULL;
        }
    if (v.offset < 0 || v.offset > s->numel) {
        fail(u, "a tensor on storage '%s' starts at element %lld, outside its %lld elements", s->key,
             (long long)v.offset, (long long)s->numel);
        return NULL;
    }
    if (count) {
        int overflow = 0;
        for (int d = 0; d < v.ndim; d++)
            overflow |= __builtin_mul_overflow((uint64_t)(v.shape[d] - 1), (uint64_t)v.stride[d], &step) ||
                        __builtin_add_overflow(last, step, &last);
        if (overflow || last >= (uint64_t)s->numel) {
            char at[32] = "2^64";
            if (!overflow) snprintf(at, sizeof at, "%llu", (unsigned long long)last);
            fail(u, "a tensor on storage '%s' reaches element %s, beyond its %lld elements", s->key, at,
                 (long long)s->numel);
            return NULL;
        }
    }
    v.count = (size_t)count;
    grow(&u->views, &u->views_cap, u->nviews + 1, sizeof *u->views);
    u->views[u->nviews] = v;
    obj *o = new_obj(u, K_TENSOR);
    o->i = (int64_t)u->nviews++;
    return o;
}

static obj *reduce(unpickler *u, const obj *f, const obj *args)
{
    if (f->kind != K_GLOBAL) {
        fail(u, "REDUCE calls %s", kind_names[f->kind]);
        return NULL;
    }
    if (args->kind != K_TUPLE) {
        fail(u, "REDUCE with %s for arguments", kind_names[args->kind]);
        return NULL;
    }
    switch (f->i) {
    case G_ORDERED_DICT:
        if (args->n) break;
        return new_obj(u, K_DICT);
    case G_REBUILD_TENSOR: return rebuild_tensor(u, args);
    case G_REBUILD_PARAMETER:
        if (args->n != 3 || args->items[0]->kind != K_TENSOR || args->items[1]->kind != K_BOOL ||
            args->items[2]->kind != K_DICT)
            break;
        return args->items[0];
    default:
        fail(u, "torch.%s called: a storage type belongs in a persistent id",
             storage_types[f->i - G_STORAGE].name);
        return NULL;
    }
    fail(u, "%s.%s called with arguments it does not take in a state dict", callables[f->i].module,
         callables[f->i].name);
    return NULL;
}

static const char *opcode_name(unsigned char c)
{
    for (size_t i = 0; i < sizeof opcode_names / sizeof *opcode_names; i++)
        if (opcode_names[i].code == c) return opcode_names[i].name;
    return NULL;
}

/* Runs the pickle; returns what STOP returns, or NULL with the error. */
static obj *run(unpickler *u)
{
    const unsigned char *q;
    obj *a, *b, *c;
    size_t k = 0;
    /* a stack from the start: TUPLE after an empty MARK takes stack + 0 */
    grow(&u->stack, &u->stack_cap, 1, sizeof *u->stack);
    while (u->p < u->end) {
        u->op = u->p;
        unsigned char code = *u->p++;
        switch (code) {
        case 0x80: /* PROTO */
            if (!(q = take(u, 1))) return NULL;
            if (*q > 5) return fail(u, "pickle protocol %d is not known", *q), NULL;
            break;
        case 0x95: /* FRAME: a length hint */
            if (!take(u, 8)) return NULL;
            break;
        case 'c': { /* GLOBAL module\nname\n */
            const unsigned char *nl1 = memchr(u->p, '\n', (size_t)(u->end - u->p));
            const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(u->end - nl1 - 1)) : NULL;
            if (!nl2) return fail(u, "truncated: the pickle ends inside an opcode"), NULL;
            char *module = dup_bytes(u->p, (size_t)(nl1 - u->p));
            char *name = dup_bytes(nl1 + 1, (size_t)(nl2 - nl1 - 1));
            u->p = nl2 + 1;
            a = global(u, module, name);
            free(module);
            free(name);
            if (!a) return NULL;
            push(u, a);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if (!(b = pop(u)) || !(a = pop(u))) return NULL;
            if (a->kind != K_STR || b->kind != K_STR) return fail(u, "STACK_GLOBAL of a non-string"), NULL;
            if (!(c = global(u, a->s, b->s))) return NULL;
            push(u, c);
            break;
        case 'Q': /* BINPERSID */
            if (!(a = pop(u)) || !(b = persistent_load(u, a))) return NULL;
            push(u, b);
            break;
        case '(': /* MARK */
            grow(&u->marks, &u->marks_cap, u->nmarks + 1, sizeof *u->marks);
            u->marks[u->nmarks++] = u->sp;
            break;
        case '}': push(u, new_obj(u, K_DICT)); break;
        case ']': push(u, new_obj(u, K_LIST)); break;
        case ')': push(u, new_obj(u, K_TUPLE)); break;
        case 'N': push(u, new_obj(u, K_NONE)); break;
        case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
            a = new_obj(u, K_BOOL);
            a->i = code == 0x88;
            push(u, a);
            break;
        case 't': /* TUPLE */
            if (pop_mark(u, &k) < 0) return NULL;
            a = new_tuple(u, u->stack + k, u->sp - k);
            u->sp = k;
            push(u, a);
            break;
        case 0x85: case 0x86: case 0x87: /* TUPLE1, TUPLE2, TUPLE3 */
            k = (size_t)(code - 0x84);
            if (u->sp < fence(u) + k) return fail(u, "stack underflow"), NULL;
            a = new_tuple(u, u->stack + u->sp - k, k);
            u->sp -= k;
            push(u, a);
            break;
        case 's': /* SETITEM */
            if (!(b = pop(u)) || !(a = pop(u)) || !(c = top(u)) || dict_set(u, c, a, b) < 0) return NULL;
            break;
        case 'u': /* SETITEMS */
            if (pop_mark(u, &k) < 0) return NULL;
            if (k <= fence(u) || (u->sp - k) % 2) return fail(u, "SETITEMS without a dict and key-value pairs"), NULL;
            for (size_t i = k; i < u->sp; i += 2)
                if (dict_set(u, u->stack[k - 1], u->stack[i], u->stack[i + 1]) < 0) return NULL;
            u->sp = k;
            break;
        case 'a': /* APPEND */
            if (!(b = pop(u)) || !(a = top(u))) return NULL;
            if (a->kind != K_LIST) return fail(u, "APPEND to %s, not a list", kind_names[a->kind]), NULL;
            add_item(a, b);
            break;
        case 'e': /* APPENDS */
            if (pop_mark(u, &k) < 0) return NULL;
            if (k <= fence(u) || u->stack[k - 1]->kind != K_LIST) return fail(u, "APPENDS without a list"), NULL;
            for (size_t i = k; i < u->sp; i++) add_item(u->stack[k - 1], u->stack[i]);
            u->sp = k;
            break;
        case 'X': /* BINUNICODE */
            if (!(q = take(u, 4))) return NULL;
            k = (size_t)le(q, 4);
            if (!(q = take(u, k)) || !(a = new_str(u, q, k))) return NULL;
            push(u, a);
            break;
        case 0x8c: /* SHORT_BINUNICODE */
            if (!(q = take(u, 1))) return NULL;
            k = *q;
            if (!(q = take(u, k)) || !(a = new_str(u, q, k))) return NULL;
            push(u, a);
            break;
        case 'J': /* BININT */
            if (!(q = take(u, 4))) return NULL;
            push(u, new_int(u, (int32_t)(uint32_t)le(q, 4)));
            break;
        case 'K': /* BININT1 */
            if (!(q = take(u, 1))) return NULL;
            push(u, new_int(u, *q));
            break;
        case 'M': /* BININT2 */
            if (!(q = take(u, 2))) return NULL;
            push(u, new_int(u, (int64_t)le(q, 2)));
            break;
        case 0x8a: /* LONG1: n bytes, little-endian two's complement */
            if (!(q = take(u, 1))) return NULL;
            k = *q;
            if (k > 8) return fail(u, "an integer of %zu bytes", k), NULL;
            if (!(q = take(u, k))) return NULL;
            {
                uint64_t v = le(q, (int)k);
                if (k && k < 8 && (q[k - 1] & 0x80)) v |= ~0ull << (8 * k); /* sign-extend */
                push(u, new_int(u, (int64_t)v));
            }
            break;
        case 'G': /* BINFLOAT: parsed for completeness of metadata, value unused */
            if (!take(u, 8)) return NULL;
            push(u, new_obj(u, K_FLOAT));
            break;
        case 'R': /* REDUCE */
            if (!(b = pop(u)) || !(a = pop(u)) || !(c = reduce(u, a, b))) return NULL;
            push(u, c);
            break;
        case 'b': /* BUILD: only OrderedDict's state (its _metadata), ignored */
            if (!(b = pop(u)) || !(a = top(u))) return NULL;
            if (a->kind != K_DICT) return fail(u, "BUILD on %s", kind_names[a->kind]), NULL;
            break;
        case 'q': case 'r': /* BINPUT, LONG_BINPUT: a 1- or 4-byte index */
            k = code == 'q' ? 1 : 4;
            if (!(q = take(u, k)) || memo_put(u, le(q, (int)k)) < 0) return NULL;
            break;
        case 0x94: /* MEMOIZE */
            if (memo_put(u, u->memo_used) < 0) return NULL;
            break;
        case 'h': case 'j': /* BINGET, LONG_BINGET */
            k = code == 'h' ? 1 : 4;
            if (!(q = take(u, k)) || memo_get(u, le(q, (int)k)) < 0) return NULL;
            break;
        case '.': /* STOP */
            return pop(u);
        default: {
            const char *name = opcode_name(code);
            if (name) fail(u, "pickle opcode %s (0x%02x) is not allowed in a state dict", name, code);
            else fail(u, "unknown pickle opcode 0x%02x", code);
            return NULL;
        }
        }
    }
    u->op = u->p;
    fail(u, "truncated: the pickle ends without STOP");
    return NULL;
}

/* ---- the archive ---- */

typedef struct {
    char *name; /* below the archive's folder: data.pkl, data/KEY, byteorder */
    unsigned char *data;
    size_t size;
} record;

struct w2v_torchfile {
    int count;
    w2v_st_tensor *tensors;
    void **copies; /* per tensor: the contiguous copy of a strided view, or NULL */
    record *records;
    int nrecords;
};

static const unsigned char legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                             0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

/* A zip archive, or an error that says what the file is instead. */
static int check_zip(const char *path, off_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    unsigned char m[sizeof legacy_magic];
    ssize_t n = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? read(fd, m, sizeof m) : -2;
    close(fd);
    if (n == -2) return set_error(err, errlen, "%s: not a regular file", path);
    *size = sb.st_size;
    if (n >= 4 && !memcmp(m, "PK\3\4", 4)) return 0;
    if (n == (ssize_t)sizeof m && !memcmp(m, legacy_magic, sizeof m))
        return set_error(err, errlen,
                         "%s: the legacy torch.save format (torch < 1.6), which is not supported: "
                         "re-save it with torch >= 1.6 (torch.save(torch.load(F), F))",
                         path);
    return set_error(err, errlen, "%s: not a PyTorch checkpoint (torch.save zip archive)", path);
}

/* The record named dir + name (dir "" or "data/"). */
static const record *find_record(const w2v_torchfile *tf, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    for (int i = 0; i < tf->nrecords; i++)
        if (!strncmp(tf->records[i].name, dir, n) && !strcmp(tf->records[i].name + n, name)) return &tf->records[i];
    return NULL;
}

/* Reads the records torch.load reads (PREFIX/data.pkl, PREFIX/data/KEY,
 * PREFIX/byteorder, PREFIX being the folder of the first entry). */
static int read_records(w2v_torchfile *tf, const char *path, off_t file_size, char *err, size_t errlen)
{
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    char *prefix = NULL;
    size_t cap = 0, unpacked = 0, limit = MAX_EXPANSION * (size_t)file_size + (1u << 20);
    int r, ret = 0;
    archive_read_support_format_zip_seekable(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        ret = set_error(err, errlen, "%s: %s", path, archive_error_string(a));
        goto done;
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        if (!name) continue;
        if (!prefix) {
            const char *slash = strchr(name, '/');
            if (!slash) {
                ret = set_error(err, errlen, "%s: entry '%s' is not inside a folder, as torch.save writes", path, name);
                goto done;
            }
            prefix = dup_bytes(name, (size_t)(slash - name + 1));
        }
        size_t plen = strlen(prefix);
        if (strncmp(name, prefix, plen)) continue;
        const char *rel = name + plen;
        if (strcmp(rel, "data.pkl") && strcmp(rel, "byteorder") && strncmp(rel, "data/", 5)) continue;
        if (find_record(tf, "", rel)) {
            ret = set_error(err, errlen, "%s: entry '%s' appears twice", path, name);
            goto done;
        }
        /* The declared size sizes the buffer at most to the file (stored
         * entries, as torch writes them, fit exactly), never beyond it. */
        la_int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
        size_t bufcap = (size_t)(declared > 0 && declared < file_size ? declared : 4096) + 1, len = 0;
        unsigned char *buf = xmalloc(bufcap);
        for (;;) {
            if (len == bufcap) buf = xrealloc(buf, bufcap *= 2);
            la_ssize_t got = archive_read_data(a, buf + len, bufcap - len);
            if (got < 0) {
                free(buf);
                ret = set_error(err, errlen, "%s: %s: %s", path, name, archive_error_string(a));
                goto done;
            }
            if (got == 0) break;
            len += (size_t)got;
            if ((unpacked += (size_t)got) > limit) {
                free(buf);
                ret = set_error(err, errlen, "%s: unpacks to more than %d times its size (%s): not a torch.save file",
                                path, MAX_EXPANSION, name);
                goto done;
            }
        }
        grow(&tf->records, &cap, (size_t)tf->nrecords + 1, sizeof *tf->records);
        tf->records[tf->nrecords++] = (record){xstrdup(rel), buf, len};
    }
    if (r != ARCHIVE_EOF) ret = set_error(err, errlen, "%s: %s", path, archive_error_string(a));
done:
    free(prefix);
    archive_read_free(a);
    return ret;
}

static int contiguous(const tensor_view *v)
{
    int64_t expect = 1;
    for (int d = v->ndim - 1; d >= 0; d--) {
        if (v->shape[d] != 1 && v->stride[d] != expect) return 0;
        expect *= v->shape[d];
    }
    return 1;
}

static void copy_strided(unsigned char *dst, const unsigned char *src, const tensor_view *v, size_t esize)
{
    int64_t idx[W2V_ST_MAX_DIMS] = {0}, off = 0;
    for (size_t i = 0; i < v->count; i++) {
        memcpy(dst + i * esize, src + (size_t)off * esize, esize);
        for (int d = v->ndim - 1; d >= 0; d--) {
            if (++idx[d] < v->shape[d]) {
                off += v->stride[d];
                break;
            }
            off -= v->stride[d] * (v->shape[d] - 1);
            idx[d] = 0;
        }
    }
}

/* The tensors of the state dict, each checked against its storage's record. */
static int make_tensors(w2v_torchfile *tf, const unpickler *u, const obj *sd, char *err, size_t errlen)
{
    const char *path = u->path;
    if (sd->kind != K_DICT) return set_error(err, errlen, "%s: holds %s, not a state dict", path, kind_names[sd->kind]);
    if (sd->n == 0) return set_error(err, errlen, "%s: holds an empty state dict: no tensors to convert", path);
    tf->tensors = xcalloc(sd->n + 1, sizeof *tf->tensors);
    tf->copies = xcalloc(sd->n + 1, sizeof *tf->copies);
    for (size_t i = 0; i < sd->n; i++) {
        const obj *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        if (k->kind != K_STR) return set_error(err, errlen, "%s: a state dict key is %s", path, kind_names[k->kind]);
        if (v->kind != K_TENSOR)
            return set_error(err, errlen, "%s: '%s' is %s, not a tensor", path, k->s, kind_names[v->kind]);
        if (!strcmp(k->s, "__metadata__"))
            return set_error(err, errlen, "%s: a tensor named __metadata__, which safetensors reserves", path);
        const tensor_view *tv = &u->views[v->i];
        const storage *s = &u->storages[tv->storage];
        size_t esize = w2v_st_dtype_size(s->dtype), nbytes = (size_t)s->numel * esize;
        const record *r = find_record(tf, "data/", s->key);
        if (!r)
            return set_error(err, errlen, "%s: '%s': storage '%s' is missing (no entry data/%s)", path, k->s, s->key,
                             s->key);
        if (r->size != nbytes)
            return set_error(err, errlen, "%s: '%s': storage '%s' holds %zu bytes, not %lld %s elements (%zu bytes)",
                             path, k->s, s->key, r->size, (long long)s->numel, w2v_st_dtype_name(s->dtype), nbytes);
        w2v_st_tensor *t = &tf->tensors[tf->count++];
        t->name = xstrdup(k->s);
        t->dtype = s->dtype;
        t->ndim = tv->ndim;
        memcpy(t->shape, tv->shape, sizeof t->shape);
        t->count = tv->count;
        const unsigned char *base = r->data + (size_t)tv->offset * esize;
        if (contiguous(tv)) t->data = base;
        else {
            tf->copies[i] = xmalloc(tv->count * esize);
            copy_strided(tf->copies[i], base, tv, esize);
            t->data = tf->copies[i];
        }
    }
    return 0;
}

w2v_torchfile *w2v_torch_open(const char *path, char *err, size_t errlen)
{
    off_t file_size = 0;
    if (check_zip(path, &file_size, err, errlen) < 0) return NULL;
    w2v_torchfile *tf = xcalloc(1, sizeof *tf);
    if (read_records(tf, path, file_size, err, errlen) < 0) goto fail;
    const record *bo = find_record(tf, "", "byteorder"), *pkl = find_record(tf, "", "data.pkl");
    if (bo && !(bo->size == 6 && !memcmp(bo->data, "little", 6))) {
        set_error(err, errlen, "%s: byteorder is not 'little': big-endian checkpoints are not supported", path);
        goto fail;
    }
    if (!pkl) {
        set_error(err, errlen, "%s: no data.pkl in the archive: not a torch.save file", path);
        goto fail;
    }
    unpickler u = {.path = path, .start = pkl->data, .p = pkl->data, .end = pkl->data + pkl->size, .err = err,
                   .errlen = errlen};
    u.op = u.p;
    obj *sd = run(&u);
    int ret = sd ? make_tensors(tf, &u, sd, err, errlen) : -1;
    for (obj *o = u.objects, *next; o; o = next) {
        next = o->next;
        free(o->s);
        free(o->items);
        free(o);
    }
    for (size_t i = 0; i < u.nstorages; i++) free(u.storages[i].key);
    free(u.storages);
    free(u.views);
    free(u.stack);
    free(u.marks);
    free(u.memo);
    if (ret == 0) return tf;
fail:
    w2v_torch_close(tf);
    return NULL;
}

void w2v_torch_close(w2v_torchfile *tf)
{
    if (!tf) return;
    for (int i = 0; i < tf->count; i++) {
        free((char *)tf->tensors[i].name);
        free(tf->copies[i]);
    }
    free(tf->tensors);
    free(tf->copies);
    for (int i = 0; i < tf->nrecords; i++) {
        free(tf->records[i].name);
        free(tf->records[i].data);
    }
    free(tf->records);
    free(tf);
}

int w2v_torch_count(const w2v_torchfile *tf) { return tf->count; }

const w2v_st_tensor *w2v_torch_tensor_at(const w2v_torchfile *tf, int i)
{
    return i >= 0 && i < tf->count ? &tf->tensors[i] : NULL;
}

int w2v_torch_save_safetensors(const w2v_torchfile *tf, const char *path, char *err, size_t errlen)
{
    w2v_st_writer *w = w2v_st_writer_new();
    w2v_st_add_metadata(w, "format", "pt");
    for (int i = 0; i < tf->count; i++) {
        const w2v_st_tensor *t = &tf->tensors[i];
        w2v_st_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    int ret = w2v_st_write(w, path, err, errlen);
    w2v_st_writer_free(w);
    return ret;
}
