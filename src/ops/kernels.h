/* The backend seam: every compute kernel the op layer needs, as a table of function pointers.
 *
 * The op layer (src/ops/ files) checks shapes, allocates outputs from the graph's arena, records
 * the autograd tape and then calls the kernel table of the tensors' device. A backend (cpu/, cuda/)
 * fills one cb_kernels table; nothing above the op layer knows which backend ran.
 *
 * Conventions:
 * - All tensors passed to one call live on the same device and are contiguous.
 * - Backward kernels ACCUMULATE into gradient outputs (+=); gradient buffers are f32 and zeroed
 *   by whoever allocated them. A NULL gradient pointer means "not needed": skip that work.
 * - The CPU backend computes in f32 (inputs of other float dtypes are rejected with
 *   CB_ERR_UNSUPPORTED by the op layer before reaching it). The CUDA backend may accept bf16/f16
 *   activations with f32 accumulation; gradients and master weights stay f32.
 * - Layouts: activations are row-major with the feature dim last. Attention tensors keep heads
 *   interleaved in the feature dim, i.e. q is [B, T, H*hd] with head h at [h*hd, (h+1)*hd), so
 *   projections feed attention without transposes. */
#ifndef CARAMBA_OPS_KERNELS_H
#define CARAMBA_OPS_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "caramba/status.h"
#include "caramba/ops.h"
#include "caramba/tensor.h"


typedef struct cb_kernels {
    const char *name;

    /* C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b < batch.
     * op(A) is [M,K] (A stored [M,K], or [K,M] when transA); op(B) is [K,N]. Leading dims lda,
     * ldb, ldc; batch strides in elements (0 broadcasts an operand). f32 here; a backend may
     * accept 16-bit A/B with f32 C. */
    cb_status (*gemm)(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const cb_tensor *A, int64_t lda, int64_t strideA, const cb_tensor *B,
                      int64_t ldb, int64_t strideB, float beta, cb_tensor *C, int64_t ldc,
                      int64_t strideC, int64_t batch);

    /* y[r, :] += b for every row r.   y [R, N], b [N] */
    cb_status (*bias_add)(cb_tensor *y, const cb_tensor *b);
    /* db[n] += sum_r dy[r, n].   dy [R, N], db [N] */
    cb_status (*bias_grad)(const cb_tensor *dy, cb_tensor *db);

    /* out[i, :] = W[ids[i], :].   ids [N] (i32/i64), W [V, D], out [N, D]
     * Fails (CB_ERR_ARG, naming the id) when an id is outside [0, V). */
    cb_status (*embedding_fwd)(const cb_tensor *ids, const cb_tensor *W, cb_tensor *out);
    /* dW[ids[i], :] += dout[i, :] */
    cb_status (*embedding_bwd)(const cb_tensor *ids, const cb_tensor *dout, cb_tensor *dW);

    /* Elementwise over n = numel(out). b may have fewer elements than a (n % numel(b) == 0): it
     * is then broadcast over a's leading dims. */
    cb_status (*add)(const cb_tensor *a, const cb_tensor *b, cb_tensor *out);
    cb_status (*mul)(const cb_tensor *a, const cb_tensor *b, cb_tensor *out);
    /* out = alpha * a */
    cb_status (*scale)(const cb_tensor *a, float alpha, cb_tensor *out);
    /* dst += alpha * src (same numel) */
    cb_status (*axpy)(float alpha, const cb_tensor *src, cb_tensor *dst);
    /* Reduces a broadcast gradient: dst[j] += alpha * sum_k src[k * numel(dst) + j] */
    cb_status (*reduce_rows_acc)(float alpha, const cb_tensor *src, cb_tensor *dst);
    /* da += dout * b, db += dout * a (either may be NULL; b broadcast as in mul) */
    cb_status (*mul_bwd)(const cb_tensor *a, const cb_tensor *b, const cb_tensor *dout,
                         cb_tensor *da, cb_tensor *db);

    /* y = x / sqrt(mean(x^2) + eps) * w.   x, y [R, D]; w [D] or NULL; rstd [R] (saved) */
    cb_status (*rmsnorm_fwd)(const cb_tensor *x, const cb_tensor *w, float eps, cb_tensor *y,
                             cb_tensor *rstd);
    cb_status (*rmsnorm_bwd)(const cb_tensor *x, const cb_tensor *w, const cb_tensor *rstd,
                             const cb_tensor *dy, cb_tensor *dx, cb_tensor *dw);
    /* y = (x - mean) * rstd * w + b.   x, y [R, D]; w, b [D]; mean, rstd [R] (saved) */
    cb_status (*layernorm_fwd)(const cb_tensor *x, const cb_tensor *w, const cb_tensor *b,
                               float eps, cb_tensor *y, cb_tensor *mean, cb_tensor *rstd);
    cb_status (*layernorm_bwd)(const cb_tensor *x, const cb_tensor *w, const cb_tensor *mean,
                               const cb_tensor *rstd, const cb_tensor *dy, cb_tensor *dx,
                               cb_tensor *dw, cb_tensor *db);

    /* y = x * sigmoid(x). The backward WRITES a gradient whose *_fresh flag is set (a freshly
     * allocated, uninitialised buffer: one read less) and accumulates otherwise. */
    cb_status (*silu_fwd)(const cb_tensor *x, cb_tensor *y);
    cb_status (*silu_bwd)(const cb_tensor *x, const cb_tensor *dy, cb_tensor *dx, bool dx_fresh);
    /* y = silu(gate) * up.   gate, up, y [R, F]. dgate is updated before dup (they may alias
     * when only dgate is fresh). */
    cb_status (*swiglu_fwd)(const cb_tensor *gate, const cb_tensor *up, cb_tensor *y);
    cb_status (*swiglu_bwd)(const cb_tensor *gate, const cb_tensor *up, const cb_tensor *dy,
                            cb_tensor *dgate, cb_tensor *dup, bool dgate_fresh, bool dup_fresh);

    /* Half-split rotary embedding on the first 2*P dims of every head.
     * x, y [B, T, H*hd]; cos, sin [maxpos, P] tables; position of token t is pos0 + t.
     * inverse = true applies the transpose rotation (the backward). In-place allowed. */
    cb_status (*rope)(const cb_tensor *x, int n_heads, const cb_tensor *cos, const cb_tensor *sin,
                      int64_t pos0, bool inverse, cb_tensor *y);

    /* Fused attention with online softmax (never materialises [T, S]).
     * q [B, T, H*hd], k [B, S, Hkv*hd], v [B, S, Hkv*hdv], out [B, T, H*hdv], lse [B, H, T] f32.
     * q2/k2 (decoupled second term) [B, T, H*hd2] / [B, S, Hkv*hd2] or NULL.
     * Rows whose every key is masked produce zeros and lse = -inf. */
    cb_status (*attention_fwd)(const cb_attn_cfg *cfg, const cb_tensor *q, const cb_tensor *k,
                               const cb_tensor *v, const cb_tensor *q2, const cb_tensor *k2,
                               cb_tensor *out, cb_tensor *lse);
    cb_status (*attention_bwd)(const cb_attn_cfg *cfg, const cb_tensor *q, const cb_tensor *k,
                               const cb_tensor *v, const cb_tensor *q2, const cb_tensor *k2,
                               const cb_tensor *out, const cb_tensor *lse, const cb_tensor *dout,
                               cb_tensor *dq, cb_tensor *dk, cb_tensor *dv, cb_tensor *dq2,
                               cb_tensor *dk2);

    /* softmax over the last dim.  x, y [R, N] */
    cb_status (*softmax_fwd)(const cb_tensor *x, cb_tensor *y);
    cb_status (*softmax_bwd)(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx);

    /* Mean cross-entropy of logits [N, V] against targets [N] (i32/i64); rows whose target equals
     * ignore_index do not count. loss [1] = mean; lse [N] saved; *count = rows counted. */
    cb_status (*cross_entropy_fwd)(const cb_tensor *logits, const cb_tensor *targets,
                                   int64_t ignore_index, cb_tensor *loss, cb_tensor *lse,
                                   int64_t *count);
    /* dlogits += dloss/count * (softmax(logits) - onehot(target)) for counted rows; with fresh
     * dlogits is uninitialised and written instead (ignored rows get zeros) */
    cb_status (*cross_entropy_bwd)(const cb_tensor *logits, const cb_tensor *targets,
                                   int64_t ignore_index, const cb_tensor *lse, float dloss,
                                   int64_t count, cb_tensor *dlogits, bool fresh);

    /* Inverted dropout with a counter-based generator: element i is kept iff
     * cb_dropout_uniform(seed, offset + i) >= p; kept values scale by 1/(1-p). The backward
     * regenerates the same mask, so none is stored. dx += mask * dy / (1-p). */
    cb_status (*dropout_fwd)(const cb_tensor *x, float p, uint64_t seed, uint64_t offset,
                             cb_tensor *y);
    cb_status (*dropout_bwd)(const cb_tensor *dy, float p, uint64_t seed, uint64_t offset,
                             cb_tensor *dx);

    /* Strided 4-d copy: dst[i0,i1,i2,i3] (+)= src[off + i0*s0 + i1*s1 + i2*s2 + i3*s3] over
     * dst's shape (padded to 4 dims), with dst written at dst_off + contiguous index scaled by
     * dst strides dstride[4]. Covers transpose, slice, concat and their backwards. */
    cb_status (*strided_copy)(const cb_tensor *src, int64_t src_off, const int64_t sstride[4],
                              cb_tensor *dst, int64_t dst_off, const int64_t dstride[4],
                              const int64_t shape[4], bool accumulate);

    /* AdamW on one tensor (f32 master weights and moments):
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m/bc1 / (sqrt(v/bc2) + eps) + wd p)
     * where bc1 = 1 - b1^step, bc2 = 1 - b2^step. grad_scale multiplies g first (clipping). */
    cb_status (*adamw)(cb_tensor *param, const cb_tensor *grad, cb_tensor *m, cb_tensor *v,
                       float lr, float beta1, float beta2, float eps, float weight_decay,
                       int64_t step, float grad_scale);
    /* *out = sum(x^2) in f64 accumulation (for global-norm clipping) */
    cb_status (*sum_squares)(const cb_tensor *x, double *out);

    /* Per-head gates and temperatures (DBA, learned temperature). Entries a backend lacks are
     * NULL; the op layer then reports "not supported on this device".
     *   y = sigmoid(x); dx += dy * y (1 - y)                        x, y [n] */
    cb_status (*sigmoid_fwd)(const cb_tensor *x, cb_tensor *y);
    cb_status (*sigmoid_bwd)(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx);
    /*   y = exp(clamp(x, lo, hi)); dx += dy * y where lo <= x <= hi  x, y [n] */
    cb_status (*exp_clamp_fwd)(const cb_tensor *x, float lo, float hi, cb_tensor *y);
    cb_status (*exp_clamp_bwd)(const cb_tensor *x, const cb_tensor *y, float lo, float hi,
                               const cb_tensor *dy, cb_tensor *dx);
    /*   y[r, h, :] = q[r, h, :] * s[r % ns, h]   q, y [R, H*hd]; s [ns, H] (ns = 1 or R)
     *   dq += dy * s;  ds[r % ns, h] += sum_d dy[r, h, d] * q[r, h, d] */
    cb_status (*head_scale_fwd)(const cb_tensor *q, const cb_tensor *s, int n_heads, cb_tensor *y);
    cb_status (*head_scale_bwd)(const cb_tensor *q, const cb_tensor *s, int n_heads,
                                const cb_tensor *dy, cb_tensor *dq, cb_tensor *ds);
} cb_kernels;

/* The kernel table for a device (NULL with a message when the backend is not built/present). */
const cb_kernels *cb_kernels_for(cb_device dev);
const cb_kernels *cb_cpu_kernels(void);
#ifdef __cplusplus
extern "C" const cb_kernels *cb_cuda_kernels(void); /* in the CUDA plugin only */
#else
const cb_kernels *cb_cuda_kernels(void); /* in the CUDA plugin only */
#endif

/* Counter-based uniform in [0,1) shared by every backend so dropout masks agree across devices:
 * splitmix64 of (seed ^ index*golden). */
static inline float cb_dropout_uniform(uint64_t seed, uint64_t index) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

#endif
