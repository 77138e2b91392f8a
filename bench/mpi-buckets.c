/* mpi-buckets: how long this MPI takes to sum a model's gradients over the
 * ranks, whole and in buckets of several sizes: the measurement behind
 * lib/dist.c's bucket.  Run under mpirun:
 *
 *   mpirun -np 2 build/bench/mpi-buckets [FLOATS]     (default 90,000,000:
 *                                                      wav2vec2-base's trainable part)
 *
 * For each bucket size (1/16 MiB to one message, by 4): the seconds of an
 * in-place MPI_Allreduce of FLOATS floats, and of an in-place
 * MPI_Reduce_scatter splitting them evenly over the ranks (what a ZeRO-1
 * split could sum with instead: fewer bytes), the best of two rounds after
 * a warm-up; then one MPI_Allgatherv (--zero-stage 1's). */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int rank, size;

/* Seconds to sum x[n] over the ranks in buckets: allreduce or, with
 * scatter, reduce-scatter (rank r owning [n r / size, n (r + 1) / size)). */
static double sum(float *x, long n, long bucket, int scatter)
{
    int *count = malloc((size_t)size * sizeof *count);
    MPI_Barrier(MPI_COMM_WORLD);
    double t = MPI_Wtime();
    for (long o = 0; o < n; o += bucket) {
        long end = n - o < bucket ? n : o + bucket;
        if (!scatter) {
            MPI_Allreduce(MPI_IN_PLACE, x + o, (int)(end - o), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            continue;
        }
        for (int r = 0; r < size; r++) {
            long lo = n * r / size, hi = n * (r + 1) / size;
            lo = lo > o ? lo : o, hi = hi < end ? hi : end;
            count[r] = hi > lo ? (int)(hi - lo) : 0;
        }
        MPI_Reduce_scatter(MPI_IN_PLACE, x + o, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    t = MPI_Wtime() - t;
    free(count);
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

static double best(float *x, long n, long bucket, int scatter)
{
    double b = sum(x, n, bucket, scatter); /* the warm-up */
    for (int k = 0; k < 2; k++) {
        double t = sum(x, n, bucket, scatter);
        b = t < b ? t : b;
    }
    return b;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long n = argc > 1 ? atol(argv[1]) : 90000000;
    if (n <= 0 || n > INT_MAX) {
        if (!rank) fprintf(stderr, "mpi-buckets: FLOATS: 1 to %d\n", INT_MAX);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) MPI_Abort(MPI_COMM_WORLD, 1);
    for (long i = 0; i < n; i++) x[i] = 1.0f / (float)(1 + i % 1000);
    if (!rank) printf("%d ranks, %ld floats (%.1f MB): seconds, the best of 2\n%12s %10s %14s\n", size, n,
                      (double)n * 4 / 1e6, "bucket MiB", "allreduce", "reduce-scatter");
    for (long bucket = 1L << 14; bucket < 4 * n; bucket *= 4) {
        long b = bucket < n ? bucket : n;
        if (b > INT_MAX) continue;
        double a = best(x, n, b, 0), r = best(x, n, b, 1);
        if (!rank) printf("%12.2f %10.3f %14.3f\n", (double)b * 4 / 1048576, a, r);
        if (b == n) break;
    }
    int *count = malloc(2 * (size_t)size * sizeof *count), *place = count + size;
    for (int r = 0; r < size; r++) place[r] = (int)(n * r / size), count[r] = (int)(n * (r + 1) / size) - place[r];
    MPI_Barrier(MPI_COMM_WORLD);
    double t = MPI_Wtime();
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, count, place, MPI_FLOAT, MPI_COMM_WORLD);
    t = MPI_Wtime() - t;
    if (!rank) printf("allgather, one message: %.3f\n", t);
    free(count);
    free(x);
    MPI_Finalize();
    return 0;
}
