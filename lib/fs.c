/* File-system helpers: atomic files and directories, joined paths, mkdir -p, rm -r. */
#define _XOPEN_SOURCE 700
#include "w2v/fs.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fsync of a file or directory by name; EINVAL: a file system that
 * cannot (a pipe, some FUSE mounts), which is no error. */
static int sync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int ret = fsync(fd) != 0 && errno != EINVAL ? -1 : 0, e = errno;
    close(fd);
    errno = e;
    return ret;
}

int w2v_commit_rename(const char *tmp, const char *path, char *err, size_t errlen)
{
    if (sync_path(tmp) != 0) return set_error(err, errlen, "%s: write failed: %s", path, strerror(errno));
    if (rename(tmp, path) != 0) return set_error(err, errlen, "%s: cannot rename into place: %s", path, strerror(errno));
    /* the rename itself lasts once the directory holding it is on disk */
    char *dir = xstrdup(path), *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    int ret = sync_path(slash ? dir : ".");
    free(dir);
    return ret != 0 ? set_error(err, errlen, "%s: cannot sync its directory: %s", path, strerror(errno)) : 0;
}

int w2v_atomic_open(w2v_atomic_file *f, const char *path, char *err, size_t errlen)
{
    size_t n = strlen(path) + 32;
    f->path = xstrdup(path);
    f->tmp = xmalloc(n);
    snprintf(f->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        set_error(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        free(f->path);
        free(f->tmp);
        return -1;
    }
    return 0;
}

int w2v_atomic_commit(w2v_atomic_file *f, int ok, char *err, size_t errlen)
{
    int e = 0;
    if (!ok) e = errno ? errno : EIO;
    if (!e && fflush(f->fp) != 0) e = errno;
    if (fclose(f->fp) != 0 && !e) e = errno;
    int ret = e ? set_error(err, errlen, "%s: write failed: %s", f->path, strerror(e))
                : w2v_commit_rename(f->tmp, f->path, err, errlen);
    if (ret < 0) unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    return ret;
}

int w2v_atomic_write_text(const char *path, const char *text, char *err, size_t errlen)
{
    w2v_atomic_file f;
    if (w2v_atomic_open(&f, path, err, errlen) < 0) return -1;
    size_t n = strlen(text);
    return w2v_atomic_commit(&f, fwrite(text, 1, n, f.fp) == n, err, errlen);
}

int w2v_replace_dir(const char *src, const char *dst, char *err, size_t errlen)
{
    size_t n = strlen(dst) + 32;
    char *old = xmalloc(n);
    snprintf(old, n, "%s.old.%ld", dst, (long)getpid());
    struct stat sb;
    int had = stat(dst, &sb) == 0;
    if (had && rename(dst, old) != 0) {
        set_error(err, errlen, "%s: cannot move aside: %s", dst, strerror(errno));
        free(old);
        return -1;
    }
    if (w2v_commit_rename(src, dst, err, errlen) < 0) {
        if (had) rename(old, dst);
        free(old);
        return -1;
    }
    if (had) w2v_remove_tree(old, NULL, 0);
    free(old);
    return 0;
}

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

/* What a model or run directory of ours holds. */
static int ours(const char *name)
{
    static const char *const files[] = {"config.json", "preprocessor_config.json", "model.safetensors",
                                         "optimizer.safetensors", "trainer_state.json", "metrics.jsonl",
                                         ".checkpoint.tmp", ".", ".."};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (!strcmp(name, files[i])) return 1;
    /* checkpoint-N/, and temporary names: FILE.tmp.PID, DIR.old.PID */
    return !strncmp(name, "checkpoint-", 11) || strstr(name, ".tmp.") || strstr(name, ".old.");
}

int w2v_check_ours(const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return set_error(err, errlen, "%s: %s", dir, errno == ENOTDIR ? "not a directory" : strerror(errno));
    }
    struct dirent *e;
    int ret = 0;
    while (ret == 0 && (e = readdir(d)))
        if (!ours(e->d_name))
            ret = set_error(err, errlen, "%s: holds '%s', which is not part of a model or a run", dir, e->d_name);
    closedir(d);
    return ret;
}

/* The PID of a stray's name, NAME.tmp.PID or NAME.old.PID; 0 if none. */
static long stray_pid(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot - name < 4 || (strncmp(dot - 4, ".tmp", 4) && strncmp(dot - 4, ".old", 4))) return 0;
    char *end;
    long pid = strtol(dot + 1, &end, 10);
    return *end || end == dot + 1 || pid <= 0 ? 0 : pid;
}

int w2v_remove_strays(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        long pid = stray_pid(e->d_name);
        if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *path = w2v_path_join(dir, e->d_name);
        n += w2v_remove_tree(path, NULL, 0) == 0;
        free(path);
    }
    closedir(d);
    return n;
}
