/* Token embedding lookup.   ids [N] (i32/i64), W [V, D], out/dout [N, D], dW [V, D] */
#include <string.h>

#include "ops/cpu/cpu_kernels.h"

static inline int64_t id_at(const cb_tensor *ids, int64_t i) {
    return ids->dtype == CB_I64 ? ((const int64_t *)ids->data)[i]
                                : (int64_t)((const int32_t *)ids->data)[i];
}

static cb_status check_ids(const cb_tensor *ids, int64_t V) {
    int64_t n = cb_tensor_numel(ids);
    for (int64_t i = 0; i < n; i++) {
        int64_t id = id_at(ids, i);
        if (id < 0 || id >= V)
            return cb_fail(CB_ERR_ARG, "token id %lld at position %lld is outside [0, %lld)",
                           (long long)id, (long long)i, (long long)V);
    }
    return CB_OK;
}

cb_status cb_cpu_embedding_fwd(const cb_tensor *ids, const cb_tensor *W, cb_tensor *out) {
    int64_t V = W->shape[0], D = W->shape[1], n = cb_tensor_numel(ids);
    CB_TRY(check_ids(ids, V));
    const float *w = W->data;
    float *o = out->data;
#pragma omp parallel for if (n * D > (1 << 16)) schedule(static)
    for (int64_t i = 0; i < n; i++) memcpy(o + i * D, w + id_at(ids, i) * D, (size_t)D * sizeof(float));
    return CB_OK;
}

/* Rows are accumulated in token order (serially per column block) so repeated ids sum
 * deterministically. */
cb_status cb_cpu_embedding_bwd(const cb_tensor *ids, const cb_tensor *dout, cb_tensor *dW) {
    int64_t V = dW->shape[0], D = dW->shape[1], n = cb_tensor_numel(ids);
    CB_TRY(check_ids(ids, V));
    const float *g = dout->data;
    float *w = dW->data;
    enum { BLK = 64 };
    int64_t nblk = (D + BLK - 1) / BLK;
#pragma omp parallel for if (n * D > (1 << 16)) schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t j0 = b * BLK, j1 = j0 + BLK < D ? j0 + BLK : D;
        for (int64_t i = 0; i < n; i++) {
            float *wr = w + id_at(ids, i) * D;
            const float *gr = g + i * D;
            for (int64_t j = j0; j < j1; j++) wr[j] += gr[j];
        }
    }
    return CB_OK;
}
