/* A minimal unit-test harness: CHECK records a failure and goes on;
 * finish() prints a summary and gives the exit status. */
#ifndef W2V_UNIT_H
#define W2V_UNIT_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int unit_checks, unit_failures;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        unit_checks++;                                                          \
        if (!(cond)) {                                                          \
            unit_failures++;                                                    \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Shared data given to the project (golden references); tests that need it
 * find it through W2V_SHARED or ../shared beside the checkout. */
static inline const char *unit_shared_dir(void)
{
    const char *d = getenv("W2V_SHARED");
    return d && *d ? d : "../shared";
}

/* A test that needs the golden data and has none: a skip, said aloud, or
 * a failure where W2V_REQUIRE_GOLDEN=1 (CI sets it: a missing oracle must
 * not pass as zero checks). */
static inline void unit_no_golden(const char *test, const char *path)
{
    const char *req = getenv("W2V_REQUIRE_GOLDEN");
    if (req && !strcmp(req, "1")) {
        unit_checks++;
        unit_failures++;
        fprintf(stderr, "%s: FAILED: no golden reference data at %s, and W2V_REQUIRE_GOLDEN=1\n", test, path);
    } else printf("%s: SKIPPED: no golden reference data at %s (set W2V_SHARED)\n", test, path);
}

/* The golden data's folder; NULL, after unit_no_golden, where it is absent
 * (a clean clone has no ../shared beside it). */
static inline const char *unit_golden(const char *test)
{
    static char dir[4096];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/golden", unit_shared_dir());
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return dir;
    unit_no_golden(test, dir);
    return NULL;
}

static inline int unit_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, unit_checks, unit_failures);
    return unit_failures ? 1 : 0;
}

#endif
