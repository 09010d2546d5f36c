/* Flash-style attention, forward and backward: tiles of queries and keys in shared memory, online
 * softmax, the [T, S] score matrix never materialised.
 *
 *   q [B, T, H*hd]   k [B, S, Hkv*hd]   v [B, S, Hkv*hdv]   out [B, T, H*hdv]   lse [B, H, T] f32
 *   q2 [B, T, H*hd2] k2 [B, S, Hkv*hd2] (decoupled second score term, optional)
 *   score(i, j) = scale <q_i, k_j> + scale2 <q2_i, k2_j>; query head h reads kv head h / (H/Hkv)
 *   key j is visible to query i (position p = q_pos0 + i) iff j <= p when causal and
 *   j > p - window when window > 0 (and, not causal, also j < p + window: a symmetric window, as
 *   the CPU backend does). Rows that see no key give zeros and lse = -inf.
 *
 * This is the general path: any head sizes (hd + hd2 <= 512, hdv <= 512), any dtype (converted to
 * f32 on the way into shared memory), f32 arithmetic. Both score terms are handled as one dot
 * product over the concatenation [q*scale, q2*scale2] . [k, k2].
 *
 * The backward is deterministic (no atomics): one kernel owns a tile of keys and loops over every
 * query (and every query head of its GQA group) to produce dK, dK2, dV; a second kernel owns a tile
 * of queries and loops over keys to produce dQ, dQ2. Scores are recomputed in both, from lse. */
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"
#include <stdio.h>
#include <stdlib.h>

#include "ops/cuda/attention.cuh"

#include <string.h>

#define AT_BK 32      /* keys per tile: one per lane in the softmax step */
#define AT_THREADS 256

/* First and one-past-last key visible to query positions [p_lo, p_hi]. */
__device__ __forceinline__ void key_range(const cb_attn_dims &d, int64_t p_lo, int64_t p_hi,
                                          int64_t *kb, int64_t *ke) {
    int64_t e = d.S;
    if (d.causal && p_hi + 1 < e) e = p_hi + 1;
    int64_t b = 0;
    if (d.window > 0) {
        if (p_lo - d.window + 1 > b) b = p_lo - d.window + 1;
        if (!d.causal && p_hi + d.window < e) e = p_hi + d.window;
    }
    if (e < b) e = b;
    *kb = b;
    *ke = e;
}

__device__ __forceinline__ bool visible(const cb_attn_dims &d, int64_t p, int64_t j) {
    if (d.causal && j > p) return false;
    if (d.window > 0 && (j <= p - d.window || (!d.causal && j >= p + d.window))) return false;
    return true;
}

/* rows [BQ, DQ] <- [q*scale, q2*scale2] for queries t0.. of head h (zeros past T) */
__device__ void load_q(const cb_attn_dims &d, const cb_attn_ptrs &a, float *Qs, int BQ, int64_t b,
                       int h, int64_t t0) {
    int DQ = d.hd + d.hd2;
    for (int idx = threadIdx.x; idx < BQ * DQ; idx += blockDim.x) {
        int r = idx / DQ, e = idx % DQ;
        int64_t t = t0 + r;
        float x = 0.f;
        if (t < d.T) {
            int64_t row = b * d.T + t;
            x = e < d.hd ? cb_ld(a.q, (row * d.H + h) * d.hd + e) * d.scale
                         : cb_ld(a.q2, (row * d.H + h) * d.hd2 + (e - d.hd)) * d.scale2;
        }
        Qs[r * DQ + e] = x;
    }
}

/* rows [BR, ld] <- [k, k2] of kv head kh for keys j0.. (zeros past S) */
__device__ void load_k(const cb_attn_dims &d, const cb_attn_ptrs &a, float *Ks, int ld, int BR,
                       int64_t b, int kh, int64_t j0) {
    int DQ = d.hd + d.hd2;
    for (int idx = threadIdx.x; idx < BR * DQ; idx += blockDim.x) {
        int r = idx / DQ, e = idx % DQ;
        int64_t j = j0 + r;
        float x = 0.f;
        if (j < d.S) {
            int64_t row = b * d.S + j;
            x = e < d.hd ? cb_ld(a.k, (row * d.Hkv + kh) * d.hd + e)
                         : cb_ld(a.k2, (row * d.Hkv + kh) * d.hd2 + (e - d.hd));
        }
        Ks[r * ld + e] = x;
    }
}

/* rows [BR, ld] <- x[b, t0 + r, head*dim : (head+1)*dim] for a tensor of nheads heads */
__device__ void load_rows(cb_tv x, float *dst, int ld, int BR, int64_t rows_per_b, int64_t b,
                          int nheads, int head, int dim, int64_t t0) {
    for (int idx = threadIdx.x; idx < BR * dim; idx += blockDim.x) {
        int r = idx / dim, e = idx % dim;
        int64_t t = t0 + r;
        dst[r * ld + e] =
            t < rows_per_b ? cb_ld(x, ((b * rows_per_b + t) * nheads + head) * dim + e) : 0.f;
    }
}

/* ---- forward --------------------------------------------------------------------------------- */

/* Grid (ceil(T/BQ), H, B), AT_THREADS threads. Shared memory (floats):
 *   Qs [BQ, DQ], Ks [BK, DQ+1], Vs [BK, hdv], Ss [BQ, BK+1], Os [BQ, hdv], m, l, corr [BQ] */
__global__ void k_attn_fwd(cb_attn_dims d, cb_attn_ptrs a, int BQ) {
    extern __shared__ float sm[];
    const int DQ = d.hd + d.hd2, hdv = d.hdv, BK = AT_BK;
    float *Qs = sm, *Ks = Qs + BQ * DQ, *Vs = Ks + BK * (DQ + 1), *Ss = Vs + BK * hdv;
    float *Os = Ss + BQ * (BK + 1), *mrow = Os + BQ * hdv, *lrow = mrow + BQ, *corr = lrow + BQ;
    const int64_t t0 = (int64_t)blockIdx.x * BQ;
    const int h = blockIdx.y, kh = h / (d.H / d.Hkv);
    const int64_t b = blockIdx.z;
    const int nq = (int)(d.T - t0 < BQ ? d.T - t0 : BQ);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;

    load_q(d, a, Qs, BQ, b, h, t0);
    for (int idx = threadIdx.x; idx < BQ * hdv; idx += blockDim.x) Os[idx] = 0.f;
    for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
        mrow[r] = -INFINITY;
        lrow[r] = 0.f;
    }
    int64_t kb, ke;
    key_range(d, d.q_pos0 + t0, d.q_pos0 + t0 + nq - 1, &kb, &ke);
    for (int64_t k0 = kb; k0 < ke; k0 += BK) {
        const int nk = (int)(ke - k0 < BK ? ke - k0 : BK);
        __syncthreads(); /* previous tile fully consumed */
        load_k(d, a, Ks, DQ + 1, BK, b, kh, k0);
        load_rows(a.v, Vs, hdv, BK, d.S, b, d.Hkv, kh, hdv, k0);
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x) {
            int r = idx / BK, jj = idx % BK;
            float s = -INFINITY;
            if (r < nq && jj < nk && visible(d, d.q_pos0 + t0 + r, k0 + jj)) {
                const float *qr = Qs + r * DQ, *kr = Ks + jj * (DQ + 1);
                float acc = 0.f;
                for (int e = 0; e < DQ; e++) acc += qr[e] * kr[e];
                s = acc;
            }
            Ss[r * (BK + 1) + jj] = s;
        }
        __syncthreads();
        for (int r = warp; r < BQ; r += nwarps) {
            float s = Ss[r * (BK + 1) + lane];
            float mt = cb_warp_max(s);
            float mo = mrow[r], mn = fmaxf(mo, mt);
            float p = s == -INFINITY ? 0.f : __expf(s - mn);
            float al = mo == mn ? 1.f : __expf(mo - mn);
            Ss[r * (BK + 1) + lane] = p;
            float ps = cb_warp_sum(p);
            if (lane == 0) {
                lrow[r] = lrow[r] * al + ps;
                mrow[r] = mn;
                corr[r] = al;
            }
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * hdv; idx += blockDim.x) {
            int r = idx / hdv, e = idx % hdv;
            const float *pr = Ss + r * (BK + 1);
            float acc = Os[idx] * corr[r];
            for (int jj = 0; jj < nk; jj++) acc += pr[jj] * Vs[jj * hdv + e];
            Os[idx] = acc;
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nq * hdv; idx += blockDim.x) {
        int r = idx / hdv, e = idx % hdv;
        float l = lrow[r];
        cb_st(a.out, ((b * d.T + t0 + r) * d.H + h) * hdv + e, l > 0.f ? Os[idx] / l : 0.f);
    }
    for (int r = threadIdx.x; r < nq; r += blockDim.x) {
        float l = lrow[r];
        cb_st(a.lse, (b * d.H + h) * d.T + t0 + r, l > 0.f ? mrow[r] + logf(l) : -INFINITY);
    }
}

static size_t fwd_smem(int BQ, int DQ, int hdv) {
    return sizeof(float) * ((size_t)BQ * DQ + (size_t)AT_BK * (DQ + 1) + (size_t)AT_BK * hdv +
                            (size_t)BQ * (AT_BK + 1) + (size_t)BQ * hdv + 3 * (size_t)BQ);
}

/* ---- backward -------------------------------------------------------------------------------- */

/* Dv[b, h, t] = <dout[b, t, h], out[b, t, h]>   (dout, out [B, T, H*hdv]; Dv [B, H, T] f32) */
__global__ void k_attn_bwd_dot(cb_attn_dims d, cb_tv out, cb_tv dout, float *Dv) {
    int64_t nrows = d.B * d.H * d.T;
    int lane = threadIdx.x & 31;
    int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t r = w; r < nrows; r += nw) {
        int64_t t = r % d.T, h = (r / d.T) % d.H, b = r / (d.T * d.H);
        int64_t base = ((b * d.T + t) * d.H + h) * d.hdv;
        float s = 0.f;
        for (int e = lane; e < d.hdv; e += 32) s += cb_ld(out, base + e) * cb_ld(dout, base + e);
        s = cb_warp_sum(s);
        if (lane == 0) Dv[r] = s;
    }
}

/* p and dS for one (query row r, key jj) pair; Qs scaled, Ks raw, dOs, Vs padded. */
__device__ __forceinline__ void pds(const cb_attn_dims &d, const float *Qs, const float *Ks,
                                    const float *dOs, const float *Vs, int r, int jj, float lse,
                                    float Dr, float *p, float *ds) {
    const int DQ = d.hd + d.hd2;
    const float *qr = Qs + r * DQ, *kr = Ks + jj * (DQ + 1);
    float s = 0.f;
    for (int e = 0; e < DQ; e++) s += qr[e] * kr[e];
    float pv = lse == -INFINITY ? 0.f : __expf(s - lse);
    const float *gr = dOs + r * d.hdv, *vr = Vs + jj * (d.hdv + 1);
    float dp = 0.f;
    for (int e = 0; e < d.hdv; e++) dp += gr[e] * vr[e];
    *p = pv;
    *ds = pv * (dp - Dr);
}

/* Grid (ceil(S/BK), Hkv, B). Shared (floats): Ks [BK, DQ+1], Vs [BK, hdv+1], dK [BK, DQ],
 * dV [BK, hdv], Qs [BQ, DQ], dOs [BQ, hdv], Ps, dSs [BQ, BK+1], lse, D [BQ] */
__global__ void k_attn_bwd_dkdv(cb_attn_dims d, cb_attn_ptrs a, const float *Dv, int BQ) {
    extern __shared__ float sm[];
    const int DQ = d.hd + d.hd2, hdv = d.hdv, BK = AT_BK;
    float *Ks = sm, *Vs = Ks + BK * (DQ + 1), *dK = Vs + BK * (hdv + 1), *dV = dK + BK * DQ;
    float *Qs = dV + BK * hdv, *dOs = Qs + BQ * DQ, *Ps = dOs + BQ * hdv, *dSs = Ps + BQ * (BK + 1);
    float *ls = dSs + BQ * (BK + 1), *Ds = ls + BQ;
    const int64_t j0 = (int64_t)blockIdx.x * BK;
    const int kh = blockIdx.y, G = d.H / d.Hkv;
    const int64_t b = blockIdx.z;
    const int nk = (int)(d.S - j0 < BK ? d.S - j0 : BK);

    load_k(d, a, Ks, DQ + 1, BK, b, kh, j0);
    load_rows(a.v, Vs, hdv + 1, BK, d.S, b, d.Hkv, kh, hdv, j0);
    for (int idx = threadIdx.x; idx < BK * DQ; idx += blockDim.x) dK[idx] = 0.f;
    for (int idx = threadIdx.x; idx < BK * hdv; idx += blockDim.x) dV[idx] = 0.f;
    /* queries that can see a key of this tile */
    int64_t i_lo = 0, i_hi = d.T - 1;
    if (d.causal && j0 - d.q_pos0 > i_lo) i_lo = j0 - d.q_pos0;
    if (d.window > 0) {
        if (j0 + nk - 1 + d.window - 1 - d.q_pos0 < i_hi)
            i_hi = j0 + nk - 1 + d.window - 1 - d.q_pos0;
        if (!d.causal && j0 - d.window + 1 - d.q_pos0 > i_lo) i_lo = j0 - d.window + 1 - d.q_pos0;
    }
    for (int g = 0; g < G; g++) {
        const int h = kh * G + g;
        for (int64_t t0 = i_lo; t0 <= i_hi; t0 += BQ) {
            const int nq = (int)(d.T - t0 < BQ ? d.T - t0 : BQ);
            __syncthreads();
            load_q(d, a, Qs, BQ, b, h, t0);
            load_rows(a.dout, dOs, hdv, BQ, d.T, b, d.H, h, hdv, t0);
            for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
                int64_t li = (b * d.H + h) * d.T + t0 + r;
                ls[r] = r < nq ? cb_ld(a.lse, li) : -INFINITY;
                Ds[r] = r < nq ? Dv[li] : 0.f;
            }
            __syncthreads();
            for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x) {
                int r = idx / BK, jj = idx % BK;
                float p = 0.f, ds = 0.f;
                if (r < nq && jj < nk && visible(d, d.q_pos0 + t0 + r, j0 + jj))
                    pds(d, Qs, Ks, dOs, Vs, r, jj, ls[r], Ds[r], &p, &ds);
                Ps[r * (BK + 1) + jj] = p;
                dSs[r * (BK + 1) + jj] = ds;
            }
            __syncthreads();
            for (int idx = threadIdx.x; idx < BK * hdv; idx += blockDim.x) {
                int jj = idx / hdv, e = idx % hdv;
                float acc = 0.f;
                for (int r = 0; r < nq; r++) acc += Ps[r * (BK + 1) + jj] * dOs[r * hdv + e];
                dV[idx] += acc;
            }
            for (int idx = threadIdx.x; idx < BK * DQ; idx += blockDim.x) {
                int jj = idx / DQ, e = idx % DQ;
                float acc = 0.f;
                for (int r = 0; r < nq; r++) acc += dSs[r * (BK + 1) + jj] * Qs[r * DQ + e];
                dK[idx] += acc;
            }
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nk * DQ; idx += blockDim.x) {
        int jj = idx / DQ, e = idx % DQ;
        int64_t row = b * d.S + j0 + jj;
        if (e < d.hd) {
            if (a.dk.p) cb_acc(a.dk, (row * d.Hkv + kh) * d.hd + e, dK[idx]);
        } else if (a.dk2.p) {
            cb_acc(a.dk2, (row * d.Hkv + kh) * d.hd2 + (e - d.hd), dK[idx]);
        }
    }
    if (a.dv.p)
        for (int idx = threadIdx.x; idx < nk * hdv; idx += blockDim.x) {
            int jj = idx / hdv, e = idx % hdv;
            cb_acc(a.dv, ((b * d.S + j0 + jj) * d.Hkv + kh) * hdv + e, dV[idx]);
        }
}

static size_t dkdv_smem(int BQ, int DQ, int hdv) {
    size_t BK = AT_BK;
    return sizeof(float) * (BK * (DQ + 1) + BK * (hdv + 1) + BK * DQ + BK * hdv + (size_t)BQ * DQ +
                            (size_t)BQ * hdv + 2 * (size_t)BQ * (BK + 1) + 2 * (size_t)BQ);
}

/* Grid (ceil(T/BQ), H, B). Shared (floats): Qs [BQ, DQ], dOs [BQ, hdv], Ks [BK, DQ+1],
 * Vs [BK, hdv+1], dSs [BQ, BK+1], dQ [BQ, DQ], lse, D [BQ] */
__global__ void k_attn_bwd_dq(cb_attn_dims d, cb_attn_ptrs a, const float *Dv, int BQ) {
    extern __shared__ float sm[];
    const int DQ = d.hd + d.hd2, hdv = d.hdv, BK = AT_BK;
    float *Qs = sm, *dOs = Qs + BQ * DQ, *Ks = dOs + BQ * hdv, *Vs = Ks + BK * (DQ + 1);
    float *dSs = Vs + BK * (hdv + 1), *dQ = dSs + BQ * (BK + 1), *ls = dQ + BQ * DQ, *Ds = ls + BQ;
    const int64_t t0 = (int64_t)blockIdx.x * BQ;
    const int h = blockIdx.y, kh = h / (d.H / d.Hkv);
    const int64_t b = blockIdx.z;
    const int nq = (int)(d.T - t0 < BQ ? d.T - t0 : BQ);

    load_q(d, a, Qs, BQ, b, h, t0);
    load_rows(a.dout, dOs, hdv, BQ, d.T, b, d.H, h, hdv, t0);
    for (int idx = threadIdx.x; idx < BQ * DQ; idx += blockDim.x) dQ[idx] = 0.f;
    for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
        int64_t li = (b * d.H + h) * d.T + t0 + r;
        ls[r] = r < nq ? cb_ld(a.lse, li) : -INFINITY;
        Ds[r] = r < nq ? Dv[li] : 0.f;
    }
    int64_t kb, ke;
    key_range(d, d.q_pos0 + t0, d.q_pos0 + t0 + nq - 1, &kb, &ke);
    for (int64_t k0 = kb; k0 < ke; k0 += BK) {
        const int nk = (int)(ke - k0 < BK ? ke - k0 : BK);
        __syncthreads();
        load_k(d, a, Ks, DQ + 1, BK, b, kh, k0);
        load_rows(a.v, Vs, hdv + 1, BK, d.S, b, d.Hkv, kh, hdv, k0);
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * BK; idx += blockDim.x) {
            int r = idx / BK, jj = idx % BK;
            float p = 0.f, ds = 0.f;
            if (r < nq && jj < nk && visible(d, d.q_pos0 + t0 + r, k0 + jj))
                pds(d, Qs, Ks, dOs, Vs, r, jj, ls[r], Ds[r], &p, &ds);
            dSs[r * (BK + 1) + jj] = ds;
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < BQ * DQ; idx += blockDim.x) {
            int r = idx / DQ, e = idx % DQ;
            const float *sr = dSs + r * (BK + 1);
            float acc = 0.f;
            for (int jj = 0; jj < nk; jj++) acc += sr[jj] * Ks[jj * (DQ + 1) + e];
            dQ[idx] += acc;
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nq * DQ; idx += blockDim.x) {
        int r = idx / DQ, e = idx % DQ;
        int64_t row = b * d.T + t0 + r;
        if (e < d.hd) {
            if (a.dq.p) cb_acc(a.dq, (row * d.H + h) * d.hd + e, dQ[idx] * d.scale);
        } else if (a.dq2.p) {
            cb_acc(a.dq2, (row * d.H + h) * d.hd2 + (e - d.hd), dQ[idx] * d.scale2);
        }
    }
}

static size_t dq_smem(int BQ, int DQ, int hdv) {
    size_t BK = AT_BK;
    return sizeof(float) * ((size_t)BQ * DQ + (size_t)BQ * hdv + BK * (DQ + 1) + BK * (hdv + 1) +
                            (size_t)BQ * (BK + 1) + (size_t)BQ * DQ + 2 * (size_t)BQ);
}

/* ---- host side ------------------------------------------------------------------------------- */

cb_status cb_cu_attn_setup(const char *op, const cb_attn_cfg *cfg, const cb_tensor *q,
                           const cb_tensor *k, const cb_tensor *v, const cb_tensor *q2,
                           const cb_tensor *k2, const cb_tensor *out, const cb_tensor *lse,
                           cb_attn_dims *d) {
    CB_CU_FLOATS(op, q, k, v, q2, k2, out, lse);
    int H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    if (H <= 0 || Hkv <= 0 || H % Hkv != 0)
        return cb_fail(CB_ERR_ARG, "cuda %s: %d query heads do not group over %d kv heads", op, H,
                       Hkv);
    if (cfg->head_dim <= 0 || cfg->v_head_dim <= 0 || cfg->head_dim2 < 0)
        return cb_fail(CB_ERR_ARG, "cuda %s: bad head sizes %d/%d/%d", op, cfg->head_dim,
                       cfg->v_head_dim, cfg->head_dim2);
    if (q->ndim < 2 || k->ndim < 2)
        return cb_fail(CB_ERR_SHAPE, "cuda %s: q and k need [B, T, H*hd]", op);
    bool dec = q2 && k2 && cfg->head_dim2 > 0;
    d->T = q->shape[q->ndim - 2];
    d->B = d->T ? cb_tensor_rows(q) / d->T : 0;
    d->S = k->shape[k->ndim - 2];
    d->H = H;
    d->Hkv = Hkv;
    d->hd = cfg->head_dim;
    d->hdv = cfg->v_head_dim;
    d->hd2 = dec ? cfg->head_dim2 : 0;
    d->scale = cfg->scale;
    d->scale2 = dec ? cfg->scale2 : 0.f;
    d->causal = cfg->causal ? 1 : 0;
    d->window = cfg->window;
    d->q_pos0 = cfg->q_pos0;
    char s1[64], s2[64], s3[64];
    if (cb_tensor_cols(q) != (int64_t)H * d->hd || cb_tensor_cols(k) != (int64_t)Hkv * d->hd ||
        cb_tensor_cols(v) != (int64_t)Hkv * d->hdv || cb_tensor_rows(k) != d->B * d->S ||
        cb_tensor_rows(v) != d->B * d->S)
        return cb_fail(CB_ERR_SHAPE, "cuda %s: q %s, k %s, v %s do not fit H=%d Hkv=%d hd=%d hdv=%d",
                       op, cb_shape_str(q, s1, sizeof s1), cb_shape_str(k, s2, sizeof s2),
                       cb_shape_str(v, s3, sizeof s3), H, Hkv, d->hd, d->hdv);
    if (dec && (cb_tensor_cols(q2) != (int64_t)H * d->hd2 ||
                cb_tensor_cols(k2) != (int64_t)Hkv * d->hd2))
        return cb_fail(CB_ERR_SHAPE, "cuda %s: q2 %s / k2 %s do not fit hd2=%d", op,
                       cb_shape_str(q2, s1, sizeof s1), cb_shape_str(k2, s2, sizeof s2), d->hd2);
    if (out && cb_tensor_numel(out) != d->B * d->T * H * (int64_t)d->hdv)
        return cb_fail(CB_ERR_SHAPE, "cuda %s: out %s, expected [%lld, %lld, %lld]", op,
                       cb_shape_str(out, s1, sizeof s1), (long long)d->B, (long long)d->T,
                       (long long)H * d->hdv);
    if (lse && cb_tensor_numel(lse) != d->B * H * d->T)
        return cb_fail(CB_ERR_SHAPE, "cuda %s: lse %s, expected [%lld, %d, %lld]", op,
                       cb_shape_str(lse, s1, sizeof s1), (long long)d->B, H, (long long)d->T);
    if (d->hd + d->hd2 > 512 || d->hdv > 512)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda %s: head sizes %d+%d / %d above 512", op, d->hd,
                       d->hd2, d->hdv);
    if (d->T > 65535LL * AT_BK * 16 || d->B > 65535 || H > 65535)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda %s: grid too large", op);
    return CB_OK;
}

/* Picks the largest query tile whose shared memory fits; 0 when none does. */
static int pick_bq(size_t (*smem)(int, int, int), int DQ, int hdv, size_t limit) {
    for (int bq = 32; bq >= 8; bq /= 2)
        if (smem(bq, DQ, hdv) <= limit) return bq;
    return 0;
}

static cb_status launch_prep(const void *fn, size_t bytes) {
    return cb_cu_check(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)bytes),
                       "raise the shared-memory limit of an attention kernel");
}

cb_status cb_cu_attention_fwd_general(cb_cuda_ctx *c, const cb_attn_dims &d,
                                      const cb_attn_ptrs &a) {
    int DQ = d.hd + d.hd2;
    int BQ = pick_bq(fwd_smem, DQ, d.hdv, c->max_smem_optin);
    if (!BQ)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda attention: head sizes %d/%d need too much shared "
                                           "memory", DQ, d.hdv);
    size_t sm = fwd_smem(BQ, DQ, d.hdv);
    CB_TRY(launch_prep((const void *)k_attn_fwd, sm));
    dim3 grid((unsigned)((d.T + BQ - 1) / BQ), (unsigned)d.H, (unsigned)d.B);
    k_attn_fwd<<<grid, AT_THREADS, sm, c->stream>>>(d, a, BQ);
    CB_CU_LAUNCHED("attention_fwd");
    return CB_OK;
}

extern "C" cb_status cb_cuda_attention_fwd(const cb_attn_cfg *cfg, const cb_tensor *q,
                                           const cb_tensor *k, const cb_tensor *v,
                                           const cb_tensor *q2, const cb_tensor *k2,
                                           cb_tensor *out, cb_tensor *lse) {
    cb_attn_dims d;
    CB_TRY(cb_cu_attn_setup("attention_fwd", cfg, q, k, v, q2, k2, out, lse, &d));
    CB_CU_CTX(c);
    if (d.B == 0 || d.T == 0) return CB_OK;
    cb_attn_ptrs a;
    memset(&a, 0, sizeof a);
    a.q = cb_view(q);
    a.k = cb_view(k);
    a.v = cb_view(v);
    a.q2 = cb_view(d.hd2 ? q2 : nullptr);
    a.k2 = cb_view(d.hd2 ? k2 : nullptr);
    a.out = cb_view(out);
    a.lse = cb_view(lse);
    if (!lse) {
        /* lse is part of the contract but a caller doing inference may not keep it */
        float *tmp = (float *)cb_cu_scratch((size_t)(d.B * d.H * d.T) * sizeof(float));
        if (!tmp) return CB_ERR_NOMEM;
        a.lse.p = tmp;
        a.lse.dt = CB_F32;
    }
    if (cb_cu_attention_fwd_fast(c, d, a)) return CB_OK;
    return cb_cu_attention_fwd_general(c, d, a);
}

extern "C" cb_status cb_cuda_attention_bwd(const cb_attn_cfg *cfg, const cb_tensor *q,
                                           const cb_tensor *k, const cb_tensor *v,
                                           const cb_tensor *q2, const cb_tensor *k2,
                                           const cb_tensor *out, const cb_tensor *lse,
                                           const cb_tensor *dout, cb_tensor *dq, cb_tensor *dk,
                                           cb_tensor *dv, cb_tensor *dq2, cb_tensor *dk2) {
    cb_attn_dims d;
    CB_TRY(cb_cu_attn_setup("attention_bwd", cfg, q, k, v, q2, k2, out, lse, &d));
    CB_CU_FLOATS("attention_bwd", dout, dq, dk, dv, dq2, dk2);
    CB_CU_CTX(c);
    if (!out || !lse || !dout)
        return cb_fail(CB_ERR_ARG, "cuda attention_bwd: out, lse and dout are required");
    if (d.B == 0 || d.T == 0 || d.S == 0) return CB_OK;
    cb_attn_ptrs a;
    memset(&a, 0, sizeof a);
    a.q = cb_view(q);
    a.k = cb_view(k);
    a.v = cb_view(v);
    a.q2 = cb_view(d.hd2 ? q2 : nullptr);
    a.k2 = cb_view(d.hd2 ? k2 : nullptr);
    a.out = cb_view(out);
    a.lse = cb_view(lse);
    a.dout = cb_view(dout);
    a.dq = cb_view(dq);
    a.dk = cb_view(dk);
    a.dv = cb_view(dv);
    a.dq2 = cb_view(d.hd2 ? dq2 : nullptr);
    a.dk2 = cb_view(d.hd2 ? dk2 : nullptr);
    bool need_q = a.dq.p || a.dq2.p, need_kv = a.dk.p || a.dv.p || a.dk2.p;
    if (!need_q && !need_kv) return CB_OK;
    float *Dv = (float *)cb_cu_scratch((size_t)(d.B * d.H * d.T) * sizeof(float));
    if (!Dv) return CB_ERR_NOMEM;
    int64_t rows = d.B * d.H * d.T;
    k_attn_bwd_dot<<<cb_cu_blocks(rows * 32, 256), 256, 0, c->stream>>>(d, a.out, a.dout, Dv);
    CB_CU_LAUNCHED("attention_bwd_dot");
    int fast = cb_cu_attention_bwd_fast(c, d, a, Dv);
    if (getenv("CARAMBA_CUDA_TRACE")) /* say which kernels ran, and why */
        fprintf(stderr, "cuda attention_bwd: B=%lld T=%lld S=%lld H=%d Hkv=%d hd=%d/%d/%d causal=%d "
                        "q %s k %s v %s dout %s lse %s dq %s dk %s dv %s align q%d k%d v%d dout%d -> %s\n",
                (long long)d.B, (long long)d.T, (long long)d.S, d.H, d.Hkv, d.hd, d.hdv, d.hd2, d.causal,
                cb_dtype_name((cb_dtype)a.q.dt), cb_dtype_name((cb_dtype)a.k.dt),
                cb_dtype_name((cb_dtype)a.v.dt), cb_dtype_name((cb_dtype)a.dout.dt),
                cb_dtype_name((cb_dtype)a.lse.dt), cb_dtype_name((cb_dtype)a.dq.dt),
                cb_dtype_name((cb_dtype)a.dk.dt), cb_dtype_name((cb_dtype)a.dv.dt),
                (int)(((uintptr_t)a.q.p & 15) == 0), (int)(((uintptr_t)a.k.p & 15) == 0),
                (int)(((uintptr_t)a.v.p & 15) == 0), (int)(((uintptr_t)a.dout.p & 15) == 0),
                fast > 0 ? "tensor cores" : "general kernels");
    if (fast < 0) return CB_ERR_DEVICE;
    if (fast > 0) return CB_OK;
    int DQ = d.hd + d.hd2;
    if (need_kv) {
        int BQ = pick_bq(dkdv_smem, DQ, d.hdv, c->max_smem_optin);
        if (!BQ) return cb_fail(CB_ERR_UNSUPPORTED, "cuda attention_bwd: head sizes too large");
        size_t sm = dkdv_smem(BQ, DQ, d.hdv);
        CB_TRY(launch_prep((const void *)k_attn_bwd_dkdv, sm));
        dim3 grid((unsigned)((d.S + AT_BK - 1) / AT_BK), (unsigned)d.Hkv, (unsigned)d.B);
        k_attn_bwd_dkdv<<<grid, AT_THREADS, sm, c->stream>>>(d, a, Dv, BQ);
        CB_CU_LAUNCHED("attention_bwd_dkdv");
    }
    if (need_q) {
        int BQ = pick_bq(dq_smem, DQ, d.hdv, c->max_smem_optin);
        if (!BQ) return cb_fail(CB_ERR_UNSUPPORTED, "cuda attention_bwd: head sizes too large");
        size_t sm = dq_smem(BQ, DQ, d.hdv);
        CB_TRY(launch_prep((const void *)k_attn_bwd_dq, sm));
        dim3 grid((unsigned)((d.T + BQ - 1) / BQ), (unsigned)d.H, (unsigned)d.B);
        k_attn_bwd_dq<<<grid, AT_THREADS, sm, c->stream>>>(d, a, Dv, BQ);
        CB_CU_LAUNCHED("attention_bwd_dq");
    }
    return CB_OK;
}
