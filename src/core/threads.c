/* One place decides the thread count for OpenMP kernels and OpenBLAS GEMMs alike, so the two
 * pools never oversubscribe the cores. */
#include "caramba/threads.h"

#include <omp.h>
#include <stdlib.h>

void openblas_set_num_threads(int num_threads);

static int env_int(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end == 0 && v > 0 && v < 4096) ? (int)v : 0;
}

int cb_threads_init(int n) {
    if (n <= 0) n = env_int("CARAMBA_THREADS");
    if (n <= 0) n = env_int("OMP_NUM_THREADS");
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}

int cb_threads_count(void) { return omp_get_max_threads(); }
