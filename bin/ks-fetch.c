/* ks-fetch: get Speech Commands v0.01, verify and unpack it, and write the
 * SUPERB keyword-spotting splits as manifests. */
#include "w2v/archive.h"
#include "w2v/cli.h"
#include "w2v/corpus.h"
#include "w2v/digest.h"
#include "w2v/download.h"
#include "w2v/fs.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <curl/curl.h>

#define TRAIN_URL "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz"
#define TEST_URL "http://download.tensorflow.org/data/speech_commands_test_set_v0.01.tar.gz"
/* as torchaudio pins it; none is published for the test set */
#define TRAIN_SHA256 "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"
/* SUPERB's split sizes of the real corpus */
#define REAL_TRAIN 51094
#define REAL_VALIDATION 6798
#define REAL_TEST 3081

static const char usage[] =
    "ks-fetch: download Speech Commands v0.01, verify and unpack it, and write the\n"
    "SUPERB keyword-spotting splits as manifests\n"
    "\n"
    "Usage: ks-fetch [options] DIR\n"
    " e.g.: ks-fetch data && ks-extract data/train.tsv > train.stream\n"
    "       ks-synth tiny && ks-fetch --url tiny/speech_commands_v0.01.tar.gz \\\n"
    "         --test-url tiny/speech_commands_test_set_v0.01.tar.gz data\n"
    "\n"
    "DIR gets speech_commands_v0.01.tar.gz, speech_commands_test_set_v0.01.tar.gz,\n"
    "SHA256SUMS, the archives unpacked in speech_commands_v0.01/ and\n"
    "speech_commands_test_set_v0.01/, and train.tsv, validation.tsv, test.tsv: a\n"
    "header line \"key<TAB>path<TAB>label\", then one line per utterance (key\n"
    "WORD/NAME, path relative to DIR), sorted by path.  Splits as SUPERB makes them:\n"
    "validation_list.txt -> validation, testing_list.txt -> unused, the other\n"
    "WORD/*.wav of the training archive (_background_noise_ too) -> train, every\n"
    "WORD/*.wav of the test archive -> test; keywords keep their names,\n"
    "_background_noise_ and _silence_ become _silence_, other words _unknown_.\n"
    "A step whose result is there is skipped; an unpacked corpus needs no archive.\n"
    "Prints the utterances per split and label (label ids in the order shown).\n"
    "\n"
    "Options:\n"
    "  --url URL           the training archive: http(s)://, ftp://, file:// or a path\n"
    "                      (default " TRAIN_URL ")\n"
    "  --test-url URL      the test-set archive\n"
    "                      (default " TEST_URL ")\n"
    "  --sha256 HEX        SHA-256 of the training archive (built in for the default)\n"
    "  --test-sha256 HEX   SHA-256 of the test-set archive (default: the one recorded\n"
    "                      in DIR/SHA256SUMS by the first download)\n"
    "  --words LIST        keywords, comma-separated (default yes,no,up,down,left,right,\n"
    "                      on,off,stop,go)\n"
    "  --retries N         retries of a failed transfer, each resuming it (default 5)\n"
    "  --retry-delay S     seconds before the first retry, doubled for each next (default 2)\n"
    "  --max-unpacked GB   refuse an archive that unpacks to more (default 16; the\n"
    "                      real training archive unpacks to about 2.2)\n"
    "  --quiet             no notes on stderr\n"
    "  --progress          progress bars even when stderr is not a terminal\n"
    "  -h, --help          this text\n"
    "  --version           print the version\n";

enum { OPT_URL = 1, OPT_TEST_URL, OPT_SHA256, OPT_TEST_SHA256, OPT_WORDS, OPT_RETRIES, OPT_RETRY_DELAY, OPT_MAX_UNPACKED };

typedef struct {
    const char *archive; /* file name in DIR */
    const char *tree;    /* directory it unpacks to */
    const char *source;  /* as given */
    const char *sha256;  /* expected: given or built in; NULL when unknown */
    const char *option;  /* the option that gives sha256 */
    char recorded[W2V_SHA256_HEX]; /* from SHA256SUMS; "" when absent */
} corpus_archive;

enum { TRAIN, TEST, NARCHIVES };

/* ---- SHA256SUMS: "HEX  NAME" lines, as sha256sum writes them ---- */

/* The next line of fp without its line end, of any length (in *line, grown
 * as needed); 0 at the end of the file. */
static int next_line(FILE *fp, char **line, size_t *cap)
{
    if (getline(line, cap, fp) < 0) return 0;
    (*line)[strcspn(*line, "\r\n")] = 0;
    return 1;
}

static void read_sums(const char *path, corpus_archive *a)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        if (errno != ENOENT) w2v_die("%s: cannot open: %s", path, strerror(errno));
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    while (next_line(fp, &line, &cap)) {
        char *name = line + 64;
        if (strlen(line) < 66 || name[0] != ' ' || (name[1] != ' ' && name[1] != '*')) continue;
        *name = 0;
        name += 2;
        if (!w2v_sha256_valid(line)) continue;
        for (int i = 0; i < NARCHIVES; i++)
            if (!strcmp(name, a[i].archive)) snprintf(a[i].recorded, sizeof a[i].recorded, "%s", line);
    }
    free(line);
    fclose(fp);
}

static void write_sums(const char *path, const corpus_archive *a)
{
    w2v_output *out = w2v_output_open(path, 0);
    for (int i = 0; i < NARCHIVES; i++)
        if (*a[i].recorded && fprintf(w2v_output_file(out), "%s  %s\n", a[i].recorded, a[i].archive) < 0)
            w2v_write_failed(path);
    w2v_output_close(out);
}

/* ---- getting and unpacking one archive ---- */

/* A download's progress bar, in MB. */
typedef struct {
    w2v_progress bar;
    const char *name;
    int drawing;
} download_bar;

static void on_progress(void *ctx, double done, double total)
{
    download_bar *d = ctx;
    if (done < 0) {
        w2v_progress_end(&d->bar);
        d->drawing = 0;
        return;
    }
    if (!d->drawing) w2v_progress_start(&d->bar, d->name, 0);
    d->drawing = 1;
    d->bar.total = total / 1e6;
    w2v_progress_update(&d->bar, done / 1e6, "MB");
}

/* Returns 1 when it did any work. */
static int get_archive(const char *dir, corpus_archive *a, const char *sums_path,
                       const w2v_download_options *opt, long long max_unpacked, const corpus_archive *all)
{
    char *tree = w2v_path_join(dir, a->tree), *path = w2v_path_join(dir, a->archive), err[2048];
    int work = 0;
    if (w2v_exists(tree)) {
        w2v_note("%s: unpacked already", tree);
        goto out;
    }
    if (w2v_exists(path)) {
        /* verified when it was fetched, as the record says; hashed again
         * only when the record is missing or disagrees with the checksum
         * asked for */
        if (!*a->recorded || (a->sha256 && strcasecmp(a->sha256, a->recorded))) {
            char hex[W2V_SHA256_HEX];
            if (w2v_sha256_file(path, hex, err, sizeof err) < 0) w2v_die("%s", err);
            if (a->sha256 && strcasecmp(a->sha256, hex))
                w2v_die("%s: SHA-256 mismatch: expected %s, got %s (remove it to download it again)",
                        path, a->sha256, hex);
            snprintf(a->recorded, sizeof a->recorded, "%s", hex);
            write_sums(sums_path, all);
        }
        w2v_note("%s: present, SHA-256 %s", path, a->recorded);
    } else {
        const char *expected = a->sha256 ? a->sha256 : *a->recorded ? a->recorded : NULL;
        char *url = w2v_source_url(a->source, err, sizeof err), hex[W2V_SHA256_HEX];
        if (!url) w2v_die("%s", err);
        w2v_note("%s: fetching %s", path, url);
        download_bar bar = {.name = a->archive};
        w2v_download_options with_bar = *opt;
        with_bar.progress = on_progress;
        with_bar.progress_ctx = &bar;
        if (w2v_download(url, path, expected, hex, &with_bar, err, sizeof err) < 0) {
            if (expected && !a->sha256)
                w2v_die("%s (the checksum recorded in %s: if the source changed, give %s or "
                        "remove that line)", err, sums_path, a->option);
            w2v_die("%s", err);
        }
        free(url);
        snprintf(a->recorded, sizeof a->recorded, "%s", hex);
        write_sums(sums_path, all);
        if (expected)
            w2v_note("%s: SHA-256 verified", path);
        else
            w2v_note("%s: SHA-256 %s, recorded in %s (pin it with %s %s)", path, hex, sums_path,
                     a->option, hex);
        work = 1;
    }
    long n = w2v_archive_extract(path, tree, max_unpacked, err, sizeof err);
    if (n == W2V_ARCHIVE_TOO_BIG) w2v_die("%s; raise it with --max-unpacked", err);
    if (n < 0) w2v_die("%s", err);
    w2v_note("%s: %ld members unpacked", tree, n);
    work = 1;
out:
    free(tree);
    free(path);
    return work;
}

/* ---- the corpus as SUPERB splits it ---- */

typedef struct {
    char **v;
    size_t n, cap;
} strings;

static void push(strings *s, char *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) w2v_die("out of memory");
    }
    s->v[s->n++] = x;
}

static void strings_free(strings *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (strings){0};
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && !strcmp(s + n - t, tail);
}

static int is_kind(const char *path, mode_t kind)
{
    struct stat st;
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == kind;
}

/* The files the pattern WORD/ *.wav matches below root (names starting with
 * a dot excepted, as glob does), "WORD/NAME.wav", sorted. */
static void corpus_wavs(const char *root, strings *out)
{
    DIR *d = opendir(root);
    if (!d) w2v_die("%s: cannot read: %s", root, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *sub = w2v_path_join(root, e->d_name);
        DIR *s = is_kind(sub, S_IFDIR) ? opendir(sub) : NULL;
        struct dirent *f;
        while (s && (f = readdir(s))) {
            if (f->d_name[0] == '.' || !ends_with(f->d_name, ".wav")) continue;
            char *file = w2v_path_join(sub, f->d_name);
            if (is_kind(file, S_IFREG)) {
                if (strpbrk(e->d_name, "\t\n\r") || strpbrk(f->d_name, "\t\n\r"))
                    w2v_die("%s: a tab or line break in the name does not fit a manifest", file);
                char *rel = w2v_path_join(e->d_name, f->d_name);
                push(out, rel);
            }
            free(file);
        }
        if (s) closedir(s);
        free(sub);
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, by_string);
}

/* A partition list: the file's lines, sorted, empty ones skipped. */
static void read_list(const char *root, const char *name, strings *out)
{
    char *path = w2v_path_join(root, name), *line = NULL;
    size_t cap = 0;
    FILE *fp = fopen(path, "r");
    if (!fp) w2v_die("%s: cannot open: %s", path, strerror(errno));
    while (next_line(fp, &line, &cap))
        if (*line) push(out, w2v_path_join(NULL, line));
    if (ferror(fp)) w2v_die("%s: read failed: %s", path, strerror(errno));
    free(line);
    fclose(fp);
    free(path);
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, by_string);
}

static int listed(const strings *list, const char *name)
{
    return bsearch(&name, list->v, list->n, sizeof *list->v, by_string) != NULL;
}

/* Every name of a list must be one of the corpus's files. */
static void check_list(const strings *list, const strings *wavs, const char *root, const char *name)
{
    for (size_t i = 0; i < list->n; i++)
        if (!listed(wavs, list->v[i]))
            w2v_die("%s/%s names %s, which is not among its WORD/*.wav files", root, name, list->v[i]);
}

typedef struct {
    char **keywords;
    int nkeywords;
} labelling;

static const char *label_of(const labelling *l, const char *rel)
{
    char *folder = strndup(rel, strcspn(rel, "/"));
    if (!folder) w2v_die("out of memory");
    const char *label = w2v_ks_label(folder, (const char *const *)l->keywords, l->nkeywords);
    free(folder);
    return label;
}

/* Writes "key<TAB>path<TAB>label" lines for the files (relative to tree). */
static void write_manifest(const char *path, const char *tree, const strings *files, const labelling *l)
{
    w2v_output *out = w2v_output_open(path, 0);
    FILE *fp = w2v_output_file(out);
    fputs("key\tpath\tlabel\n", fp);
    for (size_t i = 0; i < files->n; i++) {
        const char *rel = files->v[i];
        fprintf(fp, "%.*s\t%s/%s\t%s\n", (int)(strlen(rel) - 4), rel, tree, rel, label_of(l, rel));
    }
    if (ferror(fp)) w2v_write_failed(path);
    w2v_output_close(out);
}

static const char *const split_names[3] = {"train", "validation", "test"};

static void make_manifests(const char *dir, const corpus_archive *a, const labelling *l, int real_train,
                           int real_test)
{
    char *train_root = w2v_path_join(dir, a[TRAIN].tree), *test_root = w2v_path_join(dir, a[TEST].tree);
    strings wavs = {0}, val_list = {0}, test_list = {0}, split[3] = {{0}};
    corpus_wavs(train_root, &wavs);
    read_list(train_root, "validation_list.txt", &val_list);
    read_list(train_root, "testing_list.txt", &test_list);
    check_list(&val_list, &wavs, train_root, "validation_list.txt");
    check_list(&test_list, &wavs, train_root, "testing_list.txt");
    for (size_t i = 0; i < wavs.n; i++) {
        char *w = wavs.v[i];
        if (listed(&val_list, w)) push(&split[1], w);
        else if (listed(&test_list, w)) free(w);
        else push(&split[0], w);
    }
    free(wavs.v);
    corpus_wavs(test_root, &split[2]);
    /* The real archives must give the real sizes: anything else means the
     * corpus or this program is broken, and no manifest is written. */
    static const long real[3] = {REAL_TRAIN, REAL_VALIDATION, REAL_TEST};
    for (int s = 0; s < 3; s++)
        if ((s < 2 ? real_train : real_test) && (long)split[s].n != real[s])
            w2v_die("%s split: %zu utterances where the real corpus gives %ld: the corpus in %s "
                    "is not what its checksum says, or the split is wrong",
                    split_names[s], split[s].n, real[s], dir);
    for (int s = 0; s < 3; s++) {
        char *name = NULL;
        if (asprintf(&name, "%s.tsv", split_names[s]) < 0) w2v_die("out of memory");
        char *path = w2v_path_join(dir, name);
        write_manifest(path, s < 2 ? a[TRAIN].tree : a[TEST].tree, &split[s], l);
        free(path);
        free(name);
        strings_free(&split[s]);
    }
    strings_free(&val_list);
    strings_free(&test_list);
    free(train_root);
    free(test_root);
}

/* Counts a manifest's lines per label into counts[label id], the header
 * excepted. */
static long count_manifest(const char *path, const labelling *l, long *counts)
{
    FILE *fp = fopen(path, "r");
    if (!fp) w2v_die("%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long total = 0, lineno = 0;
    while (next_line(fp, &line, &cap)) {
        if (lineno++ == 0) continue;
        char *label = strrchr(line, '\t');
        if (!label) w2v_die("%s:%ld: not key<TAB>path<TAB>label", path, lineno);
        label++;
        int id = -1;
        for (int i = 0; i < l->nkeywords && id < 0; i++)
            if (!strcmp(label, l->keywords[i])) id = i;
        if (id < 0 && !strcmp(label, "_silence_")) id = l->nkeywords;
        if (id < 0 && !strcmp(label, "_unknown_")) id = l->nkeywords + 1;
        if (id < 0) w2v_die("%s:%ld: label '%s' is not one of --words, _silence_, _unknown_", path, lineno, label);
        counts[id]++;
        total++;
    }
    free(line);
    fclose(fp);
    return total;
}

static void print_counts(const char *dir, const labelling *l)
{
    int nlabels = l->nkeywords + 2;
    long *counts = calloc((size_t)nlabels * 3, sizeof *counts), total[3];
    if (!counts) w2v_die("out of memory");
    for (int s = 0; s < 3; s++) {
        char *name = NULL;
        if (asprintf(&name, "%s.tsv", split_names[s]) < 0) w2v_die("out of memory");
        char *path = w2v_path_join(dir, name);
        total[s] = count_manifest(path, l, counts + (size_t)s * nlabels);
        free(path);
        free(name);
    }
    printf("%-4s %-12s %8s %11s %8s\n", "id", "label", "train", "validation", "test");
    for (int i = 0; i < nlabels; i++)
        printf("%-4d %-12s %8ld %11ld %8ld\n", i,
               i < l->nkeywords ? l->keywords[i] : i == l->nkeywords ? "_silence_" : "_unknown_", counts[i],
               counts[nlabels + i], counts[2 * nlabels + i]);
    printf("%-4s %-12s %8ld %11ld %8ld\n", "", "total", total[0], total[1], total[2]);
    if (fflush(stdout) != 0) w2v_write_failed("stdout");
    free(counts);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"url", required_argument, 0, OPT_URL},
        {"test-url", required_argument, 0, OPT_TEST_URL},
        {"sha256", required_argument, 0, OPT_SHA256},
        {"test-sha256", required_argument, 0, OPT_TEST_SHA256},
        {"words", required_argument, 0, OPT_WORDS},
        {"retries", required_argument, 0, OPT_RETRIES},
        {"retry-delay", required_argument, 0, OPT_RETRY_DELAY},
        {"max-unpacked", required_argument, 0, OPT_MAX_UNPACKED},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {"progress", no_argument, 0, W2V_OPT_PROGRESS},
        {0, 0, 0, 0},
    };
    corpus_archive a[NARCHIVES] = {
        {.archive = "speech_commands_v0.01.tar.gz", .tree = "speech_commands_v0.01", .source = TRAIN_URL,
         .sha256 = TRAIN_SHA256, .option = "--sha256"},
        {.archive = "speech_commands_test_set_v0.01.tar.gz", .tree = "speech_commands_test_set_v0.01",
         .source = TEST_URL, .option = "--test-sha256"},
    };
    const char *sha[NARCHIVES] = {NULL, NULL}, *words = "yes,no,up,down,left,right,on,off,stop,go";
    w2v_download_options dl = {.retries = 5, .retry_delay = 2};
    long long max_unpacked = 16000000000LL;
    int opt;
    w2v_cli_init("ks-fetch", usage, argv);
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case OPT_URL: a[TRAIN].source = optarg; break;
        case OPT_TEST_URL: a[TEST].source = optarg; break;
        case OPT_SHA256: sha[TRAIN] = optarg; break;
        case OPT_TEST_SHA256: sha[TEST] = optarg; break;
        case OPT_WORDS: words = optarg; break;
        case OPT_RETRIES: dl.retries = (int)w2v_parse_long("--retries", optarg, 0, 100); break;
        case OPT_RETRY_DELAY: dl.retry_delay = w2v_parse_double("--retry-delay", optarg, 0, 600); break;
        case OPT_MAX_UNPACKED: max_unpacked = (long long)(1e9 * w2v_parse_double("--max-unpacked", optarg, 1e-6, 1e6)); break;
        }
    }
    if (optind + 1 != argc) w2v_usage_error(optind < argc ? "give one directory" : "no directory");
    const char *dir = argv[optind];
    for (int i = 0; i < NARCHIVES; i++) {
        if (sha[i] && !w2v_sha256_valid(sha[i]))
            w2v_usage_error("%s: not 64 hex digits: '%s'", a[i].option, sha[i]);
        if (sha[i]) a[i].sha256 = sha[i];
        else if (i == TRAIN && strcmp(a[i].source, TRAIN_URL)) a[i].sha256 = NULL; /* another source */
    }
    labelling l;
    char err[1024];
    if ((l.nkeywords = w2v_ks_parse_words(words, &l.keywords, err, sizeof err)) < 0)
        w2v_usage_error("--words: %s", err);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) w2v_die("cannot initialise libcurl");
    if (w2v_mkdirs(dir, err, sizeof err) < 0) w2v_die("%s", err);
    char *sums_path = w2v_path_join(dir, "SHA256SUMS");
    read_sums(sums_path, a);
    int work = 0;
    for (int i = 0; i < NARCHIVES; i++) work |= get_archive(dir, &a[i], sums_path, &dl, max_unpacked, a);
    static const char *const manifests[] = {"train.tsv", "validation.tsv", "test.tsv"};
    int have = 0;
    for (int s = 0; s < 3; s++) {
        char *path = w2v_path_join(dir, manifests[s]);
        have += w2v_exists(path);
        free(path);
    }
    if (work || have < 3) {
        int real_train = !strcasecmp(a[TRAIN].recorded, TRAIN_SHA256);
        int real_test = real_train && !strcmp(a[TEST].source, TEST_URL);
        make_manifests(dir, a, &l, real_train, real_test);
        w2v_note("%s: train.tsv, validation.tsv and test.tsv written", dir);
    } else
        w2v_note("%s: archives, corpus and manifests in place: nothing to do", dir);
    print_counts(dir, &l);
    free(sums_path);
    w2v_ks_free_words(l.keywords);
    curl_global_cleanup();
    return 0;
}
