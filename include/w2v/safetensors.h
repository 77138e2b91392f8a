/* safetensors files: reading (mmap, every length checked) and writing. */
#ifndef W2V_SAFETENSORS_H
#define W2V_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    W2V_ST_F64, W2V_ST_F32, W2V_ST_F16, W2V_ST_BF16, W2V_ST_I64, W2V_ST_I32,
    W2V_ST_I16, W2V_ST_I8, W2V_ST_U8, W2V_ST_BOOL
} w2v_st_dtype;

#define W2V_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    w2v_st_dtype dtype;
    int ndim;
    int64_t shape[W2V_ST_MAX_DIMS];
    size_t count;      /* product of shape */
    const void *data;  /* little-endian; aligned to the element size in files
                          that follow the convention, which is not checked */
} w2v_st_tensor;

size_t w2v_st_dtype_size(w2v_st_dtype t);
const char *w2v_st_dtype_name(w2v_st_dtype t);

typedef struct w2v_safetensors w2v_safetensors;

/* Maps the file and checks its header; NULL with "PATH: why" in err. */
w2v_safetensors *w2v_st_open(const char *path, char *err, size_t errlen);
void w2v_st_close(w2v_safetensors *st);
int w2v_st_count(const w2v_safetensors *st);
/* Tensor i (0 <= i < count), or the index of a name (-1 when absent). */
const w2v_st_tensor *w2v_st_tensor_at(const w2v_safetensors *st, int i);
int w2v_st_find(const w2v_safetensors *st, const char *name);
/* A string of __metadata__, or NULL. */
const char *w2v_st_metadata(const w2v_safetensors *st, const char *key);

/* Converts a float tensor (F32, F16, BF16, F64) or integer tensor to f32 / i64. */
int w2v_st_to_f32(const w2v_st_tensor *t, float *dst);
int w2v_st_to_i64(const w2v_st_tensor *t, int64_t *dst);

/* Writing: add tensors (data are referenced until write), then write the
 * file to a temporary name and rename it into place. */
typedef struct w2v_st_writer w2v_st_writer;
w2v_st_writer *w2v_st_writer_new(void);
void w2v_st_writer_free(w2v_st_writer *w);
void w2v_st_add(w2v_st_writer *w, const char *name, w2v_st_dtype dtype, int ndim,
                const int64_t *shape, const void *data);
/* A tensor whose bytes fill(ctx, dst) makes when the file is written
 * (dst NULL when nothing is: see w2v_st_write). */
void w2v_st_add_fill(w2v_st_writer *w, const char *name, w2v_st_dtype dtype, int ndim, const int64_t *shape,
                     void (*fill)(void *ctx, void *dst), void *ctx);
void w2v_st_add_metadata(w2v_st_writer *w, const char *key, const char *value);
/* Every fill runs once, in the same order on any writer with the same
 * tensors, even when the file cannot be written (fills that are MPI
 * collectives keep the ranks in step).  path NULL: the fills run and
 * nothing is written (a rank helping another write). */
int w2v_st_write(w2v_st_writer *w, const char *path, char *err, size_t errlen);

#endif
