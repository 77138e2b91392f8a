/* Data-parallel training over MPI: the processes of one job, each a rank.
 * A program started by mpirun (or srun) joins the job; started alone it is
 * a job of one, and MPI is never initialised: no daemon, no cost.  Every
 * call is collective where MPI's is, and a no-op in a job of one. */
#ifndef W2V_DIST_H
#define W2V_DIST_H

#include <stddef.h>

#include "w2v/stream.h"

/* Joins the job when the environment says a launcher started this process.
 * Returns the job's size (1 alone); 0 on failure, with the reason in err. */
int w2v_dist_init(char *err, size_t errlen);
int w2v_dist_rank(void);
int w2v_dist_size(void);
/* Leaves the job (after the last collective call). */
void w2v_dist_finish(void);

/* Sums x[n] over the ranks, in place, the same on every rank. */
void w2v_dist_sum_floats(float *x, long n);
void w2v_dist_sum_doubles(double *x, int n);
/* An array split over the ranks, rank r owning elements [bounds[r],
 * bounds[r + 1]) (bounds[0] = 0, bounds[size] = the length).  Allgather:
 * x is the whole array on every rank, each rank's own part current;
 * afterwards x[from, to) is current on every rank.  Gather: mine is this
 * rank's part (element bounds[rank] first); root gets x[from, to) in
 * all[0, to - from) (the others' all is not used: NULL will do). */
void w2v_dist_allgather_floats(float *x, long from, long to, const long *bounds);
void w2v_dist_gather_floats(float *all, const float *mine, long from, long to, const long *bounds, int root);
/* Rank root's bytes to every rank. */
void w2v_dist_bcast(void *buf, long bytes, int root);

/* A stream read by rank 0 alone (a pipe reaches rank 0 only).  The header:
 * rank 0 passes its own and gets it back; the others get rank 0's in
 * *copy (free it with w2v_header_free). */
const w2v_header *w2v_dist_share_header(const w2v_header *mine, w2v_header *copy);
/* What rank 0 does next: flag > 0 with batch *b, or flag <= 0 (the end of
 * the stream, a stop, an error: the caller's codes).  Every rank gets rank
 * 0's flag back; with flag > 0, the other ranks' *b holds rank 0's batch
 * (input_values, lengths, labels; no keys or mask) until the next call. */
int w2v_dist_share_batch(int flag, w2v_batch *b);

#endif
