/* The w2v stream reader (w2v_reader_from_file over the input, as a
 * non-seekable FILE from fmemopen): the header, every record, and the
 * example or batch decoder for each, with the tensors of any map in a
 * record decoded and converted as a program would.  When records were
 * read, the input is also written to a scratch file and opened by path
 * (seekable, as ks-batch reads a file in place): seeking back to each
 * record's offset must give the same record again. */
#include "fuzz.h"
#include "stream_msgpack.h"

#define MAX_RECORDS 4096

static volatile float sink; /* reads of decoded data that the compiler keeps */
#define MAX_CONVERT (1u << 22) /* elements converted per tensor */

static float fbuf[MAX_CONVERT];
static int64_t ibuf[MAX_CONVERT];

static void tensors_of(const msgpack_object *m)
{
    if (m->type != MSGPACK_OBJECT_MAP) return;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *v = &m->via.map.ptr[i].val;
        w2v_tensor t;
        char why[256];
        if (w2v_tensor_decode(v, &t, why, sizeof why) < 0) {
            FUZZ_CHECK_ERR(why);
            continue;
        }
        FUZZ_ASSERT(t.ndim >= 0 && t.ndim <= W2V_MAX_DIMS, "ndim %d", t.ndim);
        size_t count = 1;
        for (int d = 0; d < t.ndim; d++) count *= (size_t)t.shape[d];
        FUZZ_ASSERT(count == t.count, "count %zu, shape product %zu", t.count, count);
        if (t.count > MAX_CONVERT) continue;
        w2v_tensor_to_f32(&t, fbuf);
        if (t.dtype == W2V_I64 || t.dtype == W2V_I32 || t.dtype == W2V_U8) w2v_tensor_to_i64(&t, ibuf);
        (void)w2v_dtype_name(t.dtype);
    }
}

#define MAX_SEEKS 64
static int64_t offsets[MAX_SEEKS];
static size_t sizes[MAX_SEEKS];
static long indices[MAX_SEEKS];

static void seek_pass(const uint8_t *data, size_t size, int nrec)
{
    const char *path = fuzz_write("stream", data, size);
    char err[512];
    w2v_reader *r = w2v_reader_open(path, err, sizeof err);
    FUZZ_ASSERT(r, "opens from memory but not from a file: %s", err);
    FUZZ_ASSERT(w2v_reader_seekable(r), "a regular file is not seekable");
    for (int i = nrec - 1; i >= 0; i--) {
        FUZZ_ASSERT(w2v_reader_seek(r, offsets[i], indices[i], err, sizeof err) == 0, "seek: %s", err);
        FUZZ_ASSERT(w2v_reader_next(r, err, sizeof err) == 1, "record %ld at %lld not read again: %s", indices[i],
                    (long long)offsets[i], err);
        FUZZ_ASSERT(w2v_reader_offset(r) == offsets[i] && w2v_reader_size(r) == sizes[i] &&
                        w2v_reader_index(r) == indices[i],
                    "record %ld read again differs", indices[i]);
        FUZZ_ASSERT(offsets[i] >= 0 && (size_t)offsets[i] + sizes[i] <= size, "record beyond the input");
    }
    w2v_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int nrec = 0;
    /* fmemopen refuses a zero size buffer */
    static const uint8_t nothing[1];
    FILE *fp = size ? fmemopen((void *)data, size, "rb") : fmemopen((void *)nothing, 1, "r");
    if (!fp) abort();
    if (!size) fgetc(fp);
    char err[512];
    w2v_reader *r = w2v_reader_from_file(fp, "fuzz", err, sizeof err);
    if (!r) {
        FUZZ_CHECK_ERR(err);
        fclose(fp);
        return 0;
    }
    const w2v_header *h = w2v_reader_header(r);
    FUZZ_ASSERT(h->nlabels >= 0 && h->sample_rate > 0, "header %d labels, rate %d", h->nlabels, h->sample_rate);
    for (int i = 0; i < h->nlabels; i++) FUZZ_ASSERT(w2v_header_label(h, h->labels[i]) <= i, "label lookup");
    (void)w2v_header_compatible(h, h);
    for (int n = 0; n < MAX_RECORDS; n++) {
        int ret = w2v_reader_next(r, err, sizeof err);
        if (ret < 0) FUZZ_ASSERT(err[0], "error without a message");
        if (ret <= 0) break;
        const msgpack_object *o = w2v_reader_object(r);
        if (nrec < MAX_SEEKS) {
            offsets[nrec] = w2v_reader_offset(r);
            sizes[nrec] = w2v_reader_size(r);
            indices[nrec++] = w2v_reader_index(r);
        }
        FUZZ_ASSERT(w2v_reader_size(r) <= size, "record of %zu bytes in %zu", w2v_reader_size(r), size);
        tensors_of(o);
        if (h->type == W2V_EXAMPLES) {
            w2v_example ex;
            if (w2v_reader_example(r, &ex, err, sizeof err) == 0) {
                FUZZ_ASSERT(ex.key && ex.length >= 0, "example");
                FUZZ_ASSERT(ex.label >= -1 && ex.label < h->nlabels, "label %lld", (long long)ex.label);
                float s = 0;
                for (int64_t i = 0; i < ex.length; i++) s += ex.input_values[i];
                sink = s;
                (void)strlen(ex.key);
                if (ex.path) (void)strlen(ex.path);
            }
        } else {
            w2v_batch b;
            if (w2v_reader_batch(r, &b, err, sizeof err) == 0) {
                FUZZ_ASSERT(b.batch >= 1 && b.time >= 0, "batch %d x %d", b.batch, b.time);
                float s = 0;
                for (int i = 0; i < b.batch; i++) {
                    (void)strlen(b.keys[i]);
                    FUZZ_ASSERT(b.labels[i] >= -1 && b.labels[i] < h->nlabels, "label");
                    FUZZ_ASSERT(b.lengths[i] >= 0 && b.lengths[i] <= b.time, "length");
                }
                for (int64_t i = 0; i < (int64_t)b.batch * b.time; i++) s += b.input_values[i] + b.attention_mask[i];
                sink = s;
            }
        }
    }
    w2v_reader_close(r);
    fclose(fp);
    if (nrec) seek_pass(data, size, nrec);
    return 0;
}
