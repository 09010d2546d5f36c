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
/* Call first thing in main(): when OpenBLAS picked pre-AVX-512 kernels on an AVX-512 CPU,
 * re-executes the program with OPENBLAS_CORETYPE=SkylakeX (see src/core/blas_tune.c). Returns
 * only when nothing needs changing (or the re-exec failed). */
void cb_blas_tune_reexec(char **argv);

#ifdef __cplusplus
}
#endif
#endif
