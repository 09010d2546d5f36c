/* Batch-1 decoding of a Llama-shaped model on the GPU, one CUDA graph per step.
 *
 * A decode step at batch 1 is ~90 small kernels; launched one by one from the host (plus the
 * cuBLASLt planning around each GEMM) it is launch-bound several times over. This decoder owns a
 * fixed set of device buffers, keeps the position and the token stream in device memory, and
 * captures one step into a CUDA graph that is replayed for every token: the host only launches
 * the graph. Everything a step needs to know at run time (position, cache length, which token to
 * feed, where the greedy choice goes) is read from device memory by the kernels.
 *
 * Shapes (d = d_model, H / Hkv heads of size hd, G = H / Hkv, F = d_ff, V = vocab, L layers):
 *   weights: bf16 row-major [out, in]: wq [H*hd, d], wk/wv [Hkv*hd, d], wo [d, H*hd],
 *            wg/wu [F, d], wd [d, F], lm_head [V, d]; norms f32 [d]; embedding [V, d] any float
 *   rope:    cos/sin [rope_rows, P] f32, pairs (i, i+P) inside every head (as ops/cuda/rope.cu)
 *   cache:   k and v per layer: [max_len][row_bytes], a row = one token's Hkv*hd values in the
 *            cache format (f16, or q8_0 / q4_0 blocks of 32 laid out exactly as caramba/quant.h
 *            and the CPU cache: whole-row blocks, heads contiguous). Requires hd % 32 == 0 for the
 *            block formats so that a block never straddles two heads.
 *   state:   tokens [max_len + 1] i32, pos (i64): step t reads tokens[pos], appends k/v at pos,
 *            attends over [0, pos], writes argmax(logits) to tokens[pos + 1] unless that slot is
 *            still part of the prompt, then pos += 1.
 *
 * Per step: embed; per layer: rmsnorm+QKV GEMV, RoPE+cache append (quantizing), split-K
 * attention over the cache (grid kv-heads x chunks; every block covers the G query heads that
 * share its kv head, so each cache byte is read once), combine, o-proj GEMV (+= residual),
 * rmsnorm+gate/up GEMV with SwiGLU, down GEMV (+= residual); final rmsnorm + head GEMV; argmax.
 * GEMVs: one warp per output row, 16-byte weight loads, the input vector staged in shared memory
 * (normalised there when the rmsnorm is fused). Activations stay f32. */
#include <math.h>
#include <type_traits>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda_api.h"

extern "C" {
#include "caramba/quant.h"
}

/* ---- quantization of one 32-value block by one warp (lane i holds element i) ---------------- */

/* fp16 scale saturated to +-65504 (caramba/quant.h), rounded to nearest even. */
__device__ __forceinline__ uint16_t store_scale(float d) {
    d = fminf(fmaxf(d, -65504.0f), 65504.0f);
    return __half_as_ushort(__float2half_rn(d));
}

/* Bit-for-bit the CPU quantizers (src/cache/quant.c): IEEE division and reciprocal (this file
 * is built with --use_fast_math, so they are spelled out), roundf half away from zero for q8_0,
 * and for q4_0 the fused x * id + 8.5 the CPU build contracts to (-ffp-contract=fast). */
template <int KV> __device__ __forceinline__ void quant_block(float x, uint8_t *dst, int lane) {
    if (KV == CB_Q8_0) {
        float a = fabsf(x);
        float amax = a;
        for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        float d = __fdiv_rn(amax, 127.0f);
        float id = d != 0.0f ? __frcp_rn(d) : 0.0f;
        float v = roundf(__fmul_rn(x, id));
        int c = v >= 127.0f ? 127 : v <= -127.0f ? -127 : v == v ? (int)v : 0;
        if (lane == 0) *(uint16_t *)dst = store_scale(d);
        dst[2 + lane] = (uint8_t)(int8_t)c;
    } else { /* CB_Q4_0 */
        float a = fabsf(x);
        if (!(a == a)) a = -1.0f; /* NaN never wins (the CPU's strict '<' skips it) */
        int idx = lane;
        for (int o = 16; o > 0; o >>= 1) {
            float oa = __shfl_xor_sync(0xffffffffu, a, o);
            int oi = __shfl_xor_sync(0xffffffffu, idx, o);
            if (oa > a || (oa == a && oi < idx)) {
                a = oa;
                idx = oi;
            }
        }
        float m = __shfl_sync(0xffffffffu, x, idx);
        if (!(a > 0.0f)) m = 0.0f; /* all zero: the CPU keeps m = +0 */
        float d = __fdiv_rn(m, -8.0f);
        float id = d != 0.0f ? __frcp_rn(d) : 0.0f;
        float v = __fmaf_rn(x, id, 8.5f);
        int c = v >= 15.0f ? 15 : v > 0.0f ? (int)v : v == v ? 0 : 8;
        int hi = __shfl_down_sync(0xffffffffu, c, 16);
        if (lane == 0) *(uint16_t *)dst = store_scale(d);
        if (lane < 16) dst[2 + lane] = (uint8_t)(c | (hi << 4));
    }
}

/* Writes one row of `width` values (x[i] for i < width, zero padding to whole blocks) into dst in
 * format KV, with the warps of the calling block. */
template <int KV>
__device__ void quant_row(const float *x, int width, uint8_t *dst, int warp, int nwarps, int lane) {
    if (KV == CB_F16) {
        for (int i = warp * 32 + lane; i < width; i += nwarps * 32)
            ((__half *)dst)[i] = __float2half_rn(x[i]);
        return;
    }
    int nb = (width + 31) / 32;
    const int bb = KV == CB_Q8_0 ? 34 : 18;
    for (int b = warp; b < nb; b += nwarps) {
        int i = b * 32 + lane;
        quant_block<KV>(i < width ? x[i] : 0.0f, dst + (size_t)b * bb, lane);
    }
}

/* ---- the decoder's state ----------------------------------------------------------------------
 */

struct cb_cuda_decoder {
    cb_cuda_dec_cfg cfg;
    cb_cuda_dec_layer *layers; /* host copy */
    int kv;                    /* cache format (cb_dtype) */
    size_t row_bytes;          /* bytes of one cached token row */
    int chunk, nch;            /* split-K: keys per block, blocks per kv head */
    float *x, *qkv, *att, *h, *logits, *pm, *pl, *pacc;
    int32_t *tokens;
    int64_t *state; /* [0] pos, [1] prompt length */
    uint8_t *kc, *vc;
    cudaGraphExec_t exec;
    int64_t pos, prompt; /* host mirrors */
};

/* ---- kernels ----------------------------------------------------------------------------------
 */

__global__ void k_dec_embed(const int32_t *tokens, const int64_t *state, cb_tv emb, int d,
                            int64_t vocab, float *x) {
    int64_t tok = tokens[state[0]];
    if (tok < 0 || tok >= vocab) tok = 0; /* ids are checked on the host; never read out of range */
    for (int i = threadIdx.x; i < d; i += blockDim.x) x[i] = cb_ld(emb, tok * d + i);
}

enum { GEMV_STORE = 0, GEMV_ADD = 1, GEMV_SWIGLU = 2 };

struct gemv_seg {
    const __nv_bfloat16 *W;
    float *y;
    int rows;
};

struct gemv_args {
    const float *x;
    int C;
    const float *norm_w; /* fused rmsnorm when non-NULL */
    float eps;
    gemv_seg seg[3];
    int nseg, rows;
};

#define GEMV_WARPS 8

/* y = W . x (per segment), one warp per row; C % 8 == 0 (16-byte rows). In SWIGLU mode segment 0
 * is the gate and segment 1 the up projection (same rows) and y0[r] = silu(g) * u. */
template <int MODE> __global__ void __launch_bounds__(GEMV_WARPS * 32) k_gemv(gemv_args a) {
    extern __shared__ float4 xs4[]; /* float4: 16-byte aligned for the vector reads below */
    float *xs = (float *)xs4;
    __shared__ float red[32];
    int C = a.C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) xs[i] = a.x[i];
    __syncthreads();
    if (a.norm_w) {
        float ss = 0.f;
        for (int i = threadIdx.x; i < C; i += blockDim.x) ss += xs[i] * xs[i];
        ss = cb_block_sum(ss, red);
        float r = rsqrtf(ss / (float)C + a.eps);
        __syncthreads();
        for (int i = threadIdx.x; i < C; i += blockDim.x) xs[i] = xs[i] * r * a.norm_w[i];
    }
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int nchunk = C / 8;
    for (int r = blockIdx.x * GEMV_WARPS + warp; r < a.rows; r += gridDim.x * GEMV_WARPS) {
        int s = 0, lr = r;
        if (MODE != GEMV_SWIGLU)
            while (s + 1 < a.nseg && lr >= a.seg[s].rows) lr -= a.seg[s++].rows;
        const uint4 *w0 = (const uint4 *)(a.seg[s].W + (size_t)lr * C);
        const uint4 *w1 = MODE == GEMV_SWIGLU ? (const uint4 *)(a.seg[1].W + (size_t)lr * C) : w0;
        float acc0 = 0.f, acc1 = 0.f;
#pragma unroll 4
        for (int c = lane; c < nchunk; c += 32) {
            uint4 u = w0[c];
            const float4 xa = *(const float4 *)&xs[c * 8], xb = *(const float4 *)&xs[c * 8 + 4];
            const __nv_bfloat162 *b = (const __nv_bfloat162 *)&u;
            float2 f0 = __bfloat1622float2(b[0]), f1 = __bfloat1622float2(b[1]);
            float2 f2 = __bfloat1622float2(b[2]), f3 = __bfloat1622float2(b[3]);
            acc0 += f0.x * xa.x + f0.y * xa.y + f1.x * xa.z + f1.y * xa.w + f2.x * xb.x +
                    f2.y * xb.y + f3.x * xb.z + f3.y * xb.w;
            if (MODE == GEMV_SWIGLU) {
                uint4 v = w1[c];
                const __nv_bfloat162 *e = (const __nv_bfloat162 *)&v;
                float2 g0 = __bfloat1622float2(e[0]), g1 = __bfloat1622float2(e[1]);
                float2 g2 = __bfloat1622float2(e[2]), g3 = __bfloat1622float2(e[3]);
                acc1 += g0.x * xa.x + g0.y * xa.y + g1.x * xa.z + g1.y * xa.w + g2.x * xb.x +
                        g2.y * xb.y + g3.x * xb.z + g3.y * xb.w;
            }
        }
        acc0 = cb_warp_sum(acc0);
        if (MODE == GEMV_SWIGLU) acc1 = cb_warp_sum(acc1);
        if (lane == 0) {
            float *y = a.seg[s].y;
            if (MODE == GEMV_STORE)
                y[lr] = acc0;
            else if (MODE == GEMV_ADD)
                y[lr] += acc0;
            else
                y[lr] = acc0 / (1.f + __expf(-acc0)) * acc1;
        }
    }
}

/* RoPE on q and k at position pos (in place), then k and v appended to the cache row pos.
 * One block. qkv = [q (H*hd) | k (Hkv*hd) | v (Hkv*hd)]. */
template <int KV>
__global__ void k_dec_rope_append(float *qkv, const int64_t *state, const float *cs,
                                  const float *sn, int P, int H, int Hkv, int hd, uint8_t *kc,
                                  uint8_t *vc, size_t row_bytes) {
    int64_t pos = state[0];
    int nq = H * P, nk = Hkv * P;
    float *k = qkv + (size_t)H * hd, *v = k + (size_t)Hkv * hd;
    for (int t = threadIdx.x; t < nq + nk; t += blockDim.x) {
        int head = t < nq ? t / P : (t - nq) / P, i = t < nq ? t % P : (t - nq) % P;
        float *base = (t < nq ? qkv : k) + (size_t)head * hd;
        float c = cs[pos * P + i], s = sn[pos * P + i];
        float x1 = base[i], x2 = base[i + P];
        base[i] = x1 * c - x2 * s;
        base[i + P] = x2 * c + x1 * s;
    }
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    int W = Hkv * hd;
    quant_row<KV>(k, W, kc + (size_t)pos * row_bytes, warp, nw, lane);
    quant_row<KV>(v, W, vc + (size_t)pos * row_bytes, warp, nw, lane);
}

#define ATT_THREADS 128 /* = keys per tile */

/* One head's segment of a cached row: SB bytes in global memory (4-byte aligned when SB % 4 ==
 * 0), staged in shared memory at a stride of SBS bytes (a multiple of 4 with an odd word count,
 * so one thread per row reads without bank conflicts). */
template <int KV, int HD> struct kv_seg {
    static constexpr int SB = KV == CB_F16 ? HD * 2 : KV == CB_Q8_0 ? HD / 32 * 34 : HD / 32 * 18;
    static constexpr int SB4 = (SB + 3) / 4 * 4;
    static constexpr int SBS = (SB4 / 4) % 2 ? SB4 : SB4 + 4;
};

/* A tile of up to ATT_THREADS cache rows (head kvh's SB bytes of each) moves global -> registers
 * -> shared memory in two steps, so the loads of the next tile are in flight while the current
 * one is computed on. Words are 4 bytes when SB allows, else 2; word i of the tile (row i / W,
 * word i % W) goes through thread i % ATT_THREADS: consecutive threads read consecutive bytes. */
template <int KV, int HD> struct tile_io {
    static constexpr int SB = kv_seg<KV, HD>::SB, SBS = kv_seg<KV, HD>::SBS;
    static constexpr bool W4 = SB % 4 == 0;
    static constexpr int W = W4 ? SB / 4 : SB / 2; /* words per row = words per thread */
    typedef typename std::conditional<W4, unsigned int, unsigned short>::type word;
    word r[W];

    __device__ __forceinline__ void fetch(const uint8_t *rows0, size_t row_bytes, int kvh,
                                          int rows) {
        const uint8_t *src = rows0 + (size_t)kvh * SB;
#pragma unroll
        for (int k = 0; k < W; k++) {
            int i = threadIdx.x + k * ATT_THREADS, row = i / W, w = i - row * W;
            if (row < rows)
                r[k] = __ldg((const word *)(src + (size_t)row * row_bytes + sizeof(word) * w));
        }
    }
    __device__ __forceinline__ void store(uint8_t *tile, int rows) const {
#pragma unroll
        for (int k = 0; k < W; k++) {
            int i = threadIdx.x + k * ATT_THREADS, row = i / W, w = i - row * W;
            if (row < rows) *(word *)(tile + row * SBS + sizeof(word) * w) = r[k];
        }
    }
};

/* Values [32 b, 32 b + 32) of a staged head segment. */
template <int KV>
__device__ __forceinline__ void seg_span32(const uint8_t *row, int b, float *out) {
    if (KV == CB_F16) {
        const uint32_t *p = (const uint32_t *)(row + 64 * b);
#pragma unroll
        for (int k = 0; k < 16; k++) {
            float2 f = __half22float2(*(const __half2 *)&p[k]);
            out[2 * k] = f.x;
            out[2 * k + 1] = f.y;
        }
    } else if (KV == CB_Q8_0) {
        const uint8_t *blk = row + 34 * b;
        float d = __half2float(__ushort_as_half(*(const uint16_t *)blk));
        const uint16_t *qs = (const uint16_t *)(blk + 2);
#pragma unroll
        for (int k = 0; k < 16; k++) {
            uint16_t w = qs[k];
            out[2 * k] = (float)(int8_t)(w & 0xff) * d;
            out[2 * k + 1] = (float)(int8_t)(w >> 8) * d;
        }
    } else {
        const uint8_t *blk = row + 18 * b;
        float d = __half2float(__ushort_as_half(*(const uint16_t *)blk));
        const uint16_t *qs = (const uint16_t *)(blk + 2);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            uint16_t w = qs[k];
            int b0 = w & 0xff, b1 = w >> 8;
            out[2 * k] = (float)((b0 & 15) - 8) * d;
            out[2 * k + 1] = (float)((b1 & 15) - 8) * d;
            out[16 + 2 * k] = (float)((b0 >> 4) - 8) * d;
            out[16 + 2 * k + 1] = (float)((b1 >> 4) - 8) * d;
        }
    }
}

/* Value e of a staged head segment. */
template <int KV> __device__ __forceinline__ float seg_elem(const uint8_t *row, int e) {
    if (KV == CB_F16) return __half2float(((const __half *)row)[e]);
    int b = e >> 5, i = e & 31;
    if (KV == CB_Q8_0) {
        const uint8_t *blk = row + 34 * b;
        return (float)(int8_t)blk[2 + i] * __half2float(__ushort_as_half(*(const uint16_t *)blk));
    }
    const uint8_t *blk = row + 18 * b;
    int byte = blk[2 + (i & 15)];
    return (float)((i < 16 ? (byte & 15) : (byte >> 4)) - 8) *
           __half2float(__ushort_as_half(*(const uint16_t *)blk));
}

/* Split-K attention over the cache for one kv head and one chunk of keys (a multiple of 128).
 * q [H*HD] f32 (roped); partials pm/pl [H][nch] (max in the log2 domain, sum), pacc
 * [H][nch][HD]. Keys [0, pos] are visible (the cache holds the current token too).
 * Pass 1 stages 128 key rows at a time in shared memory (coalesced loads of the head's bytes,
 * the next tile's loads issued before the current tile is scored; the first value tile's during
 * the last key tile), one thread scores one key for the G query heads; pass 2 stages value rows
 * the same way and
 * accumulates with threads over (dimension, key subset); the partial softmax statistics go to
 * the combine kernel. */
template <int KV, int HD, int G>
__global__ void __launch_bounds__(ATT_THREADS)
    k_dec_attn(const float *q, const int64_t *state, const uint8_t *kc, const uint8_t *vc,
               size_t row_bytes, int chunk, int nch, float scale_log2, float *pm, float *pl,
               float *pacc) {
    constexpr int SBS = kv_seg<KV, HD>::SBS, NG = ATT_THREADS / HD;
    extern __shared__ float4 sm4[];
    float *qs = (float *)sm4;                       /* [G][HD] */
    float *sc = qs + G * HD;                        /* [G][chunk] */
    float *red = sc + G * chunk;                    /* [NG][G][HD] */
    uint8_t *tile = (uint8_t *)(red + NG * G * HD); /* [ATT_THREADS][SBS] */
    __shared__ float rsh[32];
    int kvh = blockIdx.x, c = blockIdx.y;
    int64_t len = state[0] + 1;
    int64_t s0 = (int64_t)c * chunk, s1 = s0 + chunk < len ? s0 + chunk : len;
    int tid = threadIdx.x;
    if (s0 >= len) { /* past the cache: an empty partial */
        for (int i = tid; i < G * HD; i += ATT_THREADS) {
            int g = i / HD, e = i % HD, h = kvh * G + g;
            pacc[((size_t)h * nch + c) * HD + e] = 0.f;
            if (e == 0) {
                pm[(size_t)h * nch + c] = -INFINITY;
                pl[(size_t)h * nch + c] = 0.f;
            }
        }
        return;
    }
    for (int i = tid; i < G * HD; i += ATT_THREADS)
        qs[i] = q[(size_t)kvh * G * HD + i] * scale_log2;
    int n = (int)(s1 - s0);
    tile_io<KV, HD> io;
    io.fetch(kc + (size_t)s0 * row_bytes, row_bytes, kvh, n < ATT_THREADS ? n : ATT_THREADS);
    /* pass 1: scores */
    for (int t0 = 0; t0 < n; t0 += ATT_THREADS) {
        int rows = n - t0 < ATT_THREADS ? n - t0 : ATT_THREADS;
        __syncthreads(); /* the previous tile (and qs) */
        io.store(tile, rows);
        __syncthreads();
        int t1 = t0 + ATT_THREADS;
        if (t1 < n)
            io.fetch(kc + (size_t)(s0 + t1) * row_bytes, row_bytes, kvh,
                     n - t1 < ATT_THREADS ? n - t1 : ATT_THREADS);
        else
            io.fetch(vc + (size_t)s0 * row_bytes, row_bytes, kvh,
                     n < ATT_THREADS ? n : ATT_THREADS);
        if (tid < rows) {
            const uint8_t *row = tile + tid * SBS;
            float dot[G];
#pragma unroll
            for (int g = 0; g < G; g++) dot[g] = 0.f;
#pragma unroll
            for (int b = 0; b < HD / 32; b++) {
                float kv[32];
                seg_span32<KV>(row, b, kv);
#pragma unroll
                for (int e = 0; e < 32; e++)
#pragma unroll
                    for (int g = 0; g < G; g++) dot[g] += qs[g * HD + b * 32 + e] * kv[e];
            }
#pragma unroll
            for (int g = 0; g < G; g++) sc[g * chunk + t0 + tid] = dot[g];
        }
    }
    __syncthreads();
    float mx[G], sum[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        float m = -INFINITY;
        for (int j = tid; j < n; j += ATT_THREADS) m = fmaxf(m, sc[g * chunk + j]);
        mx[g] = cb_block_max(m, rsh);
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
        float s = 0.f;
        for (int j = tid; j < n; j += ATT_THREADS) {
            float p = exp2f(sc[g * chunk + j] - mx[g]);
            sc[g * chunk + j] = p;
            s += p;
        }
        sum[g] = cb_block_sum(s, rsh);
    }
    /* pass 2: P . V, thread = (dimension e, keys j = grp mod NG) */
    int e = tid % HD, grp = tid / HD;
    float acc[G];
#pragma unroll
    for (int g = 0; g < G; g++) acc[g] = 0.f;
    for (int t0 = 0; t0 < n; t0 += ATT_THREADS) {
        int rows = n - t0 < ATT_THREADS ? n - t0 : ATT_THREADS;
        __syncthreads();
        io.store(tile, rows); /* value tile t0, fetched during the previous tile's work */
        __syncthreads();
        int t1 = t0 + ATT_THREADS;
        if (t1 < n)
            io.fetch(vc + (size_t)(s0 + t1) * row_bytes, row_bytes, kvh,
                     n - t1 < ATT_THREADS ? n - t1 : ATT_THREADS);
#pragma unroll 4
        for (int j = grp; j < rows; j += NG) {
            float v = seg_elem<KV>(tile + j * SBS, e);
#pragma unroll
            for (int g = 0; g < G; g++) acc[g] += sc[g * chunk + t0 + j] * v;
        }
    }
#pragma unroll
    for (int g = 0; g < G; g++) red[(grp * G + g) * HD + e] = acc[g];
    __syncthreads();
    for (int i = tid; i < G * HD; i += ATT_THREADS) {
        int g = i / HD, ee = i % HD, h = kvh * G + g;
        float s = 0.f;
        for (int w = 0; w < NG; w++) s += red[(w * G + g) * HD + ee];
        pacc[((size_t)h * nch + c) * HD + ee] = s;
    }
    if (tid == 0)
#pragma unroll
        for (int g = 0; g < G; g++) {
            pm[(size_t)(kvh * G + g) * nch + c] = mx[g];
            pl[(size_t)(kvh * G + g) * nch + c] = sum[g];
        }
}

/* att[h*HD + e] = sum_c 2^(m_c - M) acc_c[e] / sum_c 2^(m_c - M) l_c.  grid H, block 256,
 * shared memory nch floats (the weights 2^(m_c - M)); the partials are split over the threads
 * (a long cache has hundreds of them per head). */
#define COMB_THREADS 256
__global__ void __launch_bounds__(COMB_THREADS)
    k_dec_combine(const float *pm, const float *pl, const float *pacc, int nch, int HD,
                  float *att) {
    extern __shared__ float wts[];
    __shared__ float rsh[32];
    __shared__ float part[COMB_THREADS];
    int h = blockIdx.x, tid = threadIdx.x;
    const float *m = pm + (size_t)h * nch, *l = pl + (size_t)h * nch;
    float M = -INFINITY;
    for (int c = tid; c < nch; c += COMB_THREADS) M = fmaxf(M, m[c]);
    M = cb_block_max(M, rsh);
    float den = 0.f;
    for (int c = tid; c < nch; c += COMB_THREADS) {
        float w = m[c] == -INFINITY ? 0.f : exp2f(m[c] - M);
        wts[c] = w;
        den += w * l[c];
    }
    den = cb_block_sum(den, rsh); /* its barriers also publish wts */
    int P = COMB_THREADS / HD, e = tid % HD, p = tid / HD;
    float num = 0.f;
    if (p < P)
        for (int c = p; c < nch; c += P) num += wts[c] * pacc[((size_t)h * nch + c) * HD + e];
    part[tid] = num;
    __syncthreads();
    if (tid < HD) {
        float s = 0.f;
        for (int k = 0; k < P; k++) s += part[k * HD + tid];
        att[(size_t)h * HD + tid] = den > 0.f ? s / den : 0.f;
    }
}

/* Greedy choice (first index of the maximum), written to tokens[pos + 1] unless that is still a
 * prompt token; then pos += 1. One block of 1024 threads. */
__global__ void k_dec_argmax(const float *logits, int64_t V, int32_t *tokens, int64_t *state) {
    __shared__ float bv[32];
    __shared__ int64_t bi[32];
    float best = -INFINITY;
    int64_t idx = V; /* sentinel: larger than any index */
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        float v = logits[i];
        if (v > best) { /* ascending i per thread: the first maximum stays */
            best = v;
            idx = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int64_t oi = (int64_t)__shfl_xor_sync(0xffffffffu, (long long)idx, o);
        if (ov > best || (ov == best && oi < idx)) {
            best = ov;
            idx = oi;
        }
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) {
        bv[w] = best;
        bi[w] = idx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (bv[k] > best || (bv[k] == best && bi[k] < idx)) {
                best = bv[k];
                idx = bi[k];
            }
        int64_t pos = state[0];
        if (pos + 1 >= state[1]) tokens[pos + 1] = (int32_t)(idx < V ? idx : 0);
        state[0] = pos + 1;
    }
}

/* Pseudo-random cache contents for positions [0, n) of every layer (benchmarks of long
 * contexts: the step's cost does not depend on the values). grid (n, L), block 256. */
__device__ __forceinline__ float hash_val(uint64_t seed, uint64_t i) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((float)(z >> 40) * (1.0f / 16777216.0f) - 0.5f) * 4.0f;
}

template <int KV>
__global__ void k_dec_fill(uint8_t *kc, uint8_t *vc, size_t row_bytes, size_t layer_bytes, int W,
                           uint64_t seed) {
    extern __shared__ float row[];
    int64_t pos = blockIdx.x;
    int layer = blockIdx.y;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int which = 0; which < 2; which++) {
        uint64_t base = (((uint64_t)layer * 2 + which) * (uint64_t)gridDim.x + (uint64_t)pos) * W;
        for (int i = threadIdx.x; i < W; i += blockDim.x) row[i] = hash_val(seed, base + i);
        __syncthreads();
        uint8_t *dst = (which ? vc : kc) + layer * layer_bytes + (size_t)pos * row_bytes;
        quant_row<KV>(row, W, dst, warp, nw, lane);
        __syncthreads();
    }
}

/* rows [rows, width] of any float dtype into cache rows (one block per row, via shared memory). */
template <int KV>
__global__ void k_dec_write_rows(cb_tv x, int64_t rows, int width, size_t row_bytes, uint8_t *out) {
    extern __shared__ float rowbuf[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        __syncthreads();
        for (int i = threadIdx.x; i < width; i += blockDim.x) rowbuf[i] = cb_ld(x, r * width + i);
        __syncthreads();
        quant_row<KV>(rowbuf, width, out + (size_t)r * row_bytes, warp, nw, lane);
    }
}

/* After a batched prefill of n tokens: tokens[n] = argmax of the last position's logits (any
 * float dtype), position n. One block of 1024 threads. */
__global__ void k_dec_start(cb_tv logits, int64_t V, int64_t n, int32_t *tokens, int64_t *state) {
    __shared__ float bv[32];
    __shared__ int64_t bi[32];
    float best = -INFINITY;
    int64_t idx = V;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        float v = cb_ld(logits, i);
        if (v > best) {
            best = v;
            idx = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int64_t oi = (int64_t)__shfl_xor_sync(0xffffffffu, (long long)idx, o);
        if (ov > best || (ov == best && oi < idx)) {
            best = ov;
            idx = oi;
        }
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) {
        bv[w] = best;
        bi[w] = idx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (bv[k] > best || (bv[k] == best && bi[k] < idx)) {
                best = bv[k];
                idx = bi[k];
            }
        tokens[n] = (int32_t)(idx < V ? idx : 0);
        state[0] = n;
        state[1] = n;
    }
}

template <int KV>
__global__ void k_quant_rows(const float *x, int64_t rows, int width, size_t row_bytes,
                             uint8_t *out) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
        quant_row<KV>(x + (size_t)r * width, width, out + (size_t)r * row_bytes, warp, nw, lane);
}

/* ---- host side --------------------------------------------------------------------------------
 */

static void *dalloc(size_t bytes) {
    return cb_cuda_alloc(bytes);
}

extern "C" void cb_cuda_dec_free(cb_cuda_decoder *d) {
    if (!d) return;
    if (d->exec) cudaGraphExecDestroy(d->exec);
    void *bufs[] = {d->x,  d->qkv,  d->att,    d->h,     d->logits, d->pm,
                    d->pl, d->pacc, d->tokens, d->state, d->kc,     d->vc};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) cb_cuda_free(bufs[i]);
    free(d->layers);
    free(d);
}

typedef void (*attn_fn)(const float *, const int64_t *, const uint8_t *, const uint8_t *, size_t,
                        int, int, float, float *, float *, float *);

template <int KV, int HD> static attn_fn pick_g(int G) {
    switch (G) {
    case 1:
        return k_dec_attn<KV, HD, 1>;
    case 2:
        return k_dec_attn<KV, HD, 2>;
    case 3:
        return k_dec_attn<KV, HD, 3>;
    case 4:
        return k_dec_attn<KV, HD, 4>;
    case 6:
        return k_dec_attn<KV, HD, 6>;
    case 8:
        return k_dec_attn<KV, HD, 8>;
    default:
        return nullptr;
    }
}
template <int KV> static attn_fn pick_hd(int HD, int G) {
    switch (HD) {
    case 32:
        return pick_g<KV, 32>(G);
    case 64:
        return pick_g<KV, 64>(G);
    case 128:
        return pick_g<KV, 128>(G);
    default:
        return nullptr;
    }
}
static attn_fn pick_attn(int kv, int HD, int G) {
    if (kv == CB_F16) return pick_hd<CB_F16>(HD, G);
    if (kv == CB_Q8_0) return pick_hd<CB_Q8_0>(HD, G);
    if (kv == CB_Q4_0) return pick_hd<CB_Q4_0>(HD, G);
    return nullptr;
}

static int seg_stride(int kv, int HD) {
    int sb = kv == CB_F16 ? HD * 2 : kv == CB_Q8_0 ? HD / 32 * 34 : HD / 32 * 18;
    int sb4 = (sb + 3) / 4 * 4;
    return (sb4 / 4) % 2 ? sb4 : sb4 + 4;
}

static size_t attn_smem(const cb_cuda_decoder *d) {
    int G = d->cfg.n_heads / d->cfg.n_kv_heads, HD = d->cfg.head_dim;
    return sizeof(float) *
               ((size_t)G * HD + (size_t)G * d->chunk + (ATT_THREADS / HD) * (size_t)G * HD) +
           (size_t)ATT_THREADS * seg_stride(d->kv, HD);
}

static cb_status gemv(cb_cuda_ctx *c, int mode, const gemv_args &a) {
    int blocks = (a.rows + GEMV_WARPS - 1) / GEMV_WARPS;
    if (blocks > 8 * c->num_sms) blocks = 8 * c->num_sms;
    size_t smem = sizeof(float) * (size_t)a.C;
    if (mode == GEMV_STORE)
        k_gemv<GEMV_STORE><<<blocks, GEMV_WARPS * 32, smem, c->stream>>>(a);
    else if (mode == GEMV_ADD)
        k_gemv<GEMV_ADD><<<blocks, GEMV_WARPS * 32, smem, c->stream>>>(a);
    else
        k_gemv<GEMV_SWIGLU><<<blocks, GEMV_WARPS * 32, smem, c->stream>>>(a);
    return cb_cu_launch_check("decode gemv");
}

/* Enqueues one decode step on the stream (captured into the graph). */
static cb_status enqueue_step(cb_cuda_decoder *d, cb_cuda_ctx *c) {
    const cb_cuda_dec_cfg &f = d->cfg;
    int H = f.n_heads, Hkv = f.n_kv_heads, hd = f.head_dim, dm = f.d_model, G = H / Hkv;
    cb_tv emb = {(void *)f.embed, f.embed_dtype};
    k_dec_embed<<<1, 256, 0, c->stream>>>(d->tokens, d->state, emb, dm, f.vocab, d->x);
    CB_CU_LAUNCHED("decode embed");
    size_t layer_bytes = (size_t)f.max_len * d->row_bytes;
    attn_fn attn = pick_attn(d->kv, hd, G);
    float scale_log2 = 1.4426950408889634f / sqrtf((float)hd);
    float *q = d->qkv, *k = q + (size_t)H * hd, *v = k + (size_t)Hkv * hd;
    for (int l = 0; l < f.n_layers; l++) {
        const cb_cuda_dec_layer &L = d->layers[l];
        uint8_t *kc = d->kc + l * layer_bytes, *vc = d->vc + l * layer_bytes;
        gemv_args a;
        memset(&a, 0, sizeof a);
        a.x = d->x, a.C = dm, a.norm_w = L.attn_norm, a.eps = f.rms_eps;
        a.seg[0] = {(const __nv_bfloat16 *)L.wq, q, H * hd};
        a.seg[1] = {(const __nv_bfloat16 *)L.wk, k, Hkv * hd};
        a.seg[2] = {(const __nv_bfloat16 *)L.wv, v, Hkv * hd};
        a.nseg = 3, a.rows = (H + 2 * Hkv) * hd;
        CB_TRY(gemv(c, GEMV_STORE, a));
        if (d->kv == CB_F16)
            k_dec_rope_append<CB_F16><<<1, 256, 0, c->stream>>>(d->qkv, d->state, f.rope_cos,
                                                                f.rope_sin, f.rope_pairs, H, Hkv,
                                                                hd, kc, vc, d->row_bytes);
        else if (d->kv == CB_Q8_0)
            k_dec_rope_append<CB_Q8_0><<<1, 256, 0, c->stream>>>(d->qkv, d->state, f.rope_cos,
                                                                 f.rope_sin, f.rope_pairs, H, Hkv,
                                                                 hd, kc, vc, d->row_bytes);
        else
            k_dec_rope_append<CB_Q4_0><<<1, 256, 0, c->stream>>>(d->qkv, d->state, f.rope_cos,
                                                                 f.rope_sin, f.rope_pairs, H, Hkv,
                                                                 hd, kc, vc, d->row_bytes);
        CB_CU_LAUNCHED("decode rope/append");
        attn<<<dim3(Hkv, d->nch), ATT_THREADS, attn_smem(d), c->stream>>>(
            q, d->state, kc, vc, d->row_bytes, d->chunk, d->nch, scale_log2, d->pm, d->pl, d->pacc);
        CB_CU_LAUNCHED("decode attention");
        k_dec_combine<<<H, COMB_THREADS, sizeof(float) * (size_t)d->nch, c->stream>>>(
            d->pm, d->pl, d->pacc, d->nch, hd, d->att);
        CB_CU_LAUNCHED("decode attention combine");
        memset(&a, 0, sizeof a);
        a.x = d->att, a.C = H * hd;
        a.seg[0] = {(const __nv_bfloat16 *)L.wo, d->x, dm};
        a.nseg = 1, a.rows = dm;
        CB_TRY(gemv(c, GEMV_ADD, a));
        memset(&a, 0, sizeof a);
        a.x = d->x, a.C = dm, a.norm_w = L.mlp_norm, a.eps = f.rms_eps;
        a.seg[0] = {(const __nv_bfloat16 *)L.wg, d->h, f.d_ff};
        a.seg[1] = {(const __nv_bfloat16 *)L.wu, d->h, f.d_ff};
        a.nseg = 2, a.rows = f.d_ff;
        CB_TRY(gemv(c, GEMV_SWIGLU, a));
        memset(&a, 0, sizeof a);
        a.x = d->h, a.C = f.d_ff;
        a.seg[0] = {(const __nv_bfloat16 *)L.wd, d->x, dm};
        a.nseg = 1, a.rows = dm;
        CB_TRY(gemv(c, GEMV_ADD, a));
    }
    gemv_args a;
    memset(&a, 0, sizeof a);
    a.x = d->x, a.C = dm, a.norm_w = f.final_norm, a.eps = f.rms_eps;
    a.seg[0] = {(const __nv_bfloat16 *)f.lm_head, d->logits, (int)f.vocab};
    a.nseg = 1, a.rows = (int)f.vocab;
    CB_TRY(gemv(c, GEMV_STORE, a));
    k_dec_argmax<<<1, 1024, 0, c->stream>>>(d->logits, f.vocab, d->tokens, d->state);
    CB_CU_LAUNCHED("decode argmax");
    return CB_OK;
}

extern "C" cb_status cb_cuda_dec_new(const cb_cuda_dec_cfg *cfg, cb_cuda_decoder **out) {
    *out = nullptr;
    CB_CU_CTX(c);
    const cb_cuda_dec_cfg &f = *cfg;
    if (f.n_layers < 1 || f.d_model < 1 || f.n_heads < 1 || f.n_kv_heads < 1 ||
        f.n_heads % f.n_kv_heads || f.vocab < 1 || f.max_len < 1 || f.d_ff < 1)
        return cb_fail(CB_ERR_ARG, "cuda decoder: bad model geometry");
    int G = f.n_heads / f.n_kv_heads, hd = f.head_dim;
    if (f.kv_dtype != CB_F16 && f.kv_dtype != CB_Q8_0 && f.kv_dtype != CB_Q4_0)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "cuda decoder: cache format %s (supported: f16, q8_0, q4_0)",
                       cb_dtype_name((cb_dtype)f.kv_dtype));
    if (!pick_attn(f.kv_dtype, hd, G))
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "cuda decoder: head size %d with %d query heads per kv "
                       "head (supported: 32, 64, 128; 1, 2, 3, 4, 6, 8)",
                       hd, G);
    if (f.d_model % 8 || f.d_ff % 8 || (f.n_heads * hd) % 8 || f.vocab > INT32_MAX)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda decoder: widths must be multiples of 8");
    if (f.rope_pairs < 1 || 2 * f.rope_pairs > hd || f.rope_rows < f.max_len)
        return cb_fail(CB_ERR_ARG, "cuda decoder: rope tables cover %lld positions, need %lld",
                       (long long)f.rope_rows, (long long)f.max_len);
    cb_cuda_decoder *d = (cb_cuda_decoder *)calloc(1, sizeof *d);
    if (!d) return cb_fail(CB_ERR_NOMEM, "cuda decoder");
    d->cfg = f;
    d->layers = (cb_cuda_dec_layer *)malloc(sizeof(cb_cuda_dec_layer) * (size_t)f.n_layers);
    if (!d->layers) {
        free(d);
        return cb_fail(CB_ERR_NOMEM, "cuda decoder");
    }
    memcpy(d->layers, f.layers, sizeof(cb_cuda_dec_layer) * (size_t)f.n_layers);
    d->cfg.layers = d->layers;
    d->kv = f.kv_dtype;
    int64_t W = (int64_t)f.n_kv_heads * hd;
    d->row_bytes = cb_quant_row_bytes((cb_dtype)d->kv, W);
    /* split-K: about four blocks per SM over all kv heads at full length, chunks of whole warps
     * for short caches and of whole tiles (128 keys) beyond, and a chunk's scores must fit 16 KB
     * of shared memory (measured on an H200: 64-key chunks at 16k keys ran at half the bandwidth
     * of 128-key chunks; the fixed cost per block dominates) */
    int64_t target = (4 * (int64_t)c->num_sms + f.n_kv_heads - 1) / f.n_kv_heads;
    int64_t chunk = (f.max_len + target - 1) / target;
    chunk = chunk <= 96 ? (chunk + 31) / 32 * 32
                        : (chunk + ATT_THREADS - 1) / ATT_THREADS * ATT_THREADS;
    int64_t cap = (4096 / G) / ATT_THREADS * ATT_THREADS;
    if (cap < ATT_THREADS) cap = ATT_THREADS;
    if (chunk > cap) chunk = cap;
    d->chunk = (int)chunk;
    d->nch = (int)((f.max_len + chunk - 1) / chunk);
    size_t H = (size_t)f.n_heads;
    d->x = (float *)dalloc(sizeof(float) * (size_t)f.d_model);
    d->qkv = (float *)dalloc(sizeof(float) * (size_t)(f.n_heads + 2 * f.n_kv_heads) * hd);
    d->att = (float *)dalloc(sizeof(float) * H * hd);
    d->h = (float *)dalloc(sizeof(float) * (size_t)f.d_ff);
    d->logits = (float *)dalloc(sizeof(float) * (size_t)f.vocab);
    d->pm = (float *)dalloc(sizeof(float) * H * d->nch);
    d->pl = (float *)dalloc(sizeof(float) * H * d->nch);
    d->pacc = (float *)dalloc(sizeof(float) * H * d->nch * hd);
    d->tokens = (int32_t *)dalloc(sizeof(int32_t) * (size_t)(f.max_len + 1));
    d->state = (int64_t *)dalloc(sizeof(int64_t) * 2);
    size_t cache = (size_t)f.n_layers * (size_t)f.max_len * d->row_bytes;
    d->kc = (uint8_t *)dalloc(cache);
    d->vc = (uint8_t *)dalloc(cache);
    if (!d->x || !d->qkv || !d->att || !d->h || !d->logits || !d->pm || !d->pl || !d->pacc ||
        !d->tokens || !d->state || !d->kc || !d->vc) {
        cb_cuda_dec_free(d);
        return CB_ERR_NOMEM;
    }
    cb_status st = cb_cuda_memset0(d->kc, cache);
    if (st == CB_OK) st = cb_cuda_memset0(d->vc, cache);
    if (st == CB_OK) st = cb_cuda_memset0(d->tokens, sizeof(int32_t) * (size_t)(f.max_len + 1));
    if (st == CB_OK) st = cb_cuda_memset0(d->state, sizeof(int64_t) * 2);
    size_t smem = attn_smem(d);
    if (st == CB_OK && smem > 48 * 1024)
        st = cb_cu_check(cudaFuncSetAttribute((const void *)pick_attn(d->kv, hd, G),
                                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              (int)smem),
                         "decode attention shared memory");
    if (st != CB_OK) {
        cb_cuda_dec_free(d);
        return st;
    }
    *out = d;
    return CB_OK;
}

static cb_status set_state(cb_cuda_decoder *d, int64_t pos, int64_t prompt) {
    int64_t s[2] = {pos, prompt};
    CB_TRY(cb_cuda_copy(1, d->state, 0, s, sizeof s));
    d->pos = pos;
    d->prompt = prompt;
    return CB_OK;
}

extern "C" cb_status cb_cuda_dec_reset(cb_cuda_decoder *d, const int32_t *prompt, int64_t n) {
    if (n < 1 || n > d->cfg.max_len)
        return cb_fail(CB_ERR_ARG, "cuda decoder: prompt of %lld tokens (cache holds %lld)",
                       (long long)n, (long long)d->cfg.max_len);
    for (int64_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= d->cfg.vocab)
            return cb_fail(CB_ERR_ARG, "cuda decoder: token id %d at %lld outside the vocabulary",
                           prompt[i], (long long)i);
    CB_TRY(cb_cuda_copy(1, d->tokens, 0, prompt, sizeof(int32_t) * (size_t)n));
    return set_state(d, 0, n);
}

extern "C" cb_status cb_cuda_dec_fill(cb_cuda_decoder *d, int64_t n, uint64_t seed) {
    CB_CU_CTX(c);
    if (n < 0 || n >= d->cfg.max_len)
        return cb_fail(CB_ERR_ARG, "cuda decoder: cannot fill %lld positions of %lld", (long long)n,
                       (long long)d->cfg.max_len);
    int W = d->cfg.n_kv_heads * d->cfg.head_dim;
    size_t layer_bytes = (size_t)d->cfg.max_len * d->row_bytes;
    if (n > 0) {
        dim3 grid((unsigned)n, (unsigned)d->cfg.n_layers);
        size_t smem = sizeof(float) * (size_t)W;
        if (d->kv == CB_F16)
            k_dec_fill<CB_F16>
                <<<grid, 256, smem, c->stream>>>(d->kc, d->vc, d->row_bytes, layer_bytes, W, seed);
        else if (d->kv == CB_Q8_0)
            k_dec_fill<CB_Q8_0>
                <<<grid, 256, smem, c->stream>>>(d->kc, d->vc, d->row_bytes, layer_bytes, W, seed);
        else
            k_dec_fill<CB_Q4_0>
                <<<grid, 256, smem, c->stream>>>(d->kc, d->vc, d->row_bytes, layer_bytes, W, seed);
        CB_CU_LAUNCHED("decode fill");
    }
    CB_TRY(cb_cuda_memset0(d->tokens, sizeof(int32_t) * (size_t)(n + 1)));
    return set_state(d, n, n + 1);
}

extern "C" cb_status cb_cuda_dec_steps(cb_cuda_decoder *d, int64_t n) {
    CB_CU_CTX(c);
    if (n < 0 || d->pos + n > d->cfg.max_len)
        return cb_fail(CB_ERR_ARG,
                       "cuda decoder: %lld more steps from position %lld overflow the "
                       "cache of %lld",
                       (long long)n, (long long)d->pos, (long long)d->cfg.max_len);
    if (!d->exec && n > 0) {
        cudaGraph_t graph = nullptr;
        CB_TRY(cb_cu_check(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal),
                           "decode graph capture"));
        cb_status st = enqueue_step(d, c);
        cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
        if (st != CB_OK) {
            if (graph) cudaGraphDestroy(graph);
            return st;
        }
        CB_TRY(cb_cu_check(e, "decode graph capture"));
        e = cudaGraphInstantiate(&d->exec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess) {
            d->exec = nullptr;
            return cb_cu_check(e, "decode graph instantiate");
        }
    }
    for (int64_t i = 0; i < n; i++) {
        CB_TRY(cb_cu_check(cudaGraphLaunch(d->exec, c->stream), "decode graph launch"));
        d->pos++;
    }
    return CB_OK;
}

extern "C" cb_status cb_cuda_dec_tokens(cb_cuda_decoder *d, int64_t from, int64_t n, int32_t *out) {
    if (from < 0 || n < 0 || from + n > d->cfg.max_len + 1)
        return cb_fail(CB_ERR_ARG, "cuda decoder: tokens %lld..%lld out of range", (long long)from,
                       (long long)(from + n));
    return cb_cuda_copy(0, out, 1, d->tokens + from, sizeof(int32_t) * (size_t)n);
}

extern "C" cb_status cb_cuda_dec_logits(cb_cuda_decoder *d, float *out) {
    return cb_cuda_copy(0, out, 1, d->logits, sizeof(float) * (size_t)d->cfg.vocab);
}

extern "C" int64_t cb_cuda_dec_pos(const cb_cuda_decoder *d) {
    return d->pos;
}

extern "C" size_t cb_cuda_dec_cache_bytes(const cb_cuda_decoder *d, int64_t len) {
    return 2 * (size_t)d->cfg.n_layers * (size_t)len * d->row_bytes;
}

extern "C" cb_status cb_cuda_dec_cache_row(cb_cuda_decoder *d, int layer, int which, int64_t pos,
                                           void *out) {
    if (layer < 0 || layer >= d->cfg.n_layers || pos < 0 || pos >= d->cfg.max_len)
        return cb_fail(CB_ERR_ARG, "cuda decoder: no cache row %d/%lld", layer, (long long)pos);
    const uint8_t *base =
        (which ? d->vc : d->kc) + (size_t)layer * (size_t)d->cfg.max_len * d->row_bytes;
    return cb_cuda_copy(0, out, 1, base + (size_t)pos * d->row_bytes, d->row_bytes);
}

extern "C" cb_status cb_cuda_quantize_rows(int dtype, const float *x, int64_t rows, int64_t width,
                                           void *out) {
    CB_CU_CTX(c);
    if (width < 1 || width > INT32_MAX || rows < 0)
        return cb_fail(CB_ERR_ARG, "cuda quantize: bad shape");
    size_t rb = cb_quant_row_bytes((cb_dtype)dtype, width);
    if (!rows) return CB_OK;
    unsigned blocks = (unsigned)(rows < 65535 ? rows : 65535);
    if (dtype == CB_F16)
        k_quant_rows<CB_F16>
            <<<blocks, 256, 0, c->stream>>>(x, rows, (int)width, rb, (uint8_t *)out);
    else if (dtype == CB_Q8_0)
        k_quant_rows<CB_Q8_0>
            <<<blocks, 256, 0, c->stream>>>(x, rows, (int)width, rb, (uint8_t *)out);
    else if (dtype == CB_Q4_0)
        k_quant_rows<CB_Q4_0>
            <<<blocks, 256, 0, c->stream>>>(x, rows, (int)width, rb, (uint8_t *)out);
    else
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda quantize: %s", cb_dtype_name((cb_dtype)dtype));
    CB_CU_LAUNCHED("quantize rows");
    return CB_OK;
}

extern "C" cb_status cb_cuda_dec_write_kv(cb_cuda_decoder *d, int layer, int64_t pos0,
                                          const cb_tensor *k, const cb_tensor *v) {
    CB_CU_CTX(c);
    CB_CU_FLOATS("decode write_kv", k, v);
    int64_t W = (int64_t)d->cfg.n_kv_heads * d->cfg.head_dim;
    if (layer < 0 || layer >= d->cfg.n_layers)
        return cb_fail(CB_ERR_ARG, "cuda decoder: no layer %d", layer);
    if (cb_tensor_cols(k) != W || cb_tensor_cols(v) != W ||
        cb_tensor_rows(k) != cb_tensor_rows(v) || k->ndim != 3 || k->shape[0] != 1)
        return cb_fail(CB_ERR_SHAPE, "cuda decoder: keys/values must be [1, T, %lld]",
                       (long long)W);
    int64_t T = k->shape[1];
    if (pos0 < 0 || pos0 + T > d->cfg.max_len)
        return cb_fail(CB_ERR_ARG, "cuda decoder: positions %lld..%lld past the cache of %lld",
                       (long long)pos0, (long long)(pos0 + T), (long long)d->cfg.max_len);
    size_t layer_bytes = (size_t)d->cfg.max_len * d->row_bytes;
    for (int which = 0; which < 2 && T > 0; which++) {
        uint8_t *dst = (which ? d->vc : d->kc) + layer * layer_bytes + (size_t)pos0 * d->row_bytes;
        cb_tv x = cb_view(which ? v : k);
        unsigned blocks = (unsigned)(T < 65535 ? T : 65535);
        size_t smem = sizeof(float) * (size_t)W;
        if (d->kv == CB_F16)
            k_dec_write_rows<CB_F16>
                <<<blocks, 256, smem, c->stream>>>(x, T, (int)W, d->row_bytes, dst);
        else if (d->kv == CB_Q8_0)
            k_dec_write_rows<CB_Q8_0>
                <<<blocks, 256, smem, c->stream>>>(x, T, (int)W, d->row_bytes, dst);
        else
            k_dec_write_rows<CB_Q4_0>
                <<<blocks, 256, smem, c->stream>>>(x, T, (int)W, d->row_bytes, dst);
        CB_CU_LAUNCHED("decode write_kv");
    }
    return CB_OK;
}

extern "C" cb_status cb_cuda_dec_start(cb_cuda_decoder *d, const int32_t *prompt, int64_t n,
                                       const cb_tensor *last_logits) {
    CB_CU_CTX(c);
    if (n < 1 || n >= d->cfg.max_len)
        return cb_fail(CB_ERR_ARG, "cuda decoder: prompt of %lld tokens (cache holds %lld)",
                       (long long)n, (long long)d->cfg.max_len);
    CB_CU_FLOATS("decode start", last_logits);
    if (cb_tensor_numel(last_logits) < d->cfg.vocab)
        return cb_fail(CB_ERR_SHAPE, "cuda decoder: logits row shorter than the vocabulary");
    CB_TRY(cb_cuda_copy(1, d->tokens, 0, prompt, sizeof(int32_t) * (size_t)n));
    k_dec_start<<<1, 1024, 0, c->stream>>>(cb_view(last_logits), d->cfg.vocab, n, d->tokens,
                                           d->state);
    CB_CU_LAUNCHED("decode start");
    d->pos = n;
    d->prompt = n;
    return CB_OK;
}
