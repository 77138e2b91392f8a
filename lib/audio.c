/* Audio input: libsndfile decoding, mono down-mix, libsamplerate
 * resampling, and Wav2Vec2FeatureExtractor's normalisation. */
#include "w2v/audio.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(W2V_AUDIO_DEFAULT_CONVERTER == SRC_SINC_BEST_QUALITY, "default converter");

#define CHUNK 4096 /* frames decoded at a time */

int w2v_audio_converter(const char *name)
{
    static const struct { const char *name; int id; } names[] = {
        {"best", SRC_SINC_BEST_QUALITY}, {"medium", SRC_SINC_MEDIUM_QUALITY},
        {"fastest", SRC_SINC_FASTEST},   {"zoh", SRC_ZERO_ORDER_HOLD},
        {"linear", SRC_LINEAR},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i].name)) return names[i].id;
    return -1;
}

struct w2v_audio {
    SNDFILE *sf;
    SF_INFO info;
    char *name;
    SRC_STATE *src;   /* NULL when the file is at the wanted rate */
    double ratio;
    float *frames;    /* CHUNK interleaved frames */
    float *mono;      /* CHUNK mono samples awaiting the resampler */
    long mono_pos, mono_len;
    int eof, done;
    char error[512];
};

static int audio_error(w2v_audio *a, const char *fmt, const char *why)
{
    snprintf(a->error, sizeof a->error, "%s: ", a->name);
    size_t n = strlen(a->error);
    snprintf(a->error + n, sizeof a->error - n, fmt, why);
    return -1;
}

w2v_audio *w2v_audio_open(const char *path, int rate, int converter, char *err, size_t errlen)
{
    int stdin_ = !path || !strcmp(path, "-");
    const char *name = stdin_ ? "stdin" : path;
    /* Opening the descriptor ourselves gives errno's reason for a missing
     * file; libsndfile's own reason for a NULL handle is a global that
     * threads decoding in parallel would share. */
    int fd = stdin_ ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return set_error(err, errlen, "%s: cannot open: %s", name, strerror(errno)), NULL;
    w2v_audio *a = xcalloc(1, sizeof *a);
    a->sf = sf_open_fd(fd, SFM_READ, &a->info, !stdin_);
    if (!a->sf) {
        set_error(err, errlen, "%s: not a readable audio file: %s", name, sf_error_number(sf_error(NULL)));
        if (!stdin_) close(fd);
        free(a);
        return NULL;
    }
    a->name = xstrdup(name);
    if (a->info.channels < 1 || a->info.samplerate < 1) {
        set_error(err, errlen, "%s: no channels or no sample rate in the header", name);
        w2v_audio_close(a);
        return NULL;
    }
    if (rate > 0 && rate != a->info.samplerate) {
        int e = 0;
        a->ratio = (double)rate / a->info.samplerate;
        if (!src_is_valid_ratio(a->ratio)) {
            set_error(err, errlen, "%s: cannot resample %d Hz to %d Hz (ratio out of range)", name,
                      a->info.samplerate, rate);
            w2v_audio_close(a);
            return NULL;
        }
        a->src = src_new(converter, 1, &e);
        if (!a->src) {
            set_error(err, errlen, "%s: resampler: %s", name, src_strerror(e));
            w2v_audio_close(a);
            return NULL;
        }
        a->mono = xmalloc(CHUNK * sizeof *a->mono);
    }
    a->frames = xmalloc((size_t)CHUNK * (size_t)a->info.channels * sizeof *a->frames);
    return a;
}


int64_t w2v_audio_length(const w2v_audio *a)
{
    if (!a->info.seekable) return -1;
    return a->src ? (int64_t)ceil((double)a->info.frames * a->ratio) : (int64_t)a->info.frames;
}

void w2v_audio_close(w2v_audio *a)
{
    if (!a) return;
    if (a->sf) sf_close(a->sf);
    if (a->src) src_delete(a->src);
    free(a->name);
    free(a->frames);
    free(a->mono);
    free(a);
}

/* Decodes up to n frames (n <= CHUNK) as mono into out: the count, 0 at the
 * end, -1 on a decoding error or a sample that is not finite. */
static long decode_mono(w2v_audio *a, float *out, long n)
{
    int ch = a->info.channels;
    sf_count_t got = sf_readf_float(a->sf, ch == 1 ? out : a->frames, n);
    if (got == 0 && sf_error(a->sf)) return audio_error(a, "decoding failed: %s", sf_strerror(a->sf));
    if (ch > 1)
        for (sf_count_t i = 0; i < got; i++) {
            const float *f = a->frames + i * ch;
            float sum = 0;
            for (int c = 0; c < ch; c++) sum += f[c];
            out[i] = sum / (float)ch;
        }
    /* NaN and infinities have every exponent bit set; an integer test the
     * compiler vectorises, unlike isfinite() */
    uint32_t nonfinite = 0;
    for (sf_count_t i = 0; i < got; i++) {
        uint32_t bits;
        memcpy(&bits, &out[i], 4);
        nonfinite |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    if (nonfinite) return audio_error(a, "%s", "a sample is NaN or infinite");
    return (long)got;
}

static long read_samples(w2v_audio *a, float *buf, long n)
{
    long done = 0;
    while (done < n && !a->done) {
        if (!a->src) {
            long got = decode_mono(a, buf + done, n - done < CHUNK ? n - done : CHUNK);
            if (got < 0) return -1;
            if (got == 0) a->done = 1;
            done += got;
            continue;
        }
        if (a->mono_pos == a->mono_len && !a->eof) {
            long got = decode_mono(a, a->mono, CHUNK);
            if (got < 0) return -1;
            a->mono_pos = 0;
            a->mono_len = got;
            a->eof = got == 0;
        }
        SRC_DATA d = {
            .data_in = a->mono + a->mono_pos, .input_frames = a->mono_len - a->mono_pos,
            .data_out = buf + done, .output_frames = n - done,
            .end_of_input = a->eof, .src_ratio = a->ratio,
        };
        int e = src_process(a->src, &d);
        if (e) return audio_error(a, "resampling failed: %s", src_strerror(e));
        a->mono_pos += d.input_frames_used;
        done += d.output_frames_gen;
        if (a->eof && d.output_frames_gen == 0) a->done = 1;
    }
    return done;
}

long w2v_audio_read(w2v_audio *a, float *buf, long n, char *err, size_t errlen)
{
    long got = read_samples(a, buf, n);
    if (got < 0) set_error(err, errlen, "%s", a->error);
    return got;
}

int w2v_audio_load(const char *path, int rate, int converter, float **samples, int64_t *n,
                   char *err, size_t errlen)
{
    w2v_audio *a = w2v_audio_open(path, rate, converter, err, errlen);
    if (!a) return -1;
    /* the header's length sizes the first buffer, up to a minute at 16 kHz:
     * a header may claim 2^40 frames that the file does not hold */
    int64_t expect = w2v_audio_length(a);
    size_t cap = expect > 0 && expect < (1 << 20) ? (size_t)expect + 1 : 1 << 20, len = 0;
    float *x = xmalloc(cap * sizeof *x);
    for (;;) {
        if (len == cap) x = xrealloc(x, (cap *= 2) * sizeof *x);
        long got = w2v_audio_read(a, x + len, (long)(cap - len), err, errlen);
        if (got < 0) break;
        len += (size_t)got;
        if (got == 0) break;
    }
    int failed = a->error[0] != 0;
    if (!failed && len == 0) failed = set_error(err, errlen, "%s: no audio samples (empty)", a->name);
    w2v_audio_close(a);
    if (failed) {
        free(x);
        return -1;
    }
    *samples = x;
    *n = (int64_t)len;
    return 0;
}

int64_t w2v_audio_resample(const float *in, int64_t n, double ratio, int converter, float *out, int64_t cap,
                           char *err, size_t errlen)
{
    if (!src_is_valid_ratio(ratio)) return set_error(err, errlen, "cannot resample by %g (ratio out of range)", ratio);
    /* libsamplerate counts frames in long */
    if (n > LONG_MAX || cap > LONG_MAX) return set_error(err, errlen, "too many samples to resample");
    SRC_DATA d = {.data_in = in, .input_frames = (long)n, .data_out = out, .output_frames = (long)cap,
                  .src_ratio = ratio};
    int e = src_simple(&d, converter, 1);
    if (e) return set_error(err, errlen, "resampling failed: %s", src_strerror(e));
    return d.output_frames_gen;
}

/* ---- normalisation, as numpy does it in float32 ---- */

/* numpy's pairwise_sum for float32 (numpy/core/src/umath/loops_utils.h):
 * short runs summed in order, runs up to 128 in eight interleaved partial
 * sums, longer ones split in two at a multiple of 8. */
static float pairwise_sum(const float *x, int64_t n)
{
    if (n < 8) {
        float s = 0.f;
        for (int64_t i = 0; i < n; i++) s += x[i];
        return s;
    }
    if (n <= 128) {
        float r[8];
        int64_t i;
        for (int j = 0; j < 8; j++) r[j] = x[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += x[i + j];
        float s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += x[i];
        return s;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(x, half) + pairwise_sum(x + half, n - half);
}

/* np.add.reduce starts from the identity 0 and goes through its iterator's
 * buffer (np.getbufsize(), 8192 elements) a block at a time: pairwise
 * within a block, in order across blocks. */
float w2v_sum_f32(const float *x, int64_t n)
{
    float s = 0.f;
    for (int64_t i = 0; i < n; i += 8192) s += pairwise_sum(x + i, n - i < 8192 ? n - i : 8192);
    return s;
}

int w2v_audio_normalize(float *x, int64_t n)
{
    if (n <= 0) return 0;
    /* mean = sum / n rounded to float32 (numpy divides in double and rounds
     * back: the same value). */
    float mean = w2v_sum_f32(x, n) / (float)n;
    /* var: squares of the float32 deviations, summed the same way.  The
     * squares go through memory so that no compiler fuses them into the
     * sum (an FMA would round differently from numpy). */
    float *sq = xmalloc((size_t)n * sizeof *sq);
    for (int64_t i = 0; i < n; i++) {
        float d = x[i] - mean;
        sq[i] = d * d;
    }
    float var = w2v_sum_f32(sq, n) / (float)n;
    free(sq);
    /* var + 1e-7 is float64 in numpy 1.x (a Python float promotes a float32
     * scalar); the float32 array is then divided by it as float32. */
    float std = (float)sqrt((double)var + 1e-7);
    for (int64_t i = 0; i < n; i++) x[i] = (x[i] - mean) / std;
    /* samples near FLT_MAX overflow the sums (numpy's too): no answer */
    return isfinite(mean) && isfinite(std) ? 0 : -1;
}
