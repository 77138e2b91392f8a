/* Audio input: decoding (libsndfile: WAV, FLAC, Ogg, ...), down-mix to mono
 * (the mean of the channels), resampling (libsamplerate) and the
 * normalisation of Hugging Face's Wav2Vec2FeatureExtractor.
 *
 * Samples are floats in [-1, 1) as libsndfile scales them (16-bit PCM is
 * divided by 32768).  A sample that is NaN or infinite makes the file
 * unreadable: nothing downstream ever sees one. */
#ifndef W2V_AUDIO_H
#define W2V_AUDIO_H

#include <stddef.h>
#include <stdint.h>

/* Resampling converters: libsamplerate's, by name "best" (the default,
 * SRC_SINC_BEST_QUALITY), "medium", "fastest", "zoh", "linear".  Returns the
 * converter id, or -1 for an unknown name. */
int w2v_audio_converter(const char *name);
#define W2V_AUDIO_DEFAULT_CONVERTER 0 /* SRC_SINC_BEST_QUALITY */

/* ---- streaming: long or endless input read window by window ---- */
typedef struct w2v_audio w2v_audio;

/* Opens path ("-" = stdin, which may be a pipe: WAV works there, as do the
 * other formats libsndfile reads without seeking).  rate is the sample rate
 * wanted (0 keeps the file's own).  On failure returns NULL with "PATH: what
 * is wrong" in err. */
w2v_audio *w2v_audio_open(const char *path, int rate, int converter, char *err, size_t errlen);
/* Reads up to n mono samples at the wanted rate into buf: the count read, 0
 * at the end, -1 on error with "FILE: why" in err.  Fewer than n only at
 * the end. */
long w2v_audio_read(w2v_audio *a, float *buf, long n, char *err, size_t errlen);
/* Samples the whole input will give at the wanted rate, approximately when
 * resampling; -1 when unknown (a pipe). */
int64_t w2v_audio_length(const w2v_audio *a);
void w2v_audio_close(w2v_audio *a);

/* ---- whole files ---- */

/* Decodes a whole file into *samples (malloc'd, the caller frees) of *n
 * mono samples at rate (0 = the file's own).  A file without samples is an
 * error.  Returns 0, or -1 with "PATH: what is wrong" in err. */
int w2v_audio_load(const char *path, int rate, int converter, float **samples, int64_t *n,
                   char *err, size_t errlen);

/* Resamples n samples held in memory by ratio (output rate / input rate)
 * into out, which has room for cap samples: the count written (about n *
 * ratio, at most cap), or -1 with the reason in err. */
int64_t w2v_audio_resample(const float *in, int64_t n, double ratio, int converter, float *out, int64_t cap,
                           char *err, size_t errlen);

/* ---- normalisation ---- */

/* Wav2Vec2FeatureExtractor's do_normalize, bit for bit as numpy computes it
 * in float32: x = (x - mean) / sqrt(var + 1e-7), population variance, the
 * sums pairwise as numpy's.  A constant clip becomes zeros.  -1 when the
 * samples are too large for float32 sums (near FLT_MAX: numpy gives NaN
 * there), else 0. */
int w2v_audio_normalize(float *x, int64_t n);
/* numpy's float32 sum, bit for bit: blocks of 8192 in order, each summed
 * pairwise (8-way unrolled leaves of at most 128 values). */
float w2v_sum_f32(const float *x, int64_t n);

#endif
