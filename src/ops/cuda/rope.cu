/* Half-split rotary position embedding.
 *   x, y [B, T, H*hd]; cos, sin [maxpos, P] with 2P <= hd; token t sits at position pos0 + t.
 * For i < P within each head: (x1, x2) = (x[i], x[i+P]);
 *   forward  y[i] = x1 c - x2 s,  y[i+P] = x2 c + x1 s
 *   inverse  y[i] = x1 c + x2 s,  y[i+P] = x2 c - x1 s   (the transpose: the backward)
 * Dims from 2P to hd pass through. One thread owns a pair, so y may alias x. */
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

/* thread per (row, head, i < hd - P): i < P rotates the pair (i, i+P); i >= P copies dim i+P */
__global__ void k_rope(int64_t rows, int64_t T, int H, int hd, int P, int64_t pos0, float sgn,
                       cb_tv x, cb_tv cs, cb_tv sn, cb_tv y, int copy_rest) {
    int64_t per_head = hd - P;
    int64_t n = rows * H * per_head;
    CB_GRID_LOOP(idx, n) {
        int64_t i = idx % per_head;
        int64_t rh = idx / per_head; /* row * H + head */
        int64_t row = rh / H;
        int64_t base = rh * hd;
        if (i < P) {
            int64_t pos = pos0 + row % T;
            float c = cb_ld(cs, pos * P + i), s = sgn * cb_ld(sn, pos * P + i);
            float x1 = cb_ld(x, base + i), x2 = cb_ld(x, base + i + P);
            cb_st(y, base + i, x1 * c - x2 * s);
            cb_st(y, base + i + P, x2 * c + x1 * s);
        } else if (copy_rest) {
            int64_t d = i + P;
            cb_st(y, base + d, cb_ld(x, base + d));
        }
    }
}

extern "C" cb_status cb_cuda_rope(const cb_tensor *x, int n_heads, const cb_tensor *cos,
                                  const cb_tensor *sin, int64_t pos0, bool inverse, cb_tensor *y) {
    CB_CU_FLOATS("rope", x, cos, sin, y);
    CB_CU_CTX(c);
    if (x->ndim < 2) return cb_fail(CB_ERR_SHAPE, "cuda rope: x needs [.., T, H*hd]");
    int64_t C = cb_tensor_cols(x);
    int64_t T = x->shape[x->ndim - 2];
    int64_t rows = cb_tensor_rows(x);
    if (n_heads <= 0 || C % n_heads != 0)
        return cb_fail(CB_ERR_SHAPE, "cuda rope: width %lld is not a multiple of %d heads",
                       (long long)C, n_heads);
    int hd = (int)(C / n_heads);
    int64_t maxpos = cos->shape[0];
    int P = (int)cb_tensor_cols(cos);
    if (cos->ndim != 2 || sin->ndim != 2 || sin->shape[0] != maxpos || sin->shape[1] != P)
        return cb_fail(CB_ERR_SHAPE, "cuda rope: cos and sin tables must both be [maxpos, P]");
    if (2 * P > hd)
        return cb_fail(CB_ERR_SHAPE, "cuda rope: %d rotated pairs do not fit head size %d", P, hd);
    if (pos0 < 0 || pos0 + T > maxpos)
        return cb_fail(CB_ERR_ARG, "cuda rope: positions %lld..%lld outside the table of %lld",
                       (long long)pos0, (long long)(pos0 + T - 1), (long long)maxpos);
    if (rows == 0 || hd == 0) return CB_OK;
    int64_t n = rows * n_heads * (int64_t)(hd - P);
    k_rope<<<cb_cu_blocks(n, 256), 256, 0, c->stream>>>(rows, T, n_heads, hd, P, pos0,
                                                        inverse ? -1.f : 1.f, cb_view(x),
                                                        cb_view(cos), cb_view(sin), cb_view(y),
                                                        x->data != y->data);
    CB_CU_LAUNCHED("rope");
    return CB_OK;
}
