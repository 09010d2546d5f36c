/* OpenBLAS picks its kernels from the CPU model at load time; on CPUs it does not know (new
 * models, or virtual machines that report a generic model) it falls back to AVX2 or even SSE
 * kernels while the CPU has AVX-512 — measured here: 30 GFLOP/s instead of 150 per core on a
 * virtualised Xeon. The choice can only be overridden through OPENBLAS_CORETYPE before the
 * library loads, so the command-line tools re-execute themselves once with it set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caramba/threads.h"

char *openblas_get_corename(void);

static int has_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

void cb_blas_tune_reexec(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("CARAMBA_BLAS_TUNED")) return;
    const char *core = openblas_get_corename();
    if (!core || !has_avx512()) return;
    static const char *avx512_cores[] = {"skylakex", "cooperlake", "sapphirerapids", "zen4", "zen5"};
    for (size_t i = 0; i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (strcasecmp(core, avx512_cores[i]) == 0) return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    setenv("CARAMBA_BLAS_TUNED", core, 1); /* never loop, and say what was replaced */
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels OpenBLAS chose */
}
