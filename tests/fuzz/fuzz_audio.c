/* Audio decoding and normalisation (the input written to a scratch file,
 * since the library opens audio by path): w2v_audio_open and
 * w2v_audio_read window by window at the file's own rate, the library's
 * promise that no sample is NaN or infinite, Wav2Vec2's normalisation of
 * what was decoded, then w2v_audio_load resampling to 16 kHz (linear
 * converter: the sinc ones cost seconds per input) for short files. */
#include "fuzz.h"
#include "w2v/audio.h"

#include <math.h>
#include <samplerate.h>

#define MAX_SAMPLES (1 << 20) /* decoded per input; a small FLAC can hold hours */
#define MAX_RESAMPLE (1 << 16)

static float buf[MAX_SAMPLES];

static void check_finite(const float *x, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++) FUZZ_ASSERT(isfinite(x[i]), "%s: sample %lld is %g", what, (long long)i, x[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("audio", data, size);
    char err[512];
    w2v_audio *a = w2v_audio_open(path, 0, W2V_AUDIO_DEFAULT_CONVERTER, err, sizeof err);
    if (!a) {
        FUZZ_CHECK_ERR(err);
        return 0;
    }
    (void)w2v_audio_length(a);
    /* windows of uneven sizes, as ks-extract and w2v-predict read */
    static const long windows[] = {1, 7, 4096, 5000, 333, 4097};
    int64_t n = 0;
    int failed = 0;
    for (int w = 0; n < MAX_SAMPLES; w++) {
        long want = windows[w % 6];
        if (want > MAX_SAMPLES - n) want = (long)(MAX_SAMPLES - n);
        long got = w2v_audio_read(a, buf + n, want, err, sizeof err);
        if (got < 0) {
            FUZZ_ASSERT(err[0], "read error without a message");
            failed = 1;
            break;
        }
        FUZZ_ASSERT(got <= want, "read %ld of %ld", got, want);
        n += got;
        if (got < want) break;
    }
    w2v_audio_close(a);
    if (failed || n == 0) return 0;
    check_finite(buf, n, "decoded");
    (void)w2v_sum_f32(buf, n);
    /* huge finite float samples (near FLT_MAX) overflow the sums: then -1,
     * else every sample finite (regress/audio/crash-normalize-nan-*) */
    if (w2v_audio_normalize(buf, n) == 0) check_finite(buf, n, "normalised");
    if (n > MAX_RESAMPLE) return 0;
    /* a header's frame count may lie: w2v_audio_load must not size its
     * buffer by it (regress/audio/crash-load-trusts-header-frames.flac) */
    float *x = NULL;
    int64_t m = 0;
    if (w2v_audio_load(path, 16000, SRC_LINEAR, &x, &m, err, sizeof err) == 0) {
        FUZZ_ASSERT(m > 0, "loaded without samples");
        check_finite(x, m, "resampled");
        if (w2v_audio_normalize(x, m) == 0) check_finite(x, m, "resampled and normalised");
        free(x);
    } else FUZZ_CHECK_ERR(err);
    return 0;
}
