/* Manifests and label lists: the whole input as a manifest
 * (w2v_manifest_read, as ks-extract reads one); w2v_labels_parse (every
 * --labels) and w2v_ks_parse_words (ks-fetch --words) on the first line;
 * w2v_ks_label and w2v_which_set on each further line, as a corpus folder
 * and a file name.  Checks: a manifest's rows have a non-empty key and
 * path, fields without tabs or line ends, lines in order within the
 * input; a parsed list joins back to its text with no empty or repeated
 * name; a word list holds only words the rule allows; the label of a
 * folder is one of the keywords or _silence_ / _unknown_; all of a
 * speaker's recordings land in the same partition. */
#include "fuzz.h"
#include "w2v/config.h"
#include "w2v/corpus.h"

static void check_list(const char *text, char **v, int n)
{
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(v[i]);
        FUZZ_ASSERT(len > 0, "empty name %d", i);
        FUZZ_ASSERT(!memcmp(text + pos, v[i], len), "name %d is not in the text", i);
        pos += len;
        FUZZ_ASSERT(text[pos] == (i + 1 < n ? ',' : 0), "names do not join back to the text");
        pos++;
        for (int j = 0; j < i; j++) FUZZ_ASSERT(strcmp(v[i], v[j]), "'%s' twice", v[i]);
    }
}

static int clean_field(const char *s) { return !strpbrk(s, "\t\n"); }

static void check_manifest(const uint8_t *data, size_t size)
{
    long lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    FILE *fp = fmemopen((void *)data, size ? size : 1, "r");
    if (!fp || !size) {
        if (fp) fclose(fp);
        return;
    }
    w2v_manifest_row *rows;
    char err[512];
    long n = w2v_manifest_read(fp, "m.tsv", &rows, err, sizeof err);
    fclose(fp);
    if (n < 0) {
        FUZZ_CHECK_ERR(err);
        return;
    }
    for (long i = 0; i < n; i++) {
        const w2v_manifest_row *r = &rows[i];
        FUZZ_ASSERT(*r->key && *r->path, "row %ld: empty key or path", i);
        FUZZ_ASSERT(clean_field(r->key) && clean_field(r->path) && (!r->label || (*r->label && clean_field(r->label))),
                    "row %ld: a field holds a tab or a line end, or an empty label", i);
        FUZZ_ASSERT(r->line >= 1 && r->line <= lines && (i == 0 || r->line > rows[i - 1].line), "row %ld: line %ld",
                    i, r->line);
    }
    w2v_manifest_free(rows, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_manifest(data, size);
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    char *rest = strchr(text, '\n');
    if (rest) *rest++ = 0;
    char err[512], **v;
    int n = w2v_labels_parse(text, &v, err, sizeof err);
    if (n < 0) FUZZ_CHECK_ERR(err);
    else {
        FUZZ_ASSERT(n >= 1, "no labels");
        check_list(text, v, n);
        w2v_labels_free(v, n);
    }
    char **words = NULL;
    int nw = w2v_ks_parse_words(text, &words, err, sizeof err);
    if (nw < 0) FUZZ_CHECK_ERR(err);
    else {
        check_list(text, words, nw);
        FUZZ_ASSERT(words[nw] == NULL, "word list not NULL-terminated");
        for (int i = 0; i < nw; i++) {
            FUZZ_ASSERT(strlen(words[i]) <= 64 && words[i][0] != '_' &&
                            strspn(words[i], "abcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(words[i]),
                        "word '%s' breaks the rule", words[i]);
            FUZZ_ASSERT(w2v_ks_label(words[i], (const char *const *)words, nw) == words[i], "keyword label");
        }
    }
    for (char *line = rest, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        const char *const *kw = nw > 0 ? (const char *const *)words : NULL;
        const char *label = w2v_ks_label(line, kw, nw > 0 ? nw : 0);
        int known = !strcmp(label, "_silence_") || !strcmp(label, "_unknown_");
        for (int i = 0; i < (kw ? nw : W2V_KS_NKEYWORDS) && !known; i++)
            known = !strcmp(label, kw ? kw[i] : w2v_ks_labels[i]);
        FUZZ_ASSERT(known, "folder '%s' labelled '%s'", line, label);
        w2v_set s = w2v_which_set(line, 10, 10);
        FUZZ_ASSERT(s == W2V_SET_TRAINING || s == W2V_SET_VALIDATION || s == W2V_SET_TESTING, "set %d", s);
        /* the same speaker elsewhere, another take: the same partition */
        const char *base = strrchr(line, '/');
        base = base ? base + 1 : line;
        const char *cut = strstr(base, "_nohash_");
        size_t stem = cut ? (size_t)(cut - base) : strlen(base);
        char *other = malloc(stem + 32);
        memcpy(other, base, stem);
        strcpy(other + stem, "_nohash_9.wav");
        if (strstr(other, "_nohash_") == other + stem)
            FUZZ_ASSERT(w2v_which_set(other, 10, 10) == s, "'%s' and '%s' differ", line, other);
        free(other);
        (void)w2v_which_set(line, 0, 0);
        (void)w2v_which_set(line, 100, 0);
    }
    w2v_ks_free_words(words);
    free(text);
    return 0;
}
