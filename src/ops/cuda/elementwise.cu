/* Elementwise kernels, bias, broadcast reductions, SiLU / SwiGLU, dropout and strided copies.
 * Every tensor is read/written through a typed view (f32, bf16 or f16), math in f32. */
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

#define EW_THREADS 256

/* ---- 16-byte fast path -------------------------------------------------------------------------
 * When every operand has the same dtype (f32 or bf16), is 16-byte aligned and the sizes are
 * multiples of the vector, each thread moves 16 bytes per operand (4 f32 or 8 bf16). */

enum { EV_ADD, EV_MUL, EV_SCALE, EV_AXPY, EV_SILU, EV_SWIGLU, EV_SILU_BWD, EV_SILU_BWD_ACC };

__device__ __forceinline__ float silu_(float x) { return x / (1.f + __expf(-x)); }
/* d silu(x) / dx = s (1 + x (1 - s)), s = sigmoid(x) */
__device__ __forceinline__ float dsilu_(float x) {
    float s = 1.f / (1.f + __expf(-x));
    return s * (1.f + x * (1.f - s));
}

/* a, out [n]; b [nb] (broadcast, n % nb == 0) or unused; all of element type T.
 * EV_AXPY and EV_SILU_BWD_ACC also read out (out += ...); EV_SILU_BWD*: a = x, b = dy, out = dx. */
template <typename T>
__global__ void k_ew_vec(int op, int64_t n, int64_t nb, float alpha, const T *a, const T *b,
                         T *out) {
    constexpr int V = 16 / sizeof(T);
    for (int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * V; i < n;
         i += (int64_t)gridDim.x * blockDim.x * V) {
        float x[V], y[V], z[V], r[V];
        cb_ld16(a + i, x);
        if (op == EV_ADD || op == EV_MUL || op == EV_SWIGLU || op == EV_SILU_BWD ||
            op == EV_SILU_BWD_ACC)
            cb_ld16(b + (nb == n ? i : i % nb), y);
        if (op == EV_AXPY || op == EV_SILU_BWD_ACC) cb_ld16(out + i, z);
#pragma unroll
        for (int e = 0; e < V; e++) {
            switch (op) {
            case EV_ADD: r[e] = x[e] + y[e]; break;
            case EV_MUL: r[e] = x[e] * y[e]; break;
            case EV_SCALE: r[e] = alpha * x[e]; break;
            case EV_AXPY: r[e] = z[e] + alpha * x[e]; break;
            case EV_SILU: r[e] = silu_(x[e]); break;
            case EV_SILU_BWD: r[e] = y[e] * dsilu_(x[e]); break;
            case EV_SILU_BWD_ACC: r[e] = z[e] + y[e] * dsilu_(x[e]); break;
            default: r[e] = silu_(x[e]) * y[e]; break;
            }
        }
        cb_st16(out + i, r);
    }
}

/* Runs the vector path when it applies; returns false (nothing launched) otherwise. */
static bool ew_vec(cb_cuda_ctx *c, int op, int64_t n, int64_t nb, float alpha, const cb_tensor *a,
                   const cb_tensor *b, cb_tensor *out) {
    cb_dtype dt = out->dtype;
    if ((dt != CB_F32 && dt != CB_BF16) || a->dtype != dt || (b && b->dtype != dt)) return false;
    int V = dt == CB_F32 ? 4 : 8;
    if (n % V || (b && nb % V)) return false;
    uintptr_t al = (uintptr_t)a->data | (uintptr_t)out->data | (b ? (uintptr_t)b->data : 0);
    if (al & 15) return false;
    unsigned blocks = cb_cu_blocks(n / V, 256, (int64_t)c->num_sms * 32);
    if (dt == CB_F32)
        k_ew_vec<float><<<blocks, 256, 0, c->stream>>>(op, n, nb, alpha, (const float *)a->data,
                                                      b ? (const float *)b->data : nullptr,
                                                      (float *)out->data);
    else
        k_ew_vec<__nv_bfloat16><<<blocks, 256, 0, c->stream>>>(
            op, n, nb, alpha, (const __nv_bfloat16 *)a->data,
            b ? (const __nv_bfloat16 *)b->data : nullptr, (__nv_bfloat16 *)out->data);
    return cudaPeekAtLastError() == cudaSuccess;
}

/* ---- binary ops with broadcast -------------------------------------------------------------- */

/* a, out [n]; b [nb] with n % nb == 0, broadcast over a's leading dims. op 0 add, 1 mul. */
__global__ void k_binary(int op, int64_t n, int64_t nb, cb_tv a, cb_tv b, cb_tv out) {
    CB_GRID_LOOP(i, n) {
        float x = cb_ld(a, i), y = cb_ld(b, nb == n ? i : i % nb);
        cb_st(out, i, op == 0 ? x + y : x * y);
    }
}

static cb_status binary(const char *name, int op, const cb_tensor *a, const cb_tensor *b,
                        cb_tensor *out) {
    CB_CU_FLOATS(name, a, b, out);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(out), nb = cb_tensor_numel(b);
    if (n == 0) return CB_OK;
    if (nb == 0 || n % nb != 0 || cb_tensor_numel(a) != n)
        return cb_fail(CB_ERR_SHAPE, "cuda %s: %lld elements cannot broadcast %lld into %lld",
                       name, (long long)cb_tensor_numel(a), (long long)nb, (long long)n);
    if (ew_vec(c, op == 0 ? EV_ADD : EV_MUL, n, nb, 0.f, a, b, out)) return CB_OK;
    k_binary<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(op, n, nb, cb_view(a),
                                                                        cb_view(b), cb_view(out));
    CB_CU_LAUNCHED(name);
    return CB_OK;
}

extern "C" cb_status cb_cuda_add(const cb_tensor *a, const cb_tensor *b, cb_tensor *out) {
    return binary("add", 0, a, b, out);
}
extern "C" cb_status cb_cuda_mul(const cb_tensor *a, const cb_tensor *b, cb_tensor *out) {
    return binary("mul", 1, a, b, out);
}

/* a, out [n]: out = alpha * a */
__global__ void k_scale(int64_t n, float alpha, cb_tv a, cb_tv out) {
    CB_GRID_LOOP(i, n) cb_st(out, i, alpha * cb_ld(a, i));
}

extern "C" cb_status cb_cuda_scale(const cb_tensor *a, float alpha, cb_tensor *out) {
    CB_CU_FLOATS("scale", a, out);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(out);
    if (n == 0) return CB_OK;
    if (ew_vec(c, EV_SCALE, n, 0, alpha, a, nullptr, out)) return CB_OK;
    k_scale<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(n, alpha, cb_view(a),
                                                                       cb_view(out));
    CB_CU_LAUNCHED("scale");
    return CB_OK;
}

/* src, dst [n]: dst += alpha * src */
__global__ void k_axpy(int64_t n, float alpha, cb_tv src, cb_tv dst) {
    CB_GRID_LOOP(i, n) cb_st(dst, i, cb_ld(dst, i) + alpha * cb_ld(src, i));
}

extern "C" cb_status cb_cuda_axpy(float alpha, const cb_tensor *src, cb_tensor *dst) {
    CB_CU_FLOATS("axpy", src, dst);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(dst);
    if (cb_tensor_numel(src) != n)
        return cb_fail(CB_ERR_SHAPE, "cuda axpy: %lld vs %lld elements",
                       (long long)cb_tensor_numel(src), (long long)n);
    if (n == 0) return CB_OK;
    if (ew_vec(c, EV_AXPY, n, 0, alpha, src, nullptr, dst)) return CB_OK;
    k_axpy<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(n, alpha, cb_view(src),
                                                                      cb_view(dst));
    CB_CU_LAUNCHED("axpy");
    return CB_OK;
}

/* ---- column reductions ----------------------------------------------------------------------- */

/* Pass 1. Grid (ceil(N/32), chunks), block (32, 8).
 *   a, b [R, N]; mean, rstd [R]; partial [chunks, N] f32 */
__global__ void k_colsum_partial(int mode, int64_t R, int64_t N, int64_t rows_per_chunk, cb_tv a,
                                 cb_tv b, cb_tv mean, cb_tv rstd, float *partial) {
    __shared__ float sh[8][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int64_t j = (int64_t)blockIdx.x * 32 + tx;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
    int64_t r1 = r0 + rows_per_chunk < R ? r0 + rows_per_chunk : R;
    float acc = 0.f;
    if (j < N) {
        for (int64_t r = r0 + ty; r < r1; r += 8) {
            int64_t o = r * N + j;
            float f = cb_ld(a, o);
            if (mode == 1) f *= cb_ld(b, o);
            else if (mode == 2)
                f *= (cb_ld(b, o) - (mean.p ? cb_ld(mean, r) : 0.f)) * cb_ld(rstd, r);
            acc += f;
        }
    }
    sh[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && j < N) {
        float s = 0.f;
        for (int k = 0; k < 8; k++) s += sh[k][tx];
        partial[(int64_t)blockIdx.y * N + j] = s;
    }
}

/* Pass 2. partial [chunks, N] f32; out [N]: out[j] += alpha * sum_c partial[c, j] */
__global__ void k_colsum_final(int64_t N, int chunks, const float *partial, float alpha,
                               cb_tv out) {
    CB_GRID_LOOP(j, N) {
        float s = 0.f;
        for (int c = 0; c < chunks; c++) s += partial[(int64_t)c * N + j];
        cb_acc(out, j, alpha * s);
    }
}

cb_status cb_cu_colsum(int mode, int64_t R, int64_t N, float alpha, cb_tv a, cb_tv b, cb_tv mean,
                       cb_tv rstd, cb_tv out) {
    CB_CU_CTX(c);
    if (N == 0 || R == 0) return CB_OK;
    int64_t bx = (N + 31) / 32;
    int64_t chunks = (4LL * c->num_sms + bx - 1) / bx;
    int64_t max_chunks = (R + 31) / 32; /* at least 32 rows a chunk */
    if (chunks > max_chunks) chunks = max_chunks;
    if (chunks > 1024) chunks = 1024;
    if (chunks < 1) chunks = 1;
    int64_t rpc = (R + chunks - 1) / chunks;
    chunks = (R + rpc - 1) / rpc;
    float *partial = (float *)cb_cu_scratch((size_t)(chunks * N) * sizeof(float));
    if (!partial) return CB_ERR_NOMEM;
    if (bx > 65535LL * 1024)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda reduction: %lld columns", (long long)N);
    dim3 grid((unsigned)bx, (unsigned)chunks), block(32, 8);
    k_colsum_partial<<<grid, block, 0, c->stream>>>(mode, R, N, rpc, a, b, mean, rstd, partial);
    CB_CU_LAUNCHED("colsum_partial");
    k_colsum_final<<<cb_cu_blocks(N, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        N, (int)chunks, partial, alpha, out);
    CB_CU_LAUNCHED("colsum_final");
    return CB_OK;
}

extern "C" cb_status cb_cuda_reduce_rows_acc(float alpha, const cb_tensor *src, cb_tensor *dst) {
    CB_CU_FLOATS("reduce_rows_acc", src, dst);
    int64_t n = cb_tensor_numel(src), nd = cb_tensor_numel(dst);
    if (nd == 0 || n % nd != 0)
        return cb_fail(CB_ERR_SHAPE, "cuda reduce_rows_acc: %lld elements do not reduce to %lld",
                       (long long)n, (long long)nd);
    cb_tv none = {nullptr, CB_F32};
    return cb_cu_colsum(0, n / nd, nd, alpha, cb_view(src), none, none, none, cb_view(dst));
}

/* ---- bias ------------------------------------------------------------------------------------ */

/* y [R, N] += b [N] */
__global__ void k_bias_add(int64_t n, int64_t N, cb_tv y, cb_tv b) {
    CB_GRID_LOOP(i, n) cb_st(y, i, cb_ld(y, i) + cb_ld(b, i % N));
}

extern "C" cb_status cb_cuda_bias_add(cb_tensor *y, const cb_tensor *b) {
    CB_CU_FLOATS("bias_add", y, b);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(y), N = cb_tensor_numel(b);
    if (n == 0) return CB_OK;
    if (N == 0 || n % N != 0)
        return cb_fail(CB_ERR_SHAPE, "cuda bias_add: bias of %lld does not divide %lld",
                       (long long)N, (long long)n);
    k_bias_add<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(n, N, cb_view(y),
                                                                          cb_view(b));
    CB_CU_LAUNCHED("bias_add");
    return CB_OK;
}

extern "C" cb_status cb_cuda_bias_grad(const cb_tensor *dy, cb_tensor *db) {
    CB_CU_FLOATS("bias_grad", dy, db);
    int64_t n = cb_tensor_numel(dy), N = cb_tensor_numel(db);
    if (N == 0 || n % N != 0)
        return cb_fail(CB_ERR_SHAPE, "cuda bias_grad: bias of %lld does not divide %lld",
                       (long long)N, (long long)n);
    cb_tv none = {nullptr, CB_F32};
    return cb_cu_colsum(0, n / N, N, 1.f, cb_view(dy), none, none, none, cb_view(db));
}

/* ---- mul backward ---------------------------------------------------------------------------- */

/* a, dout, da [n]; b [nb]: da += dout * b (broadcast); db += dout * a when nb == n */
__global__ void k_mul_bwd(int64_t n, int64_t nb, cb_tv a, cb_tv b, cb_tv dout, cb_tv da,
                          cb_tv db) {
    CB_GRID_LOOP(i, n) {
        float g = cb_ld(dout, i);
        if (da.p) cb_acc(da, i, g * cb_ld(b, nb == n ? i : i % nb));
        if (db.p && nb == n) cb_acc(db, i, g * cb_ld(a, i));
    }
}

extern "C" cb_status cb_cuda_mul_bwd(const cb_tensor *a, const cb_tensor *b,
                                     const cb_tensor *dout, cb_tensor *da, cb_tensor *db) {
    CB_CU_FLOATS("mul_bwd", a, b, dout, da, db);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(dout), nb = cb_tensor_numel(b);
    if (n == 0) return CB_OK;
    if (nb == 0 || n % nb != 0)
        return cb_fail(CB_ERR_SHAPE, "cuda mul_bwd: %lld does not broadcast into %lld",
                       (long long)nb, (long long)n);
    cb_tv dbv = cb_view(db);
    bool db_bcast = db && nb != n;
    if (da || (db && !db_bcast)) {
        cb_tv dbe = dbv;
        if (db_bcast) dbe.p = nullptr; /* reduced below instead */
        k_mul_bwd<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
            n, nb, cb_view(a), cb_view(b), cb_view(dout), cb_view(da), dbe);
        CB_CU_LAUNCHED("mul_bwd");
    }
    if (db_bcast) {
        cb_tv none = {nullptr, CB_F32};
        CB_TRY(cb_cu_colsum(1, n / nb, nb, 1.f, cb_view(dout), cb_view(a), none, none, dbv));
    }
    return CB_OK;
}

/* ---- activations ----------------------------------------------------------------------------- */

__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + __expf(-x)); }

/* x, y [n]: y = x * sigmoid(x) */
__global__ void k_silu_fwd(int64_t n, cb_tv x, cb_tv y) {
    CB_GRID_LOOP(i, n) {
        float v = cb_ld(x, i);
        cb_st(y, i, v * sigmoidf_(v));
    }
}
/* x, dy, dx [n]: dx (+)= dy * s (1 + x (1 - s)); written, not added, when fresh */
__global__ void k_silu_bwd(int64_t n, cb_tv x, cb_tv dy, cb_tv dx, int fresh) {
    CB_GRID_LOOP(i, n) {
        float v = cb_ld(x, i), s = sigmoidf_(v);
        float d = cb_ld(dy, i) * s * (1.f + v * (1.f - s));
        if (fresh) cb_st(dx, i, d);
        else cb_acc(dx, i, d);
    }
}
/* gate, up, y [n]: y = silu(gate) * up */
__global__ void k_swiglu_fwd(int64_t n, cb_tv g, cb_tv u, cb_tv y) {
    CB_GRID_LOOP(i, n) {
        float v = cb_ld(g, i);
        cb_st(y, i, v * sigmoidf_(v) * cb_ld(u, i));
    }
}
/* gate, up, dy, dgate, dup [n]; dgate / dup may be absent. fresh_g / fresh_u: that gradient is
 * written, not added to. dgate is updated before dup, so the two may alias (swiglu(x, x)) when
 * only dgate is fresh, the order the op layer creates them in. */
__global__ void k_swiglu_bwd(int64_t n, cb_tv g, cb_tv u, cb_tv dy, cb_tv dg, cb_tv du,
                             int fresh_g, int fresh_u) {
    CB_GRID_LOOP(i, n) {
        float v = cb_ld(g, i), s = sigmoidf_(v), d = cb_ld(dy, i);
        if (dg.p) {
            float t = d * cb_ld(u, i) * s * (1.f + v * (1.f - s));
            if (fresh_g) cb_st(dg, i, t);
            else cb_acc(dg, i, t);
        }
        if (du.p) {
            float t = d * v * s;
            if (fresh_u) cb_st(du, i, t);
            else cb_acc(du, i, t);
        }
    }
}

/* The 16-byte path of the above: gate, up, dy [n]; dgate, dup [n] or null; all of type T,
 * n % (16 / sizeof(T)) == 0, 16-byte aligned, dgate and dup distinct. One pass computes both
 * gradients from a single read of gate and dy. */
template <typename T>
__global__ void k_swiglu_bwd_vec(int64_t n, const T *g, const T *u, const T *dy, T *dg, T *du,
                                 int fresh_g, int fresh_u) {
    constexpr int V = 16 / sizeof(T);
    for (int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * V; i < n;
         i += (int64_t)gridDim.x * blockDim.x * V) {
        float a[V], b[V], d[V], rg[V], ru[V];
#pragma unroll
        for (int e = 0; e < V; e++) b[e] = rg[e] = ru[e] = 0.f;
        cb_ld16(g + i, a);
        cb_ld16(dy + i, d);
        if (dg) cb_ld16(u + i, b);
        if (dg && !fresh_g) cb_ld16(dg + i, rg);
        if (du && !fresh_u) cb_ld16(du + i, ru);
#pragma unroll
        for (int e = 0; e < V; e++) {
            float s = sigmoidf_(a[e]);
            rg[e] += d[e] * b[e] * s * (1.f + a[e] * (1.f - s));
            ru[e] += d[e] * a[e] * s;
        }
        if (dg) cb_st16(dg + i, rg);
        if (du) cb_st16(du + i, ru);
    }
}

extern "C" cb_status cb_cuda_silu_fwd(const cb_tensor *x, cb_tensor *y) {
    CB_CU_FLOATS("silu_fwd", x, y);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(y);
    if (!n) return CB_OK;
    if (ew_vec(c, EV_SILU, n, 0, 0.f, x, nullptr, y)) return CB_OK;
    k_silu_fwd<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(n, cb_view(x),
                                                                          cb_view(y));
    CB_CU_LAUNCHED("silu_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_silu_bwd(const cb_tensor *x, const cb_tensor *dy, cb_tensor *dx,
                                      bool fresh) {
    CB_CU_FLOATS("silu_bwd", x, dy, dx);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(x);
    if (!n || !dx) return CB_OK;
    if (ew_vec(c, fresh ? EV_SILU_BWD : EV_SILU_BWD_ACC, n, n, 0.f, x, dy, dx)) return CB_OK;
    k_silu_bwd<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        n, cb_view(x), cb_view(dy), cb_view(dx), fresh ? 1 : 0);
    CB_CU_LAUNCHED("silu_bwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_swiglu_fwd(const cb_tensor *gate, const cb_tensor *up, cb_tensor *y) {
    CB_CU_FLOATS("swiglu_fwd", gate, up, y);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(y);
    if (!n) return CB_OK;
    if (ew_vec(c, EV_SWIGLU, n, n, 0.f, gate, up, y)) return CB_OK;
    k_swiglu_fwd<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        n, cb_view(gate), cb_view(up), cb_view(y));
    CB_CU_LAUNCHED("swiglu_fwd");
    return CB_OK;
}

/* The vector path of swiglu_bwd when it applies; false (nothing launched) otherwise. */
static bool swiglu_bwd_vec(cb_cuda_ctx *c, int64_t n, const cb_tensor *gate, const cb_tensor *up,
                           const cb_tensor *dy, cb_tensor *dgate, cb_tensor *dup, int fresh_g,
                           int fresh_u) {
    cb_dtype dt = gate->dtype;
    if (dt != CB_F32 && dt != CB_BF16) return false;
    const cb_tensor *ts[5] = {gate, up, dy, dgate, dup};
    uintptr_t al = 0;
    for (int k = 0; k < 5; k++) {
        if (!ts[k]) continue;
        if (ts[k]->dtype != dt) return false;
        al |= (uintptr_t)ts[k]->data;
    }
    int V = dt == CB_F32 ? 4 : 8;
    if ((al & 15) || n % V) return false;
    if (dgate && dup && dgate->data == dup->data) return false; /* aliased: the scalar order */
    unsigned blocks = cb_cu_blocks(n / V, 256, (int64_t)c->num_sms * 32);
    if (dt == CB_F32)
        k_swiglu_bwd_vec<float><<<blocks, 256, 0, c->stream>>>(
            n, (const float *)gate->data, (const float *)up->data, (const float *)dy->data,
            dgate ? (float *)dgate->data : nullptr, dup ? (float *)dup->data : nullptr, fresh_g,
            fresh_u);
    else
        k_swiglu_bwd_vec<__nv_bfloat16><<<blocks, 256, 0, c->stream>>>(
            n, (const __nv_bfloat16 *)gate->data, (const __nv_bfloat16 *)up->data,
            (const __nv_bfloat16 *)dy->data, dgate ? (__nv_bfloat16 *)dgate->data : nullptr,
            dup ? (__nv_bfloat16 *)dup->data : nullptr, fresh_g, fresh_u);
    return cudaPeekAtLastError() == cudaSuccess;
}

extern "C" cb_status cb_cuda_swiglu_bwd(const cb_tensor *gate, const cb_tensor *up,
                                        const cb_tensor *dy, cb_tensor *dgate, cb_tensor *dup,
                                        bool dgate_fresh, bool dup_fresh) {
    CB_CU_FLOATS("swiglu_bwd", gate, up, dy, dgate, dup);
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(gate);
    if (!n || (!dgate && !dup)) return CB_OK;
    int fg = dgate_fresh ? 1 : 0, fu = dup_fresh ? 1 : 0;
    if (swiglu_bwd_vec(c, n, gate, up, dy, dgate, dup, fg, fu)) return CB_OK;
    k_swiglu_bwd<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        n, cb_view(gate), cb_view(up), cb_view(dy), cb_view(dgate), cb_view(dup), fg, fu);
    CB_CU_LAUNCHED("swiglu_bwd");
    return CB_OK;
}

/* ---- dropout --------------------------------------------------------------------------------- */

/* x, y [n]. bwd: dy, dx [n] with dx += mask * dy / (1-p). Same mask as the CPU: element i kept
 * iff cb_dropout_uniform(seed, offset + i) >= p. */
__global__ void k_dropout(int64_t n, float p, float inv_keep, uint64_t seed, uint64_t offset,
                          cb_tv x, cb_tv y, int accumulate) {
    CB_GRID_LOOP(i, n) {
        bool keep = cb_dropout_uniform_dev(seed, offset + (uint64_t)i) >= p;
        float v = keep ? cb_ld(x, i) * inv_keep : 0.f;
        if (accumulate) cb_acc(y, i, v);
        else cb_st(y, i, v);
    }
}

static cb_status dropout(const char *name, const cb_tensor *x, float p, uint64_t seed,
                         uint64_t offset, cb_tensor *y, int accumulate) {
    CB_CU_FLOATS(name, x, y);
    CB_CU_CTX(c);
    if (!(p >= 0.f && p <= 1.f))
        return cb_fail(CB_ERR_ARG, "cuda %s: probability %g outside [0, 1]", name, (double)p);
    int64_t n = cb_tensor_numel(x);
    if (!n || !y) return CB_OK;
    float inv_keep = p < 1.f ? 1.f / (1.f - p) : 0.f;
    k_dropout<<<cb_cu_blocks(n, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        n, p, inv_keep, seed, offset, cb_view(x), cb_view(y), accumulate);
    CB_CU_LAUNCHED(name);
    return CB_OK;
}

extern "C" cb_status cb_cuda_dropout_fwd(const cb_tensor *x, float p, uint64_t seed,
                                         uint64_t offset, cb_tensor *y) {
    return dropout("dropout_fwd", x, p, seed, offset, y, 0);
}
extern "C" cb_status cb_cuda_dropout_bwd(const cb_tensor *dy, float p, uint64_t seed,
                                         uint64_t offset, cb_tensor *dx) {
    return dropout("dropout_bwd", dy, p, seed, offset, dx, 1);
}

/* ---- strided copy ---------------------------------------------------------------------------- */

struct cb_st4 {
    int64_t s[4], d[4], n[4];
};

/* Over shape n[4]: dst[dst_off + sum ik d[k]] (+)= src[src_off + sum ik s[k]] */
__global__ void k_strided_copy(int64_t total, cb_st4 g, cb_tv src, int64_t soff, cb_tv dst,
                               int64_t doff, int accumulate) {
    CB_GRID_LOOP(idx, total) {
        int64_t r = idx, so = soff, dof = doff;
        for (int k = 3; k >= 0; k--) {
            int64_t ik = r % g.n[k];
            r /= g.n[k];
            so += ik * g.s[k];
            dof += ik * g.d[k];
        }
        float v = cb_ld(src, so);
        if (accumulate) cb_acc(dst, dof, v);
        else cb_st(dst, dof, v);
    }
}

/* Same for non-float dtypes of equal size (ids, masks): raw element copy of `es` bytes. */
__global__ void k_strided_copy_raw(int64_t total, cb_st4 g, const char *src, int64_t soff,
                                   char *dst, int64_t doff, int es) {
    CB_GRID_LOOP(idx, total) {
        int64_t r = idx, so = soff, dof = doff;
        for (int k = 3; k >= 0; k--) {
            int64_t ik = r % g.n[k];
            r /= g.n[k];
            so += ik * g.s[k];
            dof += ik * g.d[k];
        }
        switch (es) {
        case 1: dst[dof] = src[so]; break;
        case 2: ((int16_t *)dst)[dof] = ((const int16_t *)src)[so]; break;
        case 4: ((int32_t *)dst)[dof] = ((const int32_t *)src)[so]; break;
        default: ((int64_t *)dst)[dof] = ((const int64_t *)src)[so]; break;
        }
    }
}

extern "C" cb_status cb_cuda_strided_copy(const cb_tensor *src, int64_t src_off,
                                          const int64_t sstride[4], cb_tensor *dst,
                                          int64_t dst_off, const int64_t dstride[4],
                                          const int64_t shape[4], bool accumulate) {
    CB_CU_CTX(c);
    if (src->device != CB_CUDA || dst->device != CB_CUDA)
        return cb_fail(CB_ERR_ARG, "cuda strided_copy: operands must live on the GPU");
    cb_st4 g;
    int64_t total = 1;
    for (int k = 0; k < 4; k++) {
        g.s[k] = sstride[k];
        g.d[k] = dstride[k];
        g.n[k] = shape[k];
        if (shape[k] < 0)
            return cb_fail(CB_ERR_ARG, "cuda strided_copy: negative extent %lld",
                           (long long)shape[k]);
        total *= shape[k];
    }
    if (total == 0) return CB_OK;
    if (cb_cu_is_float(src) && cb_cu_is_float(dst)) {
        k_strided_copy<<<cb_cu_blocks(total, EW_THREADS), EW_THREADS, 0, c->stream>>>(
            total, g, cb_view(src), src_off, cb_view(dst), dst_off, accumulate ? 1 : 0);
        CB_CU_LAUNCHED("strided_copy");
        return CB_OK;
    }
    size_t es = cb_dtype_size(src->dtype);
    if (src->dtype != dst->dtype || accumulate || cb_dtype_block(src->dtype) != 1 ||
        (es != 1 && es != 2 && es != 4 && es != 8))
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda strided_copy: %s -> %s%s",
                       cb_dtype_name(src->dtype), cb_dtype_name(dst->dtype),
                       accumulate ? " (accumulating)" : "");
    k_strided_copy_raw<<<cb_cu_blocks(total, EW_THREADS), EW_THREADS, 0, c->stream>>>(
        total, g, (const char *)src->data, src_off, (char *)dst->data, dst_off, (int)es);
    CB_CU_LAUNCHED("strided_copy_raw");
    return CB_OK;
}
