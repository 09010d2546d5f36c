/* Softmax over the last dim and the fused log-softmax + cross-entropy.
 *   x, y, dy, dx [R, N]; logits, dlogits [N, V]; targets [N] i32/i64; lse [N]; loss [1] */
#include <math.h>
#include <string.h>

#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/cpu_math.h"

/* max, then sum of exp(x - max) in one extra pass; returns log-sum-exp. */
static inline float row_lse(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    if (m == -INFINITY) return -INFINITY;
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) s += cb_fast_expf(x[j] - m);
    return m + logf(s);
}

cb_status cb_cpu_softmax_fwd(const cb_tensor *x, cb_tensor *y) {
    int64_t N = cb_tensor_cols(x), R = cb_tensor_numel(x) / N;
    const float *xs = x->data;
    float *ys = y->data;
#pragma omp parallel for if (R * N > (1 << 15)) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        float lse = row_lse(xs + r * N, N);
#pragma omp simd
        for (int64_t j = 0; j < N; j++) ys[r * N + j] = cb_fast_expf(xs[r * N + j] - lse);
    }
    return CB_OK;
}

/* dx = y * (dy - sum(dy * y)) */
cb_status cb_cpu_softmax_bwd(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx) {
    int64_t N = cb_tensor_cols(y), R = cb_tensor_numel(y) / N;
    const float *ys = y->data, *gs = dy->data;
    float *ds = dx->data;
#pragma omp parallel for if (R * N > (1 << 15)) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        float dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < N; j++) dot += ys[r * N + j] * gs[r * N + j];
#pragma omp simd
        for (int64_t j = 0; j < N; j++) ds[r * N + j] += ys[r * N + j] * (gs[r * N + j] - dot);
    }
    return CB_OK;
}

static inline int64_t target_at(const cb_tensor *t, int64_t i) {
    return t->dtype == CB_I64 ? ((const int64_t *)t->data)[i]
                              : (int64_t)((const int32_t *)t->data)[i];
}

cb_status cb_cpu_cross_entropy_fwd(const cb_tensor *logits, const cb_tensor *targets,
                                   int64_t ignore_index, cb_tensor *loss, cb_tensor *lse,
                                   int64_t *count) {
    int64_t V = cb_tensor_cols(logits), N = cb_tensor_numel(logits) / V;
    const float *xs = logits->data;
    float *ls = lse->data;
    for (int64_t i = 0; i < N; i++) {
        int64_t t = target_at(targets, i);
        if (t != ignore_index && (t < 0 || t >= V))
            return cb_fail(CB_ERR_ARG, "cross-entropy: target %lld at row %lld outside [0, %lld)",
                           (long long)t, (long long)i, (long long)V);
    }
#pragma omp parallel for if (N * V > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < N; i++) ls[i] = row_lse(xs + i * V, V);
    double total = 0; /* in row order: deterministic */
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t t = target_at(targets, i);
        if (t == ignore_index) continue;
        total += (double)ls[i] - xs[i * V + t];
        n++;
    }
    ((float *)loss->data)[0] = n ? (float)(total / (double)n) : 0.0f;
    *count = n;
    return CB_OK;
}

cb_status cb_cpu_cross_entropy_bwd(const cb_tensor *logits, const cb_tensor *targets,
                                   int64_t ignore_index, const cb_tensor *lse, float dloss,
                                   int64_t count, cb_tensor *dlogits, bool fresh) {
    if (fresh) memset(dlogits->data, 0, cb_tensor_nbytes(dlogits)); /* ignored rows stay zero */
    if (count == 0) return CB_OK;
    int64_t V = cb_tensor_cols(logits), N = cb_tensor_numel(logits) / V;
    const float *xs = logits->data, *ls = lse->data;
    float *ds = dlogits->data;
    float scale = dloss / (float)count;
#pragma omp parallel for if (N * V > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < N; i++) {
        int64_t t = target_at(targets, i);
        if (t == ignore_index) continue;
        float l = ls[i];
        const float *xr = xs + i * V;
        float *dr = ds + i * V;
#pragma omp simd
        for (int64_t j = 0; j < V; j++) dr[j] += scale * cb_fast_expf(xr[j] - l);
        dr[t] -= scale;
    }
    return CB_OK;
}
