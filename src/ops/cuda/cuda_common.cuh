/* Shared pieces of the CUDA backend: the backend context, dtype-generic loads/stores, launch
 * checks and block reductions. Included by every .cu file of src/ops/cuda/.
 *
 * Kernels read and write float tensors through typed views (pointer + dtype) so one kernel serves
 * f32, bf16 and f16 tensors in any mix, always computing in f32; the dtype test is uniform across
 * a warp, so it costs a few integer instructions, not divergence. */
#ifndef CARAMBA_CUDA_COMMON_CUH
#define CARAMBA_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "ops/cuda/cuda_backend.h"

extern "C" {
#include "caramba/dtype.h"
#include "caramba/status.h"
#include "caramba/tensor.h"
#include "ops/kernels.h"
}

/* ---- typed element access ------------------------------------------------------------------ */

/* A float tensor as the kernels see it. dt is a cb_dtype (CB_F32, CB_BF16 or CB_F16). */
struct cb_tv {
    void *p;
    int dt;
};

static inline cb_tv cb_view(const cb_tensor *t) {
    cb_tv v;
    v.p = t ? t->data : nullptr;
    v.dt = t ? (int)t->dtype : (int)CB_F32;
    return v;
}

__device__ __forceinline__ float cb_ld(const void *p, int dt, int64_t i) {
    if (dt == CB_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dt == CB_F16) return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}
__device__ __forceinline__ float cb_ld(cb_tv v, int64_t i) { return cb_ld(v.p, v.dt, i); }

__device__ __forceinline__ void cb_st(void *p, int dt, int64_t i, float x) {
    if (dt == CB_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x);
    else if (dt == CB_F16) ((__half *)p)[i] = __float2half_rn(x);
    else ((float *)p)[i] = x;
}
__device__ __forceinline__ void cb_st(cb_tv v, int64_t i, float x) { cb_st(v.p, v.dt, i, x); }
/* Read-modify-write (gradients accumulate). */
__device__ __forceinline__ void cb_acc(cb_tv v, int64_t i, float x) {
    cb_st(v.p, v.dt, i, cb_ld(v.p, v.dt, i) + x);
}

/* 16 bytes (4 f32 or 8 bf16) to / from f32 registers; p must be 16-byte aligned. */
__device__ __forceinline__ void cb_ld16(const float *p, float *f) {
    float4 x = *reinterpret_cast<const float4 *>(p);
    f[0] = x.x;
    f[1] = x.y;
    f[2] = x.z;
    f[3] = x.w;
}
__device__ __forceinline__ void cb_st16(float *p, const float *f) {
    *reinterpret_cast<float4 *>(p) = make_float4(f[0], f[1], f[2], f[3]);
}
__device__ __forceinline__ void cb_ld16(const __nv_bfloat16 *p, float *f) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}
__device__ __forceinline__ void cb_st16(__nv_bfloat16 *p, const float *f) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}

/* Integer ids (i32 or i64). */
__device__ __forceinline__ int64_t cb_ld_id(const void *p, int dt, int64_t i) {
    return dt == CB_I64 ? ((const int64_t *)p)[i] : (int64_t)((const int32_t *)p)[i];
}

/* ---- host-side checks ------------------------------------------------------------------------ */

static inline bool cb_cu_is_float(const cb_tensor *t) {
    return t->dtype == CB_F32 || t->dtype == CB_BF16 || t->dtype == CB_F16;
}

/* Fails unless every non-NULL tensor is a CUDA float tensor. */
cb_status cb_cu_check_float(const char *op, int n, const cb_tensor *const *ts);
#define CB_CU_FLOATS(op, ...)                                                                      \
    do {                                                                                           \
        const cb_tensor *cb_ts_[] = {__VA_ARGS__};                                                 \
        CB_TRY(cb_cu_check_float(op, (int)(sizeof cb_ts_ / sizeof cb_ts_[0]), cb_ts_));            \
    } while (0)

/* After a launch: turns a launch error into CB_ERR_DEVICE naming the kernel. */
cb_status cb_cu_launch_check(const char *what);
#define CB_CU_LAUNCHED(what) CB_TRY(cb_cu_launch_check(what))
/* Wraps a runtime call. */
cb_status cb_cu_check(cudaError_t e, const char *what);

/* ---- backend context ------------------------------------------------------------------------ */

/* The one piece of mutable global state of the backend, created on first use (like a logging
 * config): the stream every kernel runs on, the cuBLASLt handle and its workspace, a reusable
 * scratch buffer and a tiny host-visible slot for error reports. */
struct cb_cuda_ctx {
    int device;
    int num_sms;
    size_t max_smem_optin; /* dynamic shared memory a block may opt into */
    cudaStream_t stream;
    void *lt;              /* cublasLtHandle_t */
    void *lt_ws;
    size_t lt_ws_size;
    int64_t *d_slot;       /* 8 int64 of device memory for error / count reports */
    int64_t *h_slot;       /* pinned host mirror */
};

/* The context, or NULL with a message (no device, driver failure). */
cb_cuda_ctx *cb_cu_ctx(void);
#define CB_CU_CTX(var)                                                                             \
    cb_cuda_ctx *var = cb_cu_ctx();                                                                \
    if (!var) return CB_ERR_DEVICE

/* Device scratch of at least `bytes`, valid until the next call of this function (kernels are
 * stream-ordered, so a buffer reused by the next op is never read by the previous one). */
void *cb_cu_scratch(size_t bytes);
/* Copies n int64 of the report slot to the host (synchronises the stream). */
cb_status cb_cu_read_slot(int n, int64_t *out);

static inline unsigned cb_cu_blocks(int64_t n, int threads, int64_t cap = 65535LL * 16) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > cap) b = cap;
    return (unsigned)b;
}

/* Grid-stride loop over [0, n). */
#define CB_GRID_LOOP(i, n)                                                                         \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

/* ---- reductions ------------------------------------------------------------------------------ */

__device__ __forceinline__ float cb_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float cb_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double cb_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Block-wide sum/max for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
 * `sh` is 32 floats of shared memory; the fixed tree order keeps results deterministic. */
__device__ __forceinline__ float cb_block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cb_warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous reduction */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.f;
    return cb_warp_sum(v);
}
__device__ __forceinline__ float cb_block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cb_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return cb_warp_max(v);
}
__device__ __forceinline__ double cb_block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cb_warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    return cb_warp_sum_d(v);
}

/* Threads for a row kernel over rows of length n: enough to cover the row, a multiple of 32. */
static inline int cb_cu_row_threads(int64_t n) {
    int t = 32;
    while (t < 1024 && t < n / 4) t *= 2;
    return t;
}

/* The counter-based dropout generator of ops/kernels.h, for the device (must stay identical). */
__device__ __forceinline__ float cb_dropout_uniform_dev(uint64_t seed, uint64_t index) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* Column reduction shared by bias_grad, reduce_rows_acc, mul_bwd and the norm weight grads:
 *   out[j] += alpha * sum_r f(r, j),  r < R, j < N, where (row-major [R, N] operands)
 *   mode 0: f = a[r, j]
 *   mode 1: f = a[r, j] * b[r, j]
 *   mode 2: f = a[r, j] * (b[r, j] - (mean.p ? mean[r] : 0)) * rstd[r]
 * Deterministic: fixed row chunks reduced into scratch, then summed in chunk order. */
cb_status cb_cu_colsum(int mode, int64_t R, int64_t N, float alpha, cb_tv a, cb_tv b, cb_tv mean,
                       cb_tv rstd, cb_tv out);

#endif
