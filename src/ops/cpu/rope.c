/* Half-split rotary embedding (HF rotate_half layout).
 *   x, y [B, T, H*hd]; cos, sin [maxpos, P]; pairs (i, i+P) of each head are rotated by the
 *   angle of position pos0 + t; dims >= 2P pass through. inverse rotates by -angle. */
#include "ops/cpu/cpu_kernels.h"

cb_status cb_cpu_rope(const cb_tensor *x, int n_heads, const cb_tensor *cos, const cb_tensor *sin,
                      int64_t pos0, bool inverse, cb_tensor *y) {
    int64_t B = x->shape[0], T = x->shape[1], W = x->shape[2], hd = W / n_heads;
    int64_t P = cos->shape[1], maxpos = cos->shape[0];
    if (pos0 < 0 || pos0 + T > maxpos)
        return cb_fail(CB_ERR_ARG, "rope: positions %lld..%lld exceed the table of %lld",
                       (long long)pos0, (long long)(pos0 + T - 1), (long long)maxpos);
    const float *xs = x->data, *cs = cos->data, *ss = sin->data;
    float *ys = y->data;
    float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for collapse(2) if (B * T * W > (1 << 15)) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *c = cs + (pos0 + t) * P, *s = ss + (pos0 + t) * P;
            for (int64_t h = 0; h < n_heads; h++) {
                const float *xr = xs + ((b * T + t) * W + h * hd);
                float *yr = ys + ((b * T + t) * W + h * hd);
#pragma omp simd
                for (int64_t i = 0; i < P; i++) {
                    float x1 = xr[i], x2 = xr[i + P], si = sgn * s[i];
                    yr[i] = x1 * c[i] - x2 * si;
                    yr[i + P] = x1 * si + x2 * c[i];
                }
                if (xr != yr)
                    for (int64_t i = 2 * P; i < hd; i++) yr[i] = xr[i];
            }
        }
    return CB_OK;
}
