/* File-system helpers: joined paths, mkdir -p, rm -r. */
#include "w2v/files.h"
#include "internal.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *w2v_path_join(const char *dir, const char *name)
{
    if (!dir || !*dir) return xstrdup(name);
    size_t d = strlen(dir), n = strlen(name);
    int slash = dir[d - 1] != '/';
    char *p = xmalloc(d + slash + n + 1);
    memcpy(p, dir, d);
    if (slash) p[d] = '/';
    memcpy(p + d + slash, name, n + 1);
    return p;
}

int w2v_mkdirs(const char *path, char *err, size_t errlen)
{
    char *p = xstrdup(path);
    int ret = 0;
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char c = *s;
        *s = 0;
        struct stat st;
        if (mkdir(p, 0777) != 0 && !(errno == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
            ret = set_error(err, errlen, "%s: cannot create: %s", p,
                            errno == EEXIST ? "not a directory" : strerror(errno));
            break;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    return ret;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) ? -1 : 0;
}

int w2v_remove_tree(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        return set_error(err, errlen, "%s: cannot remove: %s", path, strerror(errno));
    }
    int r = S_ISDIR(st.st_mode) ? nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) : unlink(path);
    if (r != 0) return set_error(err, errlen, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

int w2v_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}
