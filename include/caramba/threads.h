/* Thread configuration: CARAMBA_THREADS (else OMP_NUM_THREADS, else all cores) sets both the
 * OpenMP team and OpenBLAS. */
#ifndef CARAMBA_THREADS_H
#define CARAMBA_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Applies the environment (or n > 0 when given) and returns the thread count in use. */
int cb_threads_init(int n);
int cb_threads_count(void);

#ifdef __cplusplus
}
#endif
#endif
