/* RMSNorm and LayerNorm over the last dim, forward and backward.
 *   x, y, dy, dx [R, D]; w, b, dw, db [D]; rstd, mean [R]
 * Statistics are computed in f32 as the Hugging Face reference does. dw/db are reduced by
 * column blocks (each thread owns a block of columns and walks every row), which needs no
 * scratch memory and gives the same sums for any thread count. */
#include <math.h>

#include "ops/cpu/cpu_kernels.h"

enum { ROWS_PAR_MIN = 16 };

cb_status cb_cpu_rmsnorm_fwd(const cb_tensor *x, const cb_tensor *w, float eps, cb_tensor *y,
                             cb_tensor *rstd) {
    int64_t D = cb_tensor_cols(x), R = cb_tensor_numel(x) / D;
    const float *xs = x->data, *ws = w ? w->data : NULL;
    float *ys = y->data, *rs = rstd->data;
#pragma omp parallel for if (R >= ROWS_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = xs + r * D;
        float *yr = ys + r * D;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < D; j++) ss += xr[j] * xr[j];
        float inv = 1.0f / sqrtf(ss / (float)D + eps);
        rs[r] = inv;
        if (ws)
#pragma omp simd
            for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] * inv) * ws[j];
        else
#pragma omp simd
            for (int64_t j = 0; j < D; j++) yr[j] = xr[j] * inv;
    }
    return CB_OK;
}

enum { COL_BLOCK = 64 };

/* y = x*r*w with r = (mean(x^2)+eps)^-1/2:
 * dx = r*(g*w) - x * r^3/D * sum(g*w*x);  dw += sum_rows g*x*r */
cb_status cb_cpu_rmsnorm_bwd(const cb_tensor *x, const cb_tensor *w, const cb_tensor *rstd,
                             const cb_tensor *dy, cb_tensor *dx, cb_tensor *dw) {
    int64_t D = cb_tensor_cols(x), R = cb_tensor_numel(x) / D;
    const float *xs = x->data, *ws = w ? w->data : NULL, *rs = rstd->data, *gs = dy->data;
    if (dx) {
        float *dxs = dx->data;
#pragma omp parallel for if (R >= ROWS_PAR_MIN) schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = xs + r * D, *gr = gs + r * D;
            float inv = rs[r], dot = 0;
            float *dr = dxs + r * D;
            if (ws) {
#pragma omp simd reduction(+ : dot)
                for (int64_t j = 0; j < D; j++) dot += gr[j] * ws[j] * xr[j];
                float c = dot * inv * inv * inv / (float)D;
#pragma omp simd
                for (int64_t j = 0; j < D; j++) dr[j] += inv * gr[j] * ws[j] - c * xr[j];
            } else {
#pragma omp simd reduction(+ : dot)
                for (int64_t j = 0; j < D; j++) dot += gr[j] * xr[j];
                float c = dot * inv * inv * inv / (float)D;
#pragma omp simd
                for (int64_t j = 0; j < D; j++) dr[j] += inv * gr[j] - c * xr[j];
            }
        }
    }
    if (dw) {
        float *dws = dw->data;
        int64_t nblk = (D + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if (R * D > 4096) schedule(static)
        for (int64_t bk = 0; bk < nblk; bk++) {
            int64_t j0 = bk * COL_BLOCK, j1 = j0 + COL_BLOCK < D ? j0 + COL_BLOCK : D;
            float acc[COL_BLOCK] = {0};
            for (int64_t r = 0; r < R; r++) {
                const float *xr = xs + r * D, *gr = gs + r * D;
                float inv = rs[r];
#pragma omp simd
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += gr[j] * xr[j] * inv;
            }
            for (int64_t j = j0; j < j1; j++) dws[j] += acc[j - j0];
        }
    }
    return CB_OK;
}

cb_status cb_cpu_layernorm_fwd(const cb_tensor *x, const cb_tensor *w, const cb_tensor *b,
                               float eps, cb_tensor *y, cb_tensor *mean, cb_tensor *rstd) {
    int64_t D = cb_tensor_cols(x), R = cb_tensor_numel(x) / D;
    const float *xs = x->data, *ws = w ? w->data : NULL, *bs = b ? b->data : NULL;
    float *ys = y->data, *ms = mean->data, *rs = rstd->data;
#pragma omp parallel for if (R >= ROWS_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = xs + r * D;
        float *yr = ys + r * D;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < D; j++) s += xr[j];
        float mu = s / (float)D, v = 0;
#pragma omp simd reduction(+ : v)
        for (int64_t j = 0; j < D; j++) v += (xr[j] - mu) * (xr[j] - mu);
        float inv = 1.0f / sqrtf(v / (float)D + eps);
        ms[r] = mu;
        rs[r] = inv;
        for (int64_t j = 0; j < D; j++) {
            float n = (xr[j] - mu) * inv;
            yr[j] = n * (ws ? ws[j] : 1.0f) + (bs ? bs[j] : 0.0f);
        }
    }
    return CB_OK;
}

/* n = (x-mu)*r; dn = g*w; dx = r*(dn - mean(dn) - n*mean(dn*n)); dw += g*n; db += g */
cb_status cb_cpu_layernorm_bwd(const cb_tensor *x, const cb_tensor *w, const cb_tensor *mean,
                               const cb_tensor *rstd, const cb_tensor *dy, cb_tensor *dx,
                               cb_tensor *dw, cb_tensor *db) {
    int64_t D = cb_tensor_cols(x), R = cb_tensor_numel(x) / D;
    const float *xs = x->data, *ws = w ? w->data : NULL, *ms = mean->data, *rs = rstd->data,
                *gs = dy->data;
    if (dx) {
        float *dxs = dx->data;
#pragma omp parallel for if (R >= ROWS_PAR_MIN) schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = xs + r * D, *gr = gs + r * D;
            float mu = ms[r], inv = rs[r], s1 = 0, s2 = 0;
            for (int64_t j = 0; j < D; j++) {
                float n = (xr[j] - mu) * inv, dn = gr[j] * (ws ? ws[j] : 1.0f);
                s1 += dn;
                s2 += dn * n;
            }
            s1 /= (float)D;
            s2 /= (float)D;
            for (int64_t j = 0; j < D; j++) {
                float n = (xr[j] - mu) * inv, dn = gr[j] * (ws ? ws[j] : 1.0f);
                dxs[r * D + j] += inv * (dn - s1 - n * s2);
            }
        }
    }
    if (dw || db) {
        int64_t nblk = (D + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if (R * D > 4096) schedule(static)
        for (int64_t bk = 0; bk < nblk; bk++) {
            int64_t j0 = bk * COL_BLOCK, j1 = j0 + COL_BLOCK < D ? j0 + COL_BLOCK : D;
            float aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
            for (int64_t r = 0; r < R; r++) {
                const float *xr = xs + r * D, *gr = gs + r * D;
                for (int64_t j = j0; j < j1; j++) {
                    aw[j - j0] += gr[j] * (xr[j] - ms[r]) * rs[r];
                    ab[j - j0] += gr[j];
                }
            }
            for (int64_t j = j0; j < j1; j++) {
                if (dw) ((float *)dw->data)[j] += aw[j - j0];
                if (db) ((float *)db->data)[j] += ab[j - j0];
            }
        }
    }
    return CB_OK;
}
