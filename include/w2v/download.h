/* Downloads (libcurl) that resume, retry and verify. */
#ifndef W2V_DOWNLOAD_H
#define W2V_DOWNLOAD_H

#include <stddef.h>
#include "w2v/digest.h"

typedef struct {
    int retries;        /* further attempts after a failed one */
    double retry_delay; /* seconds before the first retry, doubled for each next (at most 60) */
    /* Called as data arrive, with the bytes the partial file holds (what
     * an earlier attempt left included) and the whole size (0 while
     * unknown), and once with done < 0 when an attempt ends.  NULL: none. */
    void (*progress)(void *ctx, double done, double total);
    void *progress_ctx;
} w2v_download_options;

/* The URL that source names: a URL with a scheme (http, https, ftp, file)
 * is returned as it is, anything else is taken for a local path and made a
 * file:// URL.  A new string (free it), or NULL with the reason in err. */
char *w2v_source_url(const char *source, char *err, size_t errlen);

/* Fetches url (see w2v_source_url) into dest.  Data go to DEST.part; a
 * partial file left by an earlier attempt or run is resumed with a range
 * request (started over when the server cannot resume).  Redirects are
 * followed; transient failures (connection, timeouts, a stall, HTTP 408, 429
 * and 5xx) are retried with back-off.  When the transfer is complete the
 * size is checked against the one the server announced, the SHA-256
 * compared with sha256 (NULL accepts any), and DEST.part renamed to dest.
 * The digest is returned in sha256_out.  Returns 0, or -1 with the reason in
 * err; a wrong checksum removes DEST.part, other failures keep it for the
 * next attempt.  Call curl_global_init first. */
int w2v_download(const char *url, const char *dest, const char *sha256,
                 char sha256_out[W2V_SHA256_HEX], const w2v_download_options *opt,
                 char *err, size_t errlen);

#endif
