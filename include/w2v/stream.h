/* The w2v stream: msgpack maps written back to back (see w2v-stream(5)).
 *
 * A header map first, then records: examples ({"key", "label",
 * "input_values"}) or batches ({"keys", "labels", "input_values",
 * "attention_mask", "lengths"}).  Tensors are maps {"dtype", "shape",
 * "data"}.  Readers hold one record at a time. */
#ifndef W2V_STREAM_H
#define W2V_STREAM_H

#include <stdint.h>
#include <stdio.h>

#define W2V_STREAM_VERSION 1
#define W2V_MAX_DIMS 8

typedef enum { W2V_F32, W2V_F64, W2V_I64, W2V_I32, W2V_U8 } w2v_dtype;
size_t w2v_dtype_size(w2v_dtype t);
const char *w2v_dtype_name(w2v_dtype t);

/* A tensor as it sits in a record: data are little-endian bytes that need
 * not be aligned; convert with w2v_tensor_to_f32/_i64. */
typedef struct {
    w2v_dtype dtype;
    int ndim;
    int64_t shape[W2V_MAX_DIMS];
    size_t count; /* product of shape */
    const void *data;
} w2v_tensor;
void w2v_tensor_to_f32(const w2v_tensor *t, float *dst);
void w2v_tensor_to_i64(const w2v_tensor *t, int64_t *dst);

typedef enum { W2V_EXAMPLES, W2V_BATCHES } w2v_stream_type;

typedef struct {
    w2v_stream_type type;
    int sample_rate;
    int nlabels;
    char **labels;          /* label names in id order */
    long batches_per_epoch; /* batches streams: -1 when unknown */
    long epochs;            /* batches streams: -1 when unknown */
    long batch_size;        /* batches streams: -1 when unknown */
    int do_normalize;       /* 1: input_values are normalised per example, 0: raw; -1 unknown */
} w2v_header;
void w2v_header_init(w2v_header *h, w2v_stream_type type, int nlabels, char *const *labels);
void w2v_header_free(w2v_header *h);
/* 1 when two headers agree on type, sample_rate and labels (what a stream
 * concatenated from both needs), else 0. */
int w2v_header_compatible(const w2v_header *a, const w2v_header *b);
/* Index of a label name, or -1. */
int w2v_header_label(const w2v_header *h, const char *name);

/* One example (a record of an examples stream). */
typedef struct {
    char *key;
    char *path;           /* NULL when absent */
    int64_t label;        /* -1 = none */
    int64_t length;       /* samples */
    float *input_values;  /* [length] */
} w2v_example;

/* One batch (a record of a batches stream), row-major [batch, time]. */
typedef struct {
    int batch, time;
    char **keys;
    int64_t *labels, *lengths;
    float *input_values;
    uint8_t *attention_mask;
} w2v_batch;

/* ---- reading ---- */
typedef struct w2v_reader w2v_reader;

/* Opens path ("-" or NULL = stdin) and reads its header.  On failure
 * returns NULL with "FILE: what is wrong" in err. */
w2v_reader *w2v_reader_open(const char *path, char *err, size_t errlen);
/* Reads from an open FILE (not closed by the reader). */
w2v_reader *w2v_reader_from_file(FILE *fp, const char *name, char *err, size_t errlen);
void w2v_reader_close(w2v_reader *r);
const w2v_header *w2v_reader_header(const w2v_reader *r);

/* Next record: 1 when there is one, 0 at the end, -1 on error with
 * "FILE: record N at byte OFFSET: what is wrong" in err.  Headers repeated
 * by concatenation are checked and skipped. */
int w2v_reader_next(w2v_reader *r, char *err, size_t errlen);
/* The current record's index (the header is record 0), byte offset and
 * size. */
long w2v_reader_index(const w2v_reader *r);
int64_t w2v_reader_offset(const w2v_reader *r);
size_t w2v_reader_size(const w2v_reader *r);
/* Repositions a reader on a seekable file at a record offset returned by
 * w2v_reader_offset; the next call to w2v_reader_next reads that record. */
int w2v_reader_seek(w2v_reader *r, int64_t offset, long index, char *err, size_t errlen);
int w2v_reader_seekable(const w2v_reader *r);

/* Decodes the current record.  The memory stays the reader's and is valid
 * until the next call.  -1 with the error in err when the record is not
 * one. */
int w2v_reader_example(w2v_reader *r, w2v_example *ex, char *err, size_t errlen);
int w2v_reader_batch(w2v_reader *r, w2v_batch *b, char *err, size_t errlen);

/* Prints the current record as one line of JSON, without the newline
 * (ks-cat): maps, strings and numbers as they are, each tensor as {dtype,
 * shape, min, max, mean} or, with full, {dtype, shape, data}.  Floats
 * carry enough digits to read back exactly; NaN and infinities print as
 * strings.  0, or -1 with errno set. */
int w2v_reader_print_json(const w2v_reader *r, FILE *fp, int full);

/* ---- writing ---- */
typedef struct w2v_writer w2v_writer;

/* Writes to fp (not closed by the writer).  Every write returns 0, or -1
 * with errno set; the caller reports it (w2v_write_failed). */
w2v_writer *w2v_writer_new(FILE *fp);
void w2v_writer_free(w2v_writer *w);
int w2v_write_header(w2v_writer *w, const w2v_header *h);
int w2v_write_example(w2v_writer *w, const w2v_example *ex);
int w2v_write_batch(w2v_writer *w, const w2v_batch *b);
/* Copies the reader's current record (the header too) as it was read. */
int w2v_write_record(w2v_writer *w, const w2v_reader *r);
int w2v_writer_status(w2v_writer *w);

#endif
