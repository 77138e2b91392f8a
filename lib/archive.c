/* Reproducible tar.gz writing and safe unpacking with libarchive. */
#include "w2v/archive.h"
#include "w2v/fs.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <archive.h>
#include <archive_entry.h>

/* ---- writing ---- */

static int copy_file_into(struct archive *a, const char *path, char *buf, size_t size,
                          char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    ssize_t n;
    while ((n = read(fd, buf, size)) > 0)
        if (archive_write_data(a, buf, (size_t)n) != n) {
            close(fd);
            return set_error(err, errlen, "%s: %s", path, archive_error_string(a));
        }
    int e = errno;
    close(fd);
    if (n < 0) return set_error(err, errlen, "%s: read failed: %s", path, strerror(e));
    return 0;
}

int w2v_tar_write(const char *archive, const w2v_tar_member *members, size_t n,
                  long long mtime, char *err, size_t errlen)
{
    w2v_atomic_file f;
    if (w2v_atomic_open(&f, archive, err, errlen) < 0) return -1;
    struct archive *a = archive_write_new();
    int ret = -1;
    enum { BUF = 1 << 16 };
    char *buf = xmalloc(BUF);
    if (archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK ||
        archive_write_set_filter_option(a, "gzip", "compression-level", "1") != ARCHIVE_OK ||
        archive_write_set_format_ustar(a) != ARCHIVE_OK ||
        archive_write_open_fd(a, fileno(f.fp)) != ARCHIVE_OK) {
        set_error(err, errlen, "%s: %s", archive, archive_error_string(a));
        goto out;
    }
    struct archive_entry *e = archive_entry_new();
    ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        const w2v_tar_member *m = &members[i];
        struct stat st;
        archive_entry_clear(e);
        archive_entry_set_pathname(e, m->name);
        archive_entry_set_mtime(e, (time_t)mtime, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        if (m->path) {
            if (stat(m->path, &st) != 0) {
                ret = set_error(err, errlen, "%s: %s", m->path, strerror(errno));
                break;
            }
            if (!S_ISREG(st.st_mode)) {
                ret = set_error(err, errlen, "%s: not a regular file", m->path);
                break;
            }
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_size(e, st.st_size);
        } else {
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            archive_entry_set_size(e, 0);
        }
        if (archive_write_header(a, e) != ARCHIVE_OK)
            ret = set_error(err, errlen, "%s: %s: %s", archive, m->name, archive_error_string(a));
        else if (m->path)
            ret = copy_file_into(a, m->path, buf, BUF, err, errlen);
    }
    archive_entry_free(e);
    if (archive_write_close(a) != ARCHIVE_OK && ret == 0)
        ret = set_error(err, errlen, "%s: %s", archive, archive_error_string(a));
out:
    archive_write_free(a);
    free(buf);
    if (ret == 0) return w2v_atomic_commit(&f, 1, err, errlen);
    w2v_atomic_commit(&f, 0, NULL, 0);
    return -1;
}

/* ---- unpacking ---- */

static int has_dotdot(const char *name)
{
    for (const char *s = name; (s = strstr(s, "..")); s += 2)
        if ((s == name || s[-1] == '/') && (s[2] == 0 || s[2] == '/')) return 1;
    return 0;
}

/* Why a member may not be unpacked, or NULL when it may.  A link target
 * with ".." is refused even when it stays inside: through other links it
 * could resolve anywhere, while targets that only descend cannot. */
static const char *refusal(struct archive_entry *e)
{
    const char *name = archive_entry_pathname(e);
    if (!name || !*name) return "member without a name";
    if (name[0] == '/') return "absolute path";
    if (has_dotdot(name)) return "path with '..'";
    const char *hard = archive_entry_hardlink(e);
    if (hard && (hard[0] == '/' || has_dotdot(hard)))
        return "hard link that may point outside the target directory";
    switch (archive_entry_filetype(e)) {
    case AE_IFREG:
    case AE_IFDIR: return NULL;
    case AE_IFLNK: {
        const char *target = archive_entry_symlink(e);
        if (!target || !*target) return "symbolic link without a target";
        if (target[0] == '/' || has_dotdot(target))
            return "symbolic link that may point outside the target directory";
        return NULL;
    }
    default: return "member that is not a file, directory or link";
    }
}

/* The unpacked total exceeds the cap. */
static long too_big(const char *archive, long long max_bytes, char *err, size_t errlen)
{
    set_error(err, errlen, "%s: unpacks to more than %lld bytes, the limit (a decompression bomb?)", archive, max_bytes);
    return W2V_ARCHIVE_TOO_BIG;
}

static long extract_members(struct archive *in, struct archive *out, const char *archive, long long max_bytes,
                            char *err, size_t errlen)
{
    struct archive_entry *e;
    long count = 0;
    long long total = 0; /* what the members have unpacked to so far */
    int r;
    while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
        if ((total += 512) > max_bytes) return too_big(archive, max_bytes, err, errlen);
        const char *why = refusal(e);
        if (why)
            return set_error(err, errlen, "%s: refusing member '%s': %s", archive,
                             archive_entry_pathname(e) ? archive_entry_pathname(e) : "", why);
        if (archive_write_header(out, e) != ARCHIVE_OK)
            return set_error(err, errlen, "%s: %s: %s", archive, archive_entry_pathname(e),
                             archive_error_string(out));
        const void *block;
        size_t size;
        la_int64_t offset;
        long long start = total;
        while ((r = archive_read_data_block(in, &block, &size, &offset)) == ARCHIVE_OK) {
            /* offset: where the block lands in the file, past any hole;
             * the end of the block must fit in what the cap leaves */
            long long room = max_bytes - start;
            if (offset < 0 || (long long)size > room || offset > room - (long long)size)
                return too_big(archive, max_bytes, err, errlen);
            if (start + offset + (long long)size > total) total = start + offset + (long long)size;
            if (archive_write_data_block(out, block, size, offset) != ARCHIVE_OK)
                return set_error(err, errlen, "%s: %s: %s", archive, archive_entry_pathname(e),
                                 archive_error_string(out));
        }
        if (r != ARCHIVE_EOF)
            return set_error(err, errlen, "%s: %s: %s", archive, archive_entry_pathname(e),
                             archive_error_string(in));
        if (archive_write_finish_entry(out) != ARCHIVE_OK)
            return set_error(err, errlen, "%s: %s: %s", archive, archive_entry_pathname(e),
                             archive_error_string(out));
        count++;
    }
    if (r != ARCHIVE_EOF) return set_error(err, errlen, "%s: %s", archive, archive_error_string(in));
    return count;
}

long w2v_archive_extract(const char *archive, const char *dest, long long max_bytes, char *err, size_t errlen)
{
    if (w2v_exists(dest)) return set_error(err, errlen, "%s: already exists", dest);
    char *tmp = xmalloc(strlen(dest) + 32);
    sprintf(tmp, "%s.tmp.%ld", dest, (long)getpid());
    long count = -1;
    int cwd = -1;
    struct archive *in = archive_read_new(), *out = archive_write_disk_new();
    archive_read_support_filter_all(in);
    archive_read_support_format_tar(in);
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                            ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                            ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
    if (w2v_remove_tree(tmp, err, errlen) < 0) goto out;
    if (mkdir(tmp, 0777) != 0) {
        set_error(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    if (archive_read_open_filename(in, archive, 1 << 20) != ARCHIVE_OK) {
        set_error(err, errlen, "%s: %s", archive, archive_error_string(in));
        goto out;
    }
    /* Members are unpacked relative to the temporary directory, so that the
     * secure-extraction checks see the names as the archive gives them. */
    cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0 || chdir(tmp) != 0) {
        set_error(err, errlen, "%s: cannot enter: %s", tmp, strerror(errno));
        goto out;
    }
    count = extract_members(in, out, archive, max_bytes, err, errlen);
    /* closing applies deferred directory fix-ups, by relative name: here */
    if (archive_write_close(out) != ARCHIVE_OK && count >= 0)
        count = set_error(err, errlen, "%s: %s", archive, archive_error_string(out));
    if (fchdir(cwd) != 0) {
        count = set_error(err, errlen, "cannot return to the working directory: %s", strerror(errno));
        goto out;
    }
    if (count >= 0 && w2v_commit_rename(tmp, dest, err, errlen) < 0) count = -1;
out:
    if (cwd >= 0) close(cwd);
    archive_read_free(in);
    archive_write_free(out);
    if (count < 0) w2v_remove_tree(tmp, NULL, 0);
    free(tmp);
    return count;
}
