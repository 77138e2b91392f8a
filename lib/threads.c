/* The thread policy: the library's OpenMP threads do all the work,
 * GEMMs included (gemm.c runs OpenBLAS single-threaded inside them). */
#include "w2v/threads.h"

#include <omp.h>
#include <sched.h>

static int threads;

int w2v_threads(void)
{
    if (threads == 0) {
        cpu_set_t set;
        int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        w2v_set_threads(n < 1 ? 1 : n);
    }
    return threads;
}

void w2v_set_threads(int n)
{
    threads = n;
    omp_set_num_threads(n);
    /* a shard's thread runs its operations' parallel loops alone */
    omp_set_max_active_levels(1);
}
