/* File-system helpers for programs that build directory trees: joined
 * paths, mkdir -p, rm -r. */
#ifndef W2V_FILES_H
#define W2V_FILES_H

#include <stddef.h>

/* "dir/name" in a new string (free it); dir NULL or "" gives name. */
char *w2v_path_join(const char *dir, const char *name);

/* Creates path and its missing parents (mode 0777 less the umask).  Returns
 * 0, or -1 with "PATH: cannot create: why" in err. */
int w2v_mkdirs(const char *path, char *err, size_t errlen);

/* Removes path and, for a directory, everything beneath it, never following
 * symbolic links.  A path that does not exist is no error.  Returns 0, or -1
 * with "PATH: cannot remove: why" in err. */
int w2v_remove_tree(const char *path, char *err, size_t errlen);

/* 1 when path exists (as anything, a dangling link included). */
int w2v_exists(const char *path);

#endif
