/* Tar archives (libarchive): reproducible writing and safe unpacking. */
#ifndef W2V_ARCHIVE_H
#define W2V_ARCHIVE_H

#include <stddef.h>

/* One member of an archive to write: its name in the archive and the file
 * that holds its data; path NULL makes a directory. */
typedef struct {
    const char *name;
    const char *path;
} w2v_tar_member;

/* Writes a gzip-compressed ustar archive of the members in the order given,
 * at gzip's fastest level (audio gains little from the slower ones).
 * Reproducible: every member gets the same mtime, uid/gid 0, no user or
 * group names, mode 0644 (directories 0755), and the gzip header no time
 * stamp, so the same members give the same bytes.  The archive is written
 * as ARCHIVE.tmp.PID and renamed when complete.  Returns 0, or -1 with
 * "what: why" in err. */
int w2v_tar_write(const char *archive, const w2v_tar_member *members, size_t n,
                  long long mtime, char *err, size_t errlen);

/* Unpacks a tar archive (any compression libarchive reads) into the new
 * directory dest, which must not exist: members go to DEST.tmp.PID, renamed
 * to dest when all are out.  Refused, and nothing left behind: absolute
 * names, ".." components, symbolic links that resolve outside dest (or are
 * absolute), hard links to names that would, extraction through a symbolic
 * link, and members other than files, directories and links; an archive
 * that unpacks to more than max_bytes (its members' data, sparse holes
 * included, and 512 bytes for each member: a bomb of many empty members
 * counts too).  Returns the number of members, or -1 with "ARCHIVE: what
 * is wrong" in err (W2V_ARCHIVE_TOO_BIG, also negative, for the cap). */
#define W2V_ARCHIVE_TOO_BIG (-2)
long w2v_archive_extract(const char *archive, const char *dest, long long max_bytes, char *err, size_t errlen);

#endif
