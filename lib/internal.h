/* Helpers shared by the library's sources; not installed. */
#ifndef W2V_INTERNAL_H
#define W2V_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "w2vtools stores little-endian data and assumes a little-endian host"
#endif

/* Allocation that cannot fail: out of memory is fatal (lib/base.c). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned; free with free().  xalloc_floats zeroes. */
void *xaligned(size_t bytes);
float *xalloc_floats(size_t n);

/* The library's notes and warnings, to the message function (w2v/base.h). */
void lib_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lib_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes o as one compact JSON line, floats with 9 significant digits
 * (enough for a float32 to read back exactly).  0, or -1 with errno set. */
struct json_t;
int w2v_json_line(FILE *fp, const struct json_t *o);

/* printf into an error buffer of len bytes (NULL is allowed); returns -1. */
int set_error(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
