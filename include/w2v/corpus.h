/* The Speech Commands corpus as SUPERB keyword spotting uses it: the
 * twelve labels, the mapping of corpus folders to labels, and the rule that
 * assigns a recording to the training, validation or testing partition. */
#ifndef W2V_CORPUS_H
#define W2V_CORPUS_H

#include <stddef.h>
#include <stdio.h>

#define W2V_KS_NLABELS 12
#define W2V_KS_NKEYWORDS 10

/* Label names in id order, as the Hugging Face "superb" dataset (config
 * "ks") numbers them: the ten keywords, then _silence_ and _unknown_. */
extern const char *const w2v_ks_labels[W2V_KS_NLABELS];

/* The label of a corpus folder: a keyword keeps its name,
 * _background_noise_ and _silence_ become _silence_, anything else
 * _unknown_.  keywords NULL means SUPERB's ten. */
const char *w2v_ks_label(const char *folder, const char *const *keywords, int nkeywords);

/* Parses a comma-separated list of words, which name corpus folders:
 * lower-case letters, digits, '-' and '_' (not first), at most 64 bytes
 * each, no repeats.  Returns the count with a NULL-terminated array in
 * *words (free with w2v_ks_free_words), or -1 with the reason in err. */
int w2v_ks_parse_words(const char *list, char ***words, char *err, size_t errlen);
void w2v_ks_free_words(char **words);

/* TensorFlow's which_set (speech_commands/input_data.py): the SHA-1 of the
 * file name with "_nohash_..." removed, taken modulo 2^27 and scaled to a
 * percentage, decides the partition, so all of a speaker's recordings land
 * in the same one.  The corpus lists were made with 10 and 10 percent. */
typedef enum { W2V_SET_TRAINING, W2V_SET_VALIDATION, W2V_SET_TESTING } w2v_set;
w2v_set w2v_which_set(const char *filename, double validation_percentage,
                      double testing_percentage);

/* One row of a manifest (what ks-fetch writes, ks-extract reads). */
typedef struct {
    char *key, *path; /* non-empty */
    char *label;      /* NULL: the row has none */
    long line;        /* 1-based, in the file */
} w2v_manifest_row;

/* Reads a manifest: tab-separated rows key, path and an optional label,
 * lines ending in LF or CRLF of any length; a first line "key path label"
 * (after a UTF-8 byte order mark, if any) is the header; blank lines are
 * skipped.  Returns the number of rows with them in *rows (free with
 * w2v_manifest_free), or -1 with "NAME:LINE: why" (or "NAME: read
 * failed: why") in err. */
long w2v_manifest_read(FILE *fp, const char *name, w2v_manifest_row **rows, char *err, size_t errlen);
void w2v_manifest_free(w2v_manifest_row *rows, long n);

#endif
