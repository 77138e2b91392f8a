/* File-system helpers.  Files that appear complete or not at all: written
 * under a temporary name in the same directory, flushed to disk, then
 * renamed; directories likewise; joined paths, mkdir -p, rm -r. */
#ifndef W2V_FS_H
#define W2V_FS_H

#include <stdio.h>

typedef struct {
    FILE *fp;
    char *path, *tmp;
} w2v_atomic_file;

/* The last step of every atomic write, file or directory: fsync tmp (a
 * file, or a directory whose files are synced already), rename it to path,
 * fsync the directory that holds path.  0, or -1 with err set (tmp is left
 * to the caller). */
int w2v_commit_rename(const char *tmp, const char *path, char *err, size_t errlen);
/* PATH.tmp.PID opened for writing.  0, or -1 with "PATH: why" in err. */
int w2v_atomic_open(w2v_atomic_file *f, const char *path, char *err, size_t errlen);
/* ok != 0: flush, fsync, close and rename into place; otherwise (or when any
 * of that fails) remove the temporary file.  0, or -1 with the error. */
int w2v_atomic_commit(w2v_atomic_file *f, int ok, char *err, size_t errlen);
/* Writes a whole text buffer atomically. */
int w2v_atomic_write_text(const char *path, const char *text, char *err, size_t errlen);

/* Replaces directory dst by src (a complete temporary directory beside it,
 * its files written atomically): an older dst is moved aside and removed
 * after the rename. */
int w2v_replace_dir(const char *src, const char *dst, char *err, size_t errlen);
/* "dir/name" in a new string (free it); dir NULL or "" gives name. */
char *w2v_path_join(const char *dir, const char *name);

/* Creates path and its missing parents (mode 0777 less the umask).  Returns
 * 0, or -1 with "PATH: cannot create: why" in err. */
int w2v_mkdirs(const char *path, char *err, size_t errlen);

/* Removes path and, for a directory, everything beneath it, never following
 * symbolic links.  A path that does not exist is no error.  Returns 0, or -1
 * with "PATH: cannot remove: why" in err. */
int w2v_remove_tree(const char *path, char *err, size_t errlen);

/* Whether dir may be replaced by, or written over with, a model or a run:
 * it is absent, empty, or holds only what w2vtools writes there (the files
 * of a model directory, a run's checkpoint-N/ and metrics.jsonl, and the
 * strays of an interrupted write).  0, or -1 with "DIR: holds NAME, ..." in
 * err naming the first stranger. */
int w2v_check_ours(const char *dir, char *err, size_t errlen);

/* Removes what interrupted writes of dead processes left in dir: NAME.tmp.PID
 * and NAME.old.PID (files or directories) whose PID no longer runs.
 * Returns how many were removed. */
int w2v_remove_strays(const char *dir);

/* 1 when path exists (as anything, a dangling link included). */
int w2v_exists(const char *path);

#endif
