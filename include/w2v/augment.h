/* Data augmentation of training audio, example by example: background
 * noise at a drawn SNR, a time shift, speed perturbation, gain, and
 * reverberation by a room impulse response (recorded, or from a
 * shoebox-room model), as keyword-spotting recipes do it (TensorFlow's
 * speech_commands: noise and shift; Kaldi: speed and rooms).
 *
 * Every draw comes from (seed, the example's key, its epoch, how many times
 * the key came before in the epoch), so an example changes afresh each
 * epoch, and the same run gives the same bytes whatever the thread count or
 * the batches the examples arrive in. */
#ifndef W2V_AUGMENT_H
#define W2V_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "w2v/rng.h"
#include "w2v/stream.h"

typedef struct {
    uint64_t seed;
    int sample_rate;
    int normalize;               /* renormalise a changed example (zero mean, unit variance) */
    int converter;               /* libsamplerate's, for speed and for loading files */
    double noise_prob;           /* with a noise file loaded */
    double snr_lo, snr_hi;       /* dB, drawn uniformly */
    double shift_ms;             /* uniform in [-shift_ms, shift_ms]; 0 = none */
    double speed_lo, speed_hi;   /* factor, uniform; 0 = none */
    double gain_lo, gain_hi;     /* dB, uniform; both 0 = none */
    double reverb_prob;          /* 0 = none */
    const char *noise;           /* noise recordings (see below); NULL = no noise */
    const char *rirs;            /* impulse responses; NULL = rooms drawn from the seed */
} w2v_augment_options;

/* What was done to an example: the return of w2v_augment_example. */
enum {
    W2V_AUG_NOISE = 1, W2V_AUG_SHIFT = 2, W2V_AUG_SPEED = 4, W2V_AUG_GAIN = 8, W2V_AUG_REVERB = 16,
};

typedef struct w2v_augment w2v_augment;

/* Loads the noise recordings and impulse responses at the sample rate, each
 * o->noise or o->rirs being a directory, whose files with the extension of
 * a format libsndfile reads are taken (".wav", ".flac", ".ogg", ...;
 * README.md and the like are passed over), or a list of files (one path a
 * line, relative to the list's directory; empty lines and lines starting
 * with '#' skipped).  Every file is decoded whole and kept in memory; an
 * impulse response's largest sample is taken for its direct path.  With
 * reverb_prob > 0 and no files, 32 rooms drawn from the seed give the
 * impulse responses.  NULL with "PATH: what is wrong" in err on failure. */
w2v_augment *w2v_augment_new(const w2v_augment_options *o, char *err, size_t errlen);
void w2v_augment_free(w2v_augment *a);

/* How many times key came before in this epoch, counting this call (0 the
 * first time): an example drawn again (ks-batch --balance draws with
 * replacement) gets draws of its own.  Call in stream order, from one
 * thread; a new epoch forgets the last.  Memory: the epoch's keys. */
long w2v_augment_repeat(w2v_augment *a, const char *key, long epoch);
/* Augments x[0 .. n) in place, the example key the repeat-th time in its
 * epoch; samples past n are never read or written.  Safe to call from
 * several threads at once.  Returns the W2V_AUG_ bits of what was done (0:
 * x is untouched), or -1 with the reason in err. */
int w2v_augment_example(w2v_augment *a, const char *key, long epoch, long repeat, float *x, int64_t n, char *err,
                        size_t errlen);
/* Every row of a batch (w2v_augment_repeat for each in order, then the rows
 * over the library's threads, w2v_threads), each within its length:
 * padding stays as it is.  Adds each row's bits into counts[k] for bit
 * 1 << k (5 counters) when counts is not NULL.  0, or -1 with "KEY: what
 * is wrong" in err. */
int w2v_augment_batch(w2v_augment *a, long epoch, w2v_batch *b, long *counts, char *err, size_t errlen);

/* ---- the room model ---- */

/* A shoebox room: size, source and microphone in metres, the reverberation
 * time it was drawn for (s), the walls' reflection coefficient. */
typedef struct {
    double size[3], source[3], mic[3], t60, beta;
} w2v_room;

/* A room of 3-10 x 3-10 x 2.4-4 m with T60 0.15-0.6 s (Sabine's formula
 * gives the walls' absorption), source and microphone at least 0.5 m from
 * the walls. */
void w2v_room_draw(w2v_rng *r, w2v_room *room);
/* The room's impulse response at rate by the image-source method (Allen &
 * Berkley, 1979) up to the time sound takes to fall 60 dB: *n samples,
 * malloc'd. */
float *w2v_room_rir(const w2v_room *room, int rate, int64_t *n);

#endif
