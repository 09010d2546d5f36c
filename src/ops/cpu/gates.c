/* Per-head gates and temperatures: sigmoid, exp of a clamped value, and scaling each head of a
 * projection by its own factor (per head, or per token and head).
 *   sigmoid / exp_clamp: x, y, dy, dx [n]
 *   head_scale: q, y, dy, dq [R, H*hd]; s, ds [ns, H] with ns = 1 (shared) or R (per row) */
#include <math.h>

#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/cpu_math.h"

cb_status cb_cpu_sigmoid_fwd(const cb_tensor *x, cb_tensor *y) {
    const float *a = x->data;
    float *o = y->data;
    int64_t n = cb_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) o[i] = cb_sigmoidf(a[i]);
    return CB_OK;
}

cb_status cb_cpu_sigmoid_bwd(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx) {
    const float *o = y->data, *g = dy->data;
    float *d = dx->data;
    int64_t n = cb_tensor_numel(y);
    for (int64_t i = 0; i < n; i++) d[i] += g[i] * o[i] * (1.0f - o[i]);
    return CB_OK;
}

cb_status cb_cpu_exp_clamp_fwd(const cb_tensor *x, float lo, float hi, cb_tensor *y) {
    const float *a = x->data;
    float *o = y->data;
    int64_t n = cb_tensor_numel(x);
    for (int64_t i = 0; i < n; i++) o[i] = expf(a[i] < lo ? lo : (a[i] > hi ? hi : a[i]));
    return CB_OK;
}

cb_status cb_cpu_exp_clamp_bwd(const cb_tensor *x, const cb_tensor *y, float lo, float hi,
                               const cb_tensor *dy, cb_tensor *dx) {
    const float *a = x->data, *o = y->data, *g = dy->data;
    float *d = dx->data;
    int64_t n = cb_tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        if (a[i] >= lo && a[i] <= hi) d[i] += g[i] * o[i]; /* inclusive, as torch.clamp */
    return CB_OK;
}

cb_status cb_cpu_head_scale_fwd(const cb_tensor *q, const cb_tensor *s, int n_heads, cb_tensor *y) {
    const int64_t W = cb_tensor_cols(q), R = cb_tensor_numel(q) / W, hd = W / n_heads;
    const int64_t ns = cb_tensor_numel(s) / n_heads;
    const float *qs = q->data, *ss = s->data;
    float *ys = y->data;
#pragma omp parallel for if (R * W > (1 << 15)) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *sr = ss + (r % ns) * n_heads;
        for (int64_t h = 0; h < n_heads; h++)
            for (int64_t d = 0; d < hd; d++)
                ys[r * W + h * hd + d] = qs[r * W + h * hd + d] * sr[h];
    }
    return CB_OK;
}

/* ds is reduced over rows serially per head when shared (ns = 1): deterministic. */
cb_status cb_cpu_head_scale_bwd(const cb_tensor *q, const cb_tensor *s, int n_heads,
                                const cb_tensor *dy, cb_tensor *dq, cb_tensor *ds) {
    const int64_t W = cb_tensor_cols(q), R = cb_tensor_numel(q) / W, hd = W / n_heads;
    const int64_t ns = cb_tensor_numel(s) / n_heads;
    const float *qs = q->data, *ss = s->data, *g = dy->data;
    if (dq) {
        float *d = dq->data;
#pragma omp parallel for if (R * W > (1 << 15)) schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float *sr = ss + (r % ns) * n_heads;
            for (int64_t h = 0; h < n_heads; h++)
                for (int64_t e = 0; e < hd; e++)
                    d[r * W + h * hd + e] += g[r * W + h * hd + e] * sr[h];
        }
    }
    if (ds) {
        float *d = ds->data;
        for (int64_t r = 0; r < R; r++)
            for (int64_t h = 0; h < n_heads; h++) {
                float acc = 0;
                for (int64_t e = 0; e < hd; e++)
                    acc += g[r * W + h * hd + e] * qs[r * W + h * hd + e];
                d[(r % ns) * n_heads + h] += acc;
            }
    }
    return CB_OK;
}
