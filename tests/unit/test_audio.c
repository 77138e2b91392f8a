/* lib/audio.c: normalisation against HF's feature extractor (golden data),
 * decoding, down-mix, resampling, streaming from a pipe, errors. */
#include "unit.h"
#include "w2v/audio.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <sndfile.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test_audio.XXXXXX";

/* ---- golden data: a safetensors reader just big enough for the test ---- */

/* Reads tensor name of dtype (e.g. "F32") from a safetensors file into a
 * malloc'd buffer; its element count in *count.  NULL when absent. */
static void *safetensors_get(const char *path, const char *name, const char *dtype, size_t *count)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    uint64_t hlen = 0;
    void *data = NULL;
    char *hdr = NULL;
    json_t *root = NULL;
    if (fread(&hlen, 8, 1, fp) != 1 || hlen > (1u << 26)) goto out;
    hdr = malloc(hlen + 1);
    if (fread(hdr, 1, hlen, fp) != hlen) goto out;
    hdr[hlen] = 0;
    root = json_loads(hdr, 0, NULL);
    json_t *t = json_object_get(root, name);
    if (!t || strcmp(json_string_value(json_object_get(t, "dtype")), dtype)) goto out;
    json_t *off = json_object_get(t, "data_offsets");
    size_t begin = (size_t)json_integer_value(json_array_get(off, 0)),
           end = (size_t)json_integer_value(json_array_get(off, 1));
    data = malloc(end - begin);
    if (fseek(fp, (long)(8 + hlen + begin), SEEK_SET) || fread(data, 1, end - begin, fp) != end - begin) {
        free(data);
        data = NULL;
        goto out;
    }
    *count = (end - begin) / (dtype[1] == '6' ? 8 : 4);
out:
    json_decref(root);
    free(hdr);
    fclose(fp);
    return data;
}

/* Each golden clip, normalised unpadded, must match the guide's output
 * (feature_extractor.output_guide: normalise each clip, then zero-pad). */
static void test_golden_normalize(void)
{
    static const char *cases[] = {"base-tiny", "large-tiny", "weighted-tiny"};
    int found = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/golden/%s/expected.safetensors", unit_shared_dir(), cases[c]);
        size_t nin, nlen, nout;
        float *in = safetensors_get(path, "feature_extractor.input", "F32", &nin);
        int64_t *len = safetensors_get(path, "feature_extractor.input_lengths", "I64", &nlen);
        float *want = safetensors_get(path, "feature_extractor.output_guide", "F32", &nout);
        if (!in || !len || !want) {
            free(in), free(len), free(want);
            continue;
        }
        found++;
        CHECK(nin == nout && nin % nlen == 0, "%s: shapes", cases[c]);
        size_t T = nin / nlen;
        double worst = 0;
        for (size_t b = 0; b < nlen; b++) {
            float *x = in + b * T;
            CHECK(len[b] > 0 && (size_t)len[b] <= T, "%s: length %ld", cases[c], (long)len[b]);
            w2v_audio_normalize(x, len[b]);
            for (size_t i = 0; i < T; i++) {
                double d = fabs((double)((int64_t)i < len[b] ? x[i] : 0.f) - want[b * T + i]);
                worst = d > worst ? d : worst;
            }
        }
        /* README tolerance is 1e-5; the emulation of numpy's float32 sums
         * is meant to be exact. */
        CHECK(worst == 0, "%s: max |diff| %g against output_guide", cases[c], worst);
        free(in), free(len), free(want);
    }
    if (!found)
        printf("test_audio: SKIP golden normalisation: no %s/golden (set W2V_SHARED)\n", unit_shared_dir());
}

static void test_normalize_constant(void)
{
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = 0.25f;
    w2v_audio_normalize(x, 1000);
    int zeros = 1;
    for (int i = 0; i < 1000; i++) zeros &= x[i] == 0.f;
    CHECK(zeros, "a constant clip normalises to zeros, got %g", x[0]);
    float one = 0.5f;
    CHECK(w2v_audio_normalize(&one, 1) == 0, "a sample normalises");
    CHECK(one == 0.f, "a single sample normalises to 0, got %g", one);
    /* samples near FLT_MAX: their sums overflow, and it says so */
    float huge[4] = {3e38f, -3e38f, 3e38f, 1.0f};
    CHECK(w2v_audio_normalize(huge, 4) < 0, "samples of 3e38 refuse to normalise");
}

static void test_pairwise_sum(void)
{
    float x[300];
    for (int i = 0; i < 300; i++) x[i] = (float)(i % 7) - 3.0f;
    double exact = 0;
    for (int i = 0; i < 300; i++) exact += x[i];
    CHECK(w2v_sum_f32(x, 300) == (float)exact, "integer sums are exact: %g vs %g", w2v_sum_f32(x, 300), exact);
    CHECK(w2v_sum_f32(x, 0) == 0.f, "empty sum");
    /* The order is numpy's.  1 followed by fifteen 1e-8: in order every
     * small term is lost (each is below half an ulp of 1); numpy's eight
     * partial sums gather 8e-8 before adding it to 1, which rounds up. */
    float y[16] = {1.0f};
    for (int i = 1; i < 16; i++) y[i] = 1e-8f;
    CHECK(w2v_sum_f32(y, 7) == 1.0f, "short runs are summed in order");
    CHECK(w2v_sum_f32(y, 16) == 1.0f + FLT_EPSILON, "8-way partial sums: %.9g", w2v_sum_f32(y, 16));
}

/* ---- files ---- */

/* Writes a sine of freq Hz, amplitude amp, n frames, in every channel (the
 * channel c gets amplitude amp * (c + 1) / channels, so the mean is known). */
static void write_sine(const char *path, int format, int rate, int channels, long n, double freq, double amp)
{
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) {
        fprintf(stderr, "cannot write %s: %s\n", path, sf_strerror(NULL));
        exit(1);
    }
    float *f = malloc((size_t)n * channels * sizeof *f);
    for (long i = 0; i < n; i++)
        for (int c = 0; c < channels; c++)
            f[i * channels + c] = (float)(amp * (c + 1) / channels * sin(2 * M_PI * freq * i / rate));
    sf_writef_float(sf, f, n);
    sf_close(sf);
    free(f);
}

/* Frequency of the strongest component between 50 Hz and rate/2, by a
 * direct DFT on a 1 Hz grid around the expected value (the test knows it). */
static double power_at(const float *x, long n, int rate, double freq)
{
    double re = 0, im = 0;
    for (long i = 0; i < n; i++) {
        re += x[i] * cos(2 * M_PI * freq * i / rate);
        im += x[i] * sin(2 * M_PI * freq * i / rate);
    }
    return (re * re + im * im) / ((double)n * n);
}

/* peak_tol: how far the peak may move (Vorbis is lossy: a few percent). */
static void test_resample(int rate, int channels, int format, const char *ext, double peak_tol)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/sine-%d-%d.%s", tmpdir, rate, channels, ext);
    long n = rate; /* one second */
    write_sine(path, format, rate, channels, n, 440.0, 0.5);
    float *x;
    int64_t len;
    int ret = w2v_audio_load(path, 16000, W2V_AUDIO_DEFAULT_CONVERTER, &x, &len, err, sizeof err);
    CHECK(ret == 0, "%s: %s", path, err);
    if (ret) return;
    CHECK(llabs(len - 16000) <= 1, "%s: %ld samples at 16 kHz, want 16000", path, (long)len);
    double peak = 0;
    for (int64_t i = 0; i < len; i++) peak = fabs(x[i]) > peak ? fabs(x[i]) : peak;
    /* mean of channels (c + 1) / channels * 0.5: (channels + 1) / 4 / channels */
    double want_peak = 0.5 * (channels + 1) / (2.0 * channels);
    CHECK(fabs(peak - want_peak) < peak_tol, "%s: peak %g, want %g (down-mix is the mean)", path, peak, want_peak);
    /* The tone stays at 440 Hz: far stronger there than 40 Hz either side
     * (a wrong ratio would move it to 440 * 16000 / rate). */
    long skip = 800; /* past the resampler's start-up */
    double at = power_at(x + skip, (long)len - 2 * skip, 16000, 440.0),
           off1 = power_at(x + skip, (long)len - 2 * skip, 16000, 400.0),
           off2 = power_at(x + skip, (long)len - 2 * skip, 16000, 480.0),
           moved = power_at(x + skip, (long)len - 2 * skip, 16000, 440.0 * 16000 / rate);
    CHECK(at > 100 * off1 && at > 100 * off2, "%s: 440 Hz power %g vs %g, %g", path, at, off1, off2);
    if (rate != 16000) CHECK(at > 100 * moved, "%s: power at the wrongly scaled tone %g", path, moved);
    free(x);
}

/* A WAV written to a pipe with the length unknown (arecord's 0x7fffffff),
 * read from stdin window by window, equals the same data read from a file. */
static void test_stdin_pipe(void)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/pipe.wav", tmpdir);
    long n = 22050 * 3 + 123;
    write_sine(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 1, n, 300.0, 0.3);
    float *ref;
    int64_t nref;
    if (w2v_audio_load(path, 16000, W2V_AUDIO_DEFAULT_CONVERTER, &ref, &nref, err, sizeof err)) {
        CHECK(0, "%s", err);
        return;
    }
    /* patch the RIFF and data sizes as a recorder on a pipe writes them */
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    rewind(fp);
    unsigned char *bytes = malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, fp) == (size_t)size, "read back");
    fclose(fp);
    unsigned char *data = memmem(bytes, (size_t)size, "data", 4);
    CHECK(data != NULL, "data chunk");
    uint32_t big = 0x7fffffff;
    memcpy(bytes + 4, &big, 4);
    memcpy(data + 4, &big, 4);

    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        ssize_t w = write(fds[1], bytes, (size_t)size);
        _exit(w == size ? 0 : 1);
    }
    close(fds[1]);
    int saved = dup(STDIN_FILENO);
    dup2(fds[0], STDIN_FILENO);
    close(fds[0]);
    w2v_audio *a = w2v_audio_open("-", 16000, W2V_AUDIO_DEFAULT_CONVERTER, err, sizeof err);
    CHECK(a != NULL, "%s", err);
    if (a) {
        CHECK(w2v_audio_length(a) == -1, "a pipe has no known length");
        float win[1000];
        long total = 0, got;
        int same = 1;
        while ((got = w2v_audio_read(a, win, 1000, err, sizeof err)) > 0) {
            for (long i = 0; i < got && total + i < nref; i++) same &= win[i] == ref[total + i];
            total += got;
        }
        CHECK(got == 0, "read error: %s", err);
        CHECK(total == nref, "pipe gave %ld samples, the file %ld", total, (long)nref);
        CHECK(same, "pipe samples equal file samples");
        w2v_audio_close(a);
    }
    dup2(saved, STDIN_FILENO);
    close(saved);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer");
    free(bytes);
    free(ref);
}

static void expect_load_error(const char *path, const char *want)
{
    char err[512] = "";
    float *x = NULL;
    int64_t n;
    int ret = w2v_audio_load(path, 16000, W2V_AUDIO_DEFAULT_CONVERTER, &x, &n, err, sizeof err);
    CHECK(ret == -1, "%s: loading should fail", path);
    CHECK(strstr(err, path) && strstr(err, want), "%s: error '%s' should name it and say '%s'", path, err, want);
    if (!ret) free(x);
}

static void test_errors(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/missing.wav", tmpdir);
    expect_load_error(path, "No such file");

    snprintf(path, sizeof path, "%s/garbage.wav", tmpdir);
    FILE *fp = fopen(path, "wb");
    for (int i = 0; i < 4000; i++) fputc((i * 7919) & 0xff, fp);
    fclose(fp);
    expect_load_error(path, "not a readable audio file");

    snprintf(path, sizeof path, "%s/empty.wav", tmpdir);
    write_sine(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, 0, 440, 0.5);
    expect_load_error(path, "no audio samples");

    snprintf(path, sizeof path, "%s/nan.wav", tmpdir);
    SF_INFO info = {.samplerate = 16000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    float v[100] = {0};
    v[50] = NAN;
    sf_writef_float(sf, v, 100);
    sf_close(sf);
    expect_load_error(path, "NaN");
}

static void test_converter_names(void)
{
    CHECK(w2v_audio_converter("best") == W2V_AUDIO_DEFAULT_CONVERTER, "best is the default");
    CHECK(w2v_audio_converter("linear") >= 0 && w2v_audio_converter("zoh") >= 0, "linear, zoh");
    CHECK(w2v_audio_converter("nonsense") == -1, "unknown name");
}

/* In memory: a 1 kHz tone made 10% faster is 10% shorter and 10% higher
 * (its zero crossings counted); a ratio libsamplerate refuses is an error. */
static void test_resample_memory(void)
{
    enum { N = 16000 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = sinf(2 * (float)M_PI * 1000 * (float)i / 16000);
    char err[256];
    int64_t m = w2v_audio_resample(x, N, 1 / 1.1, w2v_audio_converter("fastest"), y, N, err, sizeof err);
    CHECK(m >= N / 1.1 - 2 && m <= N / 1.1 + 2, "%lld samples from %d at ratio 1/1.1", (long long)m, N);
    int crossings = 0;
    for (int64_t i = 1000; i < m - 1000; i++) crossings += (y[i - 1] < 0) != (y[i] < 0);
    double hz = crossings / 2.0 / ((double)(m - 2000) / 16000);
    CHECK(fabs(hz - 1100) < 5, "the tone is at %g Hz, not 1100", hz);
    CHECK(w2v_audio_resample(x, N, 1000, 0, y, N, err, sizeof err) == -1 && strstr(err, "out of range"),
          "ratio 1000: %s", err);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_golden_normalize();
    test_normalize_constant();
    test_pairwise_sum();
    test_converter_names();
    test_resample_memory();
    test_resample(16000, 1, SF_FORMAT_WAV | SF_FORMAT_PCM_16, "wav", 0.01);
    test_resample(8000, 1, SF_FORMAT_WAV | SF_FORMAT_PCM_16, "wav", 0.01);
    test_resample(22050, 2, SF_FORMAT_WAV | SF_FORMAT_PCM_16, "wav", 0.01);
    test_resample(44100, 2, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, "flac", 0.01);
    test_resample(48000, 1, SF_FORMAT_OGG | SF_FORMAT_VORBIS, "ogg", 0.05);
    test_stdin_pipe();
    test_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return unit_finish("test_audio");
}
