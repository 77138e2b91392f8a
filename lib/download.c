/* Resumable, retrying, verified downloads with libcurl. */
#include "w2v/download.h"
#include "w2v/fs.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

char *w2v_source_url(const char *source, char *err, size_t errlen)
{
    if (strstr(source, "://")) return xstrdup(source);
    char abs[PATH_MAX];
    if (!realpath(source, abs)) {
        set_error(err, errlen, "%s: cannot open: %s", source, strerror(errno));
        return NULL;
    }
    CURLU *u = curl_url();
    char *url = NULL, *copy = NULL;
    if (u && curl_url_set(u, CURLUPART_SCHEME, "file", 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_PATH, abs, CURLU_URLENCODE) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &url, 0) == CURLUE_OK)
        copy = xstrdup(url);
    else
        set_error(err, errlen, "%s: cannot make a file:// URL of it", source);
    curl_free(url);
    curl_url_cleanup(u);
    return copy;
}

typedef struct {
    FILE *fp;
    curl_off_t offset; /* bytes already in the partial file */
    const w2v_download_options *opt;
} transfer;

static size_t on_data(char *data, size_t size, size_t n, void *user)
{
    transfer *t = user;
    return fwrite(data, size, n, t->fp) * size;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)ultotal;
    (void)ulnow;
    transfer *t = user;
    if (t->opt->progress)
        t->opt->progress(t->opt->progress_ctx, (double)(t->offset + dlnow),
                         dltotal > 0 ? (double)(t->offset + dltotal) : 0);
    return 0;
}

typedef enum { DONE, RESTART, RETRY, FAIL } outcome;

/* One transfer into part, resuming what it holds. */
static outcome attempt(const char *url, const char *part, const w2v_download_options *opt,
                       char *err, size_t errlen)
{
    struct stat st;
    transfer t = {.opt = opt};
    t.offset = stat(part, &st) == 0 ? st.st_size : 0;
    t.fp = fopen(part, "ab");
    if (!t.fp) {
        set_error(err, errlen, "%s: cannot create: %s", part, strerror(errno));
        return FAIL;
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    CURL *c = curl_easy_init();
    if (!c) {
        fclose(t.fp);
        set_error(err, errlen, "cannot start libcurl");
        return FAIL;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,ftp,file");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https,ftp");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "w2vtools/" W2V_VERSION);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a stalled transfer (under 1 byte/s for a minute) fails and is retried */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    if (t.offset > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, t.offset);
    CURLcode res = curl_easy_perform(c);
    if (opt->progress) opt->progress(opt->progress_ctx, -1, 0);
    long code = 0;
    curl_off_t length = -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    int is_http = !strncasecmp(url, "http", 4);
    curl_easy_cleanup(c);
    if (fclose(t.fp) != 0 && res == CURLE_OK) {
        set_error(err, errlen, "%s: write failed: %s", part, strerror(errno));
        return FAIL;
    }
    const char *why = *curl_err ? curl_err : curl_easy_strerror(res);
    switch (res) {
    case CURLE_OK: break;
    case CURLE_RANGE_ERROR: /* the server cannot resume: start over */
        set_error(err, errlen, "%s: %s", url, why);
        return RESTART;
    case CURLE_HTTP_RETURNED_ERROR:
        set_error(err, errlen, "%s: %s", url, why);
        if (code == 416) return RESTART; /* the partial file does not fit the resource */
        return code == 408 || code == 429 || code >= 500 ? RETRY : FAIL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        set_error(err, errlen, "%s: %s", url, why);
        return RETRY;
    default:
        set_error(err, errlen, "%s: %s", url, why);
        return FAIL;
    }
    /* The announced length counts what this transfer sent, except for an
     * HTTP 200: the whole resource (libcurl accepts one that equals the
     * partial file as already complete). */
    if (length >= 0) {
        curl_off_t want = is_http && code == 200 ? length : t.offset + length;
        if (stat(part, &st) != 0 || st.st_size != want) {
            set_error(err, errlen, "%s: got %lld bytes, the server announced %lld", url,
                      (long long)st.st_size, (long long)want);
            return RESTART;
        }
    }
    return DONE;
}

static void pause_seconds(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int w2v_download(const char *url, const char *dest, const char *sha256,
                 char sha256_out[W2V_SHA256_HEX], const w2v_download_options *opt,
                 char *err, size_t errlen)
{
    char *part = xmalloc(strlen(dest) + 6);
    sprintf(part, "%s.part", dest);
    double delay = opt->retry_delay;
    int failures = 0, restarts = 0, ret = -1;
    for (;;) {
        outcome o = attempt(url, part, opt, err, errlen);
        if (o == DONE) break;
        if (o == FAIL) goto out;
        if (o == RESTART) {
            /* one fresh start is free; another counts as a failure */
            if (truncate(part, 0) != 0 && errno != ENOENT) {
                set_error(err, errlen, "%s: cannot truncate: %s", part, strerror(errno));
                goto out;
            }
            if (restarts++ == 0) continue;
        }
        if (failures++ >= opt->retries) goto out;
        lib_note("%s; retrying in %g s", err, delay);
        pause_seconds(delay);
        delay = delay * 2 > 60 ? 60 : delay * 2;
    }
    if (w2v_sha256_file(part, sha256_out, err, errlen) < 0) goto out;
    if (sha256 && strcasecmp(sha256, sha256_out)) {
        set_error(err, errlen, "%s: SHA-256 mismatch: expected %s, got %s (download removed)",
                  url, sha256, sha256_out);
        unlink(part);
        goto out;
    }
    if (w2v_commit_rename(part, dest, err, errlen) < 0) goto out;
    ret = 0;
out:
    free(part);
    return ret;
}
