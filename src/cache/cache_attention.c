/* Attention of a few queries over a KV cache, reading the stored rows (fp32, fp16, q8_0, q4_0,
 * nf4, plus the fp16 window) directly.
 *
 * Shapes: q [B, T, H*hd], q2 [B, T, H*hd2] (decoupled) or NULL, caches k [B, L, Hkv*hd],
 * k2 [B, L, Hkv*hd2], v [B, L, Hkv*hdv], out [B, T, H*hdv], lse [B, H, T] or NULL.
 *
 * Fast path (cb_kv_attention): a work item is (b, kv head g, block of queries, chunk of keys).
 * All G = H/Hkv query heads of g and all queries of the block share each decoded key/value tile
 * (TILE tokens x one head, decoded into a thread-local buffer that stays in L1), which is where
 * the GQA reuse comes from; the cache itself is streamed exactly once per item. Each row keeps an
 * online-softmax state (m, l, acc). Long caches are split into chunks (split-K) when there are
 * too few (b, g, query block) items to feed the threads; the partial states are merged at the
 * end: M = max m_c, l = sum l_c e^(m_c - M), acc = sum acc_c e^(m_c - M).
 *
 * Reference path (cb_kv_attention_ref): one row, one key at a time, scalar traits
 * (cb_quant_dot_range / cb_quant_axpy_range on the stored row). */
#include "caramba/kv_cache.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cache/quant_simd.h"

enum {
    TILE = 32,       /* tokens decoded at a time */
    ROWS_MAX = 64,   /* query rows (heads x queries) per work item, bounds scratch */
    MIN_CHUNK = 512, /* smallest split-K chunk, tokens */
};

typedef struct dims {
    int64_t B, T, L, H, Hkv, G, hd, hdv, hd2;
} dims;

static cb_status check_tensor(const cb_tensor *t, const char *what, int64_t d0, int64_t d1,
                              int64_t d2) {
    if (!t || t->dtype != CB_F32 || t->device != CB_CPU || t->ndim != 3 || t->shape[0] != d0 ||
        t->shape[1] != d1 || t->shape[2] != d2) {
        char buf[64] = "(null)";
        if (t) cb_shape_str(t, buf, sizeof buf);
        return cb_fail(CB_ERR_SHAPE, "cache attention: %s must be f32 CPU [%lld, %lld, %lld], got %s %s",
                       what, (long long)d0, (long long)d1, (long long)d2,
                       t ? cb_dtype_name(t->dtype) : "", buf);
    }
    return CB_OK;
}

static cb_status check_cache(const cb_seq_cache *c, const char *what, int64_t B, int64_t L,
                             int64_t width) {
    if (!c || !c->data)
        return cb_fail(CB_ERR_ARG, "cache attention: %s cache missing", what);
    if (c->batch != B || c->width != width || c->len != L)
        return cb_fail(CB_ERR_SHAPE,
                       "cache attention: %s cache is [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                       what, (long long)c->batch, (long long)c->len, (long long)c->width,
                       (long long)B, (long long)L, (long long)width);
    return CB_OK;
}

static cb_status check_args(const cb_kv_attn_cfg *cfg, const cb_tensor *q, const cb_seq_cache *k,
                            const cb_seq_cache *v, const cb_tensor *q2, const cb_seq_cache *k2,
                            const cb_tensor *out, const cb_tensor *lse, dims *d) {
    if (!cfg || !q || !k || !v || !out)
        return cb_fail(CB_ERR_ARG, "cache attention: missing argument");
    if (cfg->n_heads <= 0 || cfg->n_kv_heads <= 0 || cfg->n_heads % cfg->n_kv_heads != 0 ||
        cfg->head_dim <= 0 || cfg->v_head_dim <= 0 || cfg->head_dim2 < 0)
        return cb_fail(CB_ERR_ARG,
                       "cache attention: bad heads H=%d Hkv=%d (H must be a multiple of Hkv), "
                       "head_dim %d, v_head_dim %d, head_dim2 %d",
                       cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, cfg->v_head_dim,
                       cfg->head_dim2);
    if ((cfg->head_dim2 > 0) != (q2 != NULL) || (q2 != NULL) != (k2 != NULL))
        return cb_fail(CB_ERR_ARG, "cache attention: the decoupled term needs head_dim2 > 0, q2 "
                                   "and k2 together (head_dim2 %d, q2 %s, k2 %s)",
                       cfg->head_dim2, q2 ? "set" : "NULL", k2 ? "set" : "NULL");
    if (q->ndim != 3) return check_tensor(q, "q", -1, -1, -1);
    d->B = q->shape[0];
    d->T = q->shape[1];
    d->H = cfg->n_heads;
    d->Hkv = cfg->n_kv_heads;
    d->G = d->H / d->Hkv;
    d->hd = cfg->head_dim;
    d->hdv = cfg->v_head_dim;
    d->hd2 = cfg->head_dim2;
    d->L = k->len;
    CB_TRY(check_tensor(q, "q", d->B, d->T, d->H * d->hd));
    CB_TRY(check_tensor(out, "out", d->B, d->T, d->H * d->hdv));
    CB_TRY(check_cache(k, "k", d->B, d->L, d->Hkv * d->hd));
    CB_TRY(check_cache(v, "v", d->B, d->L, d->Hkv * d->hdv));
    if (q2) {
        CB_TRY(check_tensor(q2, "q2", d->B, d->T, d->H * d->hd2));
        CB_TRY(check_cache(k2, "k2", d->B, d->L, d->Hkv * d->hd2));
    }
    if (lse) CB_TRY(check_tensor(lse, "lse", d->B, d->H, d->T));
    return CB_OK;
}

/* Allowed keys of the query at absolute position p: [lo, hi). */
static inline void key_range(const cb_kv_attn_cfg *cfg, int64_t L, int64_t p, int64_t *lo,
                             int64_t *hi) {
    int64_t a = 0, b = L;
    if (cfg->causal && p + 1 < b) b = p + 1;
    if (cfg->window > 0 && p - cfg->window + 1 > a) a = p - cfg->window + 1;
    if (b < 0) b = 0;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* ================================ reference path ======================================== */

static float ref_dot(const cb_seq_cache *c, int64_t ws, int64_t b, int64_t pos, int64_t e0,
                     int64_t n, const float *x) {
    if (pos >= ws)
        return cb_quant_dot_range(cb_quant_traits_ref(CB_F16), x, cb_seq_cache_window_row(c, b, pos),
                                  e0, n);
    return cb_quant_dot_range(cb_quant_traits_ref(c->dtype), x, cb_seq_cache_row(c, b, pos), e0, n);
}

static void ref_axpy(const cb_seq_cache *c, int64_t ws, int64_t b, int64_t pos, int64_t e0,
                     int64_t n, float w, float *acc) {
    if (pos >= ws)
        cb_quant_axpy_range(cb_quant_traits_ref(CB_F16), w, cb_seq_cache_window_row(c, b, pos), e0,
                            n, acc);
    else
        cb_quant_axpy_range(cb_quant_traits_ref(c->dtype), w, cb_seq_cache_row(c, b, pos), e0, n,
                            acc);
}

cb_status cb_kv_attention_ref(const cb_kv_attn_cfg *cfg, const cb_tensor *q,
                              const cb_seq_cache *k, const cb_seq_cache *v, const cb_tensor *q2,
                              const cb_seq_cache *k2, cb_tensor *out, cb_tensor *lse) {
    dims d = {0};
    CB_TRY(check_args(cfg, q, k, v, q2, k2, out, lse, &d));
    const int64_t wsk = cb_seq_cache_window_start(k), wsv = cb_seq_cache_window_start(v);
    const int64_t wsk2 = k2 ? cb_seq_cache_window_start(k2) : 0;
    float *acc = malloc((size_t)d.hdv * sizeof(float));
    if (!acc) return cb_fail(CB_ERR_NOMEM, "cache attention: scratch");
    for (int64_t b = 0; b < d.B; b++)
        for (int64_t h = 0; h < d.H; h++) {
            const int64_t g = h / d.G;
            for (int64_t t = 0; t < d.T; t++) {
                const float *qr = cb_f32(q) + ((b * d.T + t) * d.H + h) * d.hd;
                const float *q2r = q2 ? cb_f32(q2) + ((b * d.T + t) * d.H + h) * d.hd2 : NULL;
                int64_t lo, hi;
                key_range(cfg, d.L, cfg->q_pos0 + t, &lo, &hi);
                float m = -INFINITY, l = 0.0f;
                memset(acc, 0, (size_t)d.hdv * sizeof(float));
                for (int64_t j = lo; j < hi; j++) {
                    float s = cfg->scale * ref_dot(k, wsk, b, j, g * d.hd, d.hd, qr);
                    if (q2r) s += cfg->scale2 * ref_dot(k2, wsk2, b, j, g * d.hd2, d.hd2, q2r);
                    float mn = s > m ? s : m;
                    float alpha = expf(m - mn), p = expf(s - mn);
                    l = l * alpha + p;
                    for (int64_t e = 0; e < d.hdv; e++) acc[e] *= alpha;
                    ref_axpy(v, wsv, b, j, g * d.hdv, d.hdv, p, acc);
                    m = mn;
                }
                float *o = cb_f32(out) + ((b * d.T + t) * d.H + h) * d.hdv;
                for (int64_t e = 0; e < d.hdv; e++) o[e] = l > 0.0f ? acc[e] / l : 0.0f;
                if (lse) cb_f32(lse)[(b * d.H + h) * d.T + t] = l > 0.0f ? m + logf(l) : -INFINITY;
            }
        }
    free(acc);
    return CB_OK;
}

/* ================================ fast path ============================================= */

/* Tile of n rows [j0, j0+n) of head elements [e0, e0+ne) of batch row b, as f32 with row stride
 * *ld: a pointer into the fp32 store when possible, else decoded into buf [n][ne]. */
static const float *load_tile(const cb_seq_cache *c, int64_t ws, int64_t b, int64_t j0, int n,
                              int64_t e0, int ne, float *buf, int64_t *ld) {
    if (c->kind == CB_KV_FP32 && j0 + n <= ws) {
        *ld = c->width;
        return (const float *)cb_seq_cache_row(c, b, j0) + e0;
    }
    *ld = ne;
    const bool aligned = (e0 % CB_QK) == 0 && (ne % CB_QK) == 0;
    const cb_quant_traits *tr = cb_quant_traits_get(c->dtype);
    for (int i = 0; i < n; i++) {
        const int64_t pos = j0 + i;
        float *y = buf + (size_t)i * (size_t)ne;
        if (pos >= ws || c->kind == CB_KV_FP16) {
            const uint16_t *h = pos >= ws ? cb_seq_cache_window_row(c, b, pos) + e0
                                          : (const uint16_t *)cb_seq_cache_row(c, b, pos) + e0;
            int e = 0;
#ifdef CB_QUANT_AVX2
            for (; e + 8 <= ne; e += 8)
                _mm256_storeu_ps(y + e, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + e))));
#endif
            for (; e < ne; e++) y[e] = cbq_h2f(h[e]);
            continue;
        }
        const void *row = cb_seq_cache_row(c, b, pos);
        if (!aligned) {
            cb_quant_dequant_range(tr, row, e0, ne, y);
            continue;
        }
        const int64_t b0 = e0 / CB_QK, nb = ne / CB_QK;
        switch (c->kind) {
        case CB_KV_Q8_0:
            for (int64_t k = 0; k < nb; k++)
                cbq_decode_q8_0((const cb_block_q8_0 *)row + b0 + k, y + k * CB_QK);
            break;
        case CB_KV_Q4_0:
            for (int64_t k = 0; k < nb; k++)
                cbq_decode_q4_0((const cb_block_q4_0 *)row + b0 + k, y + k * CB_QK);
            break;
        case CB_KV_NF4:
            for (int64_t k = 0; k < nb; k++)
                cbq_decode_nf4((const cb_block_nf4 *)row + b0 + k, y + k * CB_QK);
            break;
        default: /* fp32 rows inside the window cannot happen (no ring) */
            memcpy(y, (const float *)row + e0, (size_t)ne * sizeof(float));
            break;
        }
    }
    return buf;
}

#ifdef CB_QUANT_AVX2
/* lane i = sum of the 8 lanes of v[i] */
static inline __m256 hsum8x8(const __m256 v[8]) {
    __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
    __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Cephes-style expf: max relative error ~2 ulp on [-88, 88]; 0 below -88.38. */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    __m256 fx = _mm256_floor_ps(
        _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* s[i] (+)= <q, k_i>, i < n, rows of stride ld; hd a multiple of 8. Inlined with constant hd for
 * the common head sizes so q stays in registers. */
static inline __attribute__((always_inline)) void scores_v8(const float *q, const float *k,
                                                            int64_t ld, int hd, int n, float *s,
                                                            bool add) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p[8];
        for (int u = 0; u < 8; u++) {
            const float *kr = k + (size_t)(i + u) * (size_t)ld;
            __m256 a = _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(kr));
            for (int e = 8; e < hd; e += 8)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), _mm256_loadu_ps(kr + e), a);
            p[u] = a;
        }
        __m256 r = hsum8x8(p);
        if (add) r = _mm256_add_ps(r, _mm256_loadu_ps(s + i));
        _mm256_storeu_ps(s + i, r);
    }
    for (; i < n; i++) {
        const float *kr = k + (size_t)i * (size_t)ld;
        __m256 a = _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(kr));
        for (int e = 8; e < hd; e += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), _mm256_loadu_ps(kr + e), a);
        float r = cbq_hsum256(a);
        s[i] = add ? s[i] + r : r;
    }
}
#endif

static void scores(const float *q, const float *k, int64_t ld, int hd, int n, float *s, bool add) {
#ifdef CB_QUANT_AVX2
    switch (hd) {
    case 32: scores_v8(q, k, ld, 32, n, s, add); return;
    case 64: scores_v8(q, k, ld, 64, n, s, add); return;
    case 128: scores_v8(q, k, ld, 128, n, s, add); return;
    default:
        if (hd % 8 == 0) {
            scores_v8(q, k, ld, hd, n, s, add);
            return;
        }
    }
#endif
    for (int i = 0; i < n; i++) {
        const float *kr = k + (size_t)i * (size_t)ld;
        float a = 0.0f;
        for (int e = 0; e < hd; e++) a += q[e] * kr[e];
        s[i] = add ? s[i] + a : a;
    }
}

/* p[i] = exp(s[i] - m), returns sum p[i]. */
static float exp_sum(float *s, int n, float m) {
    int i = 0;
    float sum = 0.0f;
#ifdef CB_QUANT_AVX2
    __m256 acc = _mm256_setzero_ps(), mv = _mm256_set1_ps(m);
    for (; i + 8 <= n; i += 8) {
        __m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, p);
        acc = _mm256_add_ps(acc, p);
    }
    sum = cbq_hsum256(acc);
#endif
    for (; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

/* acc[hdv] = acc * alpha + sum_i p[i] v_i (rows of stride ld). */
static void accumulate(float *acc, float alpha, const float *p, const float *vd, int64_t ld,
                       int hdv, int n) {
    int e = 0;
#ifdef CB_QUANT_AVX2
    const __m256 al = _mm256_set1_ps(alpha);
    for (; e + 32 <= hdv; e += 32) {
        __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(acc + e), al);
        __m256 a1 = _mm256_mul_ps(_mm256_loadu_ps(acc + e + 8), al);
        __m256 a2 = _mm256_mul_ps(_mm256_loadu_ps(acc + e + 16), al);
        __m256 a3 = _mm256_mul_ps(_mm256_loadu_ps(acc + e + 24), al);
        for (int i = 0; i < n; i++) {
            const float *vr = vd + (size_t)i * (size_t)ld + e;
            __m256 pv = _mm256_set1_ps(p[i]);
            a0 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr), a0);
            a1 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr + 8), a1);
            a2 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr + 16), a2);
            a3 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vr + 24), a3);
        }
        _mm256_storeu_ps(acc + e, a0);
        _mm256_storeu_ps(acc + e + 8, a1);
        _mm256_storeu_ps(acc + e + 16, a2);
        _mm256_storeu_ps(acc + e + 24, a3);
    }
    for (; e + 8 <= hdv; e += 8) {
        __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(acc + e), al);
        for (int i = 0; i < n; i++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[i]),
                                 _mm256_loadu_ps(vd + (size_t)i * (size_t)ld + e), a0);
        _mm256_storeu_ps(acc + e, a0);
    }
#endif
    for (; e < hdv; e++) {
        float a = acc[e] * alpha;
        for (int i = 0; i < n; i++) a += p[i] * vd[(size_t)i * (size_t)ld + e];
        acc[e] = a;
    }
}

typedef struct plan {
    const cb_kv_attn_cfg *cfg;
    dims d;
    const cb_seq_cache *k, *v, *k2;
    int64_t wsk, wsv, wsk2;
    const float *q, *q2;
    float *out, *lse;
    int64_t TB, ntb, nchunks, chunk_len, kmin, kmax;
    float *pm, *pl, *pacc; /* partial states [chunk][B][H][T] (x hdv), when nchunks > 1 */
} plan;

typedef struct scratch {
    float *qs, *q2s, *m, *l, *acc, *s, *kbuf, *k2buf, *vbuf;
} scratch;

static float *carve(float **p, size_t n) {
    float *r = *p;
    *p += (n + 15) / 16 * 16;
    return r;
}

static size_t scratch_floats(const plan *P) {
    const size_t R = (size_t)(P->TB * P->d.G);
    size_t n = R * (size_t)(P->d.hd + P->d.hd2 + P->d.hdv + 2) + TILE +
               (size_t)TILE * (size_t)(P->d.hd + P->d.hd2 + P->d.hdv);
    return n + 16 * 10;
}

static void run_item(const plan *P, int64_t item, scratch *S) {
    const dims *d = &P->d;
    const cb_kv_attn_cfg *cfg = P->cfg;
    int64_t c = item % P->nchunks, rest = item / P->nchunks;
    const int64_t tb = rest % P->ntb;
    rest /= P->ntb;
    const int64_t g = rest % d->Hkv, b = rest / d->Hkv;
    const int64_t t0 = tb * P->TB, t1 = t0 + P->TB < d->T ? t0 + P->TB : d->T;
    const int64_t G = d->G, R = (t1 - t0) * G;

    /* rows r = (t - t0) * G + i read query head h = g*G + i */
    for (int64_t t = t0; t < t1; t++)
        for (int64_t i = 0; i < G; i++) {
            const int64_t r = (t - t0) * G + i, h = g * G + i;
            const float *qr = P->q + ((b * d->T + t) * d->H + h) * d->hd;
            for (int64_t e = 0; e < d->hd; e++) S->qs[r * d->hd + e] = qr[e] * cfg->scale;
            if (P->q2) {
                const float *q2r = P->q2 + ((b * d->T + t) * d->H + h) * d->hd2;
                for (int64_t e = 0; e < d->hd2; e++) S->q2s[r * d->hd2 + e] = q2r[e] * cfg->scale2;
            }
        }
    for (int64_t r = 0; r < R; r++) {
        S->m[r] = -INFINITY;
        S->l[r] = 0.0f;
    }
    memset(S->acc, 0, (size_t)R * (size_t)d->hdv * sizeof(float));

    /* keys of this chunk, cut to the union of the rows' ranges (monotone in t) */
    int64_t c_lo = P->kmin + c * P->chunk_len, c_hi = c_lo + P->chunk_len;
    if (c_hi > P->kmax) c_hi = P->kmax;
    int64_t lo0, hi0, lo1, hi1;
    key_range(cfg, d->L, cfg->q_pos0 + t0, &lo0, &hi0);
    key_range(cfg, d->L, cfg->q_pos0 + t1 - 1, &lo1, &hi1);
    const int64_t u_lo = c_lo > lo0 ? c_lo : lo0, u_hi = c_hi < hi1 ? c_hi : hi1;

    for (int64_t j0 = u_lo; j0 < u_hi; j0 += TILE) {
        const int n = (int)(u_hi - j0 < TILE ? u_hi - j0 : TILE);
        int64_t ldk, ldk2 = 0, ldv;
        const float *kd = load_tile(P->k, P->wsk, b, j0, n, g * d->hd, (int)d->hd, S->kbuf, &ldk);
        const float *k2d = P->k2 ? load_tile(P->k2, P->wsk2, b, j0, n, g * d->hd2, (int)d->hd2,
                                             S->k2buf, &ldk2)
                                 : NULL;
        const float *vd = load_tile(P->v, P->wsv, b, j0, n, g * d->hdv, (int)d->hdv, S->vbuf, &ldv);
        for (int64_t t = t0; t < t1; t++) {
            int64_t lo, hi;
            key_range(cfg, d->L, cfg->q_pos0 + t, &lo, &hi);
            if (lo < j0) lo = j0;
            if (hi > j0 + n) hi = j0 + n;
            if (lo >= hi) continue;
            const int a = (int)(lo - j0), cnt = (int)(hi - lo);
            for (int64_t i = 0; i < G; i++) {
                const int64_t r = (t - t0) * G + i;
                float *s = S->s;
                scores(S->qs + r * d->hd, kd + (size_t)a * (size_t)ldk, ldk, (int)d->hd, cnt, s,
                       false);
                if (k2d)
                    scores(S->q2s + r * d->hd2, k2d + (size_t)a * (size_t)ldk2, ldk2, (int)d->hd2,
                           cnt, s, true);
                float mx = s[0];
                for (int u = 1; u < cnt; u++) mx = s[u] > mx ? s[u] : mx;
                const float m_old = S->m[r], m_new = mx > m_old ? mx : m_old;
                if (m_new == -INFINITY) continue; /* every score -inf: contributes nothing */
                const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
                const float psum = exp_sum(s, cnt, m_new);
                S->l[r] = S->l[r] * alpha + psum;
                S->m[r] = m_new;
                accumulate(S->acc + r * d->hdv, alpha, s, vd + (size_t)a * (size_t)ldv, ldv,
                           (int)d->hdv, cnt);
            }
        }
    }

    for (int64_t t = t0; t < t1; t++)
        for (int64_t i = 0; i < G; i++) {
            const int64_t r = (t - t0) * G + i, h = g * G + i;
            const float *acc = S->acc + r * d->hdv;
            if (P->nchunks == 1) {
                float *o = P->out + ((b * d->T + t) * d->H + h) * d->hdv;
                const float l = S->l[r], inv = l > 0.0f ? 1.0f / l : 0.0f;
                for (int64_t e = 0; e < d->hdv; e++) o[e] = acc[e] * inv;
                if (P->lse)
                    P->lse[(b * d->H + h) * d->T + t] = l > 0.0f ? S->m[r] + logf(l) : -INFINITY;
            } else {
                const int64_t idx = ((c * d->B + b) * d->H + h) * d->T + t;
                P->pm[idx] = S->m[r];
                P->pl[idx] = S->l[r];
                memcpy(P->pacc + idx * d->hdv, acc, (size_t)d->hdv * sizeof(float));
            }
        }
}

static void merge_row(const plan *P, int64_t b, int64_t h, int64_t t) {
    const dims *d = &P->d;
    const int64_t stride = d->B * d->H * d->T, base = (b * d->H + h) * d->T + t;
    float M = -INFINITY;
    for (int64_t c = 0; c < P->nchunks; c++) M = P->pm[c * stride + base] > M ? P->pm[c * stride + base] : M;
    float *o = P->out + ((b * d->T + t) * d->H + h) * d->hdv;
    memset(o, 0, (size_t)d->hdv * sizeof(float));
    float l = 0.0f;
    if (M != -INFINITY)
        for (int64_t c = 0; c < P->nchunks; c++) {
            const int64_t idx = c * stride + base;
            if (P->pl[idx] <= 0.0f) continue;
            const float w = expf(P->pm[idx] - M);
            l += P->pl[idx] * w;
            const float *a = P->pacc + idx * d->hdv;
            for (int64_t e = 0; e < d->hdv; e++) o[e] += w * a[e];
        }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int64_t e = 0; e < d->hdv; e++) o[e] *= inv;
    if (P->lse) P->lse[(b * d->H + h) * d->T + t] = l > 0.0f ? M + logf(l) : -INFINITY;
}

cb_status cb_kv_attention(const cb_kv_attn_cfg *cfg, const cb_tensor *q, const cb_seq_cache *k,
                          const cb_seq_cache *v, const cb_tensor *q2, const cb_seq_cache *k2,
                          cb_tensor *out, cb_tensor *lse) {
    plan P = {.cfg = cfg, .k = k, .v = v, .k2 = q2 ? k2 : NULL};
    CB_TRY(check_args(cfg, q, k, v, q2, k2, out, lse, &P.d));
    const dims *d = &P.d;
    P.wsk = cb_seq_cache_window_start(k);
    P.wsv = cb_seq_cache_window_start(v);
    P.wsk2 = P.k2 ? cb_seq_cache_window_start(k2) : 0;
    P.q = cb_f32(q);
    P.q2 = q2 ? cb_f32(q2) : NULL;
    P.out = cb_f32(out);
    P.lse = lse ? cb_f32(lse) : NULL;
    if (d->B == 0 || d->T == 0) return CB_OK;

    /* query blocks: all T queries of a kv head in one item when they fit ROWS_MAX rows */
    P.TB = d->T * d->G <= ROWS_MAX ? d->T : (ROWS_MAX / d->G > 0 ? ROWS_MAX / d->G : 1);
    P.ntb = (d->T + P.TB - 1) / P.TB;
    /* keys any query may see */
    int64_t lo0, hi0, lo1, hi1;
    key_range(cfg, d->L, cfg->q_pos0, &lo0, &hi0);
    key_range(cfg, d->L, cfg->q_pos0 + d->T - 1, &lo1, &hi1);
    P.kmin = lo0;
    P.kmax = hi1 > lo0 ? hi1 : lo0;
    const int64_t span = P.kmax - P.kmin;
    const int nthreads = omp_get_max_threads();
    const int64_t base_items = d->B * d->Hkv * P.ntb;
    P.nchunks = 1;
    if (nthreads > 1 && base_items < 4 * (int64_t)nthreads && span >= 2 * MIN_CHUNK) {
        int64_t want = (4 * (int64_t)nthreads + base_items - 1) / base_items;
        int64_t most = span / MIN_CHUNK;
        P.nchunks = want < most ? want : most;
    }
    P.chunk_len = (span + P.nchunks - 1) / P.nchunks;
    P.chunk_len = (P.chunk_len + TILE - 1) / TILE * TILE;
    if (P.chunk_len == 0) P.chunk_len = TILE;
    P.nchunks = span > 0 ? (span + P.chunk_len - 1) / P.chunk_len : 1;

    void *partial = NULL;
    if (P.nchunks > 1) {
        const size_t rows = (size_t)P.nchunks * (size_t)(d->B * d->H * d->T);
        partial = malloc(rows * (size_t)(d->hdv + 2) * sizeof(float));
        if (!partial) return cb_fail(CB_ERR_NOMEM, "cache attention: split-K scratch");
        P.pm = partial;
        P.pl = P.pm + rows;
        P.pacc = P.pl + rows;
    }

    const int64_t items = base_items * P.nchunks;
    const double work = (double)d->B * (double)d->H * (double)d->T * (double)(span + 1) *
                        (double)(d->hd + d->hd2 + d->hdv);
    const size_t sfloats = scratch_floats(&P);
    int failed = 0;
#pragma omp parallel if (work > 2e5 && items > 1)
    {
        float *mem = aligned_alloc(64, (sfloats * sizeof(float) + 63) / 64 * 64);
        if (!mem) {
#pragma omp atomic write
            failed = 1;
        }
        scratch S = {0};
        if (mem) {
            float *p = mem;
            const size_t R = (size_t)(P.TB * d->G);
            S.qs = carve(&p, R * (size_t)d->hd);
            S.q2s = carve(&p, R * (size_t)d->hd2);
            S.m = carve(&p, R);
            S.l = carve(&p, R);
            S.acc = carve(&p, R * (size_t)d->hdv);
            S.s = carve(&p, TILE);
            S.kbuf = carve(&p, (size_t)TILE * (size_t)d->hd);
            S.k2buf = carve(&p, (size_t)TILE * (size_t)d->hd2);
            S.vbuf = carve(&p, (size_t)TILE * (size_t)d->hdv);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++)
            if (mem) run_item(&P, it, &S);
        free(mem);
    }
    if (failed) {
        free(partial);
        return cb_fail(CB_ERR_NOMEM, "cache attention: thread scratch");
    }
    if (P.nchunks > 1) {
        const int64_t rows = d->B * d->H * d->T;
#pragma omp parallel for if (rows * P.nchunks * d->hdv > 65536)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t t = r % d->T, h = (r / d->T) % d->H, b = r / (d->T * d->H);
            merge_row(&P, b, h, t);
        }
        free(partial);
    }
    return CB_OK;
}

cb_status cb_layer_cache_attention(const cb_kv_attn_cfg *cfg, const cb_layer_cache *lc,
                                   const cb_tensor *q, const cb_tensor *q2, cb_tensor *out,
                                   cb_tensor *lse) {
    if (!lc) return cb_fail(CB_ERR_ARG, "cache attention: missing layer cache");
    if (lc->decoupled != (q2 != NULL))
        return cb_fail(CB_ERR_ARG, "cache attention: %s cache %s q2",
                       lc->decoupled ? "decoupled" : "standard",
                       lc->decoupled ? "needs" : "takes no");
    return cb_kv_attention(cfg, q, &lc->k, &lc->v, q2, lc->decoupled ? &lc->k_geo : NULL, out,
                           lse);
}
