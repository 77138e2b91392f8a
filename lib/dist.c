/* MPI for data-parallel training (OpenMPI, MPICH: any MPI-3).  MPI is
 * initialised only under a launcher, so a program run alone never starts
 * an MPI runtime.  Messages are cut below INT_MAX elements, MPI's count. */
#include "w2v/dist.h"
#include "internal.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

static int joined, rank, size = 1;

/* The other ranks' copy of the current batch (w2v_dist_share_batch). */
static struct {
    float *x;
    int64_t *lengths, *labels;
    long cap_x, cap_b;
} shared;

/* The variables a launcher sets for every process it starts. */
static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int w2v_dist_init(char *err, size_t errlen)
{
    if (joined || !launched()) return size;
    /* FUNNELED: only the main thread calls MPI, the OpenMP pool never */
    int provided, e = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (e != MPI_SUCCESS) {
        char why[MPI_MAX_ERROR_STRING];
        int len;
        MPI_Error_string(e, why, &len);
        set_error(err, errlen, "MPI_Init: %s", why);
        return 0;
    }
    joined = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

int w2v_dist_rank(void) { return rank; }
int w2v_dist_size(void) { return size; }

void w2v_dist_finish(void)
{
    if (joined) MPI_Finalize();
    joined = 0;
    free(shared.x);
    free(shared.lengths);
    free(shared.labels);
    memset(&shared, 0, sizeof shared);
}

#define CHUNK (INT_MAX / 8 * 4)

/* Sums go in buckets of 1 MiB.  On this machine's OpenMPI 4.1 (2 ranks,
 * shared memory, 360 MB: wav2vec2-base's gradients) one allreduce took
 * 1.1-1.4 s, buckets of 1/4 to 16 MiB 0.06-0.08 s, of 32 MiB and more
 * 1.1-1.4 s again (build/bench/mpi-buckets measures it). */
#define BUCKET (1L << 18)

void w2v_dist_sum_floats(float *x, long n)
{
    if (size == 1) return;
    for (long o = 0; o < n; o += BUCKET)
        MPI_Allreduce(MPI_IN_PLACE, x + o, (int)(n - o < BUCKET ? n - o : BUCKET), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

void w2v_dist_sum_doubles(double *x, int n)
{
    if (size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* Rank r's share of [from, to) when it holds [bounds[r], bounds[r + 1]):
 * counts and places relative to from.  Windows keep counts below INT_MAX. */
static void shares(long from, long to, const long *bounds, int *count, int *place)
{
    for (int r = 0; r < size; r++) {
        long a = bounds[r] > from ? bounds[r] : from, b = bounds[r + 1] < to ? bounds[r + 1] : to;
        count[r] = b > a ? (int)(b - a) : 0;
        place[r] = b > a ? (int)(a - from) : 0;
    }
}

void w2v_dist_allgather_floats(float *x, long from, long to, const long *bounds)
{
    if (size == 1) return;
    int *count = xmalloc(2 * (size_t)size * sizeof *count), *place = count + size;
    for (long o = from; o < to; o += BUCKET) {
        long end = to - o < BUCKET ? to : o + BUCKET;
        shares(o, end, bounds, count, place);
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x + o, count, place, MPI_FLOAT, MPI_COMM_WORLD);
    }
    free(count);
}

void w2v_dist_gather_floats(float *all, const float *mine, long from, long to, const long *bounds, int root)
{
    if (size == 1) {
        memcpy(all, mine + (from - bounds[0]), (size_t)(to - from) * sizeof *all);
        return;
    }
    int *count = xmalloc(2 * (size_t)size * sizeof *count), *place = count + size;
    for (long o = from; o < to; o += CHUNK) {
        long end = to - o < CHUNK ? to : o + CHUNK;
        shares(o, end, bounds, count, place);
        const float *send = count[rank] ? mine + (o + place[rank] - bounds[rank]) : mine;
        MPI_Gatherv(send, count[rank], MPI_FLOAT, rank == root ? all + (o - from) : NULL, count, place, MPI_FLOAT, root,
                    MPI_COMM_WORLD);
    }
    free(count);
}

void w2v_dist_bcast(void *buf, long bytes, int root)
{
    if (size == 1) return;
    for (long o = 0; o < bytes; o += CHUNK)
        MPI_Bcast((char *)buf + o, (int)(bytes - o < CHUNK ? bytes - o : CHUNK), MPI_BYTE, root, MPI_COMM_WORLD);
}

const w2v_header *w2v_dist_share_header(const w2v_header *mine, w2v_header *copy)
{
    if (size == 1) return mine;
    /* the numbers, then the label names one after another, NUL-terminated */
    long num[7] = {0}, len = 0;
    char *names = NULL;
    if (rank == 0) {
        for (int i = 0; i < mine->nlabels; i++) len += (long)strlen(mine->labels[i]) + 1;
        long v[7] = {mine->type, mine->sample_rate, mine->nlabels, mine->batches_per_epoch, mine->epochs,
                     mine->batch_size, len};
        memcpy(num, v, sizeof num);
    }
    w2v_dist_bcast(num, sizeof num, 0);
    names = xmalloc((size_t)num[6] + 1);
    for (int i = 0, o = 0; rank == 0 && i < mine->nlabels; o += (int)strlen(mine->labels[i]) + 1, i++)
        memcpy(names + o, mine->labels[i], strlen(mine->labels[i]) + 1);
    w2v_dist_bcast(names, num[6], 0);
    if (rank == 0) {
        free(names);
        return mine;
    }
    char **labels = xcalloc((size_t)num[2] + 1, sizeof *labels);
    for (long i = 0, o = 0; i < num[2]; o += (long)strlen(names + o) + 1, i++) labels[i] = names + o;
    w2v_header_init(copy, (w2v_stream_type)num[0], (int)num[2], labels);
    copy->sample_rate = (int)num[1];
    copy->batches_per_epoch = num[3], copy->epochs = num[4], copy->batch_size = num[5];
    free(labels);
    free(names);
    return copy;
}


int w2v_dist_share_batch(int flag, w2v_batch *b)
{
    if (size == 1) return flag;
    long head[3] = {flag, flag > 0 ? b->batch : 0, flag > 0 ? b->time : 0};
    w2v_dist_bcast(head, sizeof head, 0);
    if (head[0] <= 0) return (int)head[0];
    long B = head[1], T = head[2];
    if (rank) {
        if (B * T > shared.cap_x) shared.x = xrealloc(shared.x, (size_t)(shared.cap_x = B * T) * sizeof *shared.x);
        if (B > shared.cap_b) {
            shared.lengths = xrealloc(shared.lengths, (size_t)B * sizeof *shared.lengths);
            shared.labels = xrealloc(shared.labels, (size_t)B * sizeof *shared.labels);
            shared.cap_b = B;
        }
        *b = (w2v_batch){.batch = (int)B, .time = (int)T, .input_values = shared.x, .lengths = shared.lengths,
                         .labels = shared.labels};
    }
    w2v_dist_bcast(b->input_values, B * T * (long)sizeof(float), 0);
    w2v_dist_bcast(b->lengths, B * (long)sizeof(int64_t), 0);
    w2v_dist_bcast(b->labels, B * (long)sizeof(int64_t), 0);
    return (int)head[0];
}
