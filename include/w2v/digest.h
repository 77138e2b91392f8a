/* Message digests (OpenSSL libcrypto): SHA-256 of files, as sha256sum
 * prints them. */
#ifndef W2V_DIGEST_H
#define W2V_DIGEST_H

#include <stddef.h>

#define W2V_SHA256_HEX 65 /* 64 hex digits and the terminating NUL */

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void w2v_hex(const unsigned char *bytes, size_t n, char *out);

/* SHA-256 of a file's contents as lower-case hex.  Returns 0, or -1 with
 * "PATH: what failed" in err. */
int w2v_sha256_file(const char *path, char hex[W2V_SHA256_HEX], char *err, size_t errlen);

/* 1 when s is 64 hex digits (either case). */
int w2v_sha256_valid(const char *s);

#endif
