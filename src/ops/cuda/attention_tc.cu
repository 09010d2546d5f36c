/* Tensor-core flash attention (bf16 operands, f32 accumulation), forward and backward.
 *
 *   q [B, T, H*D]  k, v [B, S, Hkv*D]  out [B, T, H*D]  lse [B, H, T] f32  (D = hd = hdv, 64 or
 * 128) dq, dk, dv: same shapes as q, k, v (any float dtype; accumulated)
 *
 * FlashAttention-2 structure with mma.sync m16n8k16 (bf16 x bf16 -> f32) and ldmatrix:
 * - forward: a block owns 64 queries (4 warps x 16 rows) of one head; K and V tiles of 64 keys go
 *   through shared memory; scores stay in registers, the online softmax rescales the register
 *   accumulators, and P is re-packed from the score accumulators straight into the A operand of
 *   P V (no shared-memory round trip).
 * - backward, deterministic like the general path: one kernel owns 64 keys (16 per warp) and loops
 *   over the queries of every head of its GQA group, accumulating dK, dV in registers
 *   (S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q); a second kernel owns 64 queries and
 *   loops over keys for dQ (S, dP = dO V^T, dQ += dS K).
 * P and dS are rounded to bf16 as mma operands (as FlashAttention does); lse and the softmax
 * statistics stay f32.
 * Shared-memory rows are padded by 16 bytes so the 8 row addresses of an ldmatrix hit 8 distinct
 * bank groups. The decoupled second score term, other head sizes and f32 inputs take the general
 * kernel in attention.cu. */
#include <cuda_bf16.h>
#include <string.h>

#include "ops/cuda/attention.cuh"
#include "ops/cuda/mma.cuh"

#define TC_THREADS 128
#define TC_BQ 64 /* query rows a forward / dQ block owns */
#define TC_BK 64 /* keys a dK/dV block owns, and keys per tile in the forward / dQ loops */

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* A operand (16 rows x 16 cols at (r0, c0)) of a row-major smem tile with row stride ld. */
__device__ __forceinline__ void lda_frag(uint32_t a[4], const bf16 *s, int ld, int r0, int c0,
                                         int lane) {
    cb_ldsm4(a, s + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8);
}

/* B operands of two n-blocks (n0, n0+8) for one k-step at k0, where B[k][n] = tile[n][k]
 * (the tile holds one row per n: K for S = Q K^T). b[0..1] for n0, b[2..3] for n0+8. */
__device__ __forceinline__ void ldb_nk(uint32_t b[4], const bf16 *s, int ld, int n0, int k0,
                                       int lane) {
    cb_ldsm4(b, s + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ld + k0 + ((lane >> 3) & 1) * 8);
}

/* B operands of two n-blocks (n0, n0+8) for one k-step at k0, where B[k][n] = tile[k][n]
 * (the tile holds one row per k: V for O = P V). b[0..1] for n0, b[2..3] for n0+8. */
__device__ __forceinline__ void ldb_kn(uint32_t b[4], const bf16 *s, int ld, int k0, int n0,
                                       int lane) {
    cb_ldsm4t(b, s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8);
}

/* rows r < 64 of a [rows_per_b] x (nheads*D) bf16 tensor, rows t0.., head `head` -> smem tile
 * [64][D+8]; rows past the end become zeros. 16-byte vectors. */
template <int D>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int64_t rows_per_b, int64_t b,
                                          int nheads, int head, int64_t t0) {
    constexpr int V8 = D / 8, LD = D + 8;
    for (int c = threadIdx.x; c < 64 * V8; c += blockDim.x) {
        int r = c / V8, v = c % V8;
        int64_t t = t0 + r;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (t < rows_per_b)
            x = *reinterpret_cast<const uint4 *>(src + ((b * rows_per_b + t) * nheads + head) * D +
                                                 v * 8);
        *reinterpret_cast<uint4 *>(dst + r * LD + v * 8) = x;
    }
}

/* Asynchronous version of load_tile: rows past the end are zero-filled by the copy engine
 * (source size 0). Completes at cp_wait; the caller commits the group. */
template <int D>
__device__ __forceinline__ void cp_tile(bf16 *dst, const bf16 *src, int64_t rows_per_b, int64_t b,
                                        int nheads, int head, int64_t t0, int nrows) {
    constexpr int V8 = D / 8, LD = D + 8;
    /* row t of (b, head) starts at base + t * rs: one wide multiply-add per 16-byte chunk */
    const bf16 *base = src + (b * rows_per_b * nheads + head) * (int64_t)D;
    const int64_t rs = (int64_t)nheads * D;
    for (int c = threadIdx.x; c < nrows * V8; c += blockDim.x) {
        int r = c / V8, vv = c % V8;
        int64_t t = t0 + r;
        bool ok = t < rows_per_b;
        const bf16 *g = base + (ok ? t : 0) * rs + vv * 8;
        uint32_t sa = (uint32_t)__cvta_generic_to_shared(dst + r * LD + vv * 8);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(g),
                     "r"(ok ? 16 : 0));
    }
}
__device__ __forceinline__ void cp_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Whether every key of [k0, k0 + 64) is visible to every query position of [p_lo, p_hi]
 * (then the per-element mask can be skipped). */
__device__ __forceinline__ bool tile_clear(const cb_attn_dims &d, int64_t p_lo, int64_t p_hi,
                                           int64_t k0) {
    int64_t k1 = k0 + 63;
    if (k1 >= d.S) return false;
    if (d.causal && k1 > p_lo) return false;
    if (d.window > 0) {
        if (k0 <= p_hi - d.window) return false;
        if (!d.causal && k1 >= p_lo + d.window) return false;
    }
    return true;
}

__device__ __forceinline__ bool tc_visible(const cb_attn_dims &d, int64_t p, int64_t j) {
    if (j >= d.S) return false;
    if (d.causal && j > p) return false;
    if (d.window > 0 && (j <= p - d.window || (!d.causal && j >= p + d.window))) return false;
    return true;
}

__device__ __forceinline__ void tc_key_range(const cb_attn_dims &d, int64_t p_lo, int64_t p_hi,
                                             int64_t *kb, int64_t *ke) {
    int64_t e = d.S, b = 0;
    if (d.causal && p_hi + 1 < e) e = p_hi + 1;
    if (d.window > 0) {
        if (p_lo - d.window + 1 > b) b = p_lo - d.window + 1;
        if (!d.causal && p_hi + d.window < e) e = p_hi + d.window;
    }
    if (e < b) e = b;
    *kb = b;
    *ke = e;
}

/* ---- forward --------------------------------------------------------------------------------- */

/* Grid (ceil(T/64), H, B), 128 threads. Shared: Qs, Ks, Vs [64][D+8] bf16. */
template <int D>
__global__ void __launch_bounds__(TC_THREADS, D == 64 ? 4 : 3)
    k_attn_fwd_tc(cb_attn_dims d, const bf16 *q, const bf16 *k, const bf16 *v, cb_tv out,
                  float *lse) {
    constexpr int LD = D + 8, NB = D / 8;
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16 *Qs = (bf16 *)smraw; /* then two (K, V) buffers */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    /* last query tiles first: under a causal mask they have the most keys (shorter tail) */
    const int64_t t0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * TC_BQ;
    const int h = blockIdx.y, kh = h / (d.H / d.Hkv);
    const int64_t b = blockIdx.z;
    const int nq = (int)(d.T - t0 < TC_BQ ? d.T - t0 : TC_BQ);

    cp_tile<D>(Qs, q, d.T, b, d.H, h, t0, 64);
    float o[NB][4];
#pragma unroll
    for (int i = 0; i < NB; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const int64_t row0 = t0 + warp * 16 + g; /* this thread's rows: row0, row0 + 8 */
    const int64_t p0 = d.q_pos0 + row0, p1 = p0 + 8;

    int64_t kb, ke;
    tc_key_range(d, d.q_pos0 + t0, d.q_pos0 + t0 + nq - 1, &kb, &ke);
    const int64_t wp_lo = d.q_pos0 + t0 + warp * 16, wp_hi = wp_lo + 15;
    const float sl2 = d.scale * 1.4426950408889634f;
    if (kb < ke) {
        cp_tile<D>(Qs + 64 * LD, k, d.S, b, d.Hkv, kh, kb, 64);
        cp_tile<D>(Qs + 128 * LD, v, d.S, b, d.Hkv, kh, kb, 64);
    }
    cp_commit();
    int buf = 0;
    for (int64_t k0 = kb; k0 < ke; k0 += TC_BK, buf ^= 1) {
        const bf16 *Ks = Qs + (64 + buf * 128) * LD, *Vs = Ks + 64 * LD;
        if (k0 + TC_BK < ke) { /* prefetch the next tile into the other buffer */
            bf16 *Kn = Qs + (64 + (buf ^ 1) * 128) * LD;
            cp_tile<D>(Kn, k, d.S, b, d.Hkv, kh, k0 + TC_BK, 64);
            cp_tile<D>(Kn + 64 * LD, v, d.S, b, d.Hkv, kh, k0 + TC_BK, 64);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        float s[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t a[4];
            lda_frag(a, Qs, LD, warp * 16, kk * 16, lane);
#pragma unroll
            for (int nb = 0; nb < 8; nb += 2) {
                uint32_t bf[4];
                ldb_nk(bf, Ks, LD, nb * 8, kk * 16, lane);
                cb_mma_bf16(s[nb], a, bf[0], bf[1]);
                cb_mma_bf16(s[nb + 1], a, bf[2], bf[3]);
            }
        }
        /* mask, online softmax (rows g and g+8 of the warp's 16). Statistics live in the log2
         * domain (m = max * scale * log2 e), so p = exp2(s * sl2 - m) is one FFMA + one MUFU;
         * masked scores are -inf and give exp2(-inf) = 0 without a select. */
        if (!tile_clear(d, wp_lo, wp_hi, k0)) {
#pragma unroll
            for (int nb = 0; nb < 8; nb++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (!tc_visible(d, e < 2 ? p0 : p1, k0 + nb * 8 + tg * 2 + (e & 1)))
                        s[nb][e] = -INFINITY;
        }
        float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nb = 0; nb < 8; nb++) {
            mt[0] = fmaxf(mt[0], fmaxf(s[nb][0], s[nb][1]));
            mt[1] = fmaxf(mt[1], fmaxf(s[nb][2], s[nb][3]));
        }
        float alpha[2], mneg[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
            mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
            float mn = fmaxf(m[r], mt[r] * sl2);
            alpha[r] = m[r] == mn ? 1.f : exp2f(m[r] - mn);
            m[r] = mn;
            mneg[r] = mn == -INFINITY ? 0.f : -mn; /* a row with nothing visible yet: p = 0 */
        }
        float ls[2] = {0.f, 0.f};
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = exp2f(fmaf(s[nb][e], sl2, mneg[e >> 1]));
                s[nb][e] = p;
                ls[e >> 1] += p;
            }
        l[0] = l[0] * alpha[0] + ls[0];
        l[1] = l[1] * alpha[1] + ls[1];
#pragma unroll
        for (int i = 0; i < NB; i++) {
            o[i][0] *= alpha[0];
            o[i][1] *= alpha[0];
            o[i][2] *= alpha[1];
            o[i][3] *= alpha[1];
        }
        /* O += P V, P re-packed from the score accumulators as A operands */
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4];
            a[0] = pack2(s[2 * kk][0], s[2 * kk][1]);
            a[1] = pack2(s[2 * kk][2], s[2 * kk][3]);
            a[2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int nb = 0; nb < NB; nb += 2) {
                uint32_t bf[4];
                ldb_kn(bf, Vs, LD, kk * 16, nb * 8, lane);
                cb_mma_bf16(o[nb], a, bf[0], bf[1]);
                cb_mma_bf16(o[nb + 1], a, bf[2], bf[3]);
            }
        }
        __syncthreads(); /* this buffer is refilled two tiles from now */
    }
    cp_wait<0>(); /* no key tile at all: the Q copy is still outstanding */
    /* finish: the 4 threads of a row hold partial sums of l */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int64_t t = row0 + r * 8;
        if (t >= d.T) continue;
        float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        int64_t base = ((b * d.T + t) * d.H + h) * D;
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            int c = nb * 8 + tg * 2;
            if (out.dt == CB_BF16) {
                *reinterpret_cast<uint32_t *>((bf16 *)out.p + base + c) =
                    pack2(o[nb][2 * r] * inv, o[nb][2 * r + 1] * inv);
            } else {
                cb_st(out, base + c, o[nb][2 * r] * inv);
                cb_st(out, base + c + 1, o[nb][2 * r + 1] * inv);
            }
        }
        if (tg == 0)
            lse[(b * d.H + h) * d.T + t] =
                l[r] > 0.f ? m[r] * 0.69314718055994531f + logf(l[r]) : -INFINITY;
    }
}

/* ---- backward: dQ ---------------------------------------------------------------------------- */

/* Grid (ceil(T/64), H, B), 128 threads. Shared: Qs, dOs, Ks, Vs [64][D+8] bf16; lse, Dv [64].
 * dq [B, T, H*D] += scale * dS K */
template <int D>
__global__ void __launch_bounds__(TC_THREADS)
    k_attn_bwd_dq_tc(cb_attn_dims d, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout,
                     const float *lse, const float *Dv, cb_tv dq) {
    constexpr int LD = D + 8, NB = D / 8;
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16 *Qs = (bf16 *)smraw, *Gs = Qs + 64 * LD; /* then two (K, V) buffers */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    /* last query tiles first: under a causal mask they have the most keys (shorter tail) */
    const int64_t t0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * TC_BQ;
    const int h = blockIdx.y, kh = h / (d.H / d.Hkv);
    const int64_t b = blockIdx.z;
    const int nq = (int)(d.T - t0 < TC_BQ ? d.T - t0 : TC_BQ);

    cp_tile<D>(Qs, q, d.T, b, d.H, h, t0, 64);
    cp_tile<D>(Gs, dout, d.T, b, d.H, h, t0, 64);
    const int64_t row0 = t0 + warp * 16 + g;
    const int64_t p0 = d.q_pos0 + row0, p1 = p0 + 8;
    float lr[2], Dr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int64_t t = row0 + 8 * r;
        lr[r] = t < d.T ? lse[(b * d.H + h) * d.T + t] * 1.4426950408889634f : -INFINITY;
        Dr[r] = t < d.T ? Dv[(b * d.H + h) * d.T + t] : 0.f;
    }
    float acc[NB][4];
#pragma unroll
    for (int i = 0; i < NB; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;

    int64_t kb, ke;
    tc_key_range(d, d.q_pos0 + t0, d.q_pos0 + t0 + nq - 1, &kb, &ke);
    const int64_t wp_lo = d.q_pos0 + t0 + warp * 16, wp_hi = wp_lo + 15;
    const float sl2 = d.scale * 1.4426950408889634f;
    if (kb < ke) {
        cp_tile<D>(Qs + 128 * LD, k, d.S, b, d.Hkv, kh, kb, 64);
        cp_tile<D>(Qs + 192 * LD, v, d.S, b, d.Hkv, kh, kb, 64);
    }
    cp_commit();
    int buf = 0;
    for (int64_t k0 = kb; k0 < ke; k0 += TC_BK, buf ^= 1) {
        const bf16 *Ks = Qs + (128 + buf * 128) * LD, *Vs = Ks + 64 * LD;
        if (k0 + TC_BK < ke) {
            bf16 *Kn = Qs + (128 + (buf ^ 1) * 128) * LD;
            cp_tile<D>(Kn, k, d.S, b, d.Hkv, kh, k0 + TC_BK, 64);
            cp_tile<D>(Kn + 64 * LD, v, d.S, b, d.Hkv, kh, k0 + TC_BK, 64);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        const bool clear = tile_clear(d, wp_lo, wp_hi, k0);
        float s[8][4], dp[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t a[4], ga[4];
            lda_frag(a, Qs, LD, warp * 16, kk * 16, lane);
            lda_frag(ga, Gs, LD, warp * 16, kk * 16, lane);
#pragma unroll
            for (int nb = 0; nb < 8; nb += 2) {
                uint32_t bf[4];
                ldb_nk(bf, Ks, LD, nb * 8, kk * 16, lane);
                cb_mma_bf16(s[nb], a, bf[0], bf[1]);
                cb_mma_bf16(s[nb + 1], a, bf[2], bf[3]);
                ldb_nk(bf, Vs, LD, nb * 8, kk * 16, lane);
                cb_mma_bf16(dp[nb], ga, bf[0], bf[1]);
                cb_mma_bf16(dp[nb + 1], ga, bf[2], bf[3]);
            }
        }
        /* dS = P (dP - D), P = exp(scale S - lse) */
#pragma unroll
        for (int nb = 0; nb < 8; nb++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = e >> 1;
                int64_t j = k0 + nb * 8 + tg * 2 + (e & 1);
                float p = 0.f;
                if (lr[r] != -INFINITY && (clear || tc_visible(d, r ? p1 : p0, j)))
                    p = exp2f(s[nb][e] * sl2 - lr[r]);
                s[nb][e] = p * (dp[nb][e] - Dr[r]);
            }
            /* dQ += dS K: B[k = key][n = dim] = K[key][dim] */
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t a[4];
            a[0] = pack2(s[2 * kk][0], s[2 * kk][1]);
            a[1] = pack2(s[2 * kk][2], s[2 * kk][3]);
            a[2] = pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int nb = 0; nb < NB; nb += 2) {
                uint32_t bf[4];
                ldb_kn(bf, Ks, LD, kk * 16, nb * 8, lane);
                cb_mma_bf16(acc[nb], a, bf[0], bf[1]);
                cb_mma_bf16(acc[nb + 1], a, bf[2], bf[3]);
            }
        }
        __syncthreads();
    }
    cp_wait<0>();
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int64_t t = row0 + 8 * r;
        if (t >= d.T) continue;
        int64_t base = ((b * d.T + t) * d.H + h) * D;
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            int c = nb * 8 + tg * 2;
            cb_acc(dq, base + c, acc[nb][2 * r] * d.scale);
            cb_acc(dq, base + c + 1, acc[nb][2 * r + 1] * d.scale);
        }
    }
}

/* ---- backward: dK, dV ------------------------------------------------------------------------ */

/* Grid (ceil(S/64), Hkv, B), 128 threads; a warp owns 16 keys. Shared: Ks, Vs [64][D+8],
 * Qs, dOs [BQI][D+8] bf16; lse, Dv [BQI] f32. Query tiles of BQI rows.
 * dk += scale * dS^T Q, dv += P^T dO */
template <int D, int BQI, int MINB>
__global__ void __launch_bounds__(TC_THREADS, MINB)
    k_attn_bwd_dkdv_tc(cb_attn_dims d, const bf16 *q, const bf16 *k, const bf16 *v,
                       const bf16 *dout, const float *lse, const float *Dv, cb_tv dk, cb_tv dv) {
    constexpr int LD = D + 8, NB = D / 8, NQ = BQI / 8;
    extern __shared__ __align__(16) unsigned char smraw[];
    /* Ks, Vs, then two buffers of (Qs, Gs) [BQI][LD], then two buffers of (lse, D) [BQI] */
    bf16 *Ks = (bf16 *)smraw, *Vs = Ks + 64 * LD, *QG = Vs + 64 * LD;
    float *LDs = (float *)(QG + 4 * BQI * LD);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tg = lane & 3;
    const int64_t j0 = (int64_t)blockIdx.x * TC_BK;
    const int kh = blockIdx.y, G = d.H / d.Hkv;
    const int64_t b = blockIdx.z;
    const int nk = (int)(d.S - j0 < TC_BK ? d.S - j0 : TC_BK);

    cp_tile<D>(Ks, k, d.S, b, d.Hkv, kh, j0, 64);
    cp_tile<D>(Vs, v, d.S, b, d.Hkv, kh, j0, 64);
    float dka[NB][4], dva[NB][4];
#pragma unroll
    for (int i = 0; i < NB; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[i][e] = dva[i][e] = 0.f;
    const int64_t key0 = j0 + warp * 16 + g;         /* this thread's keys: key0, key0 + 8 */
    const float sl2 = d.scale * 1.4426950408889634f; /* exp(x) = exp2(x log2 e) */

    /* queries that can see a key of this block */
    int64_t i_lo = 0, i_hi = d.T - 1;
    if (d.causal && j0 - d.q_pos0 > i_lo) i_lo = j0 - d.q_pos0;
    if (d.window > 0) {
        if (j0 + nk - 1 + d.window - 1 - d.q_pos0 < i_hi)
            i_hi = j0 + nk - 1 + d.window - 1 - d.q_pos0;
        if (!d.causal && j0 - d.window + 1 - d.q_pos0 > i_lo) i_lo = j0 - d.window + 1 - d.q_pos0;
    }
    /* the (head, query tile) pairs this block visits, flattened so the next one can be prefetched
     */
    const int64_t ntile = i_hi >= i_lo ? (i_hi - i_lo) / BQI + 1 : 0;
    const int64_t nsteps = ntile * G;
    auto issue = [&](int64_t step, int bi) {
        const int h = kh * G + (int)(step / ntile);
        const int64_t t0 = i_lo + (step % ntile) * BQI;
        bf16 *Qn = QG + bi * 2 * BQI * LD;
        cp_tile<D>(Qn, q, d.T, b, d.H, h, t0, BQI);
        cp_tile<D>(Qn + BQI * LD, dout, d.T, b, d.H, h, t0, BQI);
        float *Ln = LDs + bi * 2 * BQI;
        for (int r = threadIdx.x; r < BQI; r += blockDim.x) {
            int64_t t = t0 + r;
            Ln[r] = t < d.T ? lse[(b * d.H + h) * d.T + t] * 1.4426950408889634f : -INFINITY;
            Ln[BQI + r] = t < d.T ? Dv[(b * d.H + h) * d.T + t] : 0.f;
        }
    };
    if (nsteps > 0) issue(0, 0);
    cp_commit();
    for (int64_t step = 0; step < nsteps; step++) {
        const int bi = (int)(step & 1);
        const int64_t t0 = i_lo + (step % ntile) * BQI;
        const bf16 *Qs = QG + bi * 2 * BQI * LD, *Gs = Qs + BQI * LD;
        const float *ls = LDs + bi * 2 * BQI, *Ds = ls + BQI;
        if (step + 1 < nsteps) {
            issue(step + 1, bi ^ 1);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        {
            {
                /* S^T = K Q^T and dP^T = V dO^T: [16 keys of this warp] x [BQI queries] */
                float st[NQ][4], dpt[NQ][4];
#pragma unroll
                for (int i = 0; i < NQ; i++)
#pragma unroll
                    for (int e = 0; e < 4; e++) st[i][e] = dpt[i][e] = 0.f;
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    uint32_t a[4], va[4];
                    lda_frag(a, Ks, LD, warp * 16, kk * 16, lane);
                    lda_frag(va, Vs, LD, warp * 16, kk * 16, lane);
#pragma unroll
                    for (int nb = 0; nb < NQ; nb += 2) {
                        uint32_t bf[4];
                        ldb_nk(bf, Qs, LD, nb * 8, kk * 16, lane);
                        cb_mma_bf16(st[nb], a, bf[0], bf[1]);
                        cb_mma_bf16(st[nb + 1], a, bf[2], bf[3]);
                        ldb_nk(bf, Gs, LD, nb * 8, kk * 16, lane);
                        cb_mma_bf16(dpt[nb], va, bf[0], bf[1]);
                        cb_mma_bf16(dpt[nb + 1], va, bf[2], bf[3]);
                    }
                }
                /* P^T (in st) and dS^T (in dpt); element (key key0 + 8*(e>>1), query
                 * nb*8+tg*2+(e&1)). Past the diagonal every (query, key) pair of the tile is
                 * visible: no per-element mask there (the ALU, not the tensor cores, bounds this
                 * loop). */
                const bool clear = t0 + BQI <= d.T &&
                                   tile_clear(d, d.q_pos0 + t0, d.q_pos0 + t0 + BQI - 1, j0) &&
                                   j0 + 64 <= d.S;
                if (clear) {
#pragma unroll
                    for (int nb = 0; nb < NQ; nb++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int qi = nb * 8 + tg * 2 + (e & 1);
                            float p = exp2f(st[nb][e] * sl2 - ls[qi]);
                            st[nb][e] = p;
                            dpt[nb][e] = p * (dpt[nb][e] - Ds[qi]);
                        }
                } else {
#pragma unroll
                    for (int nb = 0; nb < NQ; nb++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int qi = nb * 8 + tg * 2 + (e & 1);
                            int64_t key = key0 + 8 * (e >> 1);
                            float lq = ls[qi];
                            float p = 0.f;
                            if (lq != -INFINITY && tc_visible(d, d.q_pos0 + t0 + qi, key))
                                p = exp2f(st[nb][e] * sl2 - lq);
                            st[nb][e] = p;
                            dpt[nb][e] = p * (dpt[nb][e] - Ds[qi]);
                        }
                }
                /* dV += P^T dO, dK += dS^T Q: k = query, B[k][n] = tile[query][dim] */
#pragma unroll
                for (int kk = 0; kk < BQI / 16; kk++) {
                    uint32_t pa[4], sa[4];
                    pa[0] = pack2(st[2 * kk][0], st[2 * kk][1]);
                    pa[1] = pack2(st[2 * kk][2], st[2 * kk][3]);
                    pa[2] = pack2(st[2 * kk + 1][0], st[2 * kk + 1][1]);
                    pa[3] = pack2(st[2 * kk + 1][2], st[2 * kk + 1][3]);
                    sa[0] = pack2(dpt[2 * kk][0], dpt[2 * kk][1]);
                    sa[1] = pack2(dpt[2 * kk][2], dpt[2 * kk][3]);
                    sa[2] = pack2(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]);
                    sa[3] = pack2(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3]);
#pragma unroll
                    for (int nb = 0; nb < NB; nb += 2) {
                        uint32_t bf[4];
                        ldb_kn(bf, Gs, LD, kk * 16, nb * 8, lane);
                        cb_mma_bf16(dva[nb], pa, bf[0], bf[1]);
                        cb_mma_bf16(dva[nb + 1], pa, bf[2], bf[3]);
                        ldb_kn(bf, Qs, LD, kk * 16, nb * 8, lane);
                        cb_mma_bf16(dka[nb], sa, bf[0], bf[1]);
                        cb_mma_bf16(dka[nb + 1], sa, bf[2], bf[3]);
                    }
                }
            }
        }
        __syncthreads(); /* this buffer is refilled two steps from now */
    }
    cp_wait<0>();
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int64_t key = key0 + 8 * r;
        if (key >= d.S) continue;
        int64_t base = ((b * d.S + key) * d.Hkv + kh) * D;
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
            int c = nb * 8 + tg * 2;
            if (dk.p) {
                cb_acc(dk, base + c, dka[nb][2 * r] * d.scale);
                cb_acc(dk, base + c + 1, dka[nb][2 * r + 1] * d.scale);
            }
            if (dv.p) {
                cb_acc(dv, base + c, dva[nb][2 * r]);
                cb_acc(dv, base + c + 1, dva[nb][2 * r + 1]);
            }
        }
    }
}

/* ---- host side ------------------------------------------------------------------------------- */

static bool aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

/* The shapes the tensor-core kernels cover. */
static bool tc_ok(const cb_attn_dims &d, const cb_attn_ptrs &a, bool bwd) {
    if (d.hd2 != 0 || d.hd != d.hdv || (d.hd != 64 && d.hd != 128)) return false;
    if (a.q.dt != CB_BF16 || a.k.dt != CB_BF16 || a.v.dt != CB_BF16) return false;
    if (!aligned16(a.q.p) || !aligned16(a.k.p) || !aligned16(a.v.p)) return false;
    if (a.lse.dt != CB_F32) return false;
    if (bwd && (a.dout.dt != CB_BF16 || !aligned16(a.dout.p))) return false;
    if (d.T > 65535LL * TC_BQ || d.S > 65535LL * TC_BK) return false;
    return getenv("CARAMBA_CUDA_NO_TC_ATTENTION") == nullptr;
}

template <typename K> static bool prep(K kernel, size_t bytes) {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) !=
        cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return true;
}

bool cb_cu_attention_fwd_fast(cb_cuda_ctx *c, const cb_attn_dims &d, const cb_attn_ptrs &a) {
    if (!tc_ok(d, a, false)) return false;
    if (a.out.dt != CB_BF16 && a.out.dt != CB_F32) return false;
    if (a.out.dt == CB_BF16 && !aligned16(a.out.p)) return false;
    dim3 grid((unsigned)((d.T + TC_BQ - 1) / TC_BQ), (unsigned)d.H, (unsigned)d.B);
    size_t sm = 5 * 64 * (size_t)(d.hd + 8) * sizeof(bf16); /* Q + two (K, V) buffers */
    const bf16 *q = (const bf16 *)a.q.p, *k = (const bf16 *)a.k.p, *v = (const bf16 *)a.v.p;
    float *lse = (float *)a.lse.p;
    if (d.hd == 64) {
        if (!prep(k_attn_fwd_tc<64>, sm)) return false;
        k_attn_fwd_tc<64><<<grid, TC_THREADS, sm, c->stream>>>(d, q, k, v, a.out, lse);
    } else {
        if (!prep(k_attn_fwd_tc<128>, sm)) return false;
        k_attn_fwd_tc<128><<<grid, TC_THREADS, sm, c->stream>>>(d, q, k, v, a.out, lse);
    }
    /* a failed launch leaves nothing written: the general kernel can still run */
    return cudaGetLastError() == cudaSuccess;
}

int cb_cu_attention_bwd_fast(cb_cuda_ctx *c, const cb_attn_dims &d, const cb_attn_ptrs &a,
                             const float *Dv) {
    if (!tc_ok(d, a, true)) return 0;
    const bf16 *q = (const bf16 *)a.q.p, *k = (const bf16 *)a.k.p, *v = (const bf16 *)a.v.p;
    const bf16 *go = (const bf16 *)a.dout.p;
    const float *lse = (const float *)a.lse.p;
    size_t row = (size_t)(d.hd + 8) * sizeof(bf16);
    /* K, V + two (Q, dO) buffers + two (lse, D) buffers; Q, dO + two (K, V) buffers */
    size_t sm_kv = d.hd == 64 ? (2 * 64 + 4 * 64) * row + 4 * 64 * sizeof(float)
                              : (2 * 64 + 4 * 32) * row + 4 * 32 * sizeof(float);
    size_t sm_q = 6 * 64 * row;
    /* raise every limit before launching anything, so a refusal can still fall back cleanly */
    /* hd 64: 2 blocks per SM at the compiler's register choice (191), 3 with a cap at 168 (a
     * few spills); CARAMBA_CUDA_ATTN_BWD_BLOCKS=2 picks the former (measurements) */
    const char *occ = getenv("CARAMBA_CUDA_ATTN_BWD_BLOCKS");
    auto dkdv64 =
        occ && !strcmp(occ, "2") ? k_attn_bwd_dkdv_tc<64, 64, 1> : k_attn_bwd_dkdv_tc<64, 64, 3>;
    bool ok = d.hd == 64 ? prep(dkdv64, sm_kv) && prep(k_attn_bwd_dq_tc<64>, sm_q)
                         : prep(k_attn_bwd_dkdv_tc<128, 32, 1>, sm_kv) &&
                               prep(k_attn_bwd_dq_tc<128>, sm_q);
    if (!ok) return 0;
    if (a.dk.p || a.dv.p) {
        dim3 grid((unsigned)((d.S + TC_BK - 1) / TC_BK), (unsigned)d.Hkv, (unsigned)d.B);
        if (d.hd == 64)
            dkdv64<<<grid, TC_THREADS, sm_kv, c->stream>>>(d, q, k, v, go, lse, Dv, a.dk, a.dv);
        else
            k_attn_bwd_dkdv_tc<128, 32, 1>
                <<<grid, TC_THREADS, sm_kv, c->stream>>>(d, q, k, v, go, lse, Dv, a.dk, a.dv);
        if (cb_cu_launch_check("attention_bwd_dkdv_tc") != CB_OK) return -1;
    }
    if (a.dq.p) {
        dim3 grid((unsigned)((d.T + TC_BQ - 1) / TC_BQ), (unsigned)d.H, (unsigned)d.B);
        if (d.hd == 64)
            k_attn_bwd_dq_tc<64>
                <<<grid, TC_THREADS, sm_q, c->stream>>>(d, q, k, v, go, lse, Dv, a.dq);
        else
            k_attn_bwd_dq_tc<128>
                <<<grid, TC_THREADS, sm_q, c->stream>>>(d, q, k, v, go, lse, Dv, a.dq);
        if (cb_cu_launch_check("attention_bwd_dq_tc") != CB_OK) return -1;
    }
    return 1;
}
