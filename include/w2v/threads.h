/* The thread policy: one pool (OpenMP) for the library's loops and its
 * GEMMs, OpenBLAS single-threaded inside it. */
#ifndef W2V_THREADS_H
#define W2V_THREADS_H

/* Threads in use: --threads N, else the cores available to the process. */
int w2v_threads(void);
void w2v_set_threads(int n);

#endif
