/* Archive member vetting (w2v_archive_extract, as ks-fetch unpacks a
 * downloaded corpus): the input is the archive, unpacked into a new
 * directory eight levels below the scratch directory.  Beyond the
 * sanitizers, the harness checks what the vetting promises: nothing is
 * created beside the target, a refused archive leaves nothing behind, and
 * no symbolic link in the result points outside it. */
#include "fuzz.h"
#include "w2v/archive.h"

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>

#define DEPTH 8

static char levels[DEPTH + 1][4200]; /* levels[0]: the scratch directory */
static char dest[4300], root_real[PATH_MAX];

static void setup(void)
{
    snprintf(levels[0], sizeof levels[0], "%s", fuzz_scratch());
    for (int i = 1; i <= DEPTH; i++) {
        snprintf(levels[i], sizeof levels[i], "%s/d%d", levels[i - 1], i);
        mkdir(levels[i], 0700);
    }
    snprintf(dest, sizeof dest, "%s/out", levels[DEPTH]);
}

/* Every level holds only the next one (and the input at the top); the
 * innermost holds only "out", and that only when expected. */
static void check_levels(int out_expected)
{
    for (int i = 0; i <= DEPTH; i++) {
        DIR *d = opendir(levels[i]);
        FUZZ_ASSERT(d, "%s: %s", levels[i], strerror(errno));
        struct dirent *e;
        char want[16];
        snprintf(want, sizeof want, "d%d", i + 1);
        while ((e = readdir(d))) {
            const char *n = e->d_name;
            if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
            if (i < DEPTH) FUZZ_ASSERT(!strcmp(n, want) || (i == 0 && !strcmp(n, "archive")),
                                       "member escaped to %s/%s", levels[i], n);
            else FUZZ_ASSERT(out_expected && !strcmp(n, "out"), "left behind: %s/%s", levels[i], n);
        }
        closedir(d);
    }
}

/* A symbolic link in the result must resolve inside it (or dangle). */
static int check_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_SL || S_ISLNK(sb->st_mode)) {
        char real[PATH_MAX];
        if (realpath(path, real))
            FUZZ_ASSERT(!strncmp(real, root_real, strlen(root_real)) &&
                            (real[strlen(root_real)] == 0 || real[strlen(root_real)] == '/'),
                        "link %s resolves outside to %s", path, real);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dest[0]) setup();
    const char *path = fuzz_write("archive", data, size);
    char err[512];
    long n = w2v_archive_extract(path, dest, 1 << 24, err, sizeof err);
    if (n < 0) {
        FUZZ_CHECK_ERR(err);
        check_levels(0);
        return 0;
    }
    check_levels(1);
    FUZZ_ASSERT(realpath(dest, root_real), "%s: %s", dest, strerror(errno));
    nftw(dest, check_entry, 16, FTW_PHYS);
    FUZZ_ASSERT(w2v_remove_tree(dest, err, sizeof err) == 0, "%s", err);
    return 0;
}
