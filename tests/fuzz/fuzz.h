/* Shared by the libFuzzer harnesses: one scratch directory per process
 * (under $TMPDIR, else /dev/shm, else /tmp), removed at exit, and helpers
 * that hand the fuzz input to entry points that take a path. */
#ifndef W2V_FUZZ_H
#define W2V_FUZZ_H

#include "w2v/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "w2v/fs.h"

static char fuzz_dir[4096];

__attribute__((unused)) static void fuzz_cleanup(void)
{
    if (fuzz_dir[0]) w2v_remove_tree(fuzz_dir, NULL, 0);
}

/* Removes the scratch directories of harnesses that died (a crash skips
 * the exit handler). */
__attribute__((unused)) static void fuzz_remove_stale(const char *base)
{
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "w2v-fuzz.", 9)) continue;
        long pid = strtol(e->d_name + 9, &end, 10);
        if (*end || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", base, e->d_name);
        w2v_remove_tree(path, NULL, 0);
    }
    closedir(d);
}

/* The scratch directory, created on first use. */
__attribute__((unused)) static const char *fuzz_scratch(void)
{
    if (fuzz_dir[0]) return fuzz_dir;
    const char *base = getenv("TMPDIR");
    if (!base || !*base || access(base, W_OK) != 0) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    fuzz_remove_stale(base);
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/w2v-fuzz.%ld", base, (long)getpid());
    w2v_remove_tree(fuzz_dir, NULL, 0);
    if (mkdir(fuzz_dir, 0700) != 0) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", fuzz_dir, strerror(errno));
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

/* A path in the scratch directory (static storage, one per name slot). */
__attribute__((unused)) static const char *fuzz_path(const char *name)
{
    static char paths[4][4200];
    static int next;
    char *p = paths[next++ & 3];
    snprintf(p, sizeof paths[0], "%s/%s", fuzz_scratch(), name);
    return p;
}

/* Writes data to the scratch file name (replacing it) and returns its path. */
__attribute__((unused)) static const char *fuzz_write(const char *name, const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
        abort();
    }
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
            abort();
        }
        done += (size_t)n;
    }
    close(fd);
    return path;
}

/* Whether the open finding id is listed in $W2V_FUZZ_KNOWN (comma-separated):
 * a harness skips the check that catches a reported, not yet fixed bug, so
 * that fuzzing can go on past it.  The replay (make fuzz-regress) never sets
 * it: there the reproducers in tests/fuzz/regress/ fail until the fix. */
__attribute__((unused)) static int fuzz_known(const char *id)
{
    const char *list = getenv("W2V_FUZZ_KNOWN");
    size_t n = strlen(id);
    for (const char *p = list; p && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        if (strcspn(p, ",") == n && !strncmp(p, id, n)) return 1;
    }
    return 0;
}

/* Fails the run (a finding) with a message: for invariants the library
 * promises, beyond what the sanitizers see. */
#define FUZZ_ASSERT(cond, ...)                                                    \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "fuzz: %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* An error message must be a terminated, non-empty string of the buffer. */
#define FUZZ_CHECK_ERR(err) FUZZ_ASSERT((err)[0] && memchr((err), 0, sizeof(err)), "empty or unterminated error")

/* A tensor read from a file (safetensors or torch): its name, dimensions and
 * element count agree with each other. */
__attribute__((unused)) static void fuzz_check_shape(const w2v_st_tensor *t, int i)
{
    FUZZ_ASSERT(t && t->name, "tensor %d", i);
    FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= W2V_ST_MAX_DIMS, "ndim %d", t->ndim);
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
        FUZZ_ASSERT(t->shape[d] >= 0, "negative dimension");
        count *= (size_t)t->shape[d];
    }
    FUZZ_ASSERT(count == t->count, "count %zu, shape product %zu", t->count, count);
}

#endif
