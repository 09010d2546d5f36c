/* Row kernels: RMSNorm, LayerNorm, softmax and the fused log-softmax + cross-entropy.
 * One thread block per row; block reductions in a fixed order, so results are deterministic.
 * Weight / bias gradients are column reductions over rows (cb_cu_colsum), also deterministic. */
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

/* Online (max, sum of exp(x - max)) over a row in one pass, merged across the block.
 * Every thread returns the row's pair; `shm`, `shs` are 32 floats of shared memory each. */
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    if (mn == -INFINITY) return; /* both empty */
    s = (m == -INFINITY ? 0.f : s * __expf(m - mn)) +
        (m2 == -INFINITY ? 0.f : s2 * __expf(m2 - mn));
    m = mn;
}

/* Merges every thread's (m, s) across the block; every thread gets the row's pair. */
__device__ __forceinline__ void block_lse_merge(float m, float s, float *shm, float *shs, float *mo,
                                                float *so) {
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) {
        shm[w] = m;
        shs[w] = s;
    }
    __syncthreads();
    m = lane < nw ? shm[lane] : -INFINITY;
    s = lane < nw ? shs[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    *mo = m;
    *so = s;
}

__device__ __forceinline__ void row_max_sumexp(cb_tv x, int64_t base, int64_t N, float *shm,
                                               float *shs, float *mo, float *so) {
    float m = -INFINITY, s = 0.f;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
        float v = cb_ld(x, base + i);
        if (v > m) {
            s = (m == -INFINITY ? 0.f : s * __expf(m - v)) + 1.f;
            m = v;
        } else if (v != -INFINITY) {
            s += __expf(v - m);
        }
    }
    block_lse_merge(m, s, shm, shs, mo, so);
}

static bool norm_bwd_fused(cb_cuda_ctx *c, bool ln, int64_t R, int64_t D, const cb_tensor *x,
                           const cb_tensor *w, const cb_tensor *mean, const cb_tensor *rstd,
                           const cb_tensor *dy, cb_tensor *dx, cb_tensor *dw, cb_tensor *db,
                           cb_status *st);

/* ---- RMSNorm --------------------------------------------------------------------------------- */

/* x, y [R, D]; w [D] or none; rstd [R] or none. One block per row. y may alias x. */
__global__ void k_rmsnorm_fwd(int64_t D, float eps, cb_tv x, cb_tv w, cb_tv y, cb_tv rstd) {
    __shared__ float sh[32];
    int64_t base = (int64_t)blockIdx.x * D;
    float ss = 0.f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float v = cb_ld(x, base + d);
        ss += v * v;
    }
    ss = cb_block_sum(ss, sh);
    float r = rsqrtf(ss / (float)D + eps);
    if (threadIdx.x == 0 && rstd.p) cb_st(rstd, blockIdx.x, r);
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float v = cb_ld(x, base + d) * r;
        cb_st(y, base + d, w.p ? v * cb_ld(w, d) : v);
    }
}

/* x, dy, dx [R, D]; w [D] or none; rstd [R].
 * dx += r (w dy - x r^2 mean(w dy x)) */
__global__ void k_rmsnorm_bwd(int64_t D, cb_tv x, cb_tv w, cb_tv rstd, cb_tv dy, cb_tv dx) {
    __shared__ float sh[32];
    int64_t base = (int64_t)blockIdx.x * D;
    float r = cb_ld(rstd, blockIdx.x);
    float s = 0.f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float g = cb_ld(dy, base + d) * (w.p ? cb_ld(w, d) : 1.f);
        s += g * cb_ld(x, base + d);
    }
    s = cb_block_sum(s, sh) / (float)D;
    float k = r * r * s;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float g = cb_ld(dy, base + d) * (w.p ? cb_ld(w, d) : 1.f);
        cb_acc(dx, base + d, r * (g - cb_ld(x, base + d) * k));
    }
}

/* ---- RMSNorm, 16-byte path ------------------------------------------------------------------
 * One warp per row, the row in registers: x, y / dy, dx [R, D] all of element type T (f32 or
 * bf16, V = 16 / sizeof(T) elements a vector), 16-byte aligned, D % V == 0, D <= 32 * NV * V.
 * Lane l holds vectors l, l + 32, ..., l + 32 (NV - 1) of the row (coalesced); warps take rows
 * warp, warp + nwarps, ..., so w [D] (any float dtype, or none) is read once per warp. Warp-only
 * reductions in a fixed order: deterministic. */

/* x, y [R, D]; w [D] or none; rstd [R] or none. y may alias x. */
template <typename T, int NV>
__global__ void k_rmsnorm_fwd_vec(int64_t R, int64_t D, float eps, const T *x, cb_tv w, T *y,
                                  cb_tv rstd) {
    constexpr int V = 16 / sizeof(T);
    int lane = threadIdx.x & 31;
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    int64_t nvec = D / V;
    float wr[NV][V];
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int64_t v = lane + 32 * k;
#pragma unroll
        for (int e = 0; e < V; e++) wr[k][e] = (w.p && v < nvec) ? cb_ld(w, v * V + e) : 1.f;
    }
    for (int64_t r = warp; r < R; r += nwarps) {
        const T *xr = x + r * D;
        float xv[NV][V];
        float ss = 0.f;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t v = lane + 32 * k;
            if (v < nvec) {
                cb_ld16(xr + v * V, xv[k]);
#pragma unroll
                for (int e = 0; e < V; e++) ss += xv[k][e] * xv[k][e];
            }
        }
        ss = cb_warp_sum(ss);
        float rs = rsqrtf(ss / (float)D + eps);
        if (lane == 0 && rstd.p) cb_st(rstd, r, rs);
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t v = lane + 32 * k;
            if (v < nvec) {
                float o[V];
#pragma unroll
                for (int e = 0; e < V; e++) o[e] = xv[k][e] * rs * wr[k][e];
                cb_st16(y + r * D + v * V, o);
            }
        }
    }
}

/* x, dy [R, D]; dx [R, D] or none; w [D] or none; rstd [R];
 * pw [gridDim.x, D] f32 or null: per-block partial sums over its rows of dy x rstd (for dw).
 * dx += r (g - x r^2 mean(g x)), g = w dy. Dynamic shared memory: D floats when pw. */
template <typename T, int NV>
__global__ void k_rmsnorm_bwd_vec(int64_t R, int64_t D, const T *x, cb_tv w, cb_tv rstd,
                                  const T *dy, T *dx, float *pw) {
    constexpr int V = 16 / sizeof(T);
    extern __shared__ float accw[];
    int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
    int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    int64_t nvec = D / V;
    float wr[NV][V], aw[NV][V];
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int64_t v = lane + 32 * k;
#pragma unroll
        for (int e = 0; e < V; e++) {
            wr[k][e] = (w.p && v < nvec) ? cb_ld(w, v * V + e) : 1.f;
            aw[k][e] = 0.f;
        }
    }
    for (int64_t r = warp; r < R; r += nwarps) {
        float rs = cb_ld(rstd, r);
        float xv[NV][V], gv[NV][V];
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t v = lane + 32 * k;
            if (v < nvec) {
                cb_ld16(x + r * D + v * V, xv[k]);
                cb_ld16(dy + r * D + v * V, gv[k]);
#pragma unroll
                for (int e = 0; e < V; e++) s += gv[k][e] * wr[k][e] * xv[k][e];
            }
        }
        float kk = rs * rs * (cb_warp_sum(s) / (float)D);
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t v = lane + 32 * k;
            if (v >= nvec) continue;
            if (dx) {
                float o[V];
                cb_ld16(dx + r * D + v * V, o);
#pragma unroll
                for (int e = 0; e < V; e++) o[e] += rs * (gv[k][e] * wr[k][e] - xv[k][e] * kk);
                cb_st16(dx + r * D + v * V, o);
            }
            if (pw)
#pragma unroll
                for (int e = 0; e < V; e++) aw[k][e] += gv[k][e] * (xv[k][e] * rs);
        }
    }
    if (!pw) return;
    /* the block's warps add into shared memory one after another, in warp order */
    int nwb = blockDim.x >> 5;
    for (int wi = 0; wi < nwb; wi++) {
        if (wib == wi) {
#pragma unroll
            for (int k = 0; k < NV; k++) {
                int64_t v = lane + 32 * k;
                if (v < nvec)
#pragma unroll
                    for (int e = 0; e < V; e++)
                        accw[v * V + e] = (wi == 0 ? 0.f : accw[v * V + e]) + aw[k][e];
            }
        }
        __syncthreads();
    }
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) pw[(int64_t)blockIdx.x * D + d] = accw[d];
}

/* Vectors a lane holds for a row of nvec vectors: one of the instantiated NV, 0 when too long. */
static int rms_nv(int64_t nvec) {
    static const int nvs[] = {1, 2, 3, 4, 6, 8};
    for (int k = 0; k < 6; k++)
        if (nvec <= 32LL * nvs[k]) return nvs[k];
    return 0;
}

/* Dtype (f32 / bf16) shared by every non-NULL tensor of ts, 16-byte aligned, D a multiple of the
 * vector; CB_F16 (not a vector dtype) when the 16-byte path does not apply. */
static cb_dtype rms_vec_dtype(int64_t D, int n, const cb_tensor *const *ts) {
    cb_dtype dt = ts[0]->dtype;
    if (dt != CB_F32 && dt != CB_BF16) return CB_F16;
    uintptr_t al = 0;
    for (int k = 0; k < n; k++) {
        if (!ts[k]) continue;
        if (ts[k]->dtype != dt) return CB_F16;
        al |= (uintptr_t)ts[k]->data;
    }
    if ((al & 15) || D % (dt == CB_F32 ? 4 : 8)) return CB_F16;
    return rms_nv(D / (dt == CB_F32 ? 4 : 8)) ? dt : CB_F16;
}

#define RMS_THREADS 128 /* 4 warps (rows at a time) a block */

/* Blocks of kern for R rows: no more than fit on the GPU at once (warps stride over rows, so a
 * block waiting for a slot would run its rows after everyone else: a tail). */
template <typename K> static int64_t rms_grid(cb_cuda_ctx *c, K kern, size_t smem, int64_t R) {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, RMS_THREADS, smem) !=
            cudaSuccess ||
        per_sm < 1)
        per_sm = 1;
    int64_t g = (int64_t)per_sm * c->num_sms,
            need = (R + RMS_THREADS / 32 - 1) / (RMS_THREADS / 32);
    return g < need ? g : need;
}

template <typename T, int NV>
static void rms_fwd_launch(cb_cuda_ctx *c, int64_t R, int64_t D, float eps, const cb_tensor *x,
                           const cb_tensor *w, cb_tensor *y, cb_tensor *rstd) {
    int64_t G = rms_grid(c, k_rmsnorm_fwd_vec<T, NV>, 0, R);
    k_rmsnorm_fwd_vec<T, NV><<<(unsigned)G, RMS_THREADS, 0, c->stream>>>(
        R, D, eps, (const T *)x->data, cb_view(w), (T *)y->data, cb_view(rstd));
}

template <typename T>
static void rms_fwd_nv(cb_cuda_ctx *c, int nv, int64_t R, int64_t D, float eps, const cb_tensor *x,
                       const cb_tensor *w, cb_tensor *y, cb_tensor *rstd) {
    switch (nv) {
    case 1:
        rms_fwd_launch<T, 1>(c, R, D, eps, x, w, y, rstd);
        break;
    case 2:
        rms_fwd_launch<T, 2>(c, R, D, eps, x, w, y, rstd);
        break;
    case 3:
        rms_fwd_launch<T, 3>(c, R, D, eps, x, w, y, rstd);
        break;
    case 4:
        rms_fwd_launch<T, 4>(c, R, D, eps, x, w, y, rstd);
        break;
    case 6:
        rms_fwd_launch<T, 6>(c, R, D, eps, x, w, y, rstd);
        break;
    default:
        rms_fwd_launch<T, 8>(c, R, D, eps, x, w, y, rstd);
        break;
    }
}

/* G blocks, pw [G, D] or null */
template <typename T, int NV>
static void rms_bwd_launch(cb_cuda_ctx *c, int64_t G, int64_t R, int64_t D, const cb_tensor *x,
                           const cb_tensor *w, const cb_tensor *rstd, const cb_tensor *dy,
                           cb_tensor *dx, float *pw) {
    size_t smem = pw ? (size_t)D * sizeof(float) : 0;
    k_rmsnorm_bwd_vec<T, NV><<<(unsigned)G, RMS_THREADS, smem, c->stream>>>(
        R, D, (const T *)x->data, cb_view(w), cb_view(rstd), (const T *)dy->data,
        dx ? (T *)dx->data : nullptr, pw);
}

/* Blocks the backward runs with (the dw partials need the count before the launch). */
template <typename T> static int64_t rms_bwd_grid(cb_cuda_ctx *c, int nv, int64_t R, int64_t D) {
    size_t smem = (size_t)D * sizeof(float);
    switch (nv) {
    case 1:
        return rms_grid(c, k_rmsnorm_bwd_vec<T, 1>, smem, R);
    case 2:
        return rms_grid(c, k_rmsnorm_bwd_vec<T, 2>, smem, R);
    case 3:
        return rms_grid(c, k_rmsnorm_bwd_vec<T, 3>, smem, R);
    case 4:
        return rms_grid(c, k_rmsnorm_bwd_vec<T, 4>, smem, R);
    case 6:
        return rms_grid(c, k_rmsnorm_bwd_vec<T, 6>, smem, R);
    default:
        return rms_grid(c, k_rmsnorm_bwd_vec<T, 8>, smem, R);
    }
}

template <typename T>
static void rms_bwd_nv(cb_cuda_ctx *c, int nv, int64_t G, int64_t R, int64_t D, const cb_tensor *x,
                       const cb_tensor *w, const cb_tensor *rstd, const cb_tensor *dy,
                       cb_tensor *dx, float *pw) {
    switch (nv) {
    case 1:
        rms_bwd_launch<T, 1>(c, G, R, D, x, w, rstd, dy, dx, pw);
        break;
    case 2:
        rms_bwd_launch<T, 2>(c, G, R, D, x, w, rstd, dy, dx, pw);
        break;
    case 3:
        rms_bwd_launch<T, 3>(c, G, R, D, x, w, rstd, dy, dx, pw);
        break;
    case 4:
        rms_bwd_launch<T, 4>(c, G, R, D, x, w, rstd, dy, dx, pw);
        break;
    case 6:
        rms_bwd_launch<T, 6>(c, G, R, D, x, w, rstd, dy, dx, pw);
        break;
    default:
        rms_bwd_launch<T, 8>(c, G, R, D, x, w, rstd, dy, dx, pw);
        break;
    }
}

/* The 16-byte backward when it applies (false, nothing launched, otherwise): dx and the dw
 * partials of each block in one pass, then the deterministic column reduction into dw. */
static bool rms_bwd_vec(cb_cuda_ctx *c, int64_t R, int64_t D, const cb_tensor *x,
                        const cb_tensor *w, const cb_tensor *rstd, const cb_tensor *dy,
                        cb_tensor *dx, cb_tensor *dw, cb_status *st) {
    const cb_tensor *ts[3] = {x, dy, dx};
    cb_dtype dt = rms_vec_dtype(D, 3, ts);
    if (dt == CB_F16) return false;
    int nv = rms_nv(D / (dt == CB_F32 ? 4 : 8));
    bool want_w = dw && w;
    if (!dx && !want_w) {
        *st = CB_OK;
        return true;
    }
    int64_t G =
        dt == CB_F32 ? rms_bwd_grid<float>(c, nv, R, D) : rms_bwd_grid<__nv_bfloat16>(c, nv, R, D);
    float *pw = nullptr;
    if (want_w) {
        pw = (float *)cb_cuda_alloc((size_t)(G * D) * sizeof(float));
        if (!pw) {
            *st = CB_ERR_NOMEM;
            return true;
        }
    }
    if (dt == CB_F32)
        rms_bwd_nv<float>(c, nv, G, R, D, x, w, rstd, dy, dx, pw);
    else
        rms_bwd_nv<__nv_bfloat16>(c, nv, G, R, D, x, w, rstd, dy, dx, pw);
    *st = cb_cu_launch_check("rmsnorm_bwd_vec");
    cb_tv none = {nullptr, CB_F32};
    if (*st == CB_OK && pw)
        *st = cb_cu_colsum(0, G, D, 1.f, cb_tv{pw, CB_F32}, none, none, none, cb_view(dw));
    cb_cuda_free(pw); /* stream-ordered reuse: safe while the kernels above are queued */
    return true;
}

extern "C" cb_status cb_cuda_rmsnorm_fwd(const cb_tensor *x, const cb_tensor *w, float eps,
                                         cb_tensor *y, cb_tensor *rstd) {
    CB_CU_FLOATS("rmsnorm_fwd", x, w, y, rstd);
    CB_CU_CTX(c);
    int64_t D = cb_tensor_cols(x), R = cb_tensor_rows(x);
    if (R == 0 || D == 0) return CB_OK;
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda rmsnorm: too many rows");
    const cb_tensor *ts[2] = {x, y};
    cb_dtype vdt = rms_vec_dtype(D, 2, ts);
    if (vdt != CB_F16) {
        int nv = rms_nv(D / (vdt == CB_F32 ? 4 : 8));
        if (vdt == CB_F32)
            rms_fwd_nv<float>(c, nv, R, D, eps, x, w, y, rstd);
        else
            rms_fwd_nv<__nv_bfloat16>(c, nv, R, D, eps, x, w, y, rstd);
        CB_CU_LAUNCHED("rmsnorm_fwd_vec");
        return CB_OK;
    }
    k_rmsnorm_fwd<<<(unsigned)R, cb_cu_row_threads(D), 0, c->stream>>>(
        D, eps, cb_view(x), cb_view(w), cb_view(y), cb_view(rstd));
    CB_CU_LAUNCHED("rmsnorm_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_rmsnorm_bwd(const cb_tensor *x, const cb_tensor *w,
                                         const cb_tensor *rstd, const cb_tensor *dy, cb_tensor *dx,
                                         cb_tensor *dw) {
    CB_CU_FLOATS("rmsnorm_bwd", x, w, rstd, dy, dx, dw);
    CB_CU_CTX(c);
    if (!rstd) return cb_fail(CB_ERR_ARG, "cuda rmsnorm_bwd: the saved rstd is required");
    int64_t D = cb_tensor_cols(x), R = cb_tensor_rows(x);
    if (R == 0 || D == 0) return CB_OK;
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda rmsnorm: too many rows");
    cb_status fst = CB_OK;
    if (rms_bwd_vec(c, R, D, x, w, rstd, dy, dx, dw, &fst)) return fst;
    if (norm_bwd_fused(c, false, R, D, x, w, nullptr, rstd, dy, dx, dw, nullptr, &fst)) return fst;
    if (dx) {
        k_rmsnorm_bwd<<<(unsigned)R, cb_cu_row_threads(D), 0, c->stream>>>(
            D, cb_view(x), cb_view(w), cb_view(rstd), cb_view(dy), cb_view(dx));
        CB_CU_LAUNCHED("rmsnorm_bwd");
    }
    if (dw && w) {
        cb_tv none = {nullptr, CB_F32};
        /* dw[d] += sum_r dy x rstd */
        CB_TRY(
            cb_cu_colsum(2, R, D, 1.f, cb_view(dy), cb_view(x), none, cb_view(rstd), cb_view(dw)));
    }
    return CB_OK;
}

/* ---- LayerNorm ------------------------------------------------------------------------------- */

/* x, y [R, D]; w, b [D] or none; mean, rstd [R] or none. */
__global__ void k_layernorm_fwd(int64_t D, float eps, cb_tv x, cb_tv w, cb_tv b, cb_tv y,
                                cb_tv mean, cb_tv rstd) {
    __shared__ float sh[32];
    int64_t base = (int64_t)blockIdx.x * D;
    float s = 0.f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) s += cb_ld(x, base + d);
    float mu = cb_block_sum(s, sh) / (float)D;
    float v = 0.f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float t = cb_ld(x, base + d) - mu;
        v += t * t;
    }
    float r = rsqrtf(cb_block_sum(v, sh) / (float)D + eps);
    if (threadIdx.x == 0) {
        if (mean.p) cb_st(mean, blockIdx.x, mu);
        if (rstd.p) cb_st(rstd, blockIdx.x, r);
    }
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float t = (cb_ld(x, base + d) - mu) * r;
        if (w.p) t *= cb_ld(w, d);
        if (b.p) t += cb_ld(b, d);
        cb_st(y, base + d, t);
    }
}

/* x, dy, dx [R, D]; w [D] or none; mean, rstd [R].
 * dx += r (g - mean(g) - xhat mean(g xhat)), g = dy w, xhat = (x - mean) r */
__global__ void k_layernorm_bwd(int64_t D, cb_tv x, cb_tv w, cb_tv mean, cb_tv rstd, cb_tv dy,
                                cb_tv dx) {
    __shared__ float sh[32];
    int64_t base = (int64_t)blockIdx.x * D;
    float mu = cb_ld(mean, blockIdx.x), r = cb_ld(rstd, blockIdx.x);
    float s1 = 0.f, s2 = 0.f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float g = cb_ld(dy, base + d) * (w.p ? cb_ld(w, d) : 1.f);
        s1 += g;
        s2 += g * (cb_ld(x, base + d) - mu) * r;
    }
    s1 = cb_block_sum(s1, sh) / (float)D;
    s2 = cb_block_sum(s2, sh) / (float)D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float g = cb_ld(dy, base + d) * (w.p ? cb_ld(w, d) : 1.f);
        float xh = (cb_ld(x, base + d) - mu) * r;
        cb_acc(dx, base + d, r * (g - s1 - xh * s2));
    }
}

extern "C" cb_status cb_cuda_layernorm_fwd(const cb_tensor *x, const cb_tensor *w,
                                           const cb_tensor *b, float eps, cb_tensor *y,
                                           cb_tensor *mean, cb_tensor *rstd) {
    CB_CU_FLOATS("layernorm_fwd", x, w, b, y, mean, rstd);
    CB_CU_CTX(c);
    int64_t D = cb_tensor_cols(x), R = cb_tensor_rows(x);
    if (R == 0 || D == 0) return CB_OK;
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda layernorm: too many rows");
    k_layernorm_fwd<<<(unsigned)R, cb_cu_row_threads(D), 0, c->stream>>>(
        D, eps, cb_view(x), cb_view(w), cb_view(b), cb_view(y), cb_view(mean), cb_view(rstd));
    CB_CU_LAUNCHED("layernorm_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_layernorm_bwd(const cb_tensor *x, const cb_tensor *w,
                                           const cb_tensor *mean, const cb_tensor *rstd,
                                           const cb_tensor *dy, cb_tensor *dx, cb_tensor *dw,
                                           cb_tensor *db) {
    CB_CU_FLOATS("layernorm_bwd", x, w, mean, rstd, dy, dx, dw, db);
    CB_CU_CTX(c);
    if (!mean || !rstd)
        return cb_fail(CB_ERR_ARG, "cuda layernorm_bwd: the saved mean and rstd are required");
    int64_t D = cb_tensor_cols(x), R = cb_tensor_rows(x);
    if (R == 0 || D == 0) return CB_OK;
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda layernorm: too many rows");
    cb_status fst = CB_OK;
    if (norm_bwd_fused(c, true, R, D, x, w, mean, rstd, dy, dx, dw, db, &fst)) return fst;
    if (dx) {
        k_layernorm_bwd<<<(unsigned)R, cb_cu_row_threads(D), 0, c->stream>>>(
            D, cb_view(x), cb_view(w), cb_view(mean), cb_view(rstd), cb_view(dy), cb_view(dx));
        CB_CU_LAUNCHED("layernorm_bwd");
    }
    cb_tv none = {nullptr, CB_F32};
    if (dw)
        CB_TRY(cb_cu_colsum(2, R, D, 1.f, cb_view(dy), cb_view(x), cb_view(mean), cb_view(rstd),
                            cb_view(dw)));
    if (db) CB_TRY(cb_cu_colsum(0, R, D, 1.f, cb_view(dy), none, none, none, cb_view(db)));
    return CB_OK;
}

/* ---- fused norm backward -----------------------------------------------------------------------
 * One pass over x and dy produces dx and the per-block partial sums of dw (and db): block k takes
 * rows k, k + G, k + 2G, ... and thread t owns columns t, t + blockDim, ... of its shared-memory
 * accumulators, so no two threads ever add into the same place; the G partial rows are then summed
 * by the deterministic column reduction. One read of x and dy instead of three. */

/* x, dy, dx [R, D]; w [D] or none; mean (LN only), rstd [R]; pw, pb [G, D] f32 partials or NULL */
template <bool LN>
__global__ void k_norm_bwd_fused(int64_t R, int64_t D, cb_tv x, cb_tv w, cb_tv mean, cb_tv rstd,
                                 cb_tv dy, cb_tv dx, float *pw, float *pb) {
    extern __shared__ float accs[]; /* [D] dw partial, then [D] db partial (LN) */
    __shared__ float sh[32];
    float *aw = accs, *ab = accs + D;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        if (pw) aw[d] = 0.f;
        if (LN && pb) ab[d] = 0.f;
    }
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        int64_t base = r * D;
        float rs = cb_ld(rstd, r), mu = LN ? cb_ld(mean, r) : 0.f;
        float s1 = 0.f, s2 = 0.f;
        if (dx.p) {
            for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
                float g = cb_ld(dy, base + d) * (w.p ? cb_ld(w, d) : 1.f);
                if (LN) s1 += g;
                s2 += g * (cb_ld(x, base + d) - mu) * rs;
            }
            if (LN) s1 = cb_block_sum(s1, sh) / (float)D;
            s2 = cb_block_sum(s2, sh) / (float)D;
        }
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            float gy = cb_ld(dy, base + d);
            float xh = (cb_ld(x, base + d) - mu) * rs;
            if (dx.p) {
                float g = gy * (w.p ? cb_ld(w, d) : 1.f);
                cb_acc(dx, base + d, rs * (g - s1 - xh * s2));
            }
            if (pw) aw[d] += gy * xh;
            if (LN && pb) ab[d] += gy;
        }
    }
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        if (pw) pw[(int64_t)blockIdx.x * D + d] = aw[d];
        if (LN && pb) pb[(int64_t)blockIdx.x * D + d] = ab[d];
    }
}

/* Returns false (nothing launched) when the accumulators do not fit in shared memory. */
static bool norm_bwd_fused(cb_cuda_ctx *c, bool ln, int64_t R, int64_t D, const cb_tensor *x,
                           const cb_tensor *w, const cb_tensor *mean, const cb_tensor *rstd,
                           const cb_tensor *dy, cb_tensor *dx, cb_tensor *dw, cb_tensor *db,
                           cb_status *st) {
    size_t smem = (size_t)D * sizeof(float) * (ln ? 2 : 1);
    if (smem > 40 * 1024) return false;
    /* enough blocks to fill the GPU (8 of 256 threads per SM); each takes every G-th row */
    int64_t G = 8LL * c->num_sms;
    if (G > R) G = R;
    bool want_w = dw && (ln || w), want_b = ln && db;
    float *pw = nullptr, *pb = nullptr, *part = nullptr;
    if (want_w || want_b) {
        /* not the scratch buffer: the column reduction below needs that one */
        part = (float *)cb_cuda_alloc((size_t)(2 * G * D) * sizeof(float));
        if (!part) {
            *st = CB_ERR_NOMEM;
            return true;
        }
        if (want_w) pw = part;
        if (want_b) pb = part + G * D;
    }
    int threads = cb_cu_row_threads(D);
    if (ln)
        k_norm_bwd_fused<true><<<(unsigned)G, threads, smem, c->stream>>>(
            R, D, cb_view(x), cb_view(w), cb_view(mean), cb_view(rstd), cb_view(dy), cb_view(dx),
            pw, pb);
    else
        k_norm_bwd_fused<false><<<(unsigned)G, threads, smem, c->stream>>>(
            R, D, cb_view(x), cb_view(w), cb_view(mean), cb_view(rstd), cb_view(dy), cb_view(dx),
            pw, pb);
    *st = cb_cu_launch_check("norm_bwd_fused");
    cb_tv none = {nullptr, CB_F32};
    if (*st == CB_OK && pw)
        *st = cb_cu_colsum(0, G, D, 1.f, cb_tv{pw, CB_F32}, none, none, none, cb_view(dw));
    if (*st == CB_OK && pb)
        *st = cb_cu_colsum(0, G, D, 1.f, cb_tv{pb, CB_F32}, none, none, none, cb_view(db));
    cb_cuda_free(part); /* stream-ordered reuse: safe while the kernels above are queued */
    return true;
}

/* ---- softmax --------------------------------------------------------------------------------- */

/* x, y [R, N]; y may alias x. */
__global__ void k_softmax_fwd(int64_t N, cb_tv x, cb_tv y) {
    __shared__ float shm[32], shs[32];
    int64_t base = (int64_t)blockIdx.x * N;
    float m, s;
    row_max_sumexp(x, base, N, shm, shs, &m, &s);
    float inv = 1.f / s;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x)
        cb_st(y, base + i, __expf(cb_ld(x, base + i) - m) * inv);
}

/* y, dy, dx [R, N]: dx += y (dy - sum(dy y)) */
__global__ void k_softmax_bwd(int64_t N, cb_tv y, cb_tv dy, cb_tv dx) {
    __shared__ float sh[32];
    int64_t base = (int64_t)blockIdx.x * N;
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x)
        s += cb_ld(y, base + i) * cb_ld(dy, base + i);
    s = cb_block_sum(s, sh);
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x)
        cb_acc(dx, base + i, cb_ld(y, base + i) * (cb_ld(dy, base + i) - s));
}

extern "C" cb_status cb_cuda_softmax_fwd(const cb_tensor *x, cb_tensor *y) {
    CB_CU_FLOATS("softmax_fwd", x, y);
    CB_CU_CTX(c);
    int64_t N = cb_tensor_cols(x), R = cb_tensor_rows(x);
    if (R == 0 || N == 0) return CB_OK;
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda softmax: too many rows");
    k_softmax_fwd<<<(unsigned)R, cb_cu_row_threads(N), 0, c->stream>>>(N, cb_view(x), cb_view(y));
    CB_CU_LAUNCHED("softmax_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_softmax_bwd(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx) {
    CB_CU_FLOATS("softmax_bwd", y, dy, dx);
    CB_CU_CTX(c);
    int64_t N = cb_tensor_cols(y), R = cb_tensor_rows(y);
    if (R == 0 || N == 0 || !dx) return CB_OK;
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda softmax: too many rows");
    k_softmax_bwd<<<(unsigned)R, cb_cu_row_threads(N), 0, c->stream>>>(N, cb_view(y), cb_view(dy),
                                                                       cb_view(dx));
    CB_CU_LAUNCHED("softmax_bwd");
    return CB_OK;
}

/* ---- cross-entropy --------------------------------------------------------------------------- */

/* Thread 0's epilogue of a cross-entropy row: lse, the row's loss and its state (0 ignored,
 * 1 counted, 2 target outside [0, V)) from the row's max m and sum of exp(x - m) s. */
__device__ __forceinline__ void xent_row_finish(int64_t V, cb_tv logits, int64_t row, float m,
                                                float s, const void *tg, int tdt, int64_t ignore,
                                                cb_tv lse, float *rowloss, int *state) {
    float l = m == -INFINITY ? -INFINITY : m + logf(s);
    if (lse.p) cb_st(lse, row, l);
    int64_t t = cb_ld_id(tg, tdt, row);
    if (t == ignore) {
        state[row] = 0;
        rowloss[row] = 0.f;
    } else if (t < 0 || t >= V) {
        state[row] = 2;
        rowloss[row] = 0.f;
    } else {
        state[row] = 1;
        rowloss[row] = l - cb_ld(logits, row * V + t);
    }
}

/* logits [R, V]; targets [R] (i32/i64); lse [R] or none; rowloss [R] f32 scratch;
 * state [R] i32 scratch (see xent_row_finish). One block per row. */
__global__ void k_xent_rows(int64_t V, cb_tv logits, const void *tg, int tdt, int64_t ignore,
                            cb_tv lse, float *rowloss, int *state) {
    __shared__ float shm[32], shs[32];
    int64_t row = blockIdx.x, base = row * V;
    float m, s;
    row_max_sumexp(logits, base, V, shm, shs, &m, &s);
    if (threadIdx.x == 0)
        xent_row_finish(V, logits, row, m, s, tg, tdt, ignore, lse, rowloss, state);
}

/* The same with 16-byte loads of logits of dtype T (V a multiple of the vector width, rows
 * 16-byte aligned): each thread folds a vector's maximum into its running (max, sum) once, so
 * one rescale per 4-8 values instead of a branch per value. */
template <typename T>
__global__ void k_xent_rows_vec(int64_t V, const T *x, cb_tv logits, const void *tg, int tdt,
                                int64_t ignore, cb_tv lse, float *rowloss, int *state) {
    constexpr int W = 16 / sizeof(T);
    __shared__ float shm[32], shs[32];
    int64_t row = blockIdx.x, base = row * V;
    float m = -INFINITY, s = 0.f, v[W];
    for (int64_t i = threadIdx.x * W; i < V; i += blockDim.x * W) {
        cb_ld16(x + base + i, v);
        float vm = v[0];
#pragma unroll
        for (int e = 1; e < W; e++) vm = fmaxf(vm, v[e]);
        if (vm == -INFINITY) continue;
        float mn = fmaxf(m, vm), acc = 0.f;
#pragma unroll
        for (int e = 0; e < W; e++) acc += __expf(v[e] - mn);
        s = (m == -INFINITY ? 0.f : s * __expf(m - mn)) + acc;
        m = mn;
    }
    block_lse_merge(m, s, shm, shs, &m, &s);
    if (threadIdx.x == 0)
        xent_row_finish(V, logits, row, m, s, tg, tdt, ignore, lse, rowloss, state);
}

/* One block: loss[0] = sum(rowloss) / count in f64 (0 when nothing counts);
 * slot[0] = count, slot[1] = first row with a bad target or -1. */
__global__ void k_xent_final(int64_t R, const float *rowloss, const int *state, cb_tv loss,
                             int64_t *slot) {
    __shared__ double shd[32];
    __shared__ unsigned long long bad;
    if (threadIdx.x == 0) bad = ~0ull;
    __syncthreads();
    double s = 0.0;
    float cnt = 0.f; /* exact up to 2^24 counted rows per thread */
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
        int st = state[r];
        if (st == 1) {
            s += rowloss[r];
            cnt += 1.f;
        } else if (st == 2) {
            atomicMin(&bad, (unsigned long long)r);
        }
    }
    s = cb_block_sum_d(s, shd);
    double total = cb_block_sum_d((double)cnt, shd);
    if (threadIdx.x == 0) {
        int64_t count = (int64_t)(total + 0.5);
        cb_st(loss, 0, count > 0 ? (float)(s / (double)count) : 0.f);
        slot[0] = count;
        slot[1] = bad == ~0ull ? -1 : (int64_t)bad;
    }
}

static cb_status check_targets(const char *op, const cb_tensor *targets, int64_t R) {
    if (targets->device != CB_CUDA)
        return cb_fail(CB_ERR_ARG, "cuda %s: targets live on the CPU", op);
    if (targets->dtype != CB_I32 && targets->dtype != CB_I64)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda %s: targets have dtype %s (expected i32/i64)", op,
                       cb_dtype_name(targets->dtype));
    if (cb_tensor_numel(targets) != R)
        return cb_fail(CB_ERR_SHAPE, "cuda %s: %lld targets for %lld rows of logits", op,
                       (long long)cb_tensor_numel(targets), (long long)R);
    return CB_OK;
}

extern "C" cb_status cb_cuda_cross_entropy_fwd(const cb_tensor *logits, const cb_tensor *targets,
                                               int64_t ignore_index, cb_tensor *loss,
                                               cb_tensor *lse, int64_t *count) {
    CB_CU_FLOATS("cross_entropy_fwd", logits, loss, lse);
    CB_CU_CTX(c);
    int64_t V = cb_tensor_cols(logits), R = cb_tensor_rows(logits);
    CB_TRY(check_targets("cross_entropy_fwd", targets, R));
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda cross_entropy: too many rows");
    if (R == 0 || V == 0) {
        if (count) *count = 0;
        return cb_cuda_memset0(loss->data, cb_tensor_nbytes(loss));
    }
    char *scr = (char *)cb_cu_scratch((size_t)R * 8);
    if (!scr) return CB_ERR_NOMEM;
    float *rowloss = (float *)scr;
    int *state = (int *)(scr + (size_t)R * 4);
    int W = logits->dtype == CB_F32 ? 4 : 8;
    bool vec = (logits->dtype == CB_F32 || logits->dtype == CB_BF16) && V % W == 0 &&
               ((uintptr_t)logits->data & 15) == 0;
    if (vec && logits->dtype == CB_BF16)
        k_xent_rows_vec<__nv_bfloat16><<<(unsigned)R, cb_cu_row_threads(V / W), 0, c->stream>>>(
            V, (const __nv_bfloat16 *)logits->data, cb_view(logits), targets->data, targets->dtype,
            ignore_index, cb_view(lse), rowloss, state);
    else if (vec)
        k_xent_rows_vec<float><<<(unsigned)R, cb_cu_row_threads(V / W), 0, c->stream>>>(
            V, (const float *)logits->data, cb_view(logits), targets->data, targets->dtype,
            ignore_index, cb_view(lse), rowloss, state);
    else
        k_xent_rows<<<(unsigned)R, cb_cu_row_threads(V), 0, c->stream>>>(
            V, cb_view(logits), targets->data, targets->dtype, ignore_index, cb_view(lse), rowloss,
            state);
    CB_CU_LAUNCHED("cross_entropy_rows");
    k_xent_final<<<1, 1024, 0, c->stream>>>(R, rowloss, state, cb_view(loss), c->d_slot);
    CB_CU_LAUNCHED("cross_entropy_final");
    int64_t rep[2];
    CB_TRY(cb_cu_read_slot(2, rep));
    if (rep[1] >= 0) {
        int64_t t = 0;
        size_t es = targets->dtype == CB_I64 ? 8 : 4;
        if (cb_cuda_copy(0, &t, 1, (const char *)targets->data + (size_t)rep[1] * es, es) ==
                CB_OK &&
            es == 4)
            t = (int64_t)(int32_t)t;
        return cb_fail(CB_ERR_ARG,
                       "cuda cross_entropy: target %lld of row %lld is outside [0, %lld) and is "
                       "not the ignore index %lld",
                       (long long)t, (long long)rep[1], (long long)V, (long long)ignore_index);
    }
    if (count) *count = rep[0];
    return CB_OK;
}

/* logits, dlogits [R, V]; targets [R]; lse [R].
 * dlogits (+)= k (softmax - onehot(target)) on counted rows, k = dloss / count; fresh: dlogits is
 * uninitialised, written (ignored rows get zeros). */
__global__ void k_xent_bwd(int64_t V, cb_tv logits, const void *tg, int tdt, int64_t ignore,
                           cb_tv lse, float k, cb_tv dl, int fresh) {
    int64_t row = blockIdx.x, base = row * V;
    int64_t t = cb_ld_id(tg, tdt, row);
    if (t == ignore || t < 0 || t >= V) {
        if (fresh)
            for (int64_t i = threadIdx.x; i < V; i += blockDim.x) cb_st(dl, base + i, 0.f);
        return;
    }
    float l = cb_ld(lse, row);
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        float g = k * (__expf(cb_ld(logits, base + i) - l) - (i == t ? 1.f : 0.f));
        if (fresh)
            cb_st(dl, base + i, g);
        else
            cb_acc(dl, base + i, g);
    }
}

/* The same with 16-byte accesses: logits and dlogits of one dtype T, V a multiple of the vector
 * width, rows 16-byte aligned. */
template <typename T>
__global__ void k_xent_bwd_vec(int64_t V, const T *logits, const void *tg, int tdt, int64_t ignore,
                               const float *lse, float k, T *dl, int fresh) {
    constexpr int W = 16 / sizeof(T);
    int64_t row = blockIdx.x, base = row * V;
    int64_t t = cb_ld_id(tg, tdt, row);
    float v[W], o[W];
    if (t == ignore || t < 0 || t >= V) {
        if (fresh) {
#pragma unroll
            for (int e = 0; e < W; e++) o[e] = 0.f;
            for (int64_t i = threadIdx.x * W; i < V; i += blockDim.x * W) cb_st16(dl + base + i, o);
        }
        return;
    }
    float l = lse[row];
    for (int64_t i = threadIdx.x * W; i < V; i += blockDim.x * W) {
        cb_ld16(logits + base + i, v);
        if (!fresh) cb_ld16(dl + base + i, o);
#pragma unroll
        for (int e = 0; e < W; e++) {
            float g = k * (__expf(v[e] - l) - (i + e == t ? 1.f : 0.f));
            o[e] = fresh ? g : o[e] + g;
        }
        cb_st16(dl + base + i, o);
    }
}

extern "C" cb_status cb_cuda_cross_entropy_bwd(const cb_tensor *logits, const cb_tensor *targets,
                                               int64_t ignore_index, const cb_tensor *lse,
                                               float dloss, int64_t count, cb_tensor *dlogits,
                                               bool fresh) {
    CB_CU_FLOATS("cross_entropy_bwd", logits, lse, dlogits);
    CB_CU_CTX(c);
    int64_t V = cb_tensor_cols(logits), R = cb_tensor_rows(logits);
    CB_TRY(check_targets("cross_entropy_bwd", targets, R));
    if (!lse) return cb_fail(CB_ERR_ARG, "cuda cross_entropy_bwd: the saved lse is required");
    if (R == 0 || V == 0 || !dlogits) return CB_OK;
    if (count <= 0)
        return fresh ? cb_cuda_memset0(dlogits->data, cb_tensor_nbytes(dlogits)) : CB_OK;
    if (R > INT32_MAX) return cb_fail(CB_ERR_UNSUPPORTED, "cuda cross_entropy: too many rows");
    float k = dloss / (float)count;
    int W = logits->dtype == CB_F32 ? 4 : 8;
    bool vec = logits->dtype == dlogits->dtype && lse->dtype == CB_F32 &&
               (logits->dtype == CB_F32 || logits->dtype == CB_BF16) && V % W == 0 &&
               ((uintptr_t)logits->data & 15) == 0 && ((uintptr_t)dlogits->data & 15) == 0;
    if (vec && logits->dtype == CB_BF16)
        k_xent_bwd_vec<__nv_bfloat16><<<(unsigned)R, cb_cu_row_threads(V / W), 0, c->stream>>>(
            V, (const __nv_bfloat16 *)logits->data, targets->data, targets->dtype, ignore_index,
            (const float *)lse->data, k, (__nv_bfloat16 *)dlogits->data, fresh);
    else if (vec)
        k_xent_bwd_vec<float><<<(unsigned)R, cb_cu_row_threads(V / W), 0, c->stream>>>(
            V, (const float *)logits->data, targets->data, targets->dtype, ignore_index,
            (const float *)lse->data, k, (float *)dlogits->data, fresh);
    else
        k_xent_bwd<<<(unsigned)R, cb_cu_row_threads(V), 0, c->stream>>>(
            V, cb_view(logits), targets->data, targets->dtype, ignore_index, cb_view(lse), k,
            cb_view(dlogits), fresh);
    CB_CU_LAUNCHED("cross_entropy_bwd");
    return CB_OK;
}
