/* Fused attention with online softmax (flash-attention style), causal / windowed, GQA, and the
 * decoupled (DBA) second score term.
 *
 *   q   [B, T, H*hd]      k  [B, S, Hkv*hd]     v [B, S, Hkv*hdv]
 *   q2  [B, T, H*hd2]     k2 [B, S, Hkv*hd2]    (optional)
 *   out [B, T, H*hdv]     lse [B, H, T]
 *   S_ij = scale <q_i, k_j> + scale2 <q2_i, k2_j>; query i sits at position q_pos0 + i.
 *
 * Forward: one task per (b, h, block of BQ queries). Keys are visited in blocks of BK; each block
 * is packed transposed (Kt[d][j]) once and shared by the block's queries, so the score loop is a
 * broadcast-FMA over j that the compiler vectorises. Memory is O(BQ * hdv) per task, never
 * O(T * S).
 * Backward: one task per (b, kv head): that task owns dK/dV of its kv head and dQ of the query
 * heads that read it, so no two threads write the same gradient row. */
#include <math.h>
#include <string.h>

#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/cpu_math.h"

enum { BQ = 32, BK = 64, MAX_HD = 256 };

/* Whether key position j is visible from query position qp. */
static inline bool key_allowed(const cb_attn_cfg *c, int64_t qp, int64_t j) {
    if (c->causal && j > qp) return false;
    if (c->window > 0) {
        if (j <= qp - c->window) return false;
        if (!c->causal && j >= qp + c->window) return false;
    }
    return true;
}

/* Visible key range [lo, hi) for queries at positions [qp0, qp1]. */
static inline void key_range(const cb_attn_cfg *c, int64_t qp0, int64_t qp1, int64_t S,
                             int64_t *lo, int64_t *hi) {
    int64_t a = 0, b = S;
    if (c->causal && qp1 + 1 < b) b = qp1 + 1;
    if (c->window > 0) {
        if (qp0 - c->window + 1 > a) a = qp0 - c->window + 1;
        if (!c->causal && qp1 + c->window < b) b = qp1 + c->window;
    }
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* Kt[d][j] = k[row j][d] for the nk keys starting at key row base (row stride ld). */
static inline void pack_t(const float *k, int64_t ld, int64_t nk, int64_t hd, float *Kt) {
    for (int64_t j = 0; j < nk; j++)
        for (int64_t d = 0; d < hd; d++) Kt[d * BK + j] = k[j * ld + d];
}

/* s[j] = alpha * sum_d q[d] Kt[d][j] for j < BK (entries >= nk are garbage, masked later) */
static inline void scores_add(const float *q, const float *Kt, int64_t hd, float alpha, float *s) {
    for (int64_t d = 0; d < hd; d++) {
        float qd = alpha * q[d];
        const float *kr = Kt + d * BK;
#pragma omp simd
        for (int j = 0; j < BK; j++) s[j] += qd * kr[j];
    }
}

static cb_status check_cfg(const cb_attn_cfg *c) {
    if (c->head_dim > MAX_HD || c->v_head_dim > MAX_HD || c->head_dim2 > MAX_HD)
        return cb_fail(CB_ERR_UNSUPPORTED, "attention: head size above %d", MAX_HD);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
        return cb_fail(CB_ERR_ARG, "attention: %d heads not divisible by %d kv heads", c->n_heads,
                       c->n_kv_heads);
    return CB_OK;
}

cb_status cb_cpu_attention_fwd(const cb_attn_cfg *c, const cb_tensor *q, const cb_tensor *k,
                               const cb_tensor *v, const cb_tensor *q2, const cb_tensor *k2,
                               cb_tensor *out, cb_tensor *lse) {
    CB_TRY(check_cfg(c));
    const int64_t B = q->shape[0], T = q->shape[1], S = k->shape[1];
    const int64_t H = c->n_heads, Hkv = c->n_kv_heads, G = H / Hkv;
    const int64_t hd = c->head_dim, hdv = c->v_head_dim, hd2 = q2 ? c->head_dim2 : 0;
    const float *qs = q->data, *ks = k->data, *vs = v->data;
    const float *q2s = q2 ? q2->data : NULL, *k2s = k2 ? k2->data : NULL;
    float *os = out->data, *ls = lse->data;
    const int64_t nqb = (T + BQ - 1) / BQ;

#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t qb = 0; qb < nqb; qb++) {
                float Kt[MAX_HD * BK], K2t[hd2 ? MAX_HD * BK : 1];
                float acc[BQ][MAX_HD], m[BQ], l[BQ], s[BK];
                const int64_t kvh = h / G;
                const int64_t i0 = qb * BQ, i1 = i0 + BQ < T ? i0 + BQ : T, nq = i1 - i0;
                int64_t lo, hi;
                key_range(c, c->q_pos0 + i0, c->q_pos0 + i1 - 1, S, &lo, &hi);
                for (int64_t i = 0; i < nq; i++) {
                    m[i] = -INFINITY;
                    l[i] = 0;
                    memset(acc[i], 0, (size_t)hdv * sizeof(float));
                }
                for (int64_t j0 = lo; j0 < hi; j0 += BK) {
                    int64_t nk = hi - j0 < BK ? hi - j0 : BK;
                    pack_t(ks + (b * S + j0) * Hkv * hd + kvh * hd, Hkv * hd, nk, hd, Kt);
                    if (hd2) pack_t(k2s + (b * S + j0) * Hkv * hd2 + kvh * hd2, Hkv * hd2, nk, hd2, K2t);
                    for (int64_t i = 0; i < nq; i++) {
                        const int64_t qp = c->q_pos0 + i0 + i;
                        memset(s, 0, sizeof s);
                        scores_add(qs + ((b * T + i0 + i) * H + h) * hd, Kt, hd, c->scale, s);
                        if (hd2)
                            scores_add(q2s + ((b * T + i0 + i) * H + h) * hd2, K2t, hd2, c->scale2, s);
                        float mb = -INFINITY;
                        for (int64_t j = 0; j < BK; j++) {
                            if (j >= nk || !key_allowed(c, qp, j0 + j)) s[j] = -INFINITY;
                            mb = s[j] > mb ? s[j] : mb;
                        }
                        if (mb == -INFINITY) continue;
                        float mn = mb > m[i] ? mb : m[i];
                        float corr = cb_fast_expf(m[i] - mn), sum = 0;
#pragma omp simd reduction(+ : sum)
                        for (int j = 0; j < BK; j++) {
                            s[j] = cb_fast_expf(s[j] - mn);
                            sum += s[j];
                        }
                        l[i] = l[i] * corr + sum;
                        m[i] = mn;
                        float *a = acc[i];
                        if (corr != 1.0f)
#pragma omp simd
                            for (int64_t d = 0; d < hdv; d++) a[d] *= corr;
                        const float *vb = vs + (b * S + j0) * Hkv * hdv + kvh * hdv;
                        for (int64_t j = 0; j < nk; j++) {
                            float p = s[j];
                            if (p == 0.0f) continue;
                            const float *vr = vb + j * Hkv * hdv;
#pragma omp simd
                            for (int64_t d = 0; d < hdv; d++) a[d] += p * vr[d];
                        }
                    }
                }
                for (int64_t i = 0; i < nq; i++) {
                    float *o = os + ((b * T + i0 + i) * H + h) * hdv;
                    float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
                    for (int64_t d = 0; d < hdv; d++) o[d] = acc[i][d] * inv;
                    ls[(b * H + h) * T + i0 + i] = l[i] > 0 ? m[i] + logf(l[i]) : -INFINITY;
                }
            }
    return CB_OK;
}

cb_status cb_cpu_attention_bwd(const cb_attn_cfg *c, const cb_tensor *q, const cb_tensor *k,
                               const cb_tensor *v, const cb_tensor *q2, const cb_tensor *k2,
                               const cb_tensor *out, const cb_tensor *lse, const cb_tensor *dout,
                               cb_tensor *dq, cb_tensor *dk, cb_tensor *dv, cb_tensor *dq2,
                               cb_tensor *dk2) {
    CB_TRY(check_cfg(c));
    const int64_t B = q->shape[0], T = q->shape[1], S = k->shape[1];
    const int64_t H = c->n_heads, Hkv = c->n_kv_heads, G = H / Hkv;
    const int64_t hd = c->head_dim, hdv = c->v_head_dim, hd2 = q2 ? c->head_dim2 : 0;
    const float *qs = q->data, *ks = k->data, *vs = v->data, *os = out->data, *ls = lse->data,
                *gs = dout->data;
    const float *q2s = q2 ? q2->data : NULL, *k2s = k2 ? k2->data : NULL;
    float *dqs = dq ? dq->data : NULL, *dks = dk ? dk->data : NULL, *dvs = dv ? dv->data : NULL;
    float *dq2s = dq2 ? dq2->data : NULL, *dk2s = dk2 ? dk2->data : NULL;
    const int64_t ldk = Hkv * hd, ldv = Hkv * hdv, ldk2 = Hkv * hd2;

#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kvh = 0; kvh < Hkv; kvh++) {
            float Kt[MAX_HD * BK], Vt[MAX_HD * BK], K2t[hd2 ? MAX_HD * BK : 1];
            float s[BK], dp[BK];
            int64_t lo_all, hi_all;
            key_range(c, c->q_pos0, c->q_pos0 + T - 1, S, &lo_all, &hi_all);
            /* Key blocks outermost: each block is packed once and serves every query row of
             * every head in the group. */
            for (int64_t j0 = lo_all; j0 < hi_all; j0 += BK) {
                int64_t nk = hi_all - j0 < BK ? hi_all - j0 : BK;
                pack_t(ks + (b * S + j0) * ldk + kvh * hd, ldk, nk, hd, Kt);
                pack_t(vs + (b * S + j0) * ldv + kvh * hdv, ldv, nk, hdv, Vt);
                if (hd2) pack_t(k2s + (b * S + j0) * ldk2 + kvh * hd2, ldk2, nk, hd2, K2t);
                for (int64_t h = kvh * G; h < (kvh + 1) * G; h++)
                    for (int64_t i = 0; i < T; i++) {
                        const int64_t qp = c->q_pos0 + i;
                        int64_t lo, hi;
                        key_range(c, qp, qp, S, &lo, &hi);
                        if (hi <= j0 || lo >= j0 + nk) continue;
                        const float li = ls[(b * H + h) * T + i];
                        if (li == -INFINITY) continue; /* fully masked row: zero output, no grad */
                        const float *qi = qs + ((b * T + i) * H + h) * hd;
                        const float *q2i = hd2 ? q2s + ((b * T + i) * H + h) * hd2 : NULL;
                        const float *gi = gs + ((b * T + i) * H + h) * hdv;
                        const float *oi = os + ((b * T + i) * H + h) * hdv;
                        float Di = 0;
#pragma omp simd reduction(+ : Di)
                        for (int64_t d = 0; d < hdv; d++) Di += gi[d] * oi[d];
                        memset(s, 0, sizeof s);
                        memset(dp, 0, sizeof dp);
                        scores_add(qi, Kt, hd, c->scale, s);
                        if (hd2) scores_add(q2i, K2t, hd2, c->scale2, s);
                        scores_add(gi, Vt, hdv, 1.0f, dp);
                        for (int64_t j = 0; j < BK; j++) {
                            bool ok = j < nk && key_allowed(c, qp, j0 + j);
                            float p = ok ? cb_fast_expf(s[j] - li) : 0.0f;
                            s[j] = p;                 /* P_ij */
                            dp[j] = p * (dp[j] - Di); /* dS_ij */
                        }
                        float *dqr = dqs ? dqs + ((b * T + i) * H + h) * hd : NULL;
                        float *dq2r = dq2s ? dq2s + ((b * T + i) * H + h) * hd2 : NULL;
                        for (int64_t j = 0; j < nk; j++) {
                            float p = s[j], ds = dp[j];
                            if (p == 0.0f && ds == 0.0f) continue;
                            const int64_t kr = b * S + j0 + j;
                            if (dvs) {
                                float *dvr = dvs + kr * ldv + kvh * hdv;
#pragma omp simd
                                for (int64_t d = 0; d < hdv; d++) dvr[d] += p * gi[d];
                            }
                            const float a = ds * c->scale;
                            if (dqr) {
                                const float *krow = ks + kr * ldk + kvh * hd;
#pragma omp simd
                                for (int64_t d = 0; d < hd; d++) dqr[d] += a * krow[d];
                            }
                            if (dks) {
                                float *dkr = dks + kr * ldk + kvh * hd;
#pragma omp simd
                                for (int64_t d = 0; d < hd; d++) dkr[d] += a * qi[d];
                            }
                            if (hd2) {
                                const float a2 = ds * c->scale2;
                                if (dq2r) {
                                    const float *krow = k2s + kr * ldk2 + kvh * hd2;
                                    for (int64_t d = 0; d < hd2; d++) dq2r[d] += a2 * krow[d];
                                }
                                if (dk2s) {
                                    float *r = dk2s + kr * ldk2 + kvh * hd2;
                                    for (int64_t d = 0; d < hd2; d++) r[d] += a2 * q2i[d];
                                }
                            }
                        }
                    }
            }
        }
    return CB_OK;
}
