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
 *   cache:   k and v per layer and kv head: [max_len (padded)][seg_bytes], a segment = one
 *            token's hd values of that head in the cache format (f16, or q8_0 / q4_0 / nf4
 *            blocks of 32 laid out as caramba/quant.h; hd % 32 == 0 for the block formats, so a
 *            token's row of the CPU cache is its Hkv segments end to end). Head-major, unlike
 *            the CPU cache, so that a chunk of one head's keys is one contiguous run of bytes.
 *   state:   tokens [max_len + 1] i32, pos (i64): step t reads tokens[pos], appends k/v at pos,
 *            attends over [0, pos], writes argmax(logits) to tokens[pos + 1] unless that slot is
 *            still part of the prompt, then pos += 1.
 *
 * Per step, per layer: rmsnorm+QKV GEMV (layer 0's reads the token's embedding row itself);
 * split-K attention over the cache (grid kv-heads x chunks; every block covers the G query heads
 * that share its kv head, so each cache byte is read once) with RoPE, the cache append
 * (quantizing) and the combine of the chunks folded in; o-proj GEMV (+= residual), rmsnorm+gate/up
 * GEMV with SwiGLU, down GEMV (+= residual); then final rmsnorm + head GEMV with the greedy choice
 * folded in: 5 kernels per layer and one more per step. Every kernel is a programmatic dependent
 * launch (Hopper PDL) that lets its successor start at once: a GEMV loads its weights and a
 * chunk of attention its first key tile before waiting for its inputs, so the next kernels'
 * loads overlap the current kernel instead of following it.
 * GEMVs: one warp per output row, 16-byte weight loads, the input vector staged in shared memory
 * (normalised there when the rmsnorm is fused). Activations stay f32. */
#include <math.h>
#include <type_traits>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/mma.cuh"
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

/* The NF4 levels and the decision midpoints (L[k] + L[k+1]) * 0.5 in f32, spelled from the same
 * literals as the CPU quantizer (src/cache/quant.c) so both round the same way. */
#define NF4_L0 -1.0f
#define NF4_L1 -0.6961928009986877f
#define NF4_L2 -0.5250730514526367f
#define NF4_L3 -0.39491748809814453f
#define NF4_L4 -0.28444138169288635f
#define NF4_L5 -0.18477343022823334f
#define NF4_L6 -0.09105003625154495f
#define NF4_L7 0.0f
#define NF4_L8 0.07958029955625534f
#define NF4_L9 0.16093020141124725f
#define NF4_L10 0.24611230194568634f
#define NF4_L11 0.33791524171829224f
#define NF4_L12 0.44070982933044434f
#define NF4_L13 0.5626170039176941f
#define NF4_L14 0.7229568362236023f
#define NF4_L15 1.0f
__constant__ float c_nf4[16] = {NF4_L0,  NF4_L1,  NF4_L2,  NF4_L3, NF4_L4,  NF4_L5,
                                NF4_L6,  NF4_L7,  NF4_L8,  NF4_L9, NF4_L10, NF4_L11,
                                NF4_L12, NF4_L13, NF4_L14, NF4_L15};
#define NF4_MID(a, b) (((a) + (b)) * 0.5f)
__constant__ float c_nf4_mid[15] = {
    NF4_MID(NF4_L0, NF4_L1),   NF4_MID(NF4_L1, NF4_L2),   NF4_MID(NF4_L2, NF4_L3),
    NF4_MID(NF4_L3, NF4_L4),   NF4_MID(NF4_L4, NF4_L5),   NF4_MID(NF4_L5, NF4_L6),
    NF4_MID(NF4_L6, NF4_L7),   NF4_MID(NF4_L7, NF4_L8),   NF4_MID(NF4_L8, NF4_L9),
    NF4_MID(NF4_L9, NF4_L10),  NF4_MID(NF4_L10, NF4_L11), NF4_MID(NF4_L11, NF4_L12),
    NF4_MID(NF4_L12, NF4_L13), NF4_MID(NF4_L13, NF4_L14), NF4_MID(NF4_L14, NF4_L15)};

/* Bytes of one 32-value block of a block format: an f16 scale, then 32 int8 codes (q8_0) or 16
 * bytes of nibble pairs (q4_0, nf4), as caramba/quant.h lays them out. */
template <int KV> struct qblock { static constexpr int BYTES = KV == CB_Q8_0 ? 34 : 18; };

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
    } else if (KV == CB_NF4) { /* nearest level of x / absmax; a midpoint goes to the lower one */
        float amax = fabsf(x);
        for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        float y = amax > 0.0f ? __fdiv_rn(x, amax) : 0.0f;
        int c = 0;
#pragma unroll
        for (int k = 0; k < 15; k++) c += c_nf4_mid[k] < y;
        if (y != y) c = 7;
        int hi = __shfl_down_sync(0xffffffffu, c, 16);
        if (lane == 0) *(uint16_t *)dst = store_scale(amax);
        if (lane < 16) dst[2 + lane] = (uint8_t)(c | (hi << 4));
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

/* Writes one row of `width` values (x[i] for i < width, zero padding to whole blocks) in format
 * KV, with the warps of the calling block. The row is cut into heads of `hd` values (a multiple
 * of 32 for the block formats): head h's bytes go to dst + h * head_bytes, so a cache can keep
 * each kv head's rows contiguous (hd >= width: one contiguous row). */
template <int KV>
__device__ void quant_row(const float *x, int width, int hd, size_t head_bytes, uint8_t *dst,
                          int warp, int nwarps, int lane) {
    if (KV == CB_F16) {
        for (int i = warp * 32 + lane; i < width; i += nwarps * 32)
            ((__half *)(dst + (size_t)(i / hd) * head_bytes))[i % hd] = __float2half_rn(x[i]);
        return;
    }
    int nb = (width + 31) / 32, nbh = (hd + 31) / 32;
    const int bb = qblock<KV>::BYTES;
    for (int b = warp; b < nb; b += nwarps) {
        int i = b * 32 + lane, h = b / nbh;
        quant_block<KV>(i < width ? x[i] : 0.0f, dst + h * head_bytes + (size_t)(b - h * nbh) * bb,
                        lane);
    }
}

/* ---- the decoder's state ----------------------------------------------------------------------
 */

struct cb_cuda_decoder {
    cb_cuda_dec_cfg cfg;
    cb_cuda_dec_layer *layers; /* host copy */
    int kv;                    /* cache format (cb_dtype) */
    size_t row_bytes;          /* bytes of one cached token row, all kv heads */
    size_t seg_bytes;          /* bytes of one kv head's part of a row */
    size_t head_bytes;         /* a kv head's rows [max_len (padded)][seg_bytes] in one layer */
    int chunk, nch;            /* split-K: keys per block, blocks per kv head */
    float *x, *qkv, *att, *h, *logits, *pm, *pl, *pacc;
    unsigned *count;          /* [Hkv] finished chunks, for the attention's combine */
    unsigned long long *best; /* the head GEMV's packed argmax key (zero between steps) */
    unsigned *done;           /* its finished blocks (zero between steps) */
    int32_t *tokens;
    int64_t *state; /* [0] pos, [1] prompt length */
    uint8_t *kc, *vc;
    cudaGraphExec_t exec;
    int64_t pos, prompt; /* host mirrors */
    bool pdl;            /* programmatic dependent launch (CARAMBA_CUDA_NO_PDL=1 turns it off) */
    int gemv_cap;        /* GEMV grids: at most this many blocks per SM */
    size_t att_smem_min; /* attention blocks take at least this much shared memory */
};

/* ---- kernels ----------------------------------------------------------------------------------
 */

/* Programmatic dependent launch (Hopper): every kernel of a step is launched so that it may start
 * while its predecessor is still running. Before pdl_wait() a kernel may only read memory that
 * no kernel of the step writes (the weights); pdl_wait() returns once the predecessor has finished
 * and its writes are visible, so completion is transitive down the chain. pdl_launch() lets the
 * successor start its own prologue now. Both are no-ops for a kernel launched without the
 * attribute. */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

enum { GEMV_STORE = 0, GEMV_ADD = 1, GEMV_SWIGLU = 2 };

struct gemv_seg {
    const __nv_bfloat16 *W;
    float *y;
    int rows;
};

/* The step's first and last GEMVs absorb the embedding lookup and the greedy choice. */
struct gemv_step {
    int32_t *tokens; /* [max_len + 1] the token stream */
    int64_t *state;  /* [0] pos, [1] prompt length */
    cb_tv emb;       /* embedding [V, C] when the input is tokens[pos]'s row (else NULL) */
    float *x_out;    /* ... which block 0 also writes here (the residual stream) */
    int64_t vocab;
    unsigned long long *best; /* argmax over the output rows when non-NULL: a packed key */
    unsigned *done;           /* blocks finished, for the last one to write the choice */
};

struct gemv_args {
    const float *x;
    int C;
    const float *norm_w; /* fused rmsnorm when non-NULL */
    float eps;
    gemv_seg seg[3];
    int nseg, rows;
    gemv_step st;
};

#define GEMV_WARPS 8

/* 8 bf16 weights . 8 f32 inputs */
__device__ __forceinline__ float dot8(uint4 u, const float *x8) {
    const float4 xa = *(const float4 *)x8, xb = *(const float4 *)(x8 + 4);
    const __nv_bfloat162 *b = (const __nv_bfloat162 *)&u;
    float2 f0 = __bfloat1622float2(b[0]), f1 = __bfloat1622float2(b[1]);
    float2 f2 = __bfloat1622float2(b[2]), f3 = __bfloat1622float2(b[3]);
    return f0.x * xa.x + f0.y * xa.y + f1.x * xa.z + f1.y * xa.w + f2.x * xb.x + f2.y * xb.y +
           f3.x * xb.z + f3.y * xb.w;
}

__device__ __forceinline__ int gemv_locate(const gemv_args &a, int r, int *lr) {
    int s = 0;
    *lr = r;
    while (s + 1 < a.nseg && *lr >= a.seg[s].rows) *lr -= a.seg[s++].rows;
    return s;
}

/* Folds the warps' first maxima (lane 0 of warp w holds (best, idx)) into thread 0's (best, idx):
 * the larger value, the smaller index among equals. Every thread of the block must call it. */
__device__ __forceinline__ void fold_warp_firsts(float &best, int64_t &idx) {
    __shared__ float bv[32];
    __shared__ int64_t bi[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) bv[w] = best, bi[w] = idx;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (bv[k] > best || (bv[k] == best && bi[k] < idx)) best = bv[k], idx = bi[k];
}

/* Order-preserving 32-bit key of a float (larger float, larger key); -0 counts as +0. */
__device__ __forceinline__ unsigned ordered_key(float v) {
    unsigned u = __float_as_uint(v == 0.f ? 0.f : v);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* The greedy choice across the grid: each block folds its warps' first maxima (lane 0 of each
 * warp holds one) into one packed key, (value key << 32 | ~row), whose atomic maximum is the
 * first row holding the largest value; NaN and -inf never win (as block_argmax). The last block
 * to finish writes the choice to tokens[pos + 1] unless that is still a prompt token, advances
 * pos and clears the key and the counter for the next step. */
__device__ void gemv_choose(const gemv_step &st, float best, int64_t best_i) {
    fold_warp_firsts(best, best_i);
    if (threadIdx.x == 0) {
        if (best_i < st.vocab && best > -INFINITY)
            atomicMax(st.best, (unsigned long long)ordered_key(best) << 32 |
                                   (0xFFFFFFFFu - (unsigned)best_i));
        __threadfence();
        if (atomicAdd(st.done, 1u) == gridDim.x - 1) { /* the last block */
            unsigned long long key = atomicExch(st.best, 0ull);
            int64_t idx = key ? (int64_t)(0xFFFFFFFFu - (unsigned)(key & 0xFFFFFFFFu)) : 0;
            int64_t pos = st.state[0];
            if (pos + 1 >= st.state[1]) st.tokens[pos + 1] = (int32_t)idx;
            st.state[0] = pos + 1;
            *st.done = 0;
        }
    }
}

/* Weight chunks (16 bytes) per lane of one group, and matrices read per row. */
template <int MODE> struct gemv_cfg {
    static constexpr int NM = MODE == GEMV_SWIGLU ? 2 : 1; /* gate and up side by side */
    static constexpr int PF = 8 / NM;                      /* 8 chunks a lane in flight per group */
};

/* One group of a warp's row: chunks [g * 32 * PF, (g + 1) * 32 * PF) of row r of each matrix. */
template <int MODE>
__device__ __forceinline__ void gemv_load(const gemv_args &a, int r, int g, int nchunk, int lane,
                                          uint4 (&dst)[gemv_cfg<MODE>::NM][gemv_cfg<MODE>::PF]) {
    constexpr int NM = gemv_cfg<MODE>::NM, PF = gemv_cfg<MODE>::PF;
    int lr = r, s = MODE == GEMV_SWIGLU ? 0 : gemv_locate(a, r, &lr);
    int c0 = g * 32 * PF + lane;
#pragma unroll
    for (int m = 0; m < NM; m++) {
        const uint4 *w = (const uint4 *)(a.seg[s + m].W + (size_t)lr * a.C) + c0;
#pragma unroll
        for (int k = 0; k < PF; k++)
            if (c0 + 32 * k < nchunk) dst[m][k] = __ldg(w + 32 * k);
    }
}

/* The GEMV's input [C] into shared memory xs (the current token's embedding row in layer 0,
 * which block 0 also writes to the residual stream); returns this thread's sum of squares.
 * A thread issues all the loads of a round (8 float4, 32 values) before its first store: the
 * input comes from L2, and a loop of dependent load-store pairs would pay its latency C / 1024
 * times (8 round trips for d_ff 8192). C % 8 == 0. */
__device__ __forceinline__ float gemv_stage_x(const gemv_args &a, float *xs) {
    constexpr int R = 8;
    int C = a.C, n4 = C / 4, tid = threadIdx.x, nt = blockDim.x;
    float ss = 0.f;
    if (a.st.emb.p) {
        int64_t tok = a.st.tokens[a.st.state[0]];
        if (tok < 0 || tok >= a.st.vocab) tok = 0; /* checked on the host; never out of range */
        for (int b = 0; b < C; b += R * nt) {
            float v[R];
#pragma unroll
            for (int k = 0; k < R; k++) {
                int i = b + k * nt + tid;
                v[k] = i < C ? cb_ld(a.st.emb, tok * C + i) : 0.f;
            }
#pragma unroll
            for (int k = 0; k < R; k++) {
                int i = b + k * nt + tid;
                if (i < C) {
                    xs[i] = v[k];
                    ss += v[k] * v[k];
                    if (blockIdx.x == 0) a.st.x_out[i] = v[k];
                }
            }
        }
        return ss;
    }
    const float4 *x4 = (const float4 *)a.x;
    float4 *xs4 = (float4 *)xs;
    for (int b = 0; b < n4; b += R * nt) {
        float4 v[R];
#pragma unroll
        for (int k = 0; k < R; k++) {
            int i = b + k * nt + tid;
            if (i < n4) v[k] = __ldcg(x4 + i); /* written by the previous kernel: L2, not L1 */
        }
#pragma unroll
        for (int k = 0; k < R; k++) {
            int i = b + k * nt + tid;
            if (i < n4) {
                xs4[i] = v[k];
                ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
            }
        }
    }
    return ss;
}

/* y = W . x (per segment), one warp per row; C % 8 == 0 (16-byte rows). In SWIGLU mode segment 0
 * is the gate and segment 1 the up projection (same rows) and y0[r] = silu(g) * u.
 * A warp walks its rows (r0, r0 + stride, ...) in groups of 32 * PF chunks and always has the
 * next group's loads in flight while it computes on the current one, across row ends too: wide
 * rows (d_ff 8192) and many rows per warp (the head) stream at the rate of a short one. The
 * first group is loaded before pdl_wait(), i.e. while the previous kernels of the step still run:
 * at batch 1 a small model's layer is a few MB, each GEMV's share of the step is the latency of
 * its loads, and this moves them off the critical path. */
template <int MODE> __global__ void __launch_bounds__(GEMV_WARPS * 32) k_gemv(gemv_args a) {
    constexpr int NM = gemv_cfg<MODE>::NM, PF = gemv_cfg<MODE>::PF;
    extern __shared__ float4 xs4[]; /* float4: 16-byte aligned for the vector reads below */
    float *xs = (float *)xs4;       /* [C] the input, then normalised */
    float *ws = xs + a.C;           /* [C] the rmsnorm weight when fused */
    __shared__ float red[32];
    int C = a.C, nchunk = C / 8, gpr = (nchunk + 32 * PF - 1) / (32 * PF);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r0 = blockIdx.x * GEMV_WARPS + warp, stride = gridDim.x * GEMV_WARPS;
    uint4 b0[NM][PF], b1[NM][PF];
    pdl_launch(); /* the next kernels may start prefetching too: HBM stays busy across kernels */
    if (r0 < a.rows) gemv_load<MODE>(a, r0, 0, nchunk, lane, b0);
    /* the norm weight is a weight too: staged before the wait (each thread its own elements) */
    if (a.norm_w)
        for (int i = threadIdx.x; i < C; i += blockDim.x) ws[i] = __ldg(a.norm_w + i);
    pdl_wait();
    /* the residual this warp's first row adds to, read now so its latency overlaps the input's */
    float old0 = 0.f;
    if (MODE == GEMV_ADD && lane == 0 && r0 < a.rows) {
        int lr0, s0 = gemv_locate(a, r0, &lr0);
        old0 = a.seg[s0].y[lr0];
    }
    /* each thread loads, squares and normalises its own elements: one barrier fewer */
    float ss = gemv_stage_x(a, xs);
    if (a.norm_w) {
        ss = cb_block_sum(ss, red);
        float r = rsqrtf(ss / (float)C + a.eps);
        for (int i = threadIdx.x; i < C; i += blockDim.x) xs[i] = xs[i] * r * ws[i];
    }
    __syncthreads();
    float best = -INFINITY; /* greedy choice: this warp's first maximum (lane 0) */
    int64_t best_i = a.rows;
    float acc[NM] = {};
    int r = r0, g = 0;
    /* one group: the next one's loads into nb, then the dot products over cb (two named buffers
     * that swap roles, so that the arrays stay in registers) */
    auto group = [&](const uint4(&cb)[NM][PF], uint4(&nb)[NM][PF]) {
        int rn = r, gn = g + 1;
        if (gn == gpr) gn = 0, rn = r + stride;
        if (rn < a.rows) gemv_load<MODE>(a, rn, gn, nchunk, lane, nb);
        int c0 = g * 32 * PF + lane;
#pragma unroll
        for (int k = 0; k < PF; k++)
            if (c0 + 32 * k < nchunk)
#pragma unroll
                for (int m = 0; m < NM; m++)
                    acc[m] += dot8(cb[m][k], xs + (size_t)(c0 + 32 * k) * 8);
        if (gn == 0) { /* the row is complete */
#pragma unroll
            for (int m = 0; m < NM; m++) acc[m] = cb_warp_sum(acc[m]);
            if (lane == 0) {
                int lr = r, s = MODE == GEMV_SWIGLU ? 0 : gemv_locate(a, r, &lr);
                float *y = a.seg[s].y;
                if (MODE == GEMV_STORE) {
                    y[lr] = acc[0];
                    if (acc[0] > best) best = acc[0], best_i = r; /* rows ascend: the first stays */
                } else if (MODE == GEMV_ADD)
                    y[lr] = (r == r0 ? old0 : y[lr]) + acc[0];
                else
                    y[lr] = acc[0] / (1.f + __expf(-acc[0])) * acc[NM - 1];
            }
#pragma unroll
            for (int m = 0; m < NM; m++) acc[m] = 0.f;
        }
        r = rn, g = gn;
    };
    while (r < a.rows) {
        group(b0, b1);
        if (r >= a.rows) break;
        group(b1, b0);
    }
    if (MODE == GEMV_STORE && a.st.best) gemv_choose(a.st, best, best_i);
}

/* Threads of an attention block = cache rows per tile, per cache format. Measured on an H100 at
 * 16k and 64k keys (bench/RESULTS-cuda.md E14): the quantized formats ran 3-13% faster per step
 * with 256-row tiles at 2 blocks per SM than with 128-row tiles at 4 (fewer, longer chunks and
 * twice the rows in flight per block); f16 rows need ~250 registers a thread, so 128. */
template <int KV> struct att_cfg {
    static constexpr int T = KV == CB_F16 ? 128 : 256;
    /* the register budget: two blocks per SM (the split-K's plan, cb_cuda_dec_new) for head
     * sizes up to 64, the quantized formats' 256 threads at most 128 registers each (left to
     * itself the compiler took 64 and spilled); head size 128 needs more, one block */
    static constexpr int min_blocks(int HD) {
        return HD <= 64 ? 2 : 1;
    }
};
static int att_threads(int kv) {
    return kv == CB_F16 ? att_cfg<CB_F16>::T
                        : att_cfg<CB_Q8_0>::T; /* the quantized formats: one T */
}

/* One head's segment of a cached row: SB bytes in global memory (4-byte aligned when SB % 4 ==
 * 0), staged in shared memory at a stride of SBS bytes (a multiple of 4 with an odd word count,
 * so one thread per row reads without bank conflicts). */
template <int KV, int HD> struct kv_seg {
    static constexpr int SB = KV == CB_F16 ? HD * 2 : HD / 32 * qblock<KV>::BYTES;
    static constexpr int SB4 = (SB + 3) / 4 * 4;
    static constexpr int SBS = (SB4 / 4) % 2 ? SB4 : SB4 + 4;
};

/* A tile of up to att_cfg<KV>::T cache rows (one kv head's rows are contiguous, SB bytes each)
 * moves global -> registers -> shared memory (row stride SBS) in two steps, so the loads of the
 * next tile are in flight while the current one is computed on. Formats staged at their own row
 * size (SBS == SB: HD 64 q8_0 / q4_0 / nf4) copy the tile's bytes as they are, 16 at a time
 * (a partial tile reads up to 15 bytes past its last row: the head's rows are padded); the others
 * move words of 4 bytes when SB allows, else 2. Thread t moves words t, t + T, ... of the tile:
 * consecutive threads read consecutive bytes. */
template <int KV, int HD> struct tile_io {
    static constexpr int ATT_THREADS = att_cfg<KV>::T;
    static constexpr int SB = kv_seg<KV, HD>::SB, SBS = kv_seg<KV, HD>::SBS;
    static constexpr bool DENSE = SBS == SB && (ATT_THREADS * SB) % 16 == 0;
    static constexpr bool W4 = SB % 4 == 0;
    typedef typename std::conditional<
        DENSE, uint4, typename std::conditional<W4, unsigned int, unsigned short>::type>::type word;
    static constexpr int WB = sizeof(word);
    /* words per thread: a whole tile's over the block (dense), else a row's */
    static constexpr int W =
        DENSE ? (ATT_THREADS * SB / 16 + ATT_THREADS - 1) / ATT_THREADS : SB / WB;
    word r[W];

    __device__ __forceinline__ void fetch(const uint8_t *rows0, int rows) {
        int words = DENSE ? (rows * SB + 15) / 16 : rows * W;
#pragma unroll
        for (int k = 0; k < W; k++) {
            int i = threadIdx.x + k * ATT_THREADS;
            if (i < words) r[k] = ((const word *)rows0)[i];
        }
    }
    __device__ __forceinline__ void store(uint8_t *tile, int rows) const {
        int words = DENSE ? (rows * SB + 15) / 16 : rows * W;
#pragma unroll
        for (int k = 0; k < W; k++) {
            int i = threadIdx.x + k * ATT_THREADS;
            if (DENSE) {
                if (i < words) ((word *)tile)[i] = r[k];
            } else {
                int row = i / W, w = i - row * W;
                if (row < rows) *(word *)(tile + row * SBS + WB * w) = r[k];
            }
        }
    }
};

/* Byte k (0 or 1) of w as an exact float, minus `bias`, without an int-to-float conversion
 * (I2F issues at a quarter of the FFMA rate and bounded the quantized attention): the byte
 * becomes the low mantissa byte of 2^23, and one FADD removes 2^23 + bias. Codes: q8_0 stores
 * int8 (pass w ^ 0x8080, bias 128), q4_0 nibbles in 0..15 (bias 8). */
template <int K> __device__ __forceinline__ float byte_f(uint32_t w, float bias) {
    return __int_as_float((int)__byte_perm(w, 0x4B000000u, 0x7650 + K)) - (8388608.0f + bias);
}

/* Values [32 b, 32 b + 32) of a staged head segment as codes; returns the block's scale
 * (value = code * scale; f16: the values and 1), so the dot products multiply once per block. */
template <int KV>
__device__ __forceinline__ float seg_span32(const uint8_t *row, int b, float *out,
                                            const float *lut) {
    if (KV == CB_F16) {
        const uint32_t *p = (const uint32_t *)(row + 64 * b);
#pragma unroll
        for (int k = 0; k < 16; k++) {
            float2 f = __half22float2(*(const __half2 *)&p[k]);
            out[2 * k] = f.x;
            out[2 * k + 1] = f.y;
        }
        return 1.f;
    } else if (KV == CB_Q8_0) {
        const uint8_t *blk = row + 34 * b;
        const uint16_t *qs = (const uint16_t *)(blk + 2);
#pragma unroll
        for (int k = 0; k < 16; k++) {
            uint32_t w = (uint32_t)qs[k] ^ 0x8080u;
            out[2 * k] = byte_f<0>(w, 128.f);
            out[2 * k + 1] = byte_f<1>(w, 128.f);
        }
        return __half2float(__ushort_as_half(*(const uint16_t *)blk));
    } else if (KV == CB_NF4) { /* codes to levels through the block's shared-memory table */
        const uint8_t *blk = row + 18 * b;
        const uint16_t *qs = (const uint16_t *)(blk + 2);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            uint32_t w = qs[k];
            out[2 * k] = lut[w & 15];
            out[2 * k + 1] = lut[(w >> 8) & 15];
            out[16 + 2 * k] = lut[(w >> 4) & 15];
            out[16 + 2 * k + 1] = lut[w >> 12];
        }
        return __half2float(__ushort_as_half(*(const uint16_t *)blk));
    } else {
        const uint8_t *blk = row + 18 * b;
        const uint16_t *qs = (const uint16_t *)(blk + 2);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            uint32_t w = qs[k], lo = w & 0x0F0Fu, hi = (w >> 4) & 0x0F0Fu;
            out[2 * k] = byte_f<0>(lo, 8.f);
            out[2 * k + 1] = byte_f<1>(lo, 8.f);
            out[16 + 2 * k] = byte_f<0>(hi, 8.f);
            out[16 + 2 * k + 1] = byte_f<1>(hi, 8.f);
        }
        return __half2float(__ushort_as_half(*(const uint16_t *)blk));
    }
}

/* Values [e, e + 4) (e % 4 == 0) of a staged head segment as codes; returns their scale. */
template <int KV>
__device__ __forceinline__ float seg_quad(const uint8_t *row, int e, float *v, const float *lut) {
    if (KV == CB_F16) {
        const uint32_t *p = (const uint32_t *)(row + 2 * e);
        float2 a = __half22float2(*(const __half2 *)&p[0]),
               b = __half22float2(*(const __half2 *)&p[1]);
        v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
        return 1.f;
    }
    int blkno = e >> 5, i = e & 31;
    const uint8_t *blk = row + qblock<KV>::BYTES * blkno;
    float d = __half2float(__ushort_as_half(*(const uint16_t *)blk));
    if (KV == CB_Q8_0) {
        const uint16_t *q = (const uint16_t *)(blk + 2 + i);
        uint32_t w0 = (uint32_t)q[0] ^ 0x8080u, w1 = (uint32_t)q[1] ^ 0x8080u;
        v[0] = byte_f<0>(w0, 128.f), v[1] = byte_f<1>(w0, 128.f);
        v[2] = byte_f<0>(w1, 128.f), v[3] = byte_f<1>(w1, 128.f);
    } else {
        const uint16_t *q = (const uint16_t *)(blk + 2 + (i & 15));
        int sh = i < 16 ? 0 : 4;
        uint32_t w0 = ((uint32_t)q[0] >> sh) & 0x0F0Fu, w1 = ((uint32_t)q[1] >> sh) & 0x0F0Fu;
        if (KV == CB_NF4) {
            v[0] = lut[w0 & 15], v[1] = lut[w0 >> 8], v[2] = lut[w1 & 15], v[3] = lut[w1 >> 8];
        } else {
            v[0] = byte_f<0>(w0, 8.f), v[1] = byte_f<1>(w0, 8.f);
            v[2] = byte_f<0>(w1, 8.f), v[3] = byte_f<1>(w1, 8.f);
        }
    }
    return d;
}

/* ---- tensor-core scoring and P . V for the block formats ------------------------------------
 * On CUDA cores the quantized attention was bound by instructions (per value: a dequantize and
 * G FMAs, per pass), not by bytes. Here mma.m16n8k16 (f16 operands, f32 accumulation) does the
 * products, its operands built straight from the staged tile's bytes: the codes (q8_0 int8, q4_0
 * nibble - 8) become exact f16 and the f32 block scales are applied outside the mma:
 *   scores S [keys x G] = sum over 32-dimension blocks b of scale[key][b] x (Kcodes_b . q_b^T)
 *   O^T [HD x G] += Vcodes^T [HD x keys] . P'^T [keys x G], P' = P x scale[key][block of the
 *   dimension], rounded to f16 (P <= 1, so P' stays within the range of the f16 scale).
 * Query heads pad to the mma's 8 columns (G <= 8); HD = 64. Taken for q8_0 and q4_0: measured on
 * an H100 (1b shape, 64k keys) q8_0 steps ran 1856 -> 1777 us and q4_0 1703 -> 1608 us (q4_0 only
 * once its blocks were held to two per SM, see cb_cuda_dec_new); nf4 (a table lookup per code)
 * keeps the CUDA-core passes: 1780 -> 2019 us before that cap, not measured since. */
template <int KV, int HD, int G> struct mma_cfg {
    static constexpr bool ON = (KV == CB_Q8_0 || KV == CB_Q4_0) && HD == 64 && G <= 8;
    static constexpr int NB = HD / 32;
};

/* The attention kernel's dynamic shared memory, for the kernel and the host that sizes it:
 * qs [G][HD], sc [G][SCW] scores (then combine weights), red [NR][G][HD] partial outputs, kvrow
 * [2][HD] the new k and v, ph [PH] P' (tensor-core path, f16), tile [T][SBS]. SCW is a multiple of
 * 4, so every part starts 16-byte aligned. */
template <int KV, int HD, int G> struct att_smem {
    static constexpr int T = att_cfg<KV>::T, NG = T / (HD / 4), NP = HD >= T ? 1 : T / HD;
    static constexpr int NSPLIT = mma_cfg<KV, HD, G>::ON ? 8 / (HD / 16) : NG; /* partials */
    static constexpr int NR = NSPLIT > NP ? NSPLIT : NP;
    static constexpr int PH = mma_cfg<KV, HD, G>::ON ? mma_cfg<KV, HD, G>::NB * G * T : 0;
    __host__ __device__ static int scw(int chunk, int nch) {
        return ((chunk > nch ? chunk : nch) + 3) & ~3;
    }
    static size_t bytes(int chunk, int nch) {
        size_t floats = (size_t)G * HD + (size_t)G * scw(chunk, nch) + (size_t)NR * G * HD + 2 * HD;
        return sizeof(float) * floats + sizeof(__half) * PH + (size_t)T * kv_seg<KV, HD>::SBS;
    }
};

/* Two codes as an exact half2, from bytes 0 and 2 of w (bytes 1 and 3 zero), in one LOP3 and one
 * half2 op: the code becomes low mantissa bits of 1024 (0x64XX) and the op removes 1024 and the
 * bias. q8_0: int8 ^ 0x80; q4_0 low nibbles; q4_0 high nibbles, which land as 16 x the code and
 * are scaled back exactly (x / 16 - 72 = code - 8). */
__device__ __forceinline__ uint32_t i8_h2(uint32_t w) {
    uint32_t u = (w ^ 0x00800080u) | 0x64006400u;
    __half2 r = __hsub2(*(const __half2 *)&u, __float2half2_rn(1152.f));
    return *(const uint32_t *)&r;
}
__device__ __forceinline__ uint32_t nib_lo_h2(uint32_t w) {
    uint32_t u = (w & 0x000F000Fu) | 0x64006400u;
    __half2 r = __hsub2(*(const __half2 *)&u, __float2half2_rn(1032.f));
    return *(const uint32_t *)&r;
}
__device__ __forceinline__ uint32_t nib_hi_h2(uint32_t w) {
    uint32_t u = (w & 0x00F000F0u) | 0x64006400u;
    __half2 r = __hfma2(*(const __half2 *)&u, __float2half2_rn(0.0625f), __float2half2_rn(-72.f));
    return *(const uint32_t *)&r;
}

/* Codes of dimensions (e, e + 1) of block b of a staged q8_0 / q4_0 row (e even, < 32), as a
 * half2. */
template <int KV> __device__ __forceinline__ uint32_t row_pair(const uint8_t *row, int b, int e) {
    constexpr int BB = qblock<KV>::BYTES;
    const uint8_t *q = row + BB * b + 2;
    /* q4_0: byte j holds element j (low) and j + 16 (high); the load is shared by both */
    uint32_t w = __byte_perm(*(const uint16_t *)(q + (KV == CB_Q8_0 ? e : e & 15)), 0u, 0x4140);
    if (KV == CB_Q8_0) return i8_h2(w);
    return e < 16 ? nib_lo_h2(w) : nib_hi_h2(w);
}

/* Row r (0..15) of the value-tile mma of a warp's slice mt (A rows = dimensions): q8_0 takes
 * dimensions 16 mt .. 16 mt + 15; q4_0 pairs rows r and r + 8 on the low and high nibbles of one
 * byte (dimensions j and j + 16 of a block), so one byte load feeds two rows. */
template <int KV> __device__ __forceinline__ int pv_dim(int mt, int r) {
    if (KV == CB_Q4_0) return 32 * (mt / 2) + 8 * (mt % 2) + (r & 7) + (r < 8 ? 0 : 16);
    return 16 * mt + r;
}

__device__ __forceinline__ float row_scale(const uint8_t *row, int bb) {
    return __half2float(__ushort_as_half(*(const uint16_t *)(row + bb)));
}

/* Scores of a staged key tile's rows [0, rows) for the G heads: warp w takes the 16-row slices
 * w, w + 8, ... (8 warps); qb [HD / 16][2] are the B fragments of the scaled query heads.
 * Writes sc[g * scw + t0 + row] and raises mx[0..1] to the largest score written of heads
 * 2 (lane % 4) and + 1. Rows past `rows` are computed on stale bytes and dropped (an mma row
 * depends on its own A row only). */
template <int KV, int HD, int G>
__device__ __forceinline__ void mma_scores(const uint8_t *tile, int SBS,
                                           const uint32_t (&qb)[HD / 16][2], int rows, float *sc,
                                           int scw, int t0, float (&mx)[2], int warp, int lane) {
    constexpr int NB = HD / 32, BB = qblock<KV>::BYTES;
    int g = lane >> 2, t2 = (lane & 3) * 2;
    for (int r0 = warp * 16; r0 < rows; r0 += 128) {
        const uint8_t *ra = tile + (r0 + g) * SBS, *rb = ra + 8 * SBS;
        float out[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int b = 0; b < NB; b++) {
            float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int s = 0; s < 2; s++) {
                int e = 16 * s + t2;
                uint32_t a[4] = {row_pair<KV>(ra, b, e), row_pair<KV>(rb, b, e),
                                 row_pair<KV>(ra, b, e + 8), row_pair<KV>(rb, b, e + 8)};
                cb_mma_f16(acc, a, qb[2 * b + s][0], qb[2 * b + s][1]);
            }
            float da = row_scale(ra, BB * b), db = row_scale(rb, BB * b);
            out[0] += da * acc[0], out[1] += da * acc[1];
            out[2] += db * acc[2], out[3] += db * acc[3];
        }
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int gg = t2 + (k & 1), r = r0 + g + (k < 2 ? 0 : 8);
            if (gg < G && r < rows) {
                sc[gg * scw + t0 + r] = out[k];
                mx[k & 1] = fmaxf(mx[k & 1], out[k]);
            }
        }
    }
}

/* O^T [HD x G] += Vcodes^T . P'^T over a staged value tile's keys [0, rows): warp w takes the
 * 16 dimensions pv_dim(w % 4, 0..15) and the keys of half w / 4 (8 warps, HD = 64); ph [NB][G][T]
 * holds P' (zero past `rows`). o: c[0..1] (dimension pv_dim(w % 4, lane / 4), heads 2 (lane % 4)
 * ..), c[2..3] (dimension pv_dim(w % 4, lane / 4 + 8)). The two keys of an A register come from
 * two rows: their bytes are paired by one PRMT. */
template <int KV, int HD, int G, int T>
__device__ __forceinline__ void mma_pv(const uint8_t *tile, int SBS, const __half *ph, int rows,
                                       float (&o)[4], int warp, int lane) {
    constexpr int MT = HD / 16, KP = 8 / MT, KS = T / KP, BB = qblock<KV>::BYTES;
    int mt = warp % MT, kp = warp / MT, g = lane >> 2, t2 = (lane & 3) * 2;
    int dlo = pv_dim<KV>(mt, g), dhi = pv_dim<KV>(mt, g + 8), b = dlo / 32;
    /* byte offsets in a row of rows g and g + 8 (q4_0: one byte serves both) */
    int olo = BB * b + 2 + (KV == CB_Q8_0 ? dlo % 32 : dlo % 16), ohi = BB * b + 2 + dhi % 32;
    const __half *prow = ph + (size_t)(b * G + (g < G ? g : 0)) * T + t2;
    for (int k0 = kp * KS; k0 < kp * KS + KS && k0 < rows; k0 += 16) {
        const uint8_t *r0 = tile + (k0 + t2) * SBS, *r1 = r0 + SBS, *r8 = r0 + 8 * SBS,
                      *r9 = r8 + SBS;
        uint32_t a[4];
        if (KV == CB_Q8_0) {
            a[0] = i8_h2(__byte_perm(r0[olo], r1[olo], 0x5410));
            a[1] = i8_h2(__byte_perm(r0[ohi], r1[ohi], 0x5410));
            a[2] = i8_h2(__byte_perm(r8[olo], r9[olo], 0x5410));
            a[3] = i8_h2(__byte_perm(r8[ohi], r9[ohi], 0x5410));
        } else {
            uint32_t w01 = __byte_perm(r0[olo], r1[olo], 0x5410);
            uint32_t w89 = __byte_perm(r8[olo], r9[olo], 0x5410);
            a[0] = nib_lo_h2(w01), a[1] = nib_hi_h2(w01);
            a[2] = nib_lo_h2(w89), a[3] = nib_hi_h2(w89);
        }
        uint32_t b0 = g < G ? *(const uint32_t *)(prow + k0) : 0u;
        uint32_t b1 = g < G ? *(const uint32_t *)(prow + k0 + 8) : 0u;
        cb_mma_f16(o, a, b0, b1);
    }
}

/* RoPE of element e of one head (pairs (i, i + P), i < P; the rest unrotated) at a position
 * whose tables are cr / sr [P]. */
__device__ __forceinline__ float rope_elem(const float *h, int e, int P, const float *cr,
                                           const float *sr) {
    if (e >= 2 * P) return h[e];
    return e < P ? h[e] * cr[e] - h[e + P] * sr[e] : h[e] * cr[e - P] + h[e - P] * sr[e - P];
}

/* Split-K attention over the cache for one kv head and one chunk of keys, with the step's RoPE,
 * cache append and the combine of the partials folded in (three launches per layer fewer).
 *   qkv [H*HD | Hkv*HD | Hkv*HD] f32 (un-rotated, as the QKV GEMV wrote them); cs/sn [rows][P]
 *   kc/vc [Hkv][head_bytes] this layer's cache (a head's rows [max_len][SB] at the start of its
 *   head_bytes); keys [0, pos] are visible, pos = state[0]
 *   pm/pl [H][nch] (max in the log2 domain, sum), pacc [H][nch][HD]: the chunks' partials
 *   count [Hkv]: finished chunks per kv head (zero between launches); att [H*HD] the output
 * grid (Hkv, nch) where chunks past the cache return at once; block att_cfg<KV>::T.
 * Every block rotates the G query heads it serves; the block whose chunk holds pos rotates that
 * token's k, appends k and v to the cache (quantized exactly as quant_row) and reads them back
 * like any other row. Pass 1 stages T key rows at a time in shared memory (the head's rows are
 * contiguous bytes, moved through registers a tile ahead by tile_io; the first value tile loads
 * during the last key tile) and scores them for the G query heads (tensor cores, or a thread per
 * key); pass 2 stages value rows the same way and accumulates P . V. The last block of a kv head to
 * finish (a counter, after a fence) combines the partials. */
template <int KV, int HD, int G>
__global__ void __launch_bounds__(att_cfg<KV>::T, att_cfg<KV>::min_blocks(HD))
    k_dec_attn(const float *qkv, const int64_t *state, const float *cs, const float *sn, int P,
               int H, int Hkv, uint8_t *kc, uint8_t *vc, size_t head_bytes, int chunk, int nch,
               float scale_log2, float *pm, float *pl, float *pacc, unsigned *count, float *att) {
    constexpr int ATT_THREADS = att_cfg<KV>::T; /* = keys per tile */
    constexpr int SB = kv_seg<KV, HD>::SB, SBS = kv_seg<KV, HD>::SBS;
    constexpr int Q = HD / 4, NG = ATT_THREADS / Q;
    typedef mma_cfg<KV, HD, G> MC;
    typedef att_smem<KV, HD, G> SM;
    constexpr int NB = MC::NB, BB = qblock<KV>::BYTES, NP = SM::NP, NSPLIT = SM::NSPLIT;
    static_assert(!MC::ON || ATT_THREADS == 256,
                  "the tensor-core passes split a tile over 8 warps");
    extern __shared__ float4 sm4[];
    const int scw = SM::scw(chunk, nch);
    float *qs = (float *)sm4;                 /* [G][HD] */
    float *sc = qs + G * HD;                  /* [G][scw] scores, then combine weights */
    float *red = sc + G * scw;                /* [NR][G][HD] */
    float *kvrow = red + SM::NR * G * HD;     /* [2][HD] the new k and v (owner block) */
    __half *ph = (__half *)(kvrow + 2 * HD);  /* tensor-core path: P' [NB][G][T] */
    uint8_t *tile = (uint8_t *)(ph + SM::PH); /* [T][SBS] */
    __shared__ int last;
    __shared__ float lut[16]; /* nf4 levels (published by the first tile's barrier) */
    int kvh = blockIdx.x, c = blockIdx.y, tid = threadIdx.x;
    kc += kvh * head_bytes, vc += kvh * head_bytes; /* this kv head's rows */
    if (KV == CB_NF4 && tid < 16) lut[tid] = c_nf4[tid];
    pdl_launch();
    /* pos was written by the previous step (an earlier graph launch), and rows before pos by
     * earlier steps: a chunk without the current token loads its first key tile before the
     * wait, while the QKV GEMV still runs */
    int64_t pos = state[0], len = pos + 1;
    int nact = (int)((len + chunk - 1) / chunk);
    if (c >= nact) { /* past the cache */
        pdl_wait();
        return;
    }
    int64_t s0 = (int64_t)c * chunk, s1 = s0 + chunk < len ? s0 + chunk : len;
    int n = (int)(s1 - s0);
    bool owner = s1 == len; /* this chunk holds the current token */
    tile_io<KV, HD> io;
    if (!owner) io.fetch(kc + (size_t)s0 * SB, n < ATT_THREADS ? n : ATT_THREADS);
    /* the rotation at pos is a table row: staged before the wait too */
    __shared__ float cr[HD / 2], sr[HD / 2];
    for (int i = tid; i < P; i += ATT_THREADS) cr[i] = cs[pos * P + i], sr[i] = sn[pos * P + i];
    pdl_wait();
    __syncthreads();
    for (int i = tid; i < G * HD; i += ATT_THREADS) {
        int e = i % HD;
        qs[i] = rope_elem(qkv + (size_t)kvh * G * HD + (i - e), e, P, cr, sr) * scale_log2;
    }
    if (owner) {
        const float *kh = qkv + (size_t)(H + kvh) * HD, *vh = qkv + (size_t)(H + Hkv + kvh) * HD;
        for (int e = tid; e < HD; e += ATT_THREADS) {
            kvrow[e] = rope_elem(kh, e, P, cr, sr);
            kvrow[HD + e] = vh[e];
        }
        __syncthreads();
        uint8_t *kd = kc + (size_t)pos * SB, *vd = vc + (size_t)pos * SB;
        if (KV == CB_F16) {
            for (int e = tid; e < HD; e += ATT_THREADS) {
                ((__half *)kd)[e] = __float2half_rn(kvrow[e]);
                ((__half *)vd)[e] = __float2half_rn(kvrow[HD + e]);
            }
        } else {
            const int bb = qblock<KV>::BYTES, nb = HD / 32;
            int warp = tid >> 5, lane = tid & 31;
            for (int b = warp; b < 2 * nb; b += ATT_THREADS / 32) {
                int which = b >= nb, bi = b - which * nb;
                quant_block<KV>(kvrow[which * HD + bi * 32 + lane], (which ? vd : kd) + bi * bb,
                                lane);
            }
        }
        __syncthreads(); /* publishes the new row to the block's own loads */
        io.fetch(kc + (size_t)s0 * SB, n < ATT_THREADS ? n : ATT_THREADS);
    }
    int warp = tid >> 5, lane = tid & 31;
    /* pass 1: scores */
    uint32_t qb[HD / 16][2]; /* tensor-core path: B fragments of the G scaled query heads */
    float mx[2] = {-INFINITY, -INFINITY}; /* and the largest scores of heads 2 (lane % 4) .. */
    for (int t0 = 0; t0 < n; t0 += ATT_THREADS) {
        int rows = n - t0 < ATT_THREADS ? n - t0 : ATT_THREADS;
        __syncthreads(); /* the previous tile (and qs) */
        if (MC::ON && t0 == 0) {
            int g = lane >> 2, k = (lane & 3) * 2;
#pragma unroll
            for (int s = 0; s < HD / 16; s++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const float *qq = qs + (g < G ? g : 0) * HD + 16 * s + 8 * h + k;
                    __half2 v = __floats2half2_rn(g < G ? qq[0] : 0.f, g < G ? qq[1] : 0.f);
                    qb[s][h] = *(const uint32_t *)&v;
                }
        }
        io.store(tile, rows);
        __syncthreads();
        int t1 = t0 + ATT_THREADS;
        if (t1 < n)
            io.fetch(kc + (size_t)(s0 + t1) * SB, n - t1 < ATT_THREADS ? n - t1 : ATT_THREADS);
        else
            io.fetch(vc + (size_t)s0 * SB, n < ATT_THREADS ? n : ATT_THREADS);
        if constexpr (MC::ON) {
            mma_scores<KV, HD, G>(tile, SBS, qb, rows, sc, scw, t0, mx, warp, lane);
        } else if (tid < rows) {
            const uint8_t *row = tile + tid * SBS;
            float dot[G];
#pragma unroll
            for (int g = 0; g < G; g++) dot[g] = 0.f;
#pragma unroll
            for (int b = 0; b < HD / 32; b++) {
                float kv[32], part[G];
                float dsc = seg_span32<KV>(row, b, kv, lut);
#pragma unroll
                for (int g = 0; g < G; g++) part[g] = 0.f;
#pragma unroll
                for (int e = 0; e < 32; e++)
#pragma unroll
                    for (int g = 0; g < G; g++) part[g] += qs[g * HD + b * 32 + e] * kv[e];
#pragma unroll
                for (int g = 0; g < G; g++) dot[g] += part[g] * dsc;
            }
#pragma unroll
            for (int g = 0; g < G; g++) sc[g * scw + t0 + tid] = dot[g];
        }
    }
    __shared__ float smx[G], ssum[G];
    __shared__ float wred[ATT_THREADS / 32][G]; /* tensor-core path: per-warp maxima, then sums */
    if constexpr (MC::ON) { /* the chunk's maxima from the scoring warps' own; the exponentials
                             * and their sums are taken in pass 2, a key per thread */
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) {
            mx[0] = fmaxf(mx[0], __shfl_xor_sync(0xffffffffu, mx[0], o));
            mx[1] = fmaxf(mx[1], __shfl_xor_sync(0xffffffffu, mx[1], o));
        }
        if (lane < 4 && 2 * lane < G) wred[warp][2 * lane] = mx[0];
        if (lane < 4 && 2 * lane + 1 < G) wred[warp][2 * lane + 1] = mx[1];
        __syncthreads();
        if (tid < G) {
            float m = -INFINITY;
#pragma unroll
            for (int w = 0; w < ATT_THREADS / 32; w++) m = fmaxf(m, wred[w][tid]);
            smx[tid] = m;
        }
    } else {
        __syncthreads();
        for (int g = warp; g < G; g += ATT_THREADS / 32) { /* a warp per query head */
            float m = -INFINITY;
            for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[g * scw + j]);
            m = cb_warp_max(m);
            float sm = 0.f;
            for (int j = lane; j < n; j += 32) {
                float p = exp2f(sc[g * scw + j] - m);
                sc[g * scw + j] = p;
                sm += p;
            }
            sm = cb_warp_sum(sm);
            if (lane == 0) smx[g] = m, ssum[g] = sm;
        }
    }
    float psum[G]; /* tensor-core path: this thread's keys' exponentials, per head */
#pragma unroll
    for (int g = 0; g < G; g++) psum[g] = 0.f;
    /* pass 2: P . V, thread = (dimensions 4 q .. 4 q + 3, keys j = grp mod NG) */
    int q4 = tid % Q, grp = tid / Q;
    float acc[G][4];
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int k = 0; k < 4; k++) acc[g][k] = 0.f;
    float o[4] = {0.f, 0.f, 0.f, 0.f}; /* tensor-core path: this warp's O^T fragment */
    for (int t0 = 0; t0 < n; t0 += ATT_THREADS) {
        int rows = n - t0 < ATT_THREADS ? n - t0 : ATT_THREADS;
        __syncthreads();
        io.store(tile, rows); /* value tile t0, fetched during the previous tile's work */
        __syncthreads();
        int t1 = t0 + ATT_THREADS;
        if (t1 < n)
            io.fetch(vc + (size_t)(s0 + t1) * SB, n - t1 < ATT_THREADS ? n - t1 : ATT_THREADS);
        if constexpr (MC::ON) { /* key tid's P = 2^(s - max), times each block's value scale */
            float p[G];
#pragma unroll
            for (int g = 0; g < G; g++) {
                p[g] = tid < rows ? exp2f(sc[g * scw + t0 + tid] - smx[g]) : 0.f;
                psum[g] += p[g];
            }
#pragma unroll
            for (int b = 0; b < NB; b++) {
                float d = tid < rows ? row_scale(tile + tid * SBS, BB * b) : 0.f;
#pragma unroll
                for (int g = 0; g < G; g++)
                    ph[(b * G + g) * ATT_THREADS + tid] = __float2half_rn(p[g] * d);
            }
            __syncthreads();
            mma_pv<KV, HD, G, ATT_THREADS>(tile, SBS, ph, rows, o, warp, lane);
        } else {
#pragma unroll 2
            for (int j = grp; j < rows; j += NG) {
                float v[4];
                float dsc = seg_quad<KV>(tile + j * SBS, 4 * q4, v, lut);
#pragma unroll
                for (int g = 0; g < G; g++) {
                    float p = sc[g * scw + t0 + j] * dsc;
#pragma unroll
                    for (int k = 0; k < 4; k++) acc[g][k] += p * v[k];
                }
            }
        }
    }
    /* the partial outputs of the chunk: summed over the threads (or warps) that split its keys */
    if constexpr (MC::ON) {
        int mt = warp % (HD / 16), kp = warp / (HD / 16), g0 = (lane & 3) * 2;
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (g0 + (k & 1) < G)
                red[(kp * G + g0 + (k & 1)) * HD + pv_dim<KV>(mt, (lane >> 2) + (k < 2 ? 0 : 8))] =
                    o[k];
#pragma unroll
        for (int g = 0; g < G; g++) {
            float sm = cb_warp_sum(psum[g]);
            if (lane == 0) wred[warp][g] = sm;
        }
    } else {
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int k = 0; k < 4; k++) red[(grp * G + g) * HD + 4 * q4 + k] = acc[g][k];
    }
    __syncthreads();
    for (int i = tid; i < G * HD; i += ATT_THREADS) {
        int g = i / HD, ee = i % HD, h = kvh * G + g;
        float s = 0.f;
#pragma unroll
        for (int w = 0; w < NSPLIT; w++) s += red[(w * G + g) * HD + ee];
        pacc[((size_t)h * nch + c) * HD + ee] = s;
    }
    if (tid == 0)
#pragma unroll
        for (int g = 0; g < G; g++) {
            float l = ssum[g];
            if constexpr (MC::ON) {
                l = 0.f;
#pragma unroll
                for (int w = 0; w < ATT_THREADS / 32; w++) l += wred[w][g];
            }
            pm[(size_t)(kvh * G + g) * nch + c] = smx[g];
            pl[(size_t)(kvh * G + g) * nch + c] = l;
        }
    /* the last chunk of this kv head to finish combines:
     * att[h*HD + e] = sum_c 2^(m_c - M) acc_c[e] / sum_c 2^(m_c - M) l_c */
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(&count[kvh], 1u) == (unsigned)nact - 1;
    __syncthreads();
    if (!last) return;
    if (tid == 0) count[kvh] = 0; /* ready for the next layer */
    __threadfence();
    for (int g = warp; g < G; g += ATT_THREADS / 32) { /* a warp per query head */
        const float *m = pm + (size_t)(kvh * G + g) * nch, *l = pl + (size_t)(kvh * G + g) * nch;
        float M = -INFINITY;
        for (int k = lane; k < nact; k += 32) M = fmaxf(M, __ldcg(m + k));
        M = cb_warp_max(M);
        float ds = 0.f;
        for (int k = lane; k < nact; k += 32) {
            float mk = __ldcg(m + k), w = mk == -INFINITY ? 0.f : exp2f(mk - M);
            sc[g * scw + k] = w;
            ds += w * __ldcg(l + k);
        }
        ds = cb_warp_sum(ds);
        if (lane == 0) ssum[g] = ds; /* the denominator now */
    }
    __syncthreads();
    int e = tid % HD, p = tid / HD;
    if (p < NP) { /* chunks k = p mod NP, all G heads per chunk: G * 4 loads in flight a round */
        float num[G];
#pragma unroll
        for (int g = 0; g < G; g++) num[g] = 0.f;
        const float *a = pacc + (size_t)kvh * G * nch * HD + e;
#pragma unroll 4
        for (int k = p; k < nact; k += NP)
#pragma unroll
            for (int g = 0; g < G; g++)
                num[g] += sc[g * scw + k] * __ldcg(a + ((size_t)g * nch + k) * HD);
#pragma unroll
        for (int g = 0; g < G; g++) red[(p * G + g) * HD + e] = num[g];
    }
    __syncthreads();
    for (int i = tid; i < G * HD; i += ATT_THREADS) {
        int g = i / HD, ee = i % HD;
        float s = 0.f;
        for (int k = 0; k < NP; k++) s += red[(k * G + g) * HD + ee];
        att[(size_t)(kvh * G + g) * HD + ee] = ssum[g] > 0.f ? s / ssum[g] : 0.f;
    }
}

/* First index of the maximum of logits [V] (any float dtype) over the whole block; the result
 * is valid in thread 0 (V when every value is NaN or -inf). */
__device__ int64_t block_argmax(cb_tv logits, int64_t V) {
    float best = -INFINITY;
    int64_t idx = V; /* sentinel: larger than any index */
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        float v = cb_ld(logits, i);
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
    fold_warp_firsts(best, idx);
    return idx;
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
__global__ void k_dec_fill(uint8_t *kc, uint8_t *vc, int hd, size_t seg_bytes, size_t head_bytes,
                           size_t layer_bytes, int W, uint64_t seed) {
    extern __shared__ float row[];
    int64_t pos = blockIdx.x;
    int layer = blockIdx.y;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int which = 0; which < 2; which++) {
        uint64_t base = (((uint64_t)layer * 2 + which) * (uint64_t)gridDim.x + (uint64_t)pos) * W;
        for (int i = threadIdx.x; i < W; i += blockDim.x) row[i] = hash_val(seed, base + i);
        __syncthreads();
        uint8_t *dst = (which ? vc : kc) + layer * layer_bytes + (size_t)pos * seg_bytes;
        quant_row<KV>(row, W, hd, head_bytes, dst, warp, nw, lane);
        __syncthreads();
    }
}

/* rows [rows, width] of any float dtype into cache rows (one block per row, via shared memory):
 * out points at the first row's segment of head 0 (seg_bytes apart, heads head_bytes apart). */
template <int KV>
__global__ void k_dec_write_rows(cb_tv x, int64_t rows, int width, int hd, size_t seg_bytes,
                                 size_t head_bytes, uint8_t *out) {
    extern __shared__ float rowbuf[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        __syncthreads();
        for (int i = threadIdx.x; i < width; i += blockDim.x) rowbuf[i] = cb_ld(x, r * width + i);
        __syncthreads();
        quant_row<KV>(rowbuf, width, hd, head_bytes, out + (size_t)r * seg_bytes, warp, nw, lane);
    }
}

/* After a batched prefill of n tokens: tokens[n] = argmax of the last position's logits (any
 * float dtype), position n. One block of 1024 threads. */
__global__ void k_dec_start(cb_tv logits, int64_t V, int64_t n, int32_t *tokens, int64_t *state) {
    int64_t idx = block_argmax(logits, V);
    if (threadIdx.x == 0) {
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
        quant_row<KV>(x + (size_t)r * width, width, width, 0, out + (size_t)r * row_bytes, warp, nw,
                      lane);
}

/* ---- host side --------------------------------------------------------------------------------
 */

static void *dalloc(size_t bytes) {
    return cb_cuda_alloc(bytes);
}

extern "C" void cb_cuda_dec_free(cb_cuda_decoder *d) {
    if (!d) return;
    if (d->exec) cudaGraphExecDestroy(d->exec);
    void *bufs[] = {d->x,     d->qkv,    d->att,   d->h,  d->logits, d->pm,   d->pl,  d->pacc,
                    d->count, d->tokens, d->state, d->kc, d->vc,     d->best, d->done};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) cb_cuda_free(bufs[i]);
    free(d->layers);
    free(d);
}

typedef void (*attn_fn)(const float *, const int64_t *, const float *, const float *, int, int, int,
                        uint8_t *, uint8_t *, size_t, int, int, float, float *, float *, float *,
                        unsigned *, float *);

/* An attention kernel and its shared-memory size (att_smem) for a cache format, head size and G */
struct attn_kernel {
    attn_fn fn;
    size_t (*smem)(int chunk, int nch);
};
template <int KV, int HD, int G> static attn_kernel attn_of() {
    return {k_dec_attn<KV, HD, G>, att_smem<KV, HD, G>::bytes};
}
template <int KV, int HD> static attn_kernel pick_g(int G) {
    switch (G) {
    case 1:
        return attn_of<KV, HD, 1>();
    case 2:
        return attn_of<KV, HD, 2>();
    case 3:
        return attn_of<KV, HD, 3>();
    case 4:
        return attn_of<KV, HD, 4>();
    case 6:
        return attn_of<KV, HD, 6>();
    case 8:
        return attn_of<KV, HD, 8>();
    default:
        return {nullptr, nullptr};
    }
}
template <int KV> static attn_kernel pick_hd(int HD, int G) {
    switch (HD) {
    case 32:
        return pick_g<KV, 32>(G);
    case 64:
        return pick_g<KV, 64>(G);
    case 128:
        return pick_g<KV, 128>(G);
    default:
        return {nullptr, nullptr};
    }
}
static attn_kernel pick_attn(int kv, int HD, int G) {
    if (kv == CB_F16) return pick_hd<CB_F16>(HD, G);
    if (kv == CB_Q8_0) return pick_hd<CB_Q8_0>(HD, G);
    if (kv == CB_Q4_0) return pick_hd<CB_Q4_0>(HD, G);
    if (kv == CB_NF4) return pick_hd<CB_NF4>(HD, G);
    return {nullptr, nullptr};
}

static size_t attn_smem(const cb_cuda_decoder *d) {
    int G = d->cfg.n_heads / d->cfg.n_kv_heads;
    size_t bytes = pick_attn(d->kv, d->cfg.head_dim, G).smem(d->chunk, d->nch);
    return bytes > d->att_smem_min ? bytes : d->att_smem_min;
}

/* Launches kernel k on the step's stream, as a programmatic dependent of the previous launch when
 * the decoder uses PDL and the kernel has a predecessor in the step. */
template <typename... P, typename... A>
static cb_status launch(const cb_cuda_decoder *d, cb_cuda_ctx *c, const char *what, bool dependent,
                        void (*k)(P...), dim3 grid, dim3 block, size_t smem, A... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = d->pdl && dependent ? 1 : 0;
    return cb_cu_check(cudaLaunchKernelEx(&cfg, k, ((P)args)...), what);
}

static cb_status gemv(const cb_cuda_decoder *d, cb_cuda_ctx *c, int mode, const gemv_args &a,
                      bool dependent = true) {
    int blocks = (a.rows + GEMV_WARPS - 1) / GEMV_WARPS;
    if (blocks > d->gemv_cap * c->num_sms) blocks = d->gemv_cap * c->num_sms;
    size_t smem = sizeof(float) * (size_t)a.C * (a.norm_w ? 2 : 1);
    dim3 g(blocks), b(GEMV_WARPS * 32);
    if (mode == GEMV_STORE)
        return launch(d, c, "decode gemv", dependent, k_gemv<GEMV_STORE>, g, b, smem, a);
    if (mode == GEMV_ADD)
        return launch(d, c, "decode gemv", dependent, k_gemv<GEMV_ADD>, g, b, smem, a);
    return launch(d, c, "decode gemv", dependent, k_gemv<GEMV_SWIGLU>, g, b, smem, a);
}

/* Enqueues one decode step on the stream (captured into the graph). */
static cb_status enqueue_step(cb_cuda_decoder *d, cb_cuda_ctx *c) {
    const cb_cuda_dec_cfg &f = d->cfg;
    int H = f.n_heads, Hkv = f.n_kv_heads, hd = f.head_dim, dm = f.d_model, G = H / Hkv;
    cb_tv emb = {(void *)f.embed, f.embed_dtype};
    size_t layer_bytes = (size_t)Hkv * d->head_bytes;
    attn_fn attn = pick_attn(d->kv, hd, G).fn;
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
        if (l == 0) /* the step's first kernel reads the token's embedding row itself */
            a.st = {d->tokens, d->state, emb, d->x, f.vocab, nullptr, nullptr};
        CB_TRY(gemv(d, c, GEMV_STORE, a, l > 0));
        CB_TRY(launch(d, c, "decode attention", true, attn, dim3(Hkv, d->nch),
                      dim3(att_threads(d->kv)), attn_smem(d), (const float *)d->qkv,
                      (const int64_t *)d->state, f.rope_cos, f.rope_sin, f.rope_pairs, H, Hkv, kc,
                      vc, d->head_bytes, d->chunk, d->nch, scale_log2, d->pm, d->pl, d->pacc,
                      d->count, d->att));
        memset(&a, 0, sizeof a);
        a.x = d->att, a.C = H * hd;
        a.seg[0] = {(const __nv_bfloat16 *)L.wo, d->x, dm};
        a.nseg = 1, a.rows = dm;
        CB_TRY(gemv(d, c, GEMV_ADD, a));
        memset(&a, 0, sizeof a);
        a.x = d->x, a.C = dm, a.norm_w = L.mlp_norm, a.eps = f.rms_eps;
        a.seg[0] = {(const __nv_bfloat16 *)L.wg, d->h, f.d_ff};
        a.seg[1] = {(const __nv_bfloat16 *)L.wu, d->h, f.d_ff};
        a.nseg = 2, a.rows = f.d_ff;
        CB_TRY(gemv(d, c, GEMV_SWIGLU, a));
        memset(&a, 0, sizeof a);
        a.x = d->h, a.C = f.d_ff;
        a.seg[0] = {(const __nv_bfloat16 *)L.wd, d->x, dm};
        a.nseg = 1, a.rows = dm;
        CB_TRY(gemv(d, c, GEMV_ADD, a));
    }
    gemv_args a;
    memset(&a, 0, sizeof a);
    a.x = d->x, a.C = dm, a.norm_w = f.final_norm, a.eps = f.rms_eps;
    a.seg[0] = {(const __nv_bfloat16 *)f.lm_head, d->logits, (int)f.vocab};
    a.nseg = 1, a.rows = (int)f.vocab;
    a.st = {d->tokens, d->state, {nullptr, CB_F32}, nullptr, f.vocab, d->best, d->done};
    return gemv(d, c, GEMV_STORE, a);
}

extern "C" cb_status cb_cuda_dec_new(const cb_cuda_dec_cfg *cfg, cb_cuda_decoder **out) {
    *out = nullptr;
    CB_CU_CTX(c);
    const cb_cuda_dec_cfg &f = *cfg;
    if (f.n_layers < 1 || f.d_model < 1 || f.n_heads < 1 || f.n_kv_heads < 1 ||
        f.n_heads % f.n_kv_heads || f.vocab < 1 || f.max_len < 1 || f.d_ff < 1)
        return cb_fail(CB_ERR_ARG, "cuda decoder: bad model geometry");
    int G = f.n_heads / f.n_kv_heads, hd = f.head_dim;
    if (f.kv_dtype != CB_F16 && f.kv_dtype != CB_Q8_0 && f.kv_dtype != CB_Q4_0 &&
        f.kv_dtype != CB_NF4)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "cuda decoder: cache format %s (supported: f16, q8_0, q4_0, nf4)",
                       cb_dtype_name((cb_dtype)f.kv_dtype));
    if (!pick_attn(f.kv_dtype, hd, G).fn)
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
    d->seg_bytes = cb_quant_row_bytes((cb_dtype)d->kv, hd);
    /* a head's rows padded to whole tiles (copies round up past the last row) and 256 bytes */
    int64_t padded = (f.max_len + 255) / 256 * 256;
    d->head_bytes = ((size_t)padded * d->seg_bytes + 255) / 256 * 256;
    /* split-K: about two blocks per SM over all kv heads at full length, chunks of whole warps
     * for short caches and of whole tiles (T keys) beyond, and a chunk's scores must fit 32 KB
     * of shared memory (measured on an H200: 64-key chunks at 16k keys ran at half the bandwidth
     * of 128-key chunks; the fixed cost per block dominates. On an H100, 32 KB rather than 16 KB
     * took the 1b shape at 64k keys (G = 4) from two waves of blocks to one: q8_0 1900 -> 1850
     * us, q4_0 1738 -> 1693 us; 64 KB was no better) */
    /* blocks per SM: measured on an H100 at 16k and 64k keys, f16 rows (128-thread blocks) ran
     * best at 2, 4 / 6 / 8 were slower; the quantized formats with 256-thread blocks at 2 (3 was
     * slower for q4_0; their 128-thread blocks had run best at 4) */
    const char *bps_env = getenv("CARAMBA_CUDA_DEC_BLOCKS_PER_SM"); /* tuning experiments */
    int64_t bps = bps_env && atoi(bps_env) > 0 && atoi(bps_env) <= 64 ? atoi(bps_env) : 2;
    const int64_t T = att_threads(d->kv);
    int64_t target = (bps * (int64_t)c->num_sms + f.n_kv_heads - 1) / f.n_kv_heads;
    int64_t chunk = (f.max_len + target - 1) / target;
    chunk = chunk <= 96 ? (chunk + 31) / 32 * 32 : (chunk + T - 1) / T * T;
    const char *ch_env = getenv("CARAMBA_CUDA_DEC_CHUNK");     /* tests: keys per chunk, exactly */
    const char *skb_env = getenv("CARAMBA_CUDA_DEC_SCORE_KB"); /* tuning experiments */
    int64_t score_kb = skb_env && atoi(skb_env) >= 4 && atoi(skb_env) <= 128 ? atoi(skb_env) : 32;
    int64_t cap = (score_kb * 256 / G) / T * T;
    if (cap < T) cap = T;
    if (chunk > cap) chunk = cap;
    if (ch_env && atoi(ch_env) >= 32 && atoi(ch_env) <= 4096 && atoi(ch_env) % 32 == 0)
        chunk = atoi(ch_env);
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
    d->count = (unsigned *)dalloc(sizeof(unsigned) * (size_t)f.n_kv_heads);
    d->best = (unsigned long long *)dalloc(sizeof(unsigned long long));
    d->done = (unsigned *)dalloc(sizeof(unsigned));
    d->tokens = (int32_t *)dalloc(sizeof(int32_t) * (size_t)(f.max_len + 1));
    d->state = (int64_t *)dalloc(sizeof(int64_t) * 2);
    size_t cache = (size_t)f.n_layers * (size_t)f.n_kv_heads * d->head_bytes;
    d->kc = (uint8_t *)dalloc(cache);
    d->vc = (uint8_t *)dalloc(cache);
    if (!d->x || !d->qkv || !d->att || !d->h || !d->logits || !d->pm || !d->pl || !d->pacc ||
        !d->count || !d->tokens || !d->state || !d->kc || !d->vc || !d->best || !d->done) {
        cb_cuda_dec_free(d);
        return CB_ERR_NOMEM;
    }
    cb_status st = cb_cuda_memset0(d->kc, cache);
    if (st == CB_OK) st = cb_cuda_memset0(d->vc, cache);
    if (st == CB_OK) st = cb_cuda_memset0(d->tokens, sizeof(int32_t) * (size_t)(f.max_len + 1));
    if (st == CB_OK) st = cb_cuda_memset0(d->state, sizeof(int64_t) * 2);
    if (st == CB_OK) st = cb_cuda_memset0(d->count, sizeof(unsigned) * (size_t)f.n_kv_heads);
    if (st == CB_OK) st = cb_cuda_memset0(d->best, sizeof(unsigned long long));
    if (st == CB_OK) st = cb_cuda_memset0(d->done, sizeof(unsigned));
    /* a GEMV stages its input (and the rmsnorm weight) in shared memory */
    size_t widest = (size_t)f.d_model;
    if ((size_t)f.d_ff > widest) widest = (size_t)f.d_ff;
    if ((size_t)f.n_heads * hd > widest) widest = (size_t)f.n_heads * hd;
    int gemv_smem = (int)(2 * sizeof(float) * widest);
    if (st == CB_OK && gemv_smem > 48 * 1024) {
        const void *ks[3] = {(const void *)k_gemv<GEMV_STORE>, (const void *)k_gemv<GEMV_ADD>,
                             (const void *)k_gemv<GEMV_SWIGLU>};
        for (int i = 0; i < 3 && st == CB_OK; i++)
            st = cb_cu_check(
                cudaFuncSetAttribute(ks[i], cudaFuncAttributeMaxDynamicSharedMemorySize, gemv_smem),
                "decode gemv shared memory");
    }
    const char *cap_env = getenv("CARAMBA_CUDA_DEC_GEMV_BLOCKS_PER_SM"); /* tuning experiments */
    /* only the head GEMV (V rows) is large enough to meet the cap: with two rows in flight per
     * warp, 2 blocks per SM ran best of 2, 4, 8 and 16 on an H100 (bench/RESULTS-cuda.md E15) */
    d->gemv_cap = cap_env && atoi(cap_env) > 0 && atoi(cap_env) <= 64 ? atoi(cap_env) : 2;
    const char *no_pdl = getenv("CARAMBA_CUDA_NO_PDL");
    d->pdl = !(no_pdl && *no_pdl && strcmp(no_pdl, "0"));
    /* the split-K is sized for bps attention blocks per SM; a kernel that could hold more (few
     * registers, little shared memory) ran slower inside the step's PDL chain, the same code as
     * fast as before in isolation (H100, bench/RESULTS-cuda.md E17: q4_0 at 64k keys on the 1b
     * shape 1826 -> 1608 us once capped at 2): its shared memory is padded until no more fit,
     * which also leaves the rest of the SM to the kernels around it */
    const void *attn_k = (const void *)pick_attn(d->kv, hd, G).fn;
    if (st == CB_OK)
        st = cb_cu_check(cudaFuncSetAttribute(attn_k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              (int)(c->max_smem_optin - 1024)),
                         "decode attention shared memory");
    size_t smem = attn_smem(d);
    for (int fit = 0; st == CB_OK; smem += 4096) {
        st = cb_cu_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, (void (*)())attn_k,
                                                                       att_threads(d->kv), smem),
                         "decode attention occupancy");
        if (st != CB_OK || fit <= bps || smem + 4096 > c->max_smem_optin - 1024) break;
    }
    d->att_smem_min = smem;
    if (st == CB_OK)
        st = cb_cu_check(
            cudaFuncSetAttribute(attn_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
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
    int W = d->cfg.n_kv_heads * d->cfg.head_dim, hd = d->cfg.head_dim;
    size_t layer_bytes = (size_t)d->cfg.n_kv_heads * d->head_bytes, sb = d->seg_bytes,
           hb = d->head_bytes;
    if (n > 0) {
        dim3 grid((unsigned)n, (unsigned)d->cfg.n_layers);
        size_t smem = sizeof(float) * (size_t)W;
        if (d->kv == CB_F16)
            k_dec_fill<CB_F16>
                <<<grid, 256, smem, c->stream>>>(d->kc, d->vc, hd, sb, hb, layer_bytes, W, seed);
        else if (d->kv == CB_Q8_0)
            k_dec_fill<CB_Q8_0>
                <<<grid, 256, smem, c->stream>>>(d->kc, d->vc, hd, sb, hb, layer_bytes, W, seed);
        else if (d->kv == CB_Q4_0)
            k_dec_fill<CB_Q4_0>
                <<<grid, 256, smem, c->stream>>>(d->kc, d->vc, hd, sb, hb, layer_bytes, W, seed);
        else
            k_dec_fill<CB_NF4>
                <<<grid, 256, smem, c->stream>>>(d->kc, d->vc, hd, sb, hb, layer_bytes, W, seed);
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
    const uint8_t *base = (which ? d->vc : d->kc) +
                          (size_t)layer * (size_t)d->cfg.n_kv_heads * d->head_bytes +
                          (size_t)pos * d->seg_bytes;
    for (int h = 0; h < d->cfg.n_kv_heads; h++) /* the row's head segments, end to end */
        CB_TRY(cb_cuda_copy(0, (uint8_t *)out + h * d->seg_bytes, 1, base + h * d->head_bytes,
                            d->seg_bytes));
    return CB_OK;
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
    else if (dtype == CB_NF4)
        k_quant_rows<CB_NF4>
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
    size_t layer_bytes = (size_t)d->cfg.n_kv_heads * d->head_bytes, sb = d->seg_bytes,
           hb = d->head_bytes;
    int hd = d->cfg.head_dim;
    for (int which = 0; which < 2 && T > 0; which++) {
        uint8_t *dst = (which ? d->vc : d->kc) + layer * layer_bytes + (size_t)pos0 * sb;
        cb_tv x = cb_view(which ? v : k);
        unsigned blocks = (unsigned)(T < 65535 ? T : 65535);
        size_t smem = sizeof(float) * (size_t)W;
        if (d->kv == CB_F16)
            k_dec_write_rows<CB_F16>
                <<<blocks, 256, smem, c->stream>>>(x, T, (int)W, hd, sb, hb, dst);
        else if (d->kv == CB_Q8_0)
            k_dec_write_rows<CB_Q8_0>
                <<<blocks, 256, smem, c->stream>>>(x, T, (int)W, hd, sb, hb, dst);
        else if (d->kv == CB_Q4_0)
            k_dec_write_rows<CB_Q4_0>
                <<<blocks, 256, smem, c->stream>>>(x, T, (int)W, hd, sb, hb, dst);
        else
            k_dec_write_rows<CB_NF4>
                <<<blocks, 256, smem, c->stream>>>(x, T, (int)W, hd, sb, hb, dst);
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
