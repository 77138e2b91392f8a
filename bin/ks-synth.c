/* ks-synth: a corpus in the shape of Speech Commands v0.01, spoken by
 * espeak-ng voices, with its two archives. */
#include "w2v/archive.h"
#include "w2v/cli.h"
#include "w2v/config.h"
#include "w2v/corpus.h"
#include "w2v/digest.h"
#include "w2v/fs.h"
#include "w2v/rng.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <espeak-ng/speak_lib.h>
#include <samplerate.h>
#include <sndfile.h>

static const char usage[] =
    "ks-synth: make a Speech-Commands-shaped corpus with speech synthesis (espeak-ng)\n"
    "\n"
    "Usage: ks-synth [options] OUTDIR      (or -o OUTDIR)\n"
    " e.g.: ks-synth --speakers 6 --per-word 1 tiny && ks-fetch --url tiny/speech_commands_v0.01.tar.gz \\\n"
    "         --test-url tiny/speech_commands_test_set_v0.01.tar.gz data\n"
    "       ks-synth --words hey-robot,lights-on,lights-off mine\n"
    "\n"
    "Each speaker (a seeded draw of espeak-ng voice, variant, pitch, pitch range,\n"
    "rate, vocal-tract stretch, channel and room) says every keyword --per-word\n"
    "times and every other word --unknown-per-word times; each clip is 1 s of\n"
    "16 kHz 16-bit mono with generated noise.  OUTDIR gets the v0.01 layout\n"
    "(WORD/SPEAKER_nohash_N.wav, _background_noise_/, validation_list.txt,\n"
    "testing_list.txt), speech_commands_v0.01.tar.gz, the test-set archive\n"
    "speech_commands_test_set_v0.01.tar.gz and SHA256SUMS; stdout gets the\n"
    "archives' sha256sum lines.  The same options give the same bytes.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR        the corpus directory (must not exist, or be empty)\n"
    "  --seed N                random seed (default 1)\n"
    "  --speakers N            speakers, 10% validation, 10% test (default 300, at least 3)\n"
    "  --per-word N            times each speaker says each keyword (default 2)\n"
    "  --unknown-per-word N    times each speaker says each other word (default 1)\n"
    "  --words LIST            keywords, comma-separated (default yes,no,up,down,left,\n"
    "                          right,on,off,stop,go); '_' inside a word is spoken as a space\n"
    "  --unknown-words LIST    other words (default the corpus's twenty: bed,bird,...,zero)\n"
    "  --snr-min DB            lowest speech-to-noise ratio (default 10)\n"
    "  --snr-max DB            highest speech-to-noise ratio (default 40)\n"
    "  --noise-seconds S       length of each _background_noise_ file (default 60)\n"
    "  --voices LIST           espeak-ng languages the speakers' voices are drawn from,\n"
    "                          comma-separated, instead of English (en-us, en-gb, ...)\n"
    "                          with a tenth German, Dutch or Nordic accents: e.g.\n"
    "                          fr,es,it,pl for voices a default corpus never has\n"
    "  -j, --jobs N            worker threads (default: the cores available)\n"
    "  --quiet                 no summary on stderr\n"
    "  --progress              progress bar even when stderr is not a terminal\n"
    "  -h, --help              this text\n"
    "  --version               print the version\n";

enum {
    OPT_SEED = 1, OPT_SPEAKERS, OPT_PER_WORD, OPT_UNKNOWN_PER_WORD, OPT_WORDS, OPT_UNKNOWN_WORDS,
    OPT_SNR_MIN, OPT_SNR_MAX, OPT_NOISE_SECONDS, OPT_VOICES,
};

#define RATE 16000
#define CLIP 16000                 /* samples in a clip: 1 s */
#define MAX_SPEECH (CLIP * 96 / 100) /* longer speech is said again faster */
#define ARCHIVE_MTIME 1501718400LL /* 2017-08-03, the release of v0.01 */
#define TRAIN_ARCHIVE "speech_commands_v0.01.tar.gz"
#define TEST_ARCHIVE "speech_commands_test_set_v0.01.tar.gz"
#define SILENCE_STAGING ".test_set_silence"

static const char default_words[] = "yes,no,up,down,left,right,on,off,stop,go";
static const char default_unknown[] =
    "bed,bird,cat,dog,eight,five,four,happy,house,marvin,nine,one,seven,sheila,six,three,"
    "tree,two,wow,zero";

static void *must(void *p)
{
    if (!p) w2v_die("out of memory");
    return p;
}

/* ---- random numbers: the library's splitmix64, one independent stream
 * per purpose, so that every clip's draws depend on its own identity only ---- */

typedef struct { uint64_t s; } rng;
enum { STREAM_SPEAKER = 1, STREAM_SPEAKER_ID, STREAM_SAY, STREAM_RENDER, STREAM_BACKGROUND,
       STREAM_SILENCE, STREAM_PICK };

static rng rng_for(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b)
{
    rng r = {w2v_mix64(w2v_mix64(w2v_mix64(seed + W2V_GOLDEN_GAMMA) ^ stream) ^ a) ^ b};
    return r;
}

static uint64_t rng_next(rng *r) { return w2v_splitmix64(&r->s); }

static double uniform(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(r) >> 11) * 0x1p-53;
}

static int below(rng *r, int n)
{
    return (int)((rng_next(r) >> 33) % (uint64_t)n);
}

/* Near enough to a unit normal for noise, and cheap: the Irwin-Hall sum of
 * four uniforms, centred and scaled to unit variance. */
static double gauss(rng *r)
{
    double s = 0;
    for (int k = 0; k < 4; k++) s += (double)(rng_next(r) >> 11) * 0x1p-53;
    return (s - 2) * 1.7320508075688772;
}

/* ---- signal processing ---- */

typedef struct { double b0, b1, b2, a1, a2, z1, z2; } biquad;
enum { LOWPASS, HIGHPASS, BANDPASS };

/* The Audio EQ Cookbook's filters (R. Bristow-Johnson). */
static biquad biquad_make(int type, double fc, double q)
{
    double w = 2 * M_PI * fc / RATE, c = cos(w), alpha = sin(w) / (2 * q), a0 = 1 + alpha;
    biquad f = {0};
    if (type == LOWPASS) {
        f.b0 = f.b2 = (1 - c) / 2 / a0;
        f.b1 = (1 - c) / a0;
    } else if (type == HIGHPASS) {
        f.b0 = f.b2 = (1 + c) / 2 / a0;
        f.b1 = -(1 + c) / a0;
    } else {
        f.b0 = alpha / a0;
        f.b1 = 0;
        f.b2 = -alpha / a0;
    }
    f.a1 = -2 * c / a0;
    f.a2 = (1 - alpha) / a0;
    return f;
}

static void biquad_run(biquad *f, float *x, long n)
{
    for (long i = 0; i < n; i++) {
        double in = x[i], out = f->b0 * in + f->z1;
        f->z1 = f->b1 * in - f->a1 * out + f->z2;
        f->z2 = f->b2 * in - f->a2 * out;
        x[i] = (float)out;
    }
}

/* A Schroeder reverberator: four damped combs in parallel, two all-passes
 * in series; wet is the share of reverberation mixed in. */
typedef struct { double room, rt60, damp, wet; } room;

static void reverb(float *x, long n, const room *rm)
{
    static const double comb_ms[4] = {29.7, 37.1, 41.1, 43.7}, pass_ms[2] = {5.0, 1.7};
    enum { MAXD = 1024 };
    float *y = must(calloc((size_t)n, sizeof *y));
    for (int k = 0; k < 4; k++) {
        int d = (int)(comb_ms[k] * rm->room * RATE / 1000);
        double g = pow(10, -3 * d / (rm->rt60 * RATE)), lp = 0;
        float buf[MAXD] = {0};
        for (long i = 0, j = 0; i < n; i++, j = j + 1 == d ? 0 : j + 1) {
            double out = buf[j];
            lp = out * (1 - rm->damp) + lp * rm->damp;
            buf[j] = (float)(x[i] + g * lp);
            y[i] += (float)(out / 4);
        }
    }
    for (int k = 0; k < 2; k++) {
        int d = (int)(pass_ms[k] * RATE / 1000);
        float buf[MAXD] = {0};
        for (long i = 0, j = 0; i < n; i++, j = j + 1 == d ? 0 : j + 1) {
            double delayed = buf[j], in = y[i];
            buf[j] = (float)(in + 0.7 * delayed);
            y[i] = (float)(delayed - 0.7 * in);
        }
    }
    for (long i = 0; i < n; i++) x[i] += (float)(rm->wet * y[i]);
    free(y);
}

static double power(const float *x, long n)
{
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? s / n : 0;
}

static double peak(const float *x, long n)
{
    double p = 0;
    for (long i = 0; i < n; i++) p = fabs(x[i]) > p ? fabs(x[i]) : p;
    return p;
}

static void scale(float *x, long n, double g)
{
    for (long i = 0; i < n; i++) x[i] = (float)(x[i] * g);
}

/* A sine oscillator by rotation: no libm call per sample. */
typedef struct { double c, s, cw, sw; } osc;

static osc osc_make(double hz, double phase)
{
    double w = 2 * M_PI * hz / RATE;
    return (osc){cos(phase), sin(phase), cos(w), sin(w)};
}

static double osc_next(osc *o)
{
    double s = o->s;
    double c = o->c * o->cw - o->s * o->sw;
    o->s = o->s * o->cw + o->c * o->sw;
    o->c = c;
    return s;
}

/* ---- noise ---- */

enum { WHITE, PINK, BROWN, RUNNING_TAP, HUM, NNOISE };
static const char *const noise_names[NNOISE] = {"white_noise", "pink_noise", "brown_noise",
                                                "running_tap", "hum"};

/* n samples of one kind of noise at unit RMS, without DC. */
static void noise_fill(float *x, long n, int type, rng *r)
{
    double b[7] = {0};
    switch (type) {
    case WHITE:
        for (long i = 0; i < n; i++) x[i] = (float)gauss(r);
        break;
    case PINK: /* Paul Kellet's refined filter: -3 dB/octave within 0.05 dB */
        for (long i = 0; i < n; i++) {
            double w = gauss(r);
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.1538520;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            x[i] = (float)(b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362);
            b[6] = w * 0.115926;
        }
        break;
    case BROWN: /* leaky integration of white noise: -6 dB/octave above 5 Hz */
        for (long i = 0; i < n; i++) x[i] = (float)(b[0] = 0.998 * b[0] + gauss(r));
        break;
    case RUNNING_TAP: { /* band-limited hiss whose level wanders like water */
        biquad f = biquad_make(BANDPASS, uniform(r, 700, 2500), uniform(r, 0.4, 1.2));
        osc am[3];
        for (int k = 0; k < 3; k++) am[k] = osc_make(uniform(r, 2, 9), uniform(r, 0, 2 * M_PI));
        for (long i = 0; i < n; i++) x[i] = (float)gauss(r);
        biquad_run(&f, x, n);
        for (long i = 0; i < n; i++) {
            double m = 1;
            for (int k = 0; k < 3; k++) m += 0.25 * osc_next(&am[k]);
            x[i] = (float)(x[i] * m);
        }
        break;
    }
    case HUM: { /* mains hum: 50 or 60 Hz and its harmonics, a little hiss */
        double f0 = (below(r, 2) ? 50 : 60) * uniform(r, 0.995, 1.005), decay = uniform(r, 0.3, 0.8);
        double amp[10];
        osc h[10];
        for (int k = 0; k < 10; k++) amp[k] = pow(decay, k), h[k] = osc_make(f0 * (k + 1), uniform(r, 0, 2 * M_PI));
        for (long i = 0; i < n; i++) {
            double v = 0.05 * gauss(r);
            for (int k = 0; k < 10; k++) v += amp[k] * osc_next(&h[k]);
            x[i] = (float)v;
        }
        break;
    }
    }
    double mean = 0;
    for (long i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (long i = 0; i < n; i++) x[i] = (float)(x[i] - mean);
    double p = power(x, n);
    if (p > 0) scale(x, n, 1 / sqrt(p));
}

/* ---- WAV files ---- */

static int write_wav(const char *path, const float *x, long n, char *err, size_t errlen)
{
    SF_INFO info = {.samplerate = RATE, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    if (!f) {
        snprintf(err, errlen, "%s: cannot create: %s", path, sf_strerror(NULL));
        return -1;
    }
    short *s = must(malloc((size_t)n * sizeof *s));
    for (long i = 0; i < n; i++) {
        long v = lrint(x[i] * 32768.0);
        s[i] = (short)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
    }
    int ok = sf_write_short(f, s, n) == n;
    free(s);
    if (!ok) snprintf(err, errlen, "%s: write failed: %s", path, sf_strerror(f));
    if (sf_close(f) != 0 && ok) {
        snprintf(err, errlen, "%s: write failed", path);
        ok = 0;
    }
    return ok ? 0 : -1;
}

/* ---- espeak-ng ---- */

static const char *const english_voices[] = {"en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland",
                                             "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                                             "en-us-nyc"};
/* Languages whose spelling rules read English words with an accent. */
static const char *const accent_voices[] = {"de", "nl", "af", "sv", "da", "nb"};

typedef struct {
    char **languages, **accent, **variants; /* those this espeak-ng has */
    int nlanguages, naccent, nvariants;
    int rate; /* the synthesizer's sample rate */
} voices;

typedef struct {
    short *s;
    long n, cap;
} samples;

static int on_synth(short *wav, int n, espeak_EVENT *events)
{
    samples *out = events->user_data;
    if (wav && n > 0) {
        if (out->n + n > out->cap) {
            out->cap = (out->n + n) * 2;
            out->s = must(realloc(out->s, (size_t)out->cap * sizeof *out->s));
        }
        memcpy(out->s + out->n, wav, (size_t)n * sizeof *wav);
        out->n += n;
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keeps the names that espeak-ng accepts; prefix+name is tried. */
static int usable(char **out, const char *const *names, int n, const char *prefix)
{
    int k = 0;
    char voice[160];
    for (int i = 0; i < n; i++) {
        snprintf(voice, sizeof voice, "%s%s", prefix, names[i]);
        if (espeak_SetVoiceByName(voice) == EE_OK) out[k++] = must(strdup(names[i]));
    }
    return k;
}

/* The languages speakers draw from: English with a tenth accents, or those
 * of --voices (chosen, comma-separated), each of which must load. */
static voices voices_open(const char *chosen)
{
    voices v = {0};
    v.rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, espeakINITIALIZE_DONT_EXIT);
    if (v.rate <= 0) w2v_die("espeak-ng: cannot initialise (is espeak-ng-data installed?)");
    espeak_SetSynthCallback(on_synth);
    if (chosen) {
        char **names;
        int n = w2v_labels_parse(chosen, &names, NULL, 0);
        if (n < 1) w2v_usage_error("--voices: give espeak-ng language names, comma-separated, each once");
        for (int i = 0; i < n; i++) {
            if (strchr(names[i], '+'))
                w2v_usage_error("--voices: '%s': give a language alone (variants are drawn)", names[i]);
            if (espeak_SetVoiceByName(names[i]) != EE_OK)
                w2v_usage_error("--voices: espeak-ng has no voice '%s' (a language name of espeak-ng-data, "
                                "such as fr)", names[i]);
        }
        v.languages = names;
        v.nlanguages = n;
    } else {
        int ne = sizeof english_voices / sizeof *english_voices, na = sizeof accent_voices / sizeof *accent_voices;
        v.languages = must(calloc((size_t)ne, sizeof *v.languages));
        v.accent = must(calloc((size_t)na, sizeof *v.accent));
        v.nlanguages = usable(v.languages, english_voices, ne, "");
        v.naccent = usable(v.accent, accent_voices, na, "");
        if (v.nlanguages == 0) w2v_die("espeak-ng: no English voice found");
    }
    /* Variants (voices/!v) in name order: the directory order varies. */
    espeak_VOICE spec = {.languages = "variant"};
    const espeak_VOICE **list = espeak_ListVoices(&spec);
    int nv = 0;
    while (list && list[nv]) nv++;
    char **ids = must(calloc((size_t)nv + 1, sizeof *ids));
    for (int i = 0; i < nv; i++) {
        const char *id = list[i]->identifier, *slash = strrchr(id, '/');
        ids[i] = must(strdup(slash ? slash + 1 : id));
    }
    qsort(ids, (size_t)nv, sizeof *ids, by_name);
    v.variants = must(calloc((size_t)nv + 1, sizeof *v.variants));
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%s+", v.languages[0]);
    v.nvariants = usable(v.variants, (const char *const *)ids, nv, prefix);
    for (int i = 0; i < nv; i++) free(ids[i]);
    free(ids);
    return v;
}

/* ---- speakers ---- */

typedef struct {
    char id[9];
    w2v_set set;
    char voice[160]; /* espeak-ng name: language[+variant] */
    int pitch, range, rate;
    double stretch; /* > 1: slower, lower and with longer formant spacing */
    double highpass, lowpass, gain_db;
    room room;
} speaker;

static void speaker_draw(speaker *sp, const voices *v, uint64_t seed, int index)
{
    rng r = rng_for(seed, STREAM_SPEAKER, (uint64_t)index, 0);
    const char *lang = v->naccent && uniform(&r, 0, 1) < 0.1 ? v->accent[below(&r, v->naccent)]
                                                              : v->languages[below(&r, v->nlanguages)];
    int variant = below(&r, v->nvariants + 1); /* the last: the language's own voice */
    if (variant < v->nvariants) snprintf(sp->voice, sizeof sp->voice, "%s+%s", lang, v->variants[variant]);
    else snprintf(sp->voice, sizeof sp->voice, "%s", lang);
    sp->pitch = (int)uniform(&r, 15, 85);
    sp->range = (int)uniform(&r, 10, 95);
    sp->rate = (int)(130 * exp(uniform(&r, 0, log(2.0)))); /* 130-260 words a minute */
    sp->stretch = exp(uniform(&r, log(0.88), log(1.14)));
    sp->highpass = exp(uniform(&r, log(50), log(400)));
    sp->lowpass = exp(uniform(&r, log(2500), log(7800)));
    sp->gain_db = uniform(&r, -24, -3);
    sp->room.room = uniform(&r, 0.5, 1.2);
    sp->room.rt60 = uniform(&r, 0.15, 0.7);
    sp->room.damp = uniform(&r, 0.1, 0.6);
    sp->room.wet = uniform(&r, 0, 1) < 0.3 ? 0 : uniform(&r, 0.05, 0.5);
}

/* Speaker ids are drawn until the partition rule puts each speaker where
 * its index says: the first 10% validation, the next 10% testing. */
static void speaker_ids(speaker *sp, int n, uint64_t seed)
{
    int nval = (int)lround(n * 0.1), ntest = (int)lround(n * 0.1);
    nval = nval < 1 ? 1 : nval;
    ntest = ntest < 1 ? 1 : ntest;
    size_t size = 1;
    while (size < 4 * (size_t)n) size *= 2;
    uint64_t *seen = must(calloc(size, sizeof *seen)); /* open addressing, id + 1 */
    for (int i = 0; i < n; i++) {
        sp[i].set = i < nval ? W2V_SET_VALIDATION : i < nval + ntest ? W2V_SET_TESTING : W2V_SET_TRAINING;
        rng r = rng_for(seed, STREAM_SPEAKER_ID, (uint64_t)i, 0);
        for (;;) {
            uint32_t id = (uint32_t)rng_next(&r);
            snprintf(sp[i].id, sizeof sp[i].id, "%08x", id);
            if (w2v_which_set(sp[i].id, 10, 10) != sp[i].set) continue;
            size_t h = w2v_mix64(id) & (size - 1);
            while (seen[h] && seen[h] != (uint64_t)id + 1) h = (h + 1) & (size - 1);
            if (seen[h]) continue;
            seen[h] = (uint64_t)id + 1;
            break;
        }
    }
    free(seen);
}

/* ---- clips ---- */

typedef struct {
    int speaker, word, rep;
    char *name; /* WORD/SPEAKER_nohash_N.wav */
    samples raw; /* synthesized, trimmed, at the synthesizer's rate */
} clip;

typedef struct {
    uint64_t seed;
    char **words; /* keywords, then the other words */
    int nkeywords, nwords;
    double snr_min, snr_max;
    speaker *speakers;
    voices voices;
} plan;

/* The span of samples louder than 40 dB below the loudest 5 ms frame,
 * with a frame to spare on each side. */
static void trim(const samples *s, long *from, long *to)
{
    enum { FRAME = 110 };
    long nf = s->n / FRAME, first = -1, last = -1;
    double loudest = 0;
    for (long f = 0; f < nf; f++) {
        double e = 0;
        for (long i = f * FRAME; i < (f + 1) * FRAME; i++) e += (double)s->s[i] * s->s[i];
        loudest = e > loudest ? e : loudest;
    }
    for (long f = 0; f < nf; f++) {
        double e = 0;
        for (long i = f * FRAME; i < (f + 1) * FRAME; i++) e += (double)s->s[i] * s->s[i];
        if (e > loudest * 1e-4) {
            if (first < 0) first = f;
            last = f;
        }
    }
    if (first < 0) {
        *from = *to = 0;
        return;
    }
    *from = (first > 0 ? first - 1 : 0) * FRAME;
    *to = (last + 2) * FRAME < s->n ? (last + 2) * FRAME : s->n;
}

/* Speaks a clip's word; speech that would not fit in a clip is said again
 * faster.  espeak-ng keeps state from one call to the next, so clips are
 * spoken one after another in a fixed order.  Its breathy and whispering
 * voices draw their noise from libc's rand(), whose one sequence other
 * libraries share: libpulse, which espeak-ng loads, draws from it when it
 * first sets up a user's configuration, and the first corpus a machine
 * made differed from later ones in 45 of 600 speakers.  Each clip reseeds
 * it from its own identity. */
static void say(const plan *p, clip *c)
{
    const speaker *sp = &p->speakers[c->speaker];
    rng r = rng_for(p->seed, STREAM_SAY, (uint64_t)c->speaker, (uint64_t)c->word << 20 | (uint64_t)c->rep);
    double rate = sp->rate * uniform(&r, 0.9, 1.1);
    int pitch = sp->pitch + (int)lround(uniform(&r, -6, 6));
    unsigned noise_seed = (unsigned)(rng_next(&r) >> 32);
    char text[80];
    snprintf(text, sizeof text, "%s", p->words[c->word]);
    for (char *t = text; *t; t++) *t = *t == '_' ? ' ' : *t;
    double ratio = (double)RATE / p->voices.rate * sp->stretch;
    long from = 0, to = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (espeak_SetVoiceByName(sp->voice) != EE_OK) w2v_die("espeak-ng: voice %s: cannot load", sp->voice);
        espeak_SetParameter(espeakRATE, (int)lround(rate), 0);
        espeak_SetParameter(espeakPITCH, pitch < 0 ? 0 : pitch > 100 ? 100 : pitch, 0);
        espeak_SetParameter(espeakRANGE, sp->range, 0);
        c->raw.n = 0;
        srand(noise_seed);
        if (espeak_Synth(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_AUTO, NULL, &c->raw) != EE_OK)
            w2v_die("espeak-ng: cannot speak '%s'", text);
        trim(&c->raw, &from, &to);
        double len = (double)(to - from) * ratio;
        if (len <= MAX_SPEECH || rate >= espeakRATE_MAXIMUM) break;
        rate = fmin(espeakRATE_MAXIMUM, rate * len / (0.9 * MAX_SPEECH));
    }
    if (to <= from) w2v_die("espeak-ng: voice %s said nothing for '%s'", sp->voice, text);
    memmove(c->raw.s, c->raw.s + from, (size_t)(to - from) * sizeof *c->raw.s);
    c->raw.n = to - from;
}

/* Speaks clips [from, to); returns the seconds it took. */
static double say_chunk(const plan *p, clip *clips, long from, long to)
{
    double t = w2v_now();
    for (long i = from; i < to; i++) say(p, &clips[i]);
    return w2v_now() - t;
}

/* Turns a spoken word into a clip: speaker's stretch and channel, a random
 * place in the second, room, level and noise.  Speech still longer than a
 * clip (rare: only at the fastest rate) is cut with a 10 ms fade.  Returns
 * -1 with err set when the file cannot be written. */
static int render(const plan *p, const clip *c, const char *dir, char *err, size_t errlen)
{
    const speaker *sp = &p->speakers[c->speaker];
    rng r = rng_for(p->seed, STREAM_RENDER, (uint64_t)c->speaker, (uint64_t)c->word << 20 | (uint64_t)c->rep);
    double ratio = (double)RATE / p->voices.rate * sp->stretch;
    long cap = (long)ceil(c->raw.n * ratio) + 64;
    float *in = must(malloc((size_t)c->raw.n * sizeof *in)), *speech = must(malloc((size_t)cap * sizeof *speech));
    float *clipbuf = must(calloc(CLIP, sizeof *clipbuf)), *noise = must(malloc(CLIP * sizeof *noise));
    src_short_to_float_array(c->raw.s, in, (int)c->raw.n);
    SRC_DATA d = {.data_in = in, .data_out = speech, .input_frames = c->raw.n,
                  .output_frames = cap, .src_ratio = ratio};
    int e = src_simple(&d, SRC_SINC_FASTEST, 1);
    if (e) w2v_die("libsamplerate: %s", src_strerror(e));
    long n = d.output_frames_gen;
    if (n > CLIP) {
        n = CLIP;
        for (long i = 0; i < 160; i++) speech[n - 1 - i] *= (float)i / 160;
    }
    double pk = peak(speech, n);
    double level = pow(10, fmin(-1, sp->gain_db + uniform(&r, -4, 4)) / 20);
    long offset = below(&r, (int)(CLIP - n + 1));
    for (long i = 0; i < n; i++) clipbuf[offset + i] = (float)(speech[i] * (pk > 0 ? level / pk : 0));
    biquad hp = biquad_make(HIGHPASS, sp->highpass, M_SQRT1_2), lp = biquad_make(LOWPASS, sp->lowpass, M_SQRT1_2);
    biquad_run(&hp, clipbuf, CLIP);
    biquad_run(&lp, clipbuf, CLIP);
    if (sp->room.wet > 0) reverb(clipbuf, CLIP, &sp->room);
    double speech_power = power(clipbuf, CLIP) * CLIP / (double)n;
    int type = below(&r, NNOISE);
    double snr = uniform(&r, p->snr_min, p->snr_max);
    noise_fill(noise, CLIP, type, &r);
    double g = sqrt(speech_power / pow(10, snr / 10));
    for (long i = 0; i < CLIP; i++) clipbuf[i] += (float)(g * noise[i]);
    double top = peak(clipbuf, CLIP);
    if (top > 0.99) scale(clipbuf, CLIP, 0.99 / top);
    char *path = w2v_path_join(dir, c->name);
    int ret = write_wav(path, clipbuf, CLIP, err, errlen);
    free(path);
    free(in);
    free(speech);
    free(clipbuf);
    free(noise);
    return ret;
}

/* ---- the corpus directory ---- */

static char *tmpdir; /* removed at exit unless renamed into place */

static void remove_tmpdir(void)
{
    if (tmpdir) w2v_remove_tree(tmpdir, NULL, 0);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) w2v_die("out of memory");
    return s;
}

static void make_dir(const char *dir, const char *name)
{
    char *path = w2v_path_join(dir, name);
    if (mkdir(path, 0777) != 0) w2v_die("%s: cannot create: %s", path, strerror(errno));
    free(path);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *path = w2v_path_join(dir, name);
    w2v_output *out = w2v_output_open(path, 0);
    if (fputs(text, w2v_output_file(out)) == EOF) w2v_write_failed(path);
    w2v_output_close(out);
    free(path);
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The partition lists: clip names the rule puts in set, sorted. */
static void write_list(const char *dir, const char *name, clip *clips, long n, w2v_set set)
{
    char **names = must(malloc((size_t)(n + 1) * sizeof *names));
    long k = 0;
    for (long i = 0; i < n; i++)
        if (w2v_which_set(clips[i].name, 10, 10) == set) names[k++] = clips[i].name;
    qsort(names, (size_t)k, sizeof *names, by_string);
    size_t len = 1;
    for (long i = 0; i < k; i++) len += strlen(names[i]) + 1;
    char *text = must(malloc(len)), *t = text;
    for (long i = 0; i < k; i++) t += sprintf(t, "%s\n", names[i]);
    *t = 0;
    write_text(dir, name, text);
    free(text);
    free(names);
}

static void write_noise_files(const plan *p, const char *dir, double seconds)
{
    long n = (long)lround(seconds * RATE);
    char err[512] = "";
    int failed = 0;
#pragma omp parallel for schedule(dynamic)
    for (int t = 0; t < NNOISE; t++) {
        float *x = must(malloc((size_t)n * sizeof *x));
        rng r = rng_for(p->seed, STREAM_BACKGROUND, (uint64_t)t, 0);
        noise_fill(x, n, t, &r);
        double pk = peak(x, n);
        scale(x, n, fmin(0.1, pk > 0 ? 0.9 / pk : 0)); /* RMS 0.1 unless that clips */
        char *name = xasprintf("_background_noise_/%s.wav", noise_names[t]), *path = w2v_path_join(dir, name);
        char e[512];
        if (write_wav(path, x, n, e, sizeof e) < 0) {
#pragma omp critical
            {
                failed = 1;
                snprintf(err, sizeof err, "%s", e);
            }
        }
        free(name);
        free(path);
        free(x);
    }
    if (failed) w2v_die("%s", err);
}

/* ---- archives ---- */

typedef struct {
    w2v_tar_member *m;
    size_t n, cap;
} members;

static void add_member(members *ms, char *name, char *path)
{
    if (ms->n == ms->cap) {
        ms->cap = ms->cap ? 2 * ms->cap : 256;
        ms->m = must(realloc(ms->m, ms->cap * sizeof *ms->m));
    }
    ms->m[ms->n++] = (w2v_tar_member){name, path};
}

static int by_member_name(const void *a, const void *b)
{
    return strcmp(((const w2v_tar_member *)a)->name, ((const w2v_tar_member *)b)->name);
}

/* Writes the archive, prints its sha256sum line, appends it to sums. */
static void archive(const char *dir, const char *name, members *ms, FILE *sums)
{
    if (ms->n > 1) qsort(ms->m, ms->n, sizeof *ms->m, by_member_name);
    char *path = w2v_path_join(dir, name), err[1024], hex[W2V_SHA256_HEX];
    if (w2v_tar_write(path, ms->m, ms->n, ARCHIVE_MTIME, err, sizeof err) < 0) w2v_die("%s", err);
    if (w2v_sha256_file(path, hex, err, sizeof err) < 0) w2v_die("%s", err);
    fprintf(sums, "%s  %s\n", hex, name);
    printf("%s  %s\n", hex, name);
    free(path);
    for (size_t i = 0; i < ms->n; i++) {
        free((char *)ms->m[i].name);
        free((char *)ms->m[i].path);
    }
    free(ms->m);
}

/* The training archive: the tree as it stands, names "./...". */
static void training_archive(const char *dir, const plan *p, clip *clips, long nclips, FILE *sums)
{
    members ms = {0};
    add_member(&ms, xasprintf("./"), NULL);
    static const char *const top[] = {"LICENSE", "README.md", "testing_list.txt", "validation_list.txt",
                                      "_background_noise_/README.md"};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++)
        add_member(&ms, xasprintf("./%s", top[i]), w2v_path_join(dir, top[i]));
    add_member(&ms, xasprintf("./_background_noise_/"), NULL);
    for (int t = 0; t < NNOISE; t++) {
        char *name = xasprintf("_background_noise_/%s.wav", noise_names[t]);
        add_member(&ms, xasprintf("./%s", name), w2v_path_join(dir, name));
        free(name);
    }
    for (int w = 0; w < p->nwords; w++) add_member(&ms, xasprintf("./%s/", p->words[w]), NULL);
    for (long i = 0; i < nclips; i++)
        add_member(&ms, xasprintf("./%s", clips[i].name), w2v_path_join(dir, clips[i].name));
    archive(dir, TRAIN_ARCHIVE, &ms, sums);
}

/* The test-set archive as the real one is laid out: the test speakers'
 * keyword clips in their folders, as many of their other words in
 * _unknown_ (WORD_SPEAKER_nohash_N.wav) and as many 1 s noise clips in
 * _silence_ as there are clips of an average keyword. */
static void test_archive(const char *dir, const plan *p, clip *clips, long nclips, FILE *sums,
                         long *counts)
{
    members ms = {0};
    add_member(&ms, xasprintf("./"), NULL);
    add_member(&ms, xasprintf("./LICENSE"), w2v_path_join(dir, "LICENSE"));
    add_member(&ms, xasprintf("./README.md"), w2v_path_join(dir, "README.md"));
    for (int w = 0; w < p->nkeywords; w++) add_member(&ms, xasprintf("./%s/", p->words[w]), NULL);
    add_member(&ms, xasprintf("./_silence_/"), NULL);
    add_member(&ms, xasprintf("./_unknown_/"), NULL);
    long nkey = 0, nother = 0;
    long *other = must(malloc((size_t)(nclips + 1) * sizeof *other));
    for (long i = 0; i < nclips; i++) {
        if (p->speakers[clips[i].speaker].set != W2V_SET_TESTING) continue;
        if (clips[i].word < p->nkeywords) {
            add_member(&ms, xasprintf("./%s", clips[i].name), w2v_path_join(dir, clips[i].name));
            nkey++;
        } else
            other[nother++] = i;
    }
    long want = (long)lround((double)nkey / p->nkeywords), nunknown = want < nother ? want : nother;
    rng r = rng_for(p->seed, STREAM_PICK, 0, 0);
    for (long i = 0; i < nunknown; i++) { /* a partial Fisher-Yates shuffle */
        long j = i + below(&r, (int)(nother - i)), t = other[i];
        other[i] = other[j];
        other[j] = t;
        const clip *c = &clips[other[i]];
        add_member(&ms, xasprintf("./_unknown_/%s_%s", p->words[c->word], strchr(c->name, '/') + 1),
                   w2v_path_join(dir, c->name));
    }
    free(other);
    make_dir(dir, SILENCE_STAGING);
    float x[CLIP];
    char err[512];
    for (long i = 0; i < want; i++) {
        rng s = rng_for(p->seed, STREAM_SILENCE, (uint64_t)i, 0);
        noise_fill(x, CLIP, below(&s, NNOISE), &s);
        scale(x, CLIP, pow(10, uniform(&s, -60, -20) / 20));
        double pk = peak(x, CLIP);
        if (pk > 0.99) scale(x, CLIP, 0.99 / pk);
        char *name = xasprintf("%s/silence_%04ld.wav", SILENCE_STAGING, i), *path = w2v_path_join(dir, name);
        if (write_wav(path, x, CLIP, err, sizeof err) < 0) w2v_die("%s", err);
        add_member(&ms, xasprintf("./_silence_/%s", strrchr(name, '/') + 1), path);
        free(name);
    }
    archive(dir, TEST_ARCHIVE, &ms, sums);
    char *staging = w2v_path_join(dir, SILENCE_STAGING);
    if (w2v_remove_tree(staging, err, sizeof err) < 0) w2v_die("%s", err);
    free(staging);
    counts[0] = nkey;
    counts[1] = nunknown;
    counts[2] = want;
}

static char *joined(char **words, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(words[i]) + 2;
    char *s = must(malloc(len)), *t = s;
    for (int i = 0; i < n; i++) t += sprintf(t, "%s%s", i ? ", " : "", words[i]);
    *t = 0;
    return s;
}

static void write_readme(const char *dir, const plan *p, int nspeakers, int per_word, int unknown_per_word,
                         double noise_seconds, long nclips)
{
    char *kw = joined(p->words, p->nkeywords), *other = joined(p->words + p->nkeywords, p->nwords - p->nkeywords);
    char *text = xasprintf(
        "# A synthetic corpus in the shape of Speech Commands v0.01\n\n"
        "Made by ks-synth (w2vtools %s) with the eSpeak NG speech synthesizer: no\n"
        "person recorded any of it, and it is not the Speech Commands data set.\n"
        "It has that corpus's layout so that the same tools read both.\n\n"
        "- %ld one-second clips, 16 kHz 16-bit mono WAV, in WORD/SPEAKER_nohash_N.wav\n"
        "- %d synthetic speakers (espeak-ng voice, variant, pitch, pitch range, rate,\n"
        "  vocal-tract stretch, channel and room drawn from seed %llu)\n"
        "- keywords, said %d times by each speaker: %s\n"
        "- other words, said %d times by each speaker: %s\n"
        "- noise (white, pink, brown, running tap, mains hum) mixed in at %g to %g dB SNR\n"
        "- _background_noise_/: %g s of each kind of noise\n"
        "- validation_list.txt and testing_list.txt: TensorFlow's which_set rule\n"
        "  (SHA-1 of the speaker id) with 10%% validation and 10%% testing\n\n"
        "The test-set archive holds the test speakers' keyword clips, as many of\n"
        "their other words in _unknown_/ and as many noise clips in _silence_/ as\n"
        "there are clips of an average keyword.\n",
        W2V_VERSION, nclips, nspeakers, (unsigned long long)p->seed, per_word, kw, unknown_per_word, other,
        p->snr_min, p->snr_max, noise_seconds);
    write_text(dir, "README.md", text);
    free(text);
    free(kw);
    free(other);
    write_text(dir, "LICENSE",
               "This corpus was generated by a program (ks-synth of w2vtools, with the\n"
               "eSpeak NG synthesizer); it holds no recording of any person.  The audio\n"
               "may be used, copied and changed for any purpose without restriction.\n");
    write_text(dir, "_background_noise_/README.md",
               "Generated noise, 16 kHz 16-bit mono: white, pink (-3 dB/octave), brown\n"
               "(-6 dB/octave), running_tap (band-limited hiss with a wandering level)\n"
               "and hum (50 or 60 Hz mains hum with harmonics).\n");
}

/* The corpus goes where nothing is, or replaces an empty directory (a
 * rename can); anything else is refused. */
static void check_output(const char *dir)
{
    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno != ENOENT) w2v_die("%s: %s", dir, strerror(errno));
        return;
    }
    DIR *d = S_ISDIR(st.st_mode) ? opendir(dir) : NULL;
    struct dirent *e = NULL;
    while (d && (e = readdir(d)) && (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))) {}
    if (d) closedir(d);
    if (!d || e)
        w2v_die("%s: already exists%s; ks-synth makes a new corpus directory", dir,
                S_ISDIR(st.st_mode) ? " and is not empty" : "");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"output", required_argument, 0, 'o'},
        {"seed", required_argument, 0, OPT_SEED},
        {"speakers", required_argument, 0, OPT_SPEAKERS},
        {"per-word", required_argument, 0, OPT_PER_WORD},
        {"unknown-per-word", required_argument, 0, OPT_UNKNOWN_PER_WORD},
        {"words", required_argument, 0, OPT_WORDS},
        {"unknown-words", required_argument, 0, OPT_UNKNOWN_WORDS},
        {"snr-min", required_argument, 0, OPT_SNR_MIN},
        {"snr-max", required_argument, 0, OPT_SNR_MAX},
        {"noise-seconds", required_argument, 0, OPT_NOISE_SECONDS},
        {"voices", required_argument, 0, OPT_VOICES},
        {"jobs", required_argument, 0, W2V_OPT_THREADS},
        {"threads", required_argument, 0, W2V_OPT_THREADS},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {0, 0, 0, 0},
    };
    const char *output = NULL, *words_arg = default_words, *unknown_arg = default_unknown, *voices_arg = NULL;
    long seed = 1, nspeakers = 300, per_word = 2, unknown_per_word = 1;
    double snr_min = 10, snr_max = 40, noise_seconds = 60;
    int opt;
    w2v_cli_init("ks-synth", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:j:", longopts, NULL)) != -1) {
        if (opt == 'j') opt = W2V_OPT_THREADS;
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case 'o': output = optarg; break;
        case OPT_SEED: seed = w2v_parse_long("--seed", optarg, 0, LONG_MAX); break;
        case OPT_SPEAKERS: nspeakers = w2v_parse_long("--speakers", optarg, 3, 100000); break;
        case OPT_PER_WORD: per_word = w2v_parse_long("--per-word", optarg, 1, 100); break;
        case OPT_UNKNOWN_PER_WORD: unknown_per_word = w2v_parse_long("--unknown-per-word", optarg, 0, 100); break;
        case OPT_WORDS: words_arg = optarg; break;
        case OPT_UNKNOWN_WORDS: unknown_arg = optarg; break;
        case OPT_SNR_MIN: snr_min = w2v_parse_double("--snr-min", optarg, -20, 100); break;
        case OPT_SNR_MAX: snr_max = w2v_parse_double("--snr-max", optarg, -20, 100); break;
        case OPT_NOISE_SECONDS: noise_seconds = w2v_parse_double("--noise-seconds", optarg, 1, 3600); break;
        case OPT_VOICES: voices_arg = optarg; break;
        }
    }
    if (optind < argc) {
        if (output || optind + 1 < argc) w2v_usage_error("give one output directory");
        output = argv[optind];
    }
    if (!output) w2v_usage_error("no output directory");
    if (snr_min > snr_max) w2v_usage_error("--snr-min %g is above --snr-max %g", snr_min, snr_max);

    plan p = {.seed = (uint64_t)seed, .snr_min = snr_min, .snr_max = snr_max};
    char **keywords, **others = NULL, err[1024];
    int nk = w2v_ks_parse_words(words_arg, &keywords, err, sizeof err), no = 0;
    if (nk < 0) w2v_usage_error("--words: %s", err);
    if (*unknown_arg && (no = w2v_ks_parse_words(unknown_arg, &others, err, sizeof err)) < 0)
        w2v_usage_error("--unknown-words: %s", err);
    p.nkeywords = nk;
    p.nwords = nk + no;
    p.words = must(calloc((size_t)p.nwords + 1, sizeof *p.words));
    for (int i = 0; i < p.nwords; i++) {
        p.words[i] = i < nk ? keywords[i] : others[i - nk];
        for (int j = 0; j < i; j++)
            if (!strcmp(p.words[i], p.words[j])) w2v_usage_error("'%s' is both a keyword and another word", p.words[i]);
    }

    double t0 = w2v_now();
    check_output(output);
    tmpdir = xasprintf("%s.tmp.%ld", output, (long)getpid());
    if (w2v_remove_tree(tmpdir, err, sizeof err) < 0) w2v_die("%s", err);
    if (mkdir(tmpdir, 0777) != 0) w2v_die("%s: cannot create: %s", tmpdir, strerror(errno));
    atexit(remove_tmpdir);
    make_dir(tmpdir, "_background_noise_");
    for (int w = 0; w < p.nwords; w++) make_dir(tmpdir, p.words[w]);

    p.voices = voices_open(voices_arg);
    p.speakers = must(calloc((size_t)nspeakers, sizeof *p.speakers));
    for (int i = 0; i < nspeakers; i++) speaker_draw(&p.speakers[i], &p.voices, p.seed, i);
    speaker_ids(p.speakers, (int)nspeakers, p.seed);

    long nclips = 0;
    for (int w = 0; w < p.nwords; w++) nclips += w < nk ? per_word : unknown_per_word;
    nclips *= nspeakers;
    clip *clips = must(calloc((size_t)nclips, sizeof *clips));
    long k = 0;
    for (int s = 0; s < nspeakers; s++)
        for (int w = 0; w < p.nwords; w++)
            for (int rep = 0; rep < (w < nk ? per_word : unknown_per_word); rep++, k++) {
                clips[k] = (clip){.speaker = s, .word = w, .rep = rep};
                clips[k].name = xasprintf("%s/%s_nohash_%d.wav", p.words[w], p.speakers[s].id, rep);
            }

    /* Spoken in order, one chunk at a time, by one thread, while the others
     * render and write the chunk spoken before. */
    enum { CHUNK = 256 };
    w2v_progress bar;
    w2v_progress_start(&bar, "clips", (double)nclips);
    double spoken = 0;
    int failed = 0;
#pragma omp parallel
#pragma omp single
    for (long start = 0; start < nclips && !failed; start += CHUNK) {
        long end = start + CHUNK < nclips ? start + CHUNK : nclips;
        if (start == 0) spoken += say_chunk(&p, clips, 0, end);
        for (long i = start; i < end; i++) {
#pragma omp task firstprivate(i) shared(failed, err)
            {
                char e[1024];
                if (render(&p, &clips[i], tmpdir, e, sizeof e) < 0) {
#pragma omp critical
                    {
                        failed = 1;
                        snprintf(err, sizeof err, "%s", e);
                    }
                }
                free(clips[i].raw.s);
                clips[i].raw = (samples){0};
            }
        }
        if (end < nclips) spoken += say_chunk(&p, clips, end, end + CHUNK < nclips ? end + CHUNK : nclips);
#pragma omp taskwait
        w2v_progress_update(&bar, (double)end, NULL);
    }
    if (failed) w2v_die("%s", err);
    w2v_progress_end(&bar);
    double t_clips = w2v_now() - t0;
    espeak_Terminate();

    write_noise_files(&p, tmpdir, noise_seconds);
    write_readme(tmpdir, &p, (int)nspeakers, (int)per_word, (int)unknown_per_word, noise_seconds, nclips);
    write_list(tmpdir, "validation_list.txt", clips, nclips, W2V_SET_VALIDATION);
    write_list(tmpdir, "testing_list.txt", clips, nclips, W2V_SET_TESTING);

    double t1 = w2v_now();
    char *sums_path = w2v_path_join(tmpdir, "SHA256SUMS");
    w2v_output *sums = w2v_output_open(sums_path, 0);
    training_archive(tmpdir, &p, clips, nclips, w2v_output_file(sums));
    long test_counts[3];
    test_archive(tmpdir, &p, clips, nclips, w2v_output_file(sums), test_counts);
    w2v_output_close(sums);
    if (fflush(stdout) != 0) w2v_write_failed("stdout");
    double t_archives = w2v_now() - t1;

    if (w2v_replace_dir(tmpdir, output, err, sizeof err) < 0) w2v_die("%s", err);
    free(tmpdir);
    tmpdir = NULL;

    int nsets[3] = {0};
    for (int s = 0; s < nspeakers; s++) nsets[p.speakers[s].set]++;
    w2v_note("%s: %ld clips of %d words by %ld speakers (training %d, validation %d, testing %d); "
             "test set: %ld keyword, %ld _unknown_, %ld _silence_ clips",
             output, nclips, p.nwords, nspeakers, nsets[W2V_SET_TRAINING], nsets[W2V_SET_VALIDATION],
             nsets[W2V_SET_TESTING], test_counts[0], test_counts[1], test_counts[2]);
    w2v_note("clips in %.1f s (%.0f clips/s, speech synthesis %.1f s, %d threads), archives in %.1f s",
             t_clips, nclips / t_clips, spoken, w2v_threads(), t_archives);
    for (long i = 0; i < nclips; i++) free(clips[i].name);
    free(clips);
    free(p.speakers);
    free(p.words);
    w2v_ks_free_words(keywords);
    w2v_ks_free_words(others);
    return 0;
}
