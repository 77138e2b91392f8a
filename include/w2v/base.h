/* The library's ground floor, which every module of libw2v stands on:
 * where its messages go, and the clock.
 *
 * The library never exits or re-executes the process, and prints nothing
 * itself: errors come back as -1 (or NULL) with the reason in the caller's
 * err buffer of errlen bytes, the one error convention of the API (a
 * reader's or an audio file's errors too); only writes to a FILE the caller
 * owns return -1 with errno set, as stdio's do, so that the caller can tell
 * a closed pipe.  Notes and warnings go to the message function.  The one exception is running out
 * of memory, which the library does not try to survive: it hands the
 * message to the function as W2V_FATAL and aborts if that returns (a
 * program's function exits instead, as glib's g_error does). */
#ifndef W2V_BASE_H
#define W2V_BASE_H

typedef enum {
    W2V_NOTE,    /* what was done, for a user who wants to know (a skipped tensor, a retry) */
    W2V_WARNING, /* something went wrong that the library worked around */
    W2V_FATAL,   /* out of memory: the library cannot go on */
} w2v_message_kind;

typedef void (*w2v_message_fn)(w2v_message_kind kind, const char *msg);

/* Where the library's messages go (the programs pass theirs, which print
 * "program: msg" on stderr).  NULL, the default: notes are dropped,
 * warnings and fatal messages printed on stderr as "libw2v: msg". */
void w2v_set_message_fn(w2v_message_fn fn);

/* Seconds from a monotonic clock. */
double w2v_now(void);

#endif
