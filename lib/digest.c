/* SHA-256 of files with libcrypto's EVP interface. */
#include "w2v/digest.h"
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <openssl/evp.h>

void w2v_hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

int w2v_sha256_file(const char *path, char hex[W2V_SHA256_HEX], char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        fclose(fp);
        EVP_MD_CTX_free(ctx);
        return set_error(err, errlen, "%s: SHA-256 unavailable in libcrypto", path);
    }
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = xmalloc(CHUNK);
    size_t n;
    while ((n = fread(buf, 1, CHUNK, fp)) > 0) EVP_DigestUpdate(ctx, buf, n);
    int failed = ferror(fp);
    int e = errno;
    fclose(fp);
    free(buf);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (failed) return set_error(err, errlen, "%s: read failed: %s", path, strerror(e));
    w2v_hex(md, len, hex);
    return 0;
}

int w2v_sha256_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n])) return 0;
    return n == 64;
}
