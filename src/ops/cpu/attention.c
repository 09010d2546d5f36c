/* Fused attention with online softmax (flash-attention style), causal / windowed, GQA, and the
 * decoupled (DBA) second score term.
 *
 *   q   [B, T, H*hd]      k  [B, S, Hkv*hd]     v [B, S, Hkv*hdv]
 *   q2  [B, T, H*hd2]     k2 [B, S, Hkv*hd2]    (optional)
 *   out [B, T, H*hdv]     lse [B, H, T]
 *   S_ij = scale <q_i, k_j> + scale2 <q2_i, k2_j>; query i sits at position q_pos0 + i.
 *
 * Tiles: queries in blocks of BQ rows, keys in blocks of BK. Each key block is packed once per
 * task (K transposed so scores are broadcast-FMAs over 64 keys; V and K rows zero-padded to a
 * multiple of 16) and every product runs on 4-row register tiles of 16-float vectors. Memory is
 * O(tile), never O(T * S).
 * Forward: one task per (b, h, query block). Backward: one task per (b, kv head), key blocks
 * outermost: the task owns dK/dV of its kv head (accumulated in a block-local buffer and added
 * once) and dQ of the query heads that read it, so no two threads write the same row. */
#include <math.h>
#include <string.h>

#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/cpu_math.h"

enum { BQ = 32, BK = 64, RB = 4, MAX_HD = 256, NV = BK / 16 };

static inline int64_t pad16(int64_t n) { return (n + 15) & ~(int64_t)15; }

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

/* Every key of [j0, j0+nk) visible from qp, and the block full? Then no mask is needed. */
static inline bool block_full(const cb_attn_cfg *c, int64_t qp, int64_t j0, int64_t nk) {
    return nk == BK && key_allowed(c, qp, j0) && key_allowed(c, qp, j0 + nk - 1);
}

/* Kt[d][j] = src[j][d] for j < nk, zero for nk <= j < BK.   src rows have stride ld. */
static void pack_t(const float *src, int64_t ld, int64_t nk, int64_t hd, float *Kt) {
    for (int64_t d = 0; d < hd; d++) {
        float *row = Kt + d * BK;
        for (int64_t j = 0; j < nk; j++) row[j] = src[j * ld + d];
        for (int64_t j = nk; j < BK; j++) row[j] = 0.0f;
    }
}

/* Rp[j][0..w) = src[j][0..w), zero padded to wp columns and to BK rows. */
static void pack_rows(const float *src, int64_t ld, int64_t n, int64_t w, int64_t wp, int64_t rows,
                      float *Rp) {
    for (int64_t j = 0; j < rows; j++) {
        float *dst = Rp + j * wp;
        if (j < n) {
            memcpy(dst, src + j * ld, sizeof(float) * (size_t)w);
            memset(dst + w, 0, sizeof(float) * (size_t)(wp - w));
        } else {
            memset(dst, 0, sizeof(float) * (size_t)wp);
        }
    }
}

/* S[r][0..BK) (+)= alpha * sum_d A[r][d] Bt[d][0..BK) for RB rows of A (row stride lda). */
static inline void tile_scores(const float *A, int64_t lda, const float *Bt, int64_t n, float alpha,
                               bool accumulate, float *S) {
    cb_v16 acc[RB][NV];
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < NV; c++) acc[r][c] = accumulate ? cb_v16_load(S + r * BK + 16 * c) : (cb_v16){0};
    for (int64_t d = 0; d < n; d++) {
        cb_v16 b[NV];
        for (int c = 0; c < NV; c++) b[c] = cb_v16_load(Bt + d * BK + 16 * c);
        for (int r = 0; r < RB; r++) {
            cb_v16 a = cb_v16_set1(alpha * A[r * lda + d]);
            for (int c = 0; c < NV; c++) acc[r][c] += a * b[c];
        }
    }
    for (int r = 0; r < RB; r++)
        for (int c = 0; c < NV; c++) cb_v16_store(S + r * BK + 16 * c, acc[r][c]);
}

/* O[r][0..wp) = scale_r * O[r] + sum_{j<nk} P[r][j] * Rp[j][0..wp), RB rows. */
static inline void tile_pv(const float *P, const float *Rp, int64_t nk, int64_t wp,
                           const float *scale_r, float *O, int64_t ldo) {
    for (int64_t c0 = 0; c0 < wp; c0 += 32) {
        if (c0 + 32 <= wp) {
            cb_v16 a[RB][2];
            for (int r = 0; r < RB; r++)
                for (int c = 0; c < 2; c++)
                    a[r][c] = cb_v16_load(O + r * ldo + c0 + 16 * c) * (scale_r ? scale_r[r] : 1.0f);
            for (int64_t j = 0; j < nk; j++) {
                cb_v16 v0 = cb_v16_load(Rp + j * wp + c0), v1 = cb_v16_load(Rp + j * wp + c0 + 16);
                for (int r = 0; r < RB; r++) {
                    cb_v16 p = cb_v16_set1(P[r * BK + j]);
                    a[r][0] += p * v0;
                    a[r][1] += p * v1;
                }
            }
            for (int r = 0; r < RB; r++)
                for (int c = 0; c < 2; c++) cb_v16_store(O + r * ldo + c0 + 16 * c, a[r][c]);
        } else { /* one vector left */
            cb_v16 a[RB];
            for (int r = 0; r < RB; r++) a[r] = cb_v16_load(O + r * ldo + c0) * (scale_r ? scale_r[r] : 1.0f);
            for (int64_t j = 0; j < nk; j++) {
                cb_v16 v0 = cb_v16_load(Rp + j * wp + c0);
                for (int r = 0; r < RB; r++) a[r] += cb_v16_set1(P[r * BK + j]) * v0;
            }
            for (int r = 0; r < RB; r++) cb_v16_store(O + r * ldo + c0, a[r]);
        }
    }
}

/* G[j][0..wp) += sum_r W[r][j] * X[r][0..wp) for j < nk (outer-product accumulation). */
static inline void tile_outer(const float *W, const float *X, int64_t nk, int64_t wp, float *G) {
    for (int64_t c0 = 0; c0 < wp; c0 += 16) {
        cb_v16 x[RB];
        for (int r = 0; r < RB; r++) x[r] = cb_v16_load(X + r * wp + c0);
        for (int64_t j = 0; j < nk; j++) {
            cb_v16 g = cb_v16_load(G + j * wp + c0);
            for (int r = 0; r < RB; r++) g += cb_v16_set1(W[r * BK + j]) * x[r];
            cb_v16_store(G + j * wp + c0, g);
        }
    }
}

static cb_status check_cfg(const cb_attn_cfg *c) {
    if (c->head_dim <= 0 || c->v_head_dim <= 0 || c->head_dim > MAX_HD || c->v_head_dim > MAX_HD ||
        c->head_dim2 < 0 || c->head_dim2 > MAX_HD)
        return cb_fail(CB_ERR_UNSUPPORTED, "attention: head sizes must be in 1..%d", MAX_HD);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
        return cb_fail(CB_ERR_ARG, "attention: %d heads not divisible by %d kv heads", c->n_heads,
                       c->n_kv_heads);
    return CB_OK;
}

/* Masks a row of BK scores to -inf where keys are invisible (or beyond nk). */
static inline void mask_row(const cb_attn_cfg *c, int64_t qp, int64_t j0, int64_t nk, float *s) {
    if (block_full(c, qp, j0, nk)) return;
    for (int64_t j = 0; j < BK; j++)
        if (j >= nk || !key_allowed(c, qp, j0 + j)) s[j] = -INFINITY;
}

cb_status cb_cpu_attention_fwd(const cb_attn_cfg *c, const cb_tensor *q, const cb_tensor *k,
                               const cb_tensor *v, const cb_tensor *q2, const cb_tensor *k2,
                               cb_tensor *out, cb_tensor *lse) {
    CB_TRY(check_cfg(c));
    const int64_t B = q->shape[0], T = q->shape[1], S = k->shape[1];
    const int64_t H = c->n_heads, Hkv = c->n_kv_heads, G = H / Hkv;
    const int64_t hd = c->head_dim, hdv = c->v_head_dim, hd2 = q2 ? c->head_dim2 : 0;
    const int64_t hdvp = pad16(hdv);
    const float *qs = q->data, *ks = k->data, *vs = v->data;
    const float *q2s = q2 ? q2->data : NULL, *k2s = k2 ? k2->data : NULL;
    float *os = out->data, *ls = lse->data;
    const int64_t nqb = (T + BQ - 1) / BQ;

#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t qb = 0; qb < nqb; qb++) {
                float Kt[hd * BK], K2t[hd2 ? hd2 * BK : 1], Vp[BK * hdvp];
                float Qp[BQ * hd], Q2p[hd2 ? BQ * hd2 : 1], acc[BQ * hdvp], P[BQ * BK];
                float m[BQ], l[BQ], corr[BQ];
                const int64_t kvh = h / G;
                const int64_t i0 = qb * BQ, nq = T - i0 < BQ ? T - i0 : BQ;
                /* pack the query rows (zero rows past the end keep the 4-row tiles simple) */
                pack_rows(qs + (b * T + i0) * H * hd + h * hd, H * hd, nq, hd, hd, BQ, Qp);
                if (hd2) pack_rows(q2s + (b * T + i0) * H * hd2 + h * hd2, H * hd2, nq, hd2, hd2, BQ, Q2p);
                memset(acc, 0, sizeof acc);
                for (int64_t i = 0; i < BQ; i++) {
                    m[i] = -INFINITY;
                    l[i] = 0;
                }
                int64_t lo, hi;
                key_range(c, c->q_pos0 + i0, c->q_pos0 + i0 + nq - 1, S, &lo, &hi);
                for (int64_t j0 = lo; j0 < hi; j0 += BK) {
                    const int64_t nk = hi - j0 < BK ? hi - j0 : BK;
                    pack_t(ks + (b * S + j0) * Hkv * hd + kvh * hd, Hkv * hd, nk, hd, Kt);
                    if (hd2) pack_t(k2s + (b * S + j0) * Hkv * hd2 + kvh * hd2, Hkv * hd2, nk, hd2, K2t);
                    pack_rows(vs + (b * S + j0) * Hkv * hdv + kvh * hdv, Hkv * hdv, nk, hdv, hdvp, BK, Vp);
                    for (int64_t r0 = 0; r0 < nq; r0 += RB) {
                        tile_scores(Qp + r0 * hd, hd, Kt, hd, c->scale, false, P + r0 * BK);
                        if (hd2) tile_scores(Q2p + r0 * hd2, hd2, K2t, hd2, c->scale2, true, P + r0 * BK);
                    }
                    for (int64_t i = 0; i < nq; i++) {
                        float *s = P + i * BK;
                        mask_row(c, c->q_pos0 + i0 + i, j0, nk, s);
                        cb_v16 sv[NV], mx = cb_v16_load(s);
                        for (int cc = 0; cc < NV; cc++) {
                            sv[cc] = cb_v16_load(s + 16 * cc);
                            mx = cb_v16_max(sv[cc], mx);
                        }
                        float mb = cb_v16_hmax(mx);
                        if (mb == -INFINITY) { /* nothing visible in this block */
                            memset(s, 0, sizeof(float) * BK);
                            corr[i] = 1.0f;
                            continue;
                        }
                        float mn = mb > m[i] ? mb : m[i];
                        corr[i] = cb_fast_expf(m[i] - mn);
                        cb_v16 sum = {0};
                        for (int cc = 0; cc < NV; cc++) {
                            cb_v16 p = cb_v16_exp(sv[cc] - mn);
                            cb_v16i keep = sv[cc] > -INFINITY; /* masked keys weigh exactly 0 */
                            cb_v16i pi;
                            memcpy(&pi, &p, sizeof pi);
                            pi &= keep;
                            memcpy(&p, &pi, sizeof p);
                            sum += p;
                            cb_v16_store(s + 16 * cc, p);
                        }
                        l[i] = l[i] * corr[i] + cb_v16_hsum(sum);
                        m[i] = mn;
                    }
                    for (int64_t i = nq; i < BQ; i++) corr[i] = 1.0f;
                    for (int64_t r0 = 0; r0 < nq; r0 += RB) {
                        for (int64_t i = nq; i < r0 + RB && i < BQ; i++) memset(P + i * BK, 0, sizeof(float) * BK);
                        tile_pv(P + r0 * BK, Vp, nk, hdvp, corr + r0, acc + r0 * hdvp, hdvp);
                    }
                }
                for (int64_t i = 0; i < nq; i++) {
                    float *o = os + ((b * T + i0 + i) * H + h) * hdv;
                    float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
                    for (int64_t d = 0; d < hdv; d++) o[d] = acc[i * hdvp + d] * inv;
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
    const int64_t hdp = pad16(hd), hdvp = pad16(hdv), hd2p = hd2 ? pad16(hd2) : 16;
    const float *qs = q->data, *ks = k->data, *vs = v->data, *os = out->data, *ls = lse->data,
                *gs = dout->data;
    const float *q2s = q2 ? q2->data : NULL, *k2s = k2 ? k2->data : NULL;
    float *dqs = dq ? dq->data : NULL, *dks = dk ? dk->data : NULL, *dvs = dv ? dv->data : NULL;
    float *dq2s = dq2 ? dq2->data : NULL, *dk2s = dk2 ? dk2->data : NULL;
    const int64_t ldq = H * hd, ldk = Hkv * hd, ldv = Hkv * hdv, ldq2 = H * hd2, ldk2 = Hkv * hd2;

#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kvh = 0; kvh < Hkv; kvh++) {
            float Kt[hd * BK], K2t[hd2 ? hd2 * BK : 1], Vt[hdv * BK];
            float Kp[BK * hdp], K2p[hd2 ? BK * hd2p : 1];
            float dKb[BK * hdp], dVb[BK * hdvp], dK2b[hd2 ? BK * hd2p : 1];
            float Qr[RB * hdp], Q2r[hd2 ? RB * hd2p : 1], dOr[RB * hdvp];
            float dQr[RB * hdp], dQ2r[hd2 ? RB * hd2p : 1];
            float P[RB * BK], dS[RB * BK], D[RB], L[RB];
            int64_t lo_all, hi_all;
            key_range(c, c->q_pos0, c->q_pos0 + T - 1, S, &lo_all, &hi_all);
            for (int64_t j0 = lo_all; j0 < hi_all; j0 += BK) {
                const int64_t nk = hi_all - j0 < BK ? hi_all - j0 : BK;
                pack_t(ks + (b * S + j0) * ldk + kvh * hd, ldk, nk, hd, Kt);
                pack_t(vs + (b * S + j0) * ldv + kvh * hdv, ldv, nk, hdv, Vt);
                pack_rows(ks + (b * S + j0) * ldk + kvh * hd, ldk, nk, hd, hdp, BK, Kp);
                if (hd2) {
                    pack_t(k2s + (b * S + j0) * ldk2 + kvh * hd2, ldk2, nk, hd2, K2t);
                    pack_rows(k2s + (b * S + j0) * ldk2 + kvh * hd2, ldk2, nk, hd2, hd2p, BK, K2p);
                    memset(dK2b, 0, sizeof dK2b);
                }
                memset(dKb, 0, sizeof dKb);
                memset(dVb, 0, sizeof dVb);
                /* queries that can see this block */
                int64_t i_lo = 0, i_hi = T;
                if (c->causal) i_lo = j0 - c->q_pos0 > 0 ? j0 - c->q_pos0 : 0;
                if (c->window > 0) {
                    int64_t last = j0 + nk - 1 + c->window - 1 - c->q_pos0 + 1; /* qp < j + window */
                    if (last < i_hi) i_hi = last > 0 ? last : 0;
                    if (!c->causal) {
                        int64_t first = j0 - c->window + 1 - c->q_pos0;
                        if (first > i_lo) i_lo = first;
                    }
                }
                for (int64_t h = kvh * G; h < (kvh + 1) * G; h++)
                    for (int64_t r0 = i_lo; r0 < i_hi; r0 += RB) {
                        const int64_t nr = i_hi - r0 < RB ? i_hi - r0 : RB;
                        bool any = false;
                        for (int64_t r = 0; r < RB; r++) {
                            L[r] = r < nr ? ls[(b * H + h) * T + r0 + r] : -INFINITY;
                            any |= L[r] != -INFINITY;
                        }
                        if (!any) continue;
                        pack_rows(qs + (b * T + r0) * ldq + h * hd, ldq, nr, hd, hdp, RB, Qr);
                        pack_rows(gs + (b * T + r0) * H * hdv + h * hdv, H * hdv, nr, hdv, hdvp, RB, dOr);
                        if (hd2) pack_rows(q2s + (b * T + r0) * ldq2 + h * hd2, ldq2, nr, hd2, hd2p, RB, Q2r);
                        for (int64_t r = 0; r < RB; r++) {
                            float s = 0;
                            if (r < nr) {
                                const float *orow = os + ((b * T + r0 + r) * H + h) * hdv;
                                for (int64_t d = 0; d < hdv; d++) s += dOr[r * hdvp + d] * orow[d];
                            }
                            D[r] = s;
                        }
                        tile_scores(Qr, hdp, Kt, hd, c->scale, false, P);
                        if (hd2) tile_scores(Q2r, hd2p, K2t, hd2, c->scale2, true, P);
                        tile_scores(dOr, hdvp, Vt, hdv, 1.0f, false, dS); /* dP */
                        for (int64_t r = 0; r < RB; r++) {
                            float *p = P + r * BK, *ds = dS + r * BK;
                            if (L[r] == -INFINITY) {
                                memset(p, 0, sizeof(float) * BK);
                                memset(ds, 0, sizeof(float) * BK);
                                continue;
                            }
                            mask_row(c, c->q_pos0 + r0 + r, j0, nk, p);
                            for (int cc = 0; cc < NV; cc++) {
                                cb_v16 sv = cb_v16_load(p + 16 * cc);
                                cb_v16 pv = cb_v16_exp(sv - L[r]);
                                cb_v16i keep = sv > -INFINITY, pi;
                                memcpy(&pi, &pv, sizeof pi);
                                pi &= keep;
                                memcpy(&pv, &pi, sizeof pv);
                                cb_v16_store(p + 16 * cc, pv);
                                cb_v16_store(ds + 16 * cc, pv * (cb_v16_load(ds + 16 * cc) - D[r]));
                            }
                        }
                        if (dvs) tile_outer(P, dOr, nk, hdvp, dVb);
                        /* dS already carries P; the scales enter once here */
                        float dSs[RB * BK];
                        for (int64_t x = 0; x < RB * BK; x++) dSs[x] = dS[x] * c->scale;
                        if (dks) tile_outer(dSs, Qr, nk, hdp, dKb);
                        if (dqs) {
                            memset(dQr, 0, sizeof dQr);
                            tile_pv(dSs, Kp, nk, hdp, NULL, dQr, hdp);
                            for (int64_t r = 0; r < nr; r++) {
                                float *dst = dqs + (b * T + r0 + r) * ldq + h * hd;
                                for (int64_t d = 0; d < hd; d++) dst[d] += dQr[r * hdp + d];
                            }
                        }
                        if (hd2) {
                            for (int64_t x = 0; x < RB * BK; x++) dSs[x] = dS[x] * c->scale2;
                            if (dk2s) tile_outer(dSs, Q2r, nk, hd2p, dK2b);
                            if (dq2s) {
                                memset(dQ2r, 0, sizeof dQ2r);
                                tile_pv(dSs, K2p, nk, hd2p, NULL, dQ2r, hd2p);
                                for (int64_t r = 0; r < nr; r++) {
                                    float *dst = dq2s + (b * T + r0 + r) * ldq2 + h * hd2;
                                    for (int64_t d = 0; d < hd2; d++) dst[d] += dQ2r[r * hd2p + d];
                                }
                            }
                        }
                    }
                for (int64_t j = 0; j < nk; j++) {
                    if (dks) {
                        float *dst = dks + (b * S + j0 + j) * ldk + kvh * hd;
                        for (int64_t d = 0; d < hd; d++) dst[d] += dKb[j * hdp + d];
                    }
                    if (dvs) {
                        float *dst = dvs + (b * S + j0 + j) * ldv + kvh * hdv;
                        for (int64_t d = 0; d < hdv; d++) dst[d] += dVb[j * hdvp + d];
                    }
                    if (hd2 && dk2s) {
                        float *dst = dk2s + (b * S + j0 + j) * ldk2 + kvh * hd2;
                        for (int64_t d = 0; d < hd2; d++) dst[d] += dK2b[j * hd2p + d];
                    }
                }
            }
        }
    return CB_OK;
}
