/* Files that appear complete or not at all: written under a temporary name
 * in the same directory, flushed to disk, then renamed. */
#ifndef W2V_FS_H
#define W2V_FS_H

#include <stdio.h>

typedef struct {
    FILE *fp;
    char *path, *tmp;
} w2v_atomic_file;

/* 0, or -1 with "PATH: why" in err. */
int w2v_atomic_open(w2v_atomic_file *f, const char *path, char *err, size_t errlen);
/* ok != 0: flush, fsync, close and rename into place; otherwise (or when any
 * of that fails) remove the temporary file.  0, or -1 with the error. */
int w2v_atomic_commit(w2v_atomic_file *f, int ok, char *err, size_t errlen);
/* Writes a whole text buffer atomically. */
int w2v_atomic_write_text(const char *path, const char *text, char *err, size_t errlen);

/* Replaces directory dst by src (a complete temporary directory beside it):
 * an older dst is moved aside and removed after the rename. */
int w2v_replace_dir(const char *src, const char *dst, char *err, size_t errlen);
/* rm -r */
int w2v_remove_tree(const char *path);
/* mkdir -p */
int w2v_make_dirs(const char *path, char *err, size_t errlen);

#endif
