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

/* Pair-vector path: x, y [rows, H*hd] of element type T; cos, sin [maxpos, P]; P and hd even,
 * x and y 4-byte (bf16) / 8-byte (f32) aligned.
 * Thread per (row, j < P/2): it owns pairs i = 2j and 2j+1 of every head, loads their cos / sin
 * once and reuses them across the H heads; x[i], x[i+1] (and x[i+P], x[i+P+1]) move as one
 * bf16x2 / float2. With copy_rest the thread also copies dims 2P + 2j + kP, +1 (k >= 0) below
 * hd of every head. A thread reads each element it writes and nothing else, so y may alias x. */
__device__ __forceinline__ float2 ld2(const float *p) {
    return *reinterpret_cast<const float2 *>(p);
}
__device__ __forceinline__ void st2(float *p, float2 v) {
    *reinterpret_cast<float2 *>(p) = v;
}
__device__ __forceinline__ float2 ld2(const __nv_bfloat16 *p) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
}
__device__ __forceinline__ void st2(__nv_bfloat16 *p, float2 v) {
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(v.x, v.y);
}

template <typename T>
__global__ void k_rope_pair(int64_t rows, int64_t T_, int H, int hd, int P, int64_t pos0,
                            float sgn, const T *x, cb_tv cs, cb_tv sn, T *y, int copy_rest) {
    int half = P / 2;
    int64_t n = rows * half;
    CB_GRID_LOOP(idx, n) {
        int64_t row = idx / half;
        int i = 2 * (int)(idx % half);
        int64_t t = pos0 + row % T_;
        float c0 = cb_ld(cs, t * P + i), c1 = cb_ld(cs, t * P + i + 1);
        float s0 = sgn * cb_ld(sn, t * P + i), s1 = sgn * cb_ld(sn, t * P + i + 1);
        for (int h = 0; h < H; h++) {
            int64_t base = (row * H + h) * hd;
            float2 a = ld2(x + base + i), b = ld2(x + base + i + P);
            st2(y + base + i, make_float2(a.x * c0 - b.x * s0, a.y * c1 - b.y * s1));
            st2(y + base + i + P, make_float2(b.x * c0 + a.x * s0, b.y * c1 + a.y * s1));
            if (copy_rest)
                for (int d = 2 * P + i; d < hd; d += P) st2(y + base + d, ld2(x + base + d));
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
    int copy_rest = x->data != y->data;
    cb_dtype dt = x->dtype;
    uintptr_t al = (uintptr_t)x->data | (uintptr_t)y->data;
    if (P > 0 && P % 2 == 0 && hd % 2 == 0 && y->dtype == dt &&
        ((dt == CB_F32 && !(al & 7)) || (dt == CB_BF16 && !(al & 3)))) {
        int64_t n = rows * (P / 2);
        unsigned blocks = cb_cu_blocks(n, 256);
        float sgn = inverse ? -1.f : 1.f;
        if (dt == CB_F32)
            k_rope_pair<float><<<blocks, 256, 0, c->stream>>>(
                rows, T, n_heads, hd, P, pos0, sgn, (const float *)x->data, cb_view(cos),
                cb_view(sin), (float *)y->data, copy_rest);
        else
            k_rope_pair<__nv_bfloat16><<<blocks, 256, 0, c->stream>>>(
                rows, T, n_heads, hd, P, pos0, sgn, (const __nv_bfloat16 *)x->data, cb_view(cos),
                cb_view(sin), (__nv_bfloat16 *)y->data, copy_rest);
        CB_CU_LAUNCHED("rope_pair");
        return CB_OK;
    }
    int64_t n = rows * n_heads * (int64_t)(hd - P);
    k_rope<<<cb_cu_blocks(n, 256), 256, 0, c->stream>>>(rows, T, n_heads, hd, P, pos0,
                                                        inverse ? -1.f : 1.f, cb_view(x),
                                                        cb_view(cos), cb_view(sin), cb_view(y),
                                                        copy_rest);
    CB_CU_LAUNCHED("rope");
    return CB_OK;
}
