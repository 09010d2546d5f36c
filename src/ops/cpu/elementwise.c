/* Elementwise kernels. n = numel(out); a broadcast operand b has nb elements with n % nb == 0
 * and is indexed i % nb (b's shape is a suffix of a's). */
#include <omp.h>
#include <string.h>

#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/cpu_math.h"

/* Below this many elements the OpenMP fork costs more than the loop. */
enum { PAR_MIN = 1 << 15 };

cb_status cb_cpu_add(const cb_tensor *a, const cb_tensor *b, cb_tensor *out) {
    const float *x = a->data, *y = b->data;
    float *o = out->data;
    int64_t n = cb_tensor_numel(out), nb = cb_tensor_numel(b);
    if (nb == n) {
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
    } else {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
        for (int64_t r = 0; r < n / nb; r++)
            for (int64_t j = 0; j < nb; j++) o[r * nb + j] = x[r * nb + j] + y[j];
    }
    return CB_OK;
}

cb_status cb_cpu_mul(const cb_tensor *a, const cb_tensor *b, cb_tensor *out) {
    const float *x = a->data, *y = b->data;
    float *o = out->data;
    int64_t n = cb_tensor_numel(out), nb = cb_tensor_numel(b);
    if (nb == n) {
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) o[i] = x[i] * y[i];
    } else {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
        for (int64_t r = 0; r < n / nb; r++)
            for (int64_t j = 0; j < nb; j++) o[r * nb + j] = x[r * nb + j] * y[j];
    }
    return CB_OK;
}

cb_status cb_cpu_mul_bwd(const cb_tensor *a, const cb_tensor *b, const cb_tensor *dout,
                         cb_tensor *da, cb_tensor *db) {
    const float *x = a->data, *y = b->data, *d = dout->data;
    int64_t n = cb_tensor_numel(dout), nb = cb_tensor_numel(b);
    if (da) {
        float *g = da->data;
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
        for (int64_t r = 0; r < n / nb; r++)
            for (int64_t j = 0; j < nb; j++) g[r * nb + j] += d[r * nb + j] * y[j];
    }
    if (db) { /* reduce over the broadcast rows; serial over rows keeps the sum deterministic */
        float *g = db->data;
#pragma omp parallel for if (nb > 256 && n > PAR_MIN) schedule(static)
        for (int64_t j = 0; j < nb; j++) {
            float s = 0;
            for (int64_t r = 0; r < n / nb; r++) s += d[r * nb + j] * x[r * nb + j];
            g[j] += s;
        }
    }
    return CB_OK;
}

cb_status cb_cpu_scale(const cb_tensor *a, float alpha, cb_tensor *out) {
    const float *x = a->data;
    float *o = out->data;
    int64_t n = cb_tensor_numel(out);
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = alpha * x[i];
    return CB_OK;
}

cb_status cb_cpu_axpy(float alpha, const cb_tensor *src, cb_tensor *dst) {
    const float *x = src->data;
    float *o = dst->data;
    int64_t n = cb_tensor_numel(dst);
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] += alpha * x[i];
    return CB_OK;
}

cb_status cb_cpu_reduce_rows_acc(float alpha, const cb_tensor *src, cb_tensor *dst) {
    const float *x = src->data;
    float *o = dst->data;
    int64_t nb = cb_tensor_numel(dst), rows = cb_tensor_numel(src) / nb;
#pragma omp parallel for if (nb > 256 && rows * nb > PAR_MIN) schedule(static)
    for (int64_t j = 0; j < nb; j++) {
        float s = 0;
        for (int64_t r = 0; r < rows; r++) s += x[r * nb + j];
        o[j] += alpha * s;
    }
    return CB_OK;
}

/*   y [R, N] += b [N] */
cb_status cb_cpu_bias_add(cb_tensor *y, const cb_tensor *b) {
    float *o = y->data;
    const float *bb = b->data;
    int64_t N = cb_tensor_numel(b), R = cb_tensor_numel(y) / N;
#pragma omp parallel for if (R * N > PAR_MIN) schedule(static)
    for (int64_t r = 0; r < R; r++)
#pragma omp simd
        for (int64_t j = 0; j < N; j++) o[r * N + j] += bb[j];
    return CB_OK;
}

/*   dy [R, N] -> db [N] += column sums. Rows are summed in order so the result is the same for
 *   any thread count. */
cb_status cb_cpu_bias_grad(const cb_tensor *dy, cb_tensor *db) {
    return cb_cpu_reduce_rows_acc(1.0f, dy, db);
}

cb_status cb_cpu_silu_fwd(const cb_tensor *x, cb_tensor *y) {
    const float *a = x->data;
    float *o = y->data;
    int64_t n = cb_tensor_numel(x);
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = a[i] * cb_sigmoidf(a[i]);
    return CB_OK;
}

/* d silu(x)/dx = s + x s (1 - s), s = sigmoid(x). A fresh dx is written, not added to. */
cb_status cb_cpu_silu_bwd(const cb_tensor *x, const cb_tensor *dy, cb_tensor *dx, bool dx_fresh) {
    const float *a = x->data, *d = dy->data;
    float *g = dx->data;
    int64_t n = cb_tensor_numel(x);
    if (dx_fresh) memset(g, 0, (size_t)n * sizeof(float)); /* uninitialised until now */
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float s = cb_sigmoidf(a[i]);
        g[i] += d[i] * (s + a[i] * s * (1.0f - s));
    }
    return CB_OK;
}

/*   gate, up, y [R, F]: y = silu(gate) * up */
cb_status cb_cpu_swiglu_fwd(const cb_tensor *gate, const cb_tensor *up, cb_tensor *y) {
    const float *a = gate->data, *u = up->data;
    float *o = y->data;
    int64_t n = cb_tensor_numel(gate);
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = a[i] * cb_sigmoidf(a[i]) * u[i];
    return CB_OK;
}

/* A fresh gradient is zeroed first (it is uninitialised), then both accumulate; dgate is
 * zeroed and added to before dup, so the two may alias when only dgate is fresh. */
cb_status cb_cpu_swiglu_bwd(const cb_tensor *gate, const cb_tensor *up, const cb_tensor *dy,
                            cb_tensor *dgate, cb_tensor *dup, bool dgate_fresh, bool dup_fresh) {
    const float *a = gate->data, *u = up->data, *d = dy->data;
    float *ga = dgate ? dgate->data : NULL, *gu = dup ? dup->data : NULL;
    int64_t n = cb_tensor_numel(gate);
    if (ga && dgate_fresh) memset(ga, 0, (size_t)n * sizeof(float));
    if (gu && dup_fresh) memset(gu, 0, (size_t)n * sizeof(float));
#pragma omp parallel for simd if (n > PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float s = cb_sigmoidf(a[i]);
        float silu = a[i] * s;
        if (ga) ga[i] += d[i] * u[i] * (s + a[i] * s * (1.0f - s));
        if (gu) gu[i] += d[i] * silu;
    }
    return CB_OK;
}

cb_status cb_cpu_sum_squares(const cb_tensor *x, double *out) {
    const float *a = x->data;
    int64_t n = cb_tensor_numel(x);
    double s = 0;
    /* fixed-size chunks summed in order: the same result for any thread count */
    enum { CHUNK = 4096 };
    int64_t nc = (n + CHUNK - 1) / CHUNK;
    for (int64_t c = 0; c < nc; c++) {
        float part = 0;
        int64_t e = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
#pragma omp simd reduction(+ : part)
        for (int64_t i = c * CHUNK; i < e; i++) part += a[i] * a[i];
        s += part;
    }
    *out = s;
    return CB_OK;
}
