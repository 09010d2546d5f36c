/* Per-head gates and temperatures (DBA learned_temp / decoupled_gate): sigmoid, exp of a clamped
 * value and scaling each head of a projection by its own factor. Semantics as the CPU kernels
 * (ops/cpu/gates.c): gradients accumulate (+=); head_scale's dq and ds may each be NULL. Every
 * tensor goes through a typed view (f32, bf16 or f16), math in f32.
 * The shared-scale gradient ds [H] is a reduction over all rows: it runs in fixed row chunks
 * into scratch and then sums the chunks in order, so it is deterministic (no float atomics). */
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

#define GATE_THREADS 256

/* ---- sigmoid --------------------------------------------------------------------------------- */

/* x, y [n]: y = sigmoid(x) */
__global__ void k_sigmoid_fwd(int64_t n, cb_tv x, cb_tv y) {
    CB_GRID_LOOP(i, n) cb_st(y, i, 1.f / (1.f + expf(-cb_ld(x, i))));
}

/* y, dy, dx [n]: dx += dy * y (1 - y) */
__global__ void k_sigmoid_bwd(int64_t n, cb_tv y, cb_tv dy, cb_tv dx) {
    CB_GRID_LOOP(i, n) {
        float o = cb_ld(y, i);
        cb_acc(dx, i, cb_ld(dy, i) * o * (1.f - o));
    }
}

static cb_status same_numel(const char *op, const cb_tensor *a, const cb_tensor *b) {
    if (cb_tensor_numel(a) == cb_tensor_numel(b)) return CB_OK;
    return cb_fail(CB_ERR_SHAPE, "cuda %s: %lld vs %lld elements", op,
                   (long long)cb_tensor_numel(a), (long long)cb_tensor_numel(b));
}

extern "C" cb_status cb_cuda_sigmoid_fwd(const cb_tensor *x, cb_tensor *y) {
    CB_CU_FLOATS("sigmoid_fwd", x, y);
    CB_TRY(same_numel("sigmoid_fwd", x, y));
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(x);
    if (n == 0) return CB_OK;
    k_sigmoid_fwd<<<cb_cu_blocks(n, GATE_THREADS), GATE_THREADS, 0, c->stream>>>(n, cb_view(x),
                                                                                 cb_view(y));
    CB_CU_LAUNCHED("sigmoid_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_sigmoid_bwd(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx) {
    CB_CU_FLOATS("sigmoid_bwd", y, dy, dx);
    CB_TRY(same_numel("sigmoid_bwd", y, dy));
    CB_TRY(same_numel("sigmoid_bwd", y, dx));
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(y);
    if (n == 0) return CB_OK;
    k_sigmoid_bwd<<<cb_cu_blocks(n, GATE_THREADS), GATE_THREADS, 0, c->stream>>>(
        n, cb_view(y), cb_view(dy), cb_view(dx));
    CB_CU_LAUNCHED("sigmoid_bwd");
    return CB_OK;
}

/* ---- exp_clamp ------------------------------------------------------------------------------- */

/* x, y [n]: y = exp(clamp(x, lo, hi)) */
__global__ void k_exp_clamp_fwd(int64_t n, float lo, float hi, cb_tv x, cb_tv y) {
    CB_GRID_LOOP(i, n) {
        float a = cb_ld(x, i);
        cb_st(y, i, expf(a < lo ? lo : (a > hi ? hi : a)));
    }
}

/* x, y, dy, dx [n]: dx += dy * y where lo <= x <= hi (inclusive at both edges, as torch.clamp
 * and the CPU kernel); outside the clamp the gradient is 0 and dx is left as it is. */
__global__ void k_exp_clamp_bwd(int64_t n, float lo, float hi, cb_tv x, cb_tv y, cb_tv dy,
                                cb_tv dx) {
    CB_GRID_LOOP(i, n) {
        float a = cb_ld(x, i);
        if (a >= lo && a <= hi) cb_acc(dx, i, cb_ld(dy, i) * cb_ld(y, i));
    }
}

extern "C" cb_status cb_cuda_exp_clamp_fwd(const cb_tensor *x, float lo, float hi, cb_tensor *y) {
    CB_CU_FLOATS("exp_clamp_fwd", x, y);
    CB_TRY(same_numel("exp_clamp_fwd", x, y));
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(x);
    if (n == 0) return CB_OK;
    k_exp_clamp_fwd<<<cb_cu_blocks(n, GATE_THREADS), GATE_THREADS, 0, c->stream>>>(
        n, lo, hi, cb_view(x), cb_view(y));
    CB_CU_LAUNCHED("exp_clamp_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_exp_clamp_bwd(const cb_tensor *x, const cb_tensor *y, float lo,
                                           float hi, const cb_tensor *dy, cb_tensor *dx) {
    CB_CU_FLOATS("exp_clamp_bwd", x, y, dy, dx);
    CB_TRY(same_numel("exp_clamp_bwd", x, y));
    CB_TRY(same_numel("exp_clamp_bwd", x, dy));
    CB_TRY(same_numel("exp_clamp_bwd", x, dx));
    CB_CU_CTX(c);
    int64_t n = cb_tensor_numel(x);
    if (n == 0) return CB_OK;
    k_exp_clamp_bwd<<<cb_cu_blocks(n, GATE_THREADS), GATE_THREADS, 0, c->stream>>>(
        n, lo, hi, cb_view(x), cb_view(y), cb_view(dy), cb_view(dx));
    CB_CU_LAUNCHED("exp_clamp_bwd");
    return CB_OK;
}

/* ---- head_scale ------------------------------------------------------------------------------ */

/* q, y [R, H*hd]; s [ns, H] (ns = 1 shared or R per row): y[r, h, :] = q[r, h, :] * s[r % ns, h] */
__global__ void k_head_scale_fwd(int64_t R, int64_t W, int64_t hd, int64_t H, int64_t ns, cb_tv q,
                                 cb_tv s, cb_tv y) {
    CB_GRID_LOOP(i, R * W) {
        int64_t r = i / W, h = (i - r * W) / hd;
        cb_st(y, i, cb_ld(q, i) * cb_ld(s, (r % ns) * H + h));
    }
}

/* dy, dq [R, H*hd]; s [ns, H]: dq[r, h, :] += dy[r, h, :] * s[r % ns, h] */
__global__ void k_head_scale_bwd_dq(int64_t R, int64_t W, int64_t hd, int64_t H, int64_t ns,
                                    cb_tv s, cb_tv dy, cb_tv dq) {
    CB_GRID_LOOP(i, R * W) {
        int64_t r = i / W, h = (i - r * W) / hd;
        cb_acc(dq, i, cb_ld(dy, i) * cb_ld(s, (r % ns) * H + h));
    }
}

/* Per-row scale (ns = R): one warp per (row, head), blockDim.x a multiple of 32.
 *   q, dy [R, H*hd]; ds [R, H]: ds[r, h] += sum_e dy[r, h, e] * q[r, h, e] */
__global__ void k_head_scale_ds_rows(int64_t R, int64_t W, int64_t hd, int64_t H, cb_tv q, cb_tv dy,
                                     cb_tv ds) {
    int lane = threadIdx.x & 31;
    int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t p = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; p < R * H; p += warps) {
        int64_t r = p / H, h = p - r * H, base = r * W + h * hd;
        float acc = 0.f;
        for (int64_t e = lane; e < hd; e += 32) acc += cb_ld(dy, base + e) * cb_ld(q, base + e);
        acc = cb_warp_sum(acc);
        if (lane == 0) cb_acc(ds, p, acc);
    }
}

/* Shared scale (ns = 1), pass 1. Grid (H, chunks), block GATE_THREADS; chunk c covers rows
 * [c * rpc, min(R, (c + 1) * rpc)).
 *   q, dy [R, H*hd]; partial [chunks, H] f32: partial[c, h] = sum over the chunk of dy * q */
__global__ void k_head_scale_ds_partial(int64_t R, int64_t W, int64_t hd, int64_t H, int64_t rpc,
                                        cb_tv q, cb_tv dy, float *partial) {
    __shared__ float sh[32];
    int64_t h = blockIdx.x, c = blockIdx.y;
    int64_t r0 = c * rpc, r1 = r0 + rpc < R ? r0 + rpc : R;
    int64_t count = (r1 - r0) * hd;
    float acc = 0.f;
    for (int64_t t = threadIdx.x; t < count; t += blockDim.x) {
        int64_t r = r0 + t / hd, o = r * W + h * hd + t % hd;
        acc += cb_ld(dy, o) * cb_ld(q, o);
    }
    acc = cb_block_sum(acc, sh);
    if (threadIdx.x == 0) partial[c * H + h] = acc;
}

/* Pass 2. partial [chunks, H] f32; ds [H]: ds[h] += sum_c partial[c, h], in chunk order */
__global__ void k_head_scale_ds_final(int64_t H, int64_t chunks, const float *partial, cb_tv ds) {
    CB_GRID_LOOP(h, H) {
        float s = 0.f;
        for (int64_t c = 0; c < chunks; c++) s += partial[c * H + h];
        cb_acc(ds, h, s);
    }
}

/* Checks the shapes shared by forward and backward; sets W, R, hd and ns. */
static cb_status head_scale_shapes(const char *op, const cb_tensor *q, const cb_tensor *s,
                                   int n_heads, const cb_tensor *other, int64_t *W, int64_t *R,
                                   int64_t *hd, int64_t *ns) {
    int64_t n = cb_tensor_numel(q);
    *W = q->ndim > 0 ? q->shape[q->ndim - 1] : 1;
    *R = *W > 0 ? n / *W : 0;
    *hd = n_heads > 0 ? *W / n_heads : 0;
    *ns = n_heads > 0 ? cb_tensor_numel(s) / n_heads : 0;
    if (n_heads <= 0 || *W % n_heads || cb_tensor_numel(s) % n_heads || (*ns != 1 && *ns != *R) ||
        (other && cb_tensor_numel(other) != n))
        return cb_fail(CB_ERR_SHAPE,
                       "cuda %s: %lld scales cannot scale the %d heads of %lld rows of %lld", op,
                       (long long)cb_tensor_numel(s), n_heads, (long long)*R, (long long)*W);
    return CB_OK;
}

extern "C" cb_status cb_cuda_head_scale_fwd(const cb_tensor *q, const cb_tensor *s, int n_heads,
                                            cb_tensor *y) {
    CB_CU_FLOATS("head_scale_fwd", q, s, y);
    int64_t W, R, hd, ns;
    CB_TRY(head_scale_shapes("head_scale_fwd", q, s, n_heads, y, &W, &R, &hd, &ns));
    CB_CU_CTX(c);
    if (R * W == 0) return CB_OK;
    k_head_scale_fwd<<<cb_cu_blocks(R * W, GATE_THREADS), GATE_THREADS, 0, c->stream>>>(
        R, W, hd, n_heads, ns, cb_view(q), cb_view(s), cb_view(y));
    CB_CU_LAUNCHED("head_scale_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_head_scale_bwd(const cb_tensor *q, const cb_tensor *s, int n_heads,
                                            const cb_tensor *dy, cb_tensor *dq, cb_tensor *ds) {
    CB_CU_FLOATS("head_scale_bwd", q, s, dy, dq, ds);
    int64_t W, R, hd, ns;
    CB_TRY(head_scale_shapes("head_scale_bwd", q, s, n_heads, dy, &W, &R, &hd, &ns));
    if (dq && cb_tensor_numel(dq) != R * W)
        return cb_fail(CB_ERR_SHAPE, "cuda head_scale_bwd: dq has %lld elements, q %lld",
                       (long long)cb_tensor_numel(dq), (long long)(R * W));
    if (ds && cb_tensor_numel(ds) != cb_tensor_numel(s))
        return cb_fail(CB_ERR_SHAPE, "cuda head_scale_bwd: ds has %lld elements, s %lld",
                       (long long)cb_tensor_numel(ds), (long long)cb_tensor_numel(s));
    CB_CU_CTX(c);
    const int64_t H = n_heads;
    if (R * W == 0) return CB_OK;
    if (dq) {
        k_head_scale_bwd_dq<<<cb_cu_blocks(R * W, GATE_THREADS), GATE_THREADS, 0, c->stream>>>(
            R, W, hd, H, ns, cb_view(s), cb_view(dy), cb_view(dq));
        CB_CU_LAUNCHED("head_scale_bwd_dq");
    }
    if (!ds) return CB_OK;
    if (ns == R) { /* per row (also R = 1): each (row, head) has its own warp, no reduction */
        k_head_scale_ds_rows<<<cb_cu_blocks(R * H * 32, GATE_THREADS), GATE_THREADS, 0,
                               c->stream>>>(R, W, hd, H, cb_view(q), cb_view(dy), cb_view(ds));
        CB_CU_LAUNCHED("head_scale_ds_rows");
        return CB_OK;
    }
    /* shared: about 4 blocks per SM in all, at least 8 rows a chunk */
    int64_t chunks = (4LL * c->num_sms + H - 1) / H;
    int64_t max_chunks = (R + 7) / 8;
    if (chunks > max_chunks) chunks = max_chunks;
    if (chunks > 65535) chunks = 65535;
    if (chunks < 1) chunks = 1;
    int64_t rpc = (R + chunks - 1) / chunks;
    chunks = (R + rpc - 1) / rpc;
    float *partial = (float *)cb_cu_scratch((size_t)(chunks * H) * sizeof(float));
    if (!partial) return CB_ERR_NOMEM;
    dim3 grid((unsigned)H, (unsigned)chunks);
    k_head_scale_ds_partial<<<grid, GATE_THREADS, 0, c->stream>>>(R, W, hd, H, rpc, cb_view(q),
                                                                  cb_view(dy), partial);
    CB_CU_LAUNCHED("head_scale_ds_partial");
    k_head_scale_ds_final<<<cb_cu_blocks(H, GATE_THREADS), GATE_THREADS, 0, c->stream>>>(
        H, chunks, partial, cb_view(ds));
    CB_CU_LAUNCHED("head_scale_ds_final");
    return CB_OK;
}
