/* Inverted dropout with a counter-based mask (no mask tensor is stored).
 *   x, y, dy, dx [n] */
#include "ops/cpu/cpu_kernels.h"

cb_status cb_cpu_dropout_fwd(const cb_tensor *x, float p, uint64_t seed, uint64_t offset,
                             cb_tensor *y) {
    const float *xs = x->data;
    float *ys = y->data;
    int64_t n = cb_tensor_numel(x);
    float keep = 1.0f / (1.0f - p);
#pragma omp parallel for if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; i++)
        ys[i] = cb_dropout_uniform(seed, offset + (uint64_t)i) >= p ? xs[i] * keep : 0.0f;
    return CB_OK;
}

cb_status cb_cpu_dropout_bwd(const cb_tensor *dy, float p, uint64_t seed, uint64_t offset,
                             cb_tensor *dx) {
    const float *gs = dy->data;
    float *ds = dx->data;
    int64_t n = cb_tensor_numel(dy);
    float keep = 1.0f / (1.0f - p);
#pragma omp parallel for if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (cb_dropout_uniform(seed, offset + (uint64_t)i) >= p) ds[i] += gs[i] * keep;
    return CB_OK;
}
