/* Data augmentation (w2v/augment.h): speed, room reverberation, time shift,
 * background noise and gain, in that order, each stage drawing from its own
 * random stream of (seed, key, epoch, repeat), so that turning one stage on
 * or off leaves the others' draws as they were. */
#include "w2v/augment.h"
#include "w2v/audio.h"
#include "w2v/fs.h"
#include "w2v/threads.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <sndfile.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define SPEED_OF_SOUND 343.0 /* m/s */
#define NROOMS 32            /* rooms drawn from the seed when no impulse response files are given */
#define MAX_RIR_SECONDS 2    /* a longer "impulse response" is a mistake */
#define MAX_FFT_LOG2 30      /* FFTW takes int sizes */
#define MAX_ROOM_RATE 192000 /* the rooms' memory grows with the rate a header may claim */

typedef struct {
    float *x;
    int64_t n, peak; /* peak: an impulse response's direct path */
} recording;

typedef struct {
    recording *v;
    long n;
} bank;

typedef struct {
    char *key;
    long count;
} seen_key;

/* Working memory of one call, kept for the next: fresh buffers of this
 * size cost more in page faults than the FFTs that use them. */
typedef struct scratch {
    float *buf; /* 64-byte aligned */
    size_t cap;
    struct scratch *next;
} scratch;

struct w2v_augment {
    w2v_augment_options o;
    bank noise, rirs;
    /* Under the lock: the plans, one pair per power-of-two size (FFTW's
     * planner is not thread-safe, its execute is), and the scratch areas
     * not in use (as many as calls have run at once). */
    pthread_mutex_t lock;
    fftwf_plan forward[MAX_FFT_LOG2 + 1], inverse[MAX_FFT_LOG2 + 1];
    scratch *idle;
    /* the keys of the epoch seen so far, with how often (an open-addressed
     * table, cap a power of two at most half full) */
    long seen_epoch;
    seen_key *seen;
    size_t seen_cap, seen_n;
};

enum { STAGE_SPEED = 1, STAGE_REVERB, STAGE_SHIFT, STAGE_NOISE, STAGE_GAIN, STAGE_ROOMS };

/* ---- loading recordings ---- */

/* A name whose extension is a format libsndfile reads (header-less raw
 * needs a format given, so not that), or a usual alias of one. */
static int audio_name(const char *name)
{
    static const char *const aliases[] = {"ogg", "opus", "aif", "mp3"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    const char *ext = dot + 1;
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (!strcasecmp(ext, aliases[i])) return 1;
    int count = 0;
    sf_command(NULL, SFC_GET_FORMAT_MAJOR_COUNT, &count, sizeof count);
    for (int i = 0; i < count; i++) {
        SF_FORMAT_INFO f = {.format = i};
        if (sf_command(NULL, SFC_GET_FORMAT_MAJOR, &f, sizeof f) == 0 && f.extension &&
            strcasecmp(f.extension, "raw") && !strcasecmp(ext, f.extension))
            return 1;
    }
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void push_path(char ***v, long *n, char *path)
{
    *v = xrealloc(*v, (size_t)(*n + 1) * sizeof **v);
    (*v)[(*n)++] = path;
}

static void free_paths(char **v, long n)
{
    for (long i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* The files a directory holds (audio names, sorted, so the draws do not
 * depend on the order readdir gives) or a list names.  -1 with the error. */
static long list_files(const char *path, char ***out, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) return set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    char **v = NULL;
    long n = 0;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return set_error(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !audio_name(e->d_name)) continue;
            char *file = w2v_path_join(path, e->d_name);
            if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) push_path(&v, &n, file);
            else free(file);
        }
        closedir(d);
        if (!n) return set_error(err, errlen, "%s: no audio files (.wav, .flac, .ogg, ...) in the directory", path);
        qsort(v, (size_t)n, sizeof *v, by_name);
        *out = v;
        return n;
    }
    FILE *fp = fopen(path, "r");
    if (!fp) return set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    const char *slash = strrchr(path, '/');
    char *dir = slash ? xstrdup(path) : NULL, *line = NULL;
    if (dir) dir[slash - path] = 0;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!*line || *line == '#') continue;
        push_path(&v, &n, line[0] == '/' ? xstrdup(line) : w2v_path_join(dir, line));
    }
    int failed = ferror(fp);
    fclose(fp);
    free(line);
    free(dir);
    if (failed || !n) {
        free_paths(v, n);
        return set_error(err, errlen, failed ? "%s: read failed" : "%s: lists no files", path);
    }
    *out = v;
    return n;
}

/* an impulse response's direct path: its largest sample */
static int64_t peak_of(const float *x, int64_t n)
{
    int64_t p = 0;
    for (int64_t t = 1; t < n; t++)
        if (fabsf(x[t]) > fabsf(x[p])) p = t;
    return p;
}

static void bank_free(bank *b)
{
    for (long i = 0; i < b->n; i++) free(b->v[i].x);
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

/* Decodes every file of dir_or_list at the stream's rate into b; an
 * impulse response is also checked and its peak found. */
static long load_bank(w2v_augment *a, bank *b, const char *dir_or_list, int rirs, char *err, size_t errlen)
{
    char **paths = NULL;
    long n = list_files(dir_or_list, &paths, err, errlen);
    if (n < 0) return -1;
    b->v = xcalloc((size_t)n, sizeof *b->v);
    int failed = 0;
    for (long i = 0; i < n && !failed; i++) {
        recording *r = &b->v[b->n];
        if (w2v_audio_load(paths[i], a->o.sample_rate, a->o.converter, &r->x, &r->n, err, errlen) < 0) break;
        b->n++;
        if (!rirs) continue;
        r->peak = peak_of(r->x, r->n);
        if (r->n > (int64_t)MAX_RIR_SECONDS * a->o.sample_rate)
            failed = set_error(err, errlen, "%s: %.1f s is too long for an impulse response (at most %d s)",
                               paths[i], (double)r->n / a->o.sample_rate, MAX_RIR_SECONDS);
        else if (r->x[r->peak] == 0)
            failed = set_error(err, errlen, "%s: silent: not an impulse response", paths[i]);
    }
    free_paths(paths, n);
    if (failed || b->n < n) {
        bank_free(b);
        return -1;
    }
    return n;
}

/* ---- the room model ---- */

void w2v_room_draw(w2v_rng *r, w2v_room *room)
{
    static const double lo[3] = {3, 3, 2.4}, hi[3] = {10, 10, 4};
    for (int d = 0; d < 3; d++) {
        double L = room->size[d] = lo[d] + (hi[d] - lo[d]) * w2v_rng_uniform(r);
        room->source[d] = 0.5 + (L - 1) * w2v_rng_uniform(r);
        room->mic[d] = 0.5 + (L - 1) * w2v_rng_uniform(r);
    }
    double V = room->size[0] * room->size[1] * room->size[2],
           S = 2 * (room->size[0] * room->size[1] + room->size[0] * room->size[2] + room->size[1] * room->size[2]),
           t60 = 0.15 + 0.45 * w2v_rng_uniform(r);
    /* Sabine: T60 = 0.161 V / (S alpha); a big room cannot be as dry as
     * drawn with walls that absorb at most 95% */
    double alpha = fmin(0.161 * V / (S * t60), 0.95);
    room->t60 = 0.161 * V / (S * alpha);
    room->beta = sqrt(1 - alpha);
}

float *w2v_room_rir(const w2v_room *room, int rate, int64_t *n)
{
    double tmax = fmin(room->t60, 1.0), dmax = SPEED_OF_SOUND * tmax;
    int64_t len = (int64_t)ceil(tmax * rate) + 1;
    float *h = xcalloc((size_t)len, sizeof *h);
    /* images up to dmax away: |2 m L| <= dmax + L in each dimension */
    int N[3];
    for (int d = 0; d < 3; d++) N[d] = (int)ceil(dmax / (2 * room->size[d])) + 1;
    int maxref = 2 * (N[0] + N[1] + N[2]) + 3;
    double *pw = xmalloc((size_t)(maxref + 1) * sizeof *pw);
    pw[0] = 1;
    for (int k = 1; k <= maxref; k++) pw[k] = pw[k - 1] * room->beta;
    const double *L = room->size, *s = room->source, *m = room->mic;
    for (int mx = -N[0]; mx <= N[0]; mx++)
        for (int qx = 0; qx < 2; qx++) {
            /* the image mirrored q times and shifted m rooms: |m - q| + |m| walls on the way */
            double dx = (1 - 2 * qx) * s[0] + 2 * mx * L[0] - m[0];
            int rx = abs(mx - qx) + abs(mx);
            for (int my = -N[1]; my <= N[1]; my++)
                for (int qy = 0; qy < 2; qy++) {
                    double dy = (1 - 2 * qy) * s[1] + 2 * my * L[1] - m[1];
                    int ry = abs(my - qy) + abs(my);
                    for (int mz = -N[2]; mz <= N[2]; mz++)
                        for (int qz = 0; qz < 2; qz++) {
                            double dz = (1 - 2 * qz) * s[2] + 2 * mz * L[2] - m[2];
                            double d = sqrt(dx * dx + dy * dy + dz * dz);
                            if (d > dmax) continue;
                            int64_t t = llround(d / SPEED_OF_SOUND * rate);
                            int refl = rx + ry + abs(mz - qz) + abs(mz);
                            if (t < len) h[t] += (float)(pw[refl] / (4 * M_PI * fmax(d, 0.1)));
                        }
                }
        }
    free(pw);
    /* Every image adds with the same sign, so late arrivals, many to a
     * sample, pile up a low-frequency swell that real rooms lack; Allen and
     * Berkley high-pass the response: here a one-pole DC blocker at 100 Hz. */
    double R = exp(-2 * M_PI * 100.0 / rate), prev_in = 0, prev_out = 0;
    for (int64_t t = 0; t < len; t++) {
        double y = h[t] - prev_in + R * prev_out;
        prev_in = h[t];
        h[t] = (float)(prev_out = y);
    }
    *n = len;
    return h;
}

/* NROOMS rooms drawn from the seed, as the impulse responses. */
static void synth_rooms(w2v_augment *a)
{
    w2v_rng r;
    w2v_rng_seed(&r, w2v_hash(a->o.seed, STAGE_ROOMS));
    a->rirs.v = xcalloc(NROOMS, sizeof *a->rirs.v);
    for (int i = 0; i < NROOMS; i++) {
        w2v_room room;
        w2v_room_draw(&r, &room);
        recording *rec = &a->rirs.v[i];
        rec->x = w2v_room_rir(&room, a->o.sample_rate, &rec->n);
        rec->peak = peak_of(rec->x, rec->n);
    }
    a->rirs.n = NROOMS;
}

/* ---- setup ---- */

w2v_augment *w2v_augment_new(const w2v_augment_options *o, char *err, size_t errlen)
{
    w2v_augment *a = xcalloc(1, sizeof *a);
    a->o = *o;
    pthread_mutex_init(&a->lock, NULL);
    if ((o->noise && load_bank(a, &a->noise, o->noise, 0, err, errlen) < 0) ||
        (o->rirs && load_bank(a, &a->rirs, o->rirs, 1, err, errlen) < 0)) {
        w2v_augment_free(a);
        return NULL;
    }
    if (o->reverb_prob > 0 && !o->rirs) {
        if (o->sample_rate > MAX_ROOM_RATE) {
            set_error(err, errlen, "simulated rooms go up to %d Hz, not %d Hz: give impulse responses", MAX_ROOM_RATE,
                      o->sample_rate);
            w2v_augment_free(a);
            return NULL;
        }
        synth_rooms(a);
    }
    a->o.noise = a->o.rirs = NULL; /* the caller's strings are not kept */
    return a;
}

void w2v_augment_free(w2v_augment *a)
{
    if (!a) return;
    bank_free(&a->noise);
    bank_free(&a->rirs);
    for (int k = 0; k <= MAX_FFT_LOG2; k++) {
        if (a->forward[k]) fftwf_destroy_plan(a->forward[k]);
        if (a->inverse[k]) fftwf_destroy_plan(a->inverse[k]);
    }
    for (size_t i = 0; i < a->seen_cap; i++) free(a->seen[i].key);
    free(a->seen);
    while (a->idle) {
        scratch *s = a->idle;
        a->idle = s->next;
        free(s->buf);
        free(s);
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* ---- the stages ---- */

static scratch *scratch_take(w2v_augment *a)
{
    pthread_mutex_lock(&a->lock);
    scratch *s = a->idle;
    if (s) a->idle = s->next;
    pthread_mutex_unlock(&a->lock);
    return s ? s : xcalloc(1, sizeof *s);
}

static void scratch_give(w2v_augment *a, scratch *s)
{
    pthread_mutex_lock(&a->lock);
    s->next = a->idle;
    a->idle = s;
    pthread_mutex_unlock(&a->lock);
}

/* n floats of s, 64-byte aligned */
static float *scratch_floats(scratch *s, size_t n)
{
    if (n > s->cap) {
        free(s->buf);
        s->buf = xaligned(n * sizeof *s->buf);
        s->cap = n;
    }
    return s->buf;
}

static double uniform(w2v_rng *r, double lo, double hi) { return lo + (hi - lo) * w2v_rng_uniform(r); }

/* mean square, in double: the SNR's powers */
static double power(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t t = 0; t < n; t++) s += (double)x[t] * x[t];
    return n ? s / (double)n : 0;
}

/* Resampled by 1/f (f times faster), then cut or zero-padded about the
 * middle back to n samples. */
static int speed(const w2v_augment *a, w2v_rng *r, scratch *s, float *x, int64_t n, char *err, size_t errlen)
{
    double f = uniform(r, a->o.speed_lo, a->o.speed_hi);
    int64_t cap = (int64_t)ceil((double)n / f) + 2;
    float *y = scratch_floats(s, (size_t)cap);
    int64_t m = w2v_audio_resample(x, n, 1 / f, a->o.converter, y, cap, err, errlen);
    if (m >= n) memcpy(x, y + (m - n) / 2, (size_t)n * sizeof *x);
    else if (m >= 0) {
        memset(x, 0, (size_t)n * sizeof *x);
        memcpy(x + (n - m) / 2, y, (size_t)m * sizeof *x);
    }
    return m < 0 ? -1 : W2V_AUG_SPEED;
}

static void plans(w2v_augment *a, int k, fftwf_plan *fwd, fftwf_plan *inv)
{
    pthread_mutex_lock(&a->lock);
    if (!a->forward[k]) {
        /* FFTW_ESTIMATE plans without touching the arrays; the arrays of
         * every later call are 64-byte aligned as these are */
        int N = 1 << k;
        float *re = xaligned((size_t)N * sizeof *re);
        fftwf_complex *c = xaligned((size_t)(N / 2 + 1) * sizeof *c);
        a->forward[k] = fftwf_plan_dft_r2c_1d(N, re, c, FFTW_ESTIMATE);
        a->inverse[k] = fftwf_plan_dft_c2r_1d(N, c, re, FFTW_ESTIMATE);
        free(re);
        free(c);
    }
    *fwd = a->forward[k];
    *inv = a->inverse[k];
    pthread_mutex_unlock(&a->lock);
}

/* Convolved with an impulse response by FFT, the response's direct path
 * kept where the dry sound was and the power kept as it was. */
static int reverb(w2v_augment *a, w2v_rng *r, scratch *s, float *x, int64_t n, char *err, size_t errlen)
{
    const recording *h = &a->rirs.v[w2v_rng_below(r, (uint64_t)a->rirs.n)];
    int64_t full = n + h->n - 1;
    int k = 1;
    while (k <= MAX_FFT_LOG2 && ((int64_t)1 << k) < full) k++;
    if (k > MAX_FFT_LOG2) return set_error(err, errlen, "%lld samples are too many to reverberate", (long long)n);
    fftwf_plan fwd, inv;
    plans(a, k, &fwd, &inv);
    /* signal, response, and their spectra of N / 2 + 1 bins (N + 2
     * floats, N + 16 keeping the next 64-byte aligned) */
    size_t N = (size_t)1 << k, bins = N / 2 + 1;
    float *xs = scratch_floats(s, 4 * N + 32), *hs = xs + N;
    fftwf_complex *X = (fftwf_complex *)(hs + N), *H = (fftwf_complex *)(hs + 2 * N + 16);
    memcpy(xs, x, (size_t)n * sizeof *xs);
    memset(xs + n, 0, (N - (size_t)n) * sizeof *xs);
    memcpy(hs, h->x, (size_t)h->n * sizeof *hs);
    memset(hs + h->n, 0, (N - (size_t)h->n) * sizeof *hs);
    fftwf_execute_dft_r2c(fwd, xs, X);
    fftwf_execute_dft_r2c(fwd, hs, H);
    for (size_t i = 0; i < bins; i++) {
        float re = X[i][0] * H[i][0] - X[i][1] * H[i][1], im = X[i][0] * H[i][1] + X[i][1] * H[i][0];
        X[i][0] = re;
        X[i][1] = im;
    }
    fftwf_execute_dft_c2r(inv, X, xs); /* unnormalised: N times the convolution */
    const float *wet = xs + h->peak;
    double p = power(wet, n), scale = p > 0 ? sqrt(power(x, n) / p) : 0;
    for (int64_t t = 0; t < n; t++) x[t] = (float)(wet[t] * scale);
    return W2V_AUG_REVERB;
}

/* Moved by s samples (later when s > 0), zeros coming in. */
static int shift(const w2v_augment *a, w2v_rng *r, float *x, int64_t n)
{
    int64_t most = llround(a->o.shift_ms * a->o.sample_rate / 1000);
    int64_t s = (int64_t)w2v_rng_below(r, 2 * (uint64_t)most + 1) - most;
    if (s == 0) return 0;
    int64_t keep = n - (s > 0 ? s : -s);
    if (keep <= 0) memset(x, 0, (size_t)n * sizeof *x);
    else if (s > 0) {
        memmove(x + s, x, (size_t)keep * sizeof *x);
        memset(x, 0, (size_t)s * sizeof *x);
    } else {
        memmove(x, x - s, (size_t)keep * sizeof *x);
        memset(x + keep, 0, (size_t)-s * sizeof *x);
    }
    return W2V_AUG_SHIFT;
}

/* A window of a recording (looped when shorter than the example) added at
 * the drawn SNR over the example's power; into an example without power
 * (digital silence) at the recording's own level. */
static int noise(const w2v_augment *a, w2v_rng *r, float *x, int64_t n)
{
    if (w2v_rng_uniform(r) >= a->o.noise_prob) return 0;
    const recording *c = &a->noise.v[w2v_rng_below(r, (uint64_t)a->noise.n)];
    double snr = uniform(r, a->o.snr_lo, a->o.snr_hi);
    int64_t first = (int64_t)w2v_rng_below(r, (uint64_t)(c->n >= n ? c->n - n + 1 : c->n)), i = first;
    double pn = 0;
    for (int64_t t = 0; t < n; t++) {
        pn += (double)c->x[i] * c->x[i];
        if (++i == c->n) i = 0;
    }
    pn /= (double)n;
    if (pn == 0) return 0;
    double ps = power(x, n), g = ps > 0 ? sqrt(ps / (pn * pow(10, snr / 10))) : 1;
    i = first;
    for (int64_t t = 0; t < n; t++) {
        x[t] = (float)(x[t] + g * c->x[i]);
        if (++i == c->n) i = 0;
    }
    return W2V_AUG_NOISE;
}

static int gain(const w2v_augment *a, w2v_rng *r, float *x, int64_t n)
{
    float g = (float)pow(10, uniform(r, a->o.gain_lo, a->o.gain_hi) / 20);
    for (int64_t t = 0; t < n; t++) x[t] *= g;
    return W2V_AUG_GAIN;
}

/* ---- examples and batches ---- */

/* FNV-1a: the key's part of an example's seed */
static uint64_t key_hash(const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

/* the slot of key in a table of cap slots */
static size_t seen_slot(const w2v_augment *a, const char *key)
{
    size_t i = (size_t)key_hash(key) & (a->seen_cap - 1);
    while (a->seen[i].key && strcmp(a->seen[i].key, key)) i = (i + 1) & (a->seen_cap - 1);
    return i;
}

long w2v_augment_repeat(w2v_augment *a, const char *key, long epoch)
{
    if (epoch != a->seen_epoch) {
        for (size_t i = 0; i < a->seen_cap; i++) {
            free(a->seen[i].key);
            a->seen[i] = (seen_key){0};
        }
        a->seen_n = 0;
        a->seen_epoch = epoch;
    }
    if (2 * (a->seen_n + 1) > a->seen_cap) {
        size_t old_cap = a->seen_cap;
        seen_key *old = a->seen;
        a->seen_cap = old_cap ? 2 * old_cap : 1024;
        a->seen = xcalloc(a->seen_cap, sizeof *a->seen);
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].key) a->seen[seen_slot(a, old[i].key)] = old[i];
        free(old);
    }
    size_t i = seen_slot(a, key);
    if (!a->seen[i].key) {
        a->seen[i].key = xstrdup(key);
        a->seen_n++;
    }
    return a->seen[i].count++;
}

int w2v_augment_example(w2v_augment *a, const char *key, long epoch, long repeat, float *x, int64_t n, char *err,
                        size_t errlen)
{
    if (n <= 0) return 0;
    const w2v_augment_options *o = &a->o;
    uint64_t seed = w2v_hash(w2v_hash(w2v_hash(o->seed, key_hash(key)), (uint64_t)epoch), (uint64_t)repeat);
    w2v_rng r;
    int done = 0, ret = 0;
    scratch *s = scratch_take(a);
#define STAGE(id) w2v_rng_seed(&r, w2v_hash(seed, id))
    if (o->speed_lo > 0) {
        STAGE(STAGE_SPEED);
        done |= ret = speed(a, &r, s, x, n, err, errlen);
    }
    if (o->reverb_prob > 0 && ret >= 0) {
        STAGE(STAGE_REVERB);
        if (w2v_rng_uniform(&r) < o->reverb_prob) done |= ret = reverb(a, &r, s, x, n, err, errlen);
    }
    scratch_give(a, s);
    if (ret < 0) return -1;
    if (o->shift_ms > 0) {
        STAGE(STAGE_SHIFT);
        done |= shift(a, &r, x, n);
    }
    if (a->noise.n) {
        STAGE(STAGE_NOISE);
        done |= noise(a, &r, x, n);
    }
    if (o->gain_lo != 0 || o->gain_hi != 0) {
        STAGE(STAGE_GAIN);
        done |= gain(a, &r, x, n);
    }
#undef STAGE
    if (done && o->normalize && w2v_audio_normalize(x, n) < 0)
        return set_error(err, errlen, "samples too large to normalise (their float32 sums overflow)");
    return done;
}

int w2v_augment_batch(w2v_augment *a, long epoch, w2v_batch *b, long *counts, char *err, size_t errlen)
{
    int *done = xmalloc((size_t)b->batch * sizeof *done), failed = b->batch;
    long *repeat = xmalloc((size_t)b->batch * sizeof *repeat);
    for (int i = 0; i < b->batch; i++) repeat[i] = w2v_augment_repeat(a, b->keys[i], epoch);
    char why[512];
    #pragma omp parallel for schedule(dynamic, 1) num_threads(w2v_threads())
    for (int i = 0; i < b->batch; i++) {
        char e[512];
        done[i] = w2v_augment_example(a, b->keys[i], epoch, repeat[i], b->input_values + (size_t)i * (size_t)b->time,
                                      b->lengths[i], e, sizeof e);
        if (done[i] < 0) {
            /* the first row that failed, whatever the threads (an unnamed
             * critical: a named one is a global symbol outside the w2v_ API) */
            #pragma omp critical
            if (i < failed) {
                failed = i;
                snprintf(why, sizeof why, "%s", e);
            }
        }
    }
    if (failed < b->batch) set_error(err, errlen, "%s: %s", b->keys[failed], why);
    else if (counts)
        for (int i = 0; i < b->batch; i++)
            for (int k = 0; k < 5; k++) counts[k] += (done[i] >> k) & 1;
    free(done);
    free(repeat);
    return failed < b->batch ? -1 : 0;
}
