/* Speech Commands conventions: SUPERB's labels and TensorFlow's partition
 * rule. */
#include "w2v/corpus.h"

#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>

const char *const w2v_ks_labels[W2V_KS_NLABELS] = {
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "_silence_", "_unknown_",
};

const char *w2v_ks_label(const char *folder, const char *const *keywords, int nkeywords)
{
    if (!keywords) {
        keywords = w2v_ks_labels;
        nkeywords = W2V_KS_NKEYWORDS;
    }
    for (int i = 0; i < nkeywords; i++)
        if (!strcmp(folder, keywords[i])) return keywords[i];
    if (!strcmp(folder, "_background_noise_") || !strcmp(folder, "_silence_"))
        return w2v_ks_labels[W2V_KS_NKEYWORDS];
    return w2v_ks_labels[W2V_KS_NKEYWORDS + 1];
}


static const char *bad_word(const char *w, size_t n)
{
    if (n == 0) return "empty word";
    if (n > 64) return "longer than 64 bytes";
    if (w[0] == '_') return "starts with '_' (reserved for _silence_ and the like)";
    for (size_t i = 0; i < n; i++)
        if (!((w[i] >= 'a' && w[i] <= 'z') || (w[i] >= '0' && w[i] <= '9') || w[i] == '-' || w[i] == '_'))
            return "not made of lower-case letters, digits, '-' and '_'";
    return NULL;
}

int w2v_ks_parse_words(const char *list, char ***words, char *err, size_t errlen)
{
    int n = 0;
    char **w = xcalloc(strlen(list) + 2, sizeof *w);
    for (const char *s = list;;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *why = bad_word(s, len);
        if (why) {
            set_error(err, errlen, "'%.*s': %s", (int)len, s, why);
            goto fail;
        }
        w[n] = xmalloc(len + 1);
        memcpy(w[n], s, len);
        w[n][len] = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(w[i], w[n])) {
                set_error(err, errlen, "'%s' is listed twice", w[n]);
                n++;
                goto fail;
            }
        n++;
        if (!end) break;
        s = end + 1;
    }
    *words = w;
    return n;
fail:
    w2v_ks_free_words(w);
    return -1;
}

void w2v_ks_free_words(char **words)
{
    if (!words) return;
    for (char **w = words; *w; w++) free(*w);
    free(words);
}

w2v_set w2v_which_set(const char *filename, double validation_percentage,
                      double testing_percentage)
{
    const char *base = strrchr(filename, '/');
    base = base ? base + 1 : filename;
    const char *cut = strstr(base, "_nohash_");
    size_t n = cut ? (size_t)(cut - base) : strlen(base);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)base, n, md);
    /* int(hexdigest, 16) % 2**27: the low 27 bits of the big-endian digest */
    unsigned long low = ((unsigned long)md[16] << 24 | (unsigned long)md[17] << 16 |
                         (unsigned long)md[18] << 8 | md[19]) & ((1ul << 27) - 1);
    /* the same double arithmetic as Python: MAX_NUM_WAVS_PER_CLASS = 2**27 - 1 */
    double percentage = (double)low * (100.0 / 134217727.0);
    if (percentage < validation_percentage) return W2V_SET_VALIDATION;
    if (percentage < testing_percentage + validation_percentage) return W2V_SET_TESTING;
    return W2V_SET_TRAINING;
}

/* ---- manifests ---- */

static int is_header(char **f, int n)
{
    return n == 3 && !strcmp(f[0], "key") && !strcmp(f[1], "path") && !strcmp(f[2], "label");
}

long w2v_manifest_read(FILE *fp, const char *name, w2v_manifest_row **rows, char *err, size_t errlen)
{
    w2v_manifest_row *r = NULL;
    long n = 0, cap = 0, lineno = 0, ret = 0;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    while (ret == 0 && (len = getline(&line, &linecap, fp)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        char *text = line;
        if (lineno == 1 && !strncmp(text, "\xef\xbb\xbf", 3)) text += 3; /* a UTF-8 byte order mark */
        if (!*text) continue;
        char *f[4], *save = text;
        int nf = 0;
        while (nf < 4 && save) f[nf++] = strsep(&save, "\t");
        if (lineno == 1 && is_header(f, nf)) continue;
        if (nf < 2 || nf > 3 || !*f[0] || !*f[1]) {
            ret = set_error(err, errlen, "%s:%ld: expected key<TAB>path<TAB>label", name, lineno);
            break;
        }
        if (n == cap) r = xrealloc(r, (size_t)(cap = cap ? 2 * cap : 1024) * sizeof *r);
        r[n++] = (w2v_manifest_row){.key = xstrdup(f[0]), .path = xstrdup(f[1]),
                                    .label = nf == 3 && *f[2] ? xstrdup(f[2]) : NULL, .line = lineno};
    }
    if (ret == 0 && ferror(fp)) ret = set_error(err, errlen, "%s: read failed: %s", name, strerror(errno));
    free(line);
    if (ret < 0) {
        w2v_manifest_free(r, n);
        return -1;
    }
    *rows = r;
    return n;
}

void w2v_manifest_free(w2v_manifest_row *rows, long n)
{
    for (long i = 0; i < n; i++) {
        free(rows[i].key);
        free(rows[i].path);
        free(rows[i].label);
    }
    free(rows);
}
