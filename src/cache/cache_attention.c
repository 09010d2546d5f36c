/* Attention of a few queries over a KV cache, reading the stored rows (fp32, fp16, q8_0, q4_0,
 * nf4, plus the fp16 window) directly.
 *
 * Shapes: q [B, T, H*hd], q2 [B, T, H*hd2] (decoupled) or NULL, caches k [B, L, Hkv*hd],
 * k2 [B, L, Hkv*hd2], v [B, L, Hkv*hdv], out [B, T, H*hdv], lse [B, H, T] or NULL.
 *
 * Fast path (cb_kv_attention): a work item is (b, kv heads, block of queries, chunk of keys).
 * For decode-sized calls (T * H <= 256 rows) an item takes every kv head, so it streams whole
 * token rows front to back (sequential memory traffic; with per-head items a 1B-shaped cache is
 * read in 68-byte pieces at a 544-byte stride); larger calls (prefill through the cache) use one
 * kv head and a block of queries per item. Within an item, for each tile of 32-64 tokens and each
 * kv head, that head's K and V slices are decoded once into a thread-local buffer (it stays in
 * L1; the fp32 store is read in place) and shared by the G = H/Hkv query heads and all queries of
 * the block: the GQA reuse. Each row keeps an online-softmax state (m, l, acc). When there are
 * fewer than 4 items per thread and the keys span at least 512 tokens, the keys are split into
 * chunks (split-K) and the partial states merged at the end:
 * M = max m_c, l = sum l_c e^(m_c - M), acc = sum acc_c e^(m_c - M).
 *
 * Reference path (cb_kv_attention_ref): one row, one key at a time, scalar traits
 * (cb_quant_dot_range / cb_quant_axpy_range on the stored row). */
#include "caramba/kv_cache.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cache/quant_simd.h"

_Static_assert(sizeof(int) == sizeof(float), "scratch carves int arrays from float storage");

enum {
    TILE_BIG = 64,   /* tokens decoded at a time when hd + hd2 + hdv <= 128 */
    TILE_SMALL = 32, /* ... otherwise, so a tile of K and V stays in L1 */
    ROWS_MAX = 64,   /* query rows (heads x queries) per work item of one kv head */
    ROWS_ALL = 256,  /* query rows per work item covering every kv head */
    MIN_CHUNK = 256, /* smallest split-K chunk, tokens */
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
        return cb_fail(
            CB_ERR_SHAPE, "cache attention: %s must be f32 CPU [%lld, %lld, %lld], got %s %s", what,
            (long long)d0, (long long)d1, (long long)d2, t ? cb_dtype_name(t->dtype) : "", buf);
    }
    return CB_OK;
}

static cb_status check_cache(const cb_seq_cache *c, const char *what, int64_t B, int64_t L,
                             int64_t width) {
    if (!c || !c->data) return cb_fail(CB_ERR_ARG, "cache attention: %s cache missing", what);
    if (c->batch != B || c->width != width || c->len != L)
        return cb_fail(
            CB_ERR_SHAPE,
            "cache attention: %s cache is [%lld, %lld, %lld], expected [%lld, %lld, %lld]", what,
            (long long)c->batch, (long long)c->len, (long long)c->width, (long long)B, (long long)L,
            (long long)width);
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
        return cb_fail(CB_ERR_ARG,
                       "cache attention: the decoupled term needs head_dim2 > 0, q2 "
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
        return cb_quant_dot_range(cb_quant_traits_ref(CB_F16), x,
                                  cb_seq_cache_window_row(c, b, pos), e0, n);
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

cb_status cb_kv_attention_ref(const cb_kv_attn_cfg *cfg, const cb_tensor *q, const cb_seq_cache *k,
                              const cb_seq_cache *v, const cb_tensor *q2, const cb_seq_cache *k2,
                              cb_tensor *out, cb_tensor *lse) {
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

static inline void f16_to_f32_row(const uint16_t *h, float *y, int ne) {
    int e = 0;
#ifdef CB_QUANT_AVX2
    for (; e + 8 <= ne; e += 8)
        _mm256_storeu_ps(y + e, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + e))));
#endif
    for (; e < ne; e++) y[e] = cbq_h2f(h[e]);
}

/* Decodes nb whole blocks of each of n rows (byte stride rb) into y [n][nb*32], prefetching the
 * same blocks PF rows ahead (the next tile) while the current ones are decoded. */
#define DECODE_ROWS(BT, DECODE)                                                                    \
    for (int i = 0; i < n; i++) {                                                                  \
        const BT *blk = (const BT *)(rows + (size_t)i * rb) + b0;                                  \
        if (i < npf) {                                                                             \
            const char *nx = (const char *)blk + (size_t)tile * rb;                                \
            __builtin_prefetch(nx);                                                                \
            __builtin_prefetch(nx + nb * sizeof(BT) - 1);                                          \
        }                                                                                          \
        for (int64_t k = 0; k < nb; k++) DECODE(blk + k, y + (size_t)i * ne + k * CB_QK);          \
    }

/* Tile of n rows [j0, j0+n) of head elements [e0, e0+ne) of batch row b, as f32 with row stride
 * *ld: a pointer into the fp32 store when possible, else decoded into buf [n][ne]. Positions at
 * or past ws come from the fp16 window. */
static const float *load_tile(const cb_seq_cache *c, int64_t ws, int64_t b, int64_t j0, int n,
                              int tile, int64_t e0, int ne, float *buf, int64_t *ld) {
    const size_t rb = c->row_bytes;
    const uint8_t *rows = cb_seq_cache_row(c, b, j0);
    /* rows of the next tile that exist, for prefetching */
    int npf = (int)(c->len - (j0 + tile));
    npf = npf < 0 ? 0 : npf > n ? n : npf;
    if (c->kind == CB_KV_FP32 && j0 + n <= ws) {
        for (int i = 0; i < npf; i += 2)
            __builtin_prefetch((const float *)(rows + (size_t)(i + tile) * rb) + e0);
        *ld = c->width;
        return (const float *)rows + e0;
    }
    *ld = ne;
    int nq = ws - j0 < n ? (int)(ws - j0) : n; /* rows from the main store */
    if (nq < 0) nq = 0;
    float *y = buf;
    const int64_t b0 = e0 / CB_QK, nb = ne / CB_QK;
    const bool aligned = (e0 % CB_QK) == 0 && (ne % CB_QK) == 0;
    if (nq > 0) {
        const int nsave = n;
        n = nq;
        if (npf > n) npf = n;
        switch (c->kind) {
        case CB_KV_FP32:
            for (int i = 0; i < n; i++)
                memcpy(y + (size_t)i * ne, (const float *)(rows + (size_t)i * rb) + e0,
                       (size_t)ne * sizeof(float));
            break;
        case CB_KV_FP16:
            for (int i = 0; i < n; i++) {
                const uint16_t *h = (const uint16_t *)(rows + (size_t)i * rb) + e0;
                if (i < npf) __builtin_prefetch((const char *)(h + (size_t)tile * rb / 2));
                f16_to_f32_row(h, y + (size_t)i * ne, ne);
            }
            break;
        case CB_KV_Q8_0:
            if (aligned) {
                DECODE_ROWS(cb_block_q8_0, cbq_decode_q8_0)
                break;
            }
            goto generic;
        case CB_KV_Q4_0:
            if (aligned) {
                DECODE_ROWS(cb_block_q4_0, cbq_decode_q4_0)
                break;
            }
            goto generic;
        case CB_KV_NF4:
            if (aligned) {
                DECODE_ROWS(cb_block_nf4, cbq_decode_nf4)
                break;
            }
            goto generic;
        generic:
        default: {
            const cb_quant_traits *tr = cb_quant_traits_get(c->dtype);
            for (int i = 0; i < n; i++)
                cb_quant_dequant_range(tr, rows + (size_t)i * rb, e0, ne, y + (size_t)i * ne);
            break;
        }
        }
        n = nsave;
    }
    for (int i = nq; i < n; i++) /* fp16 window */
        f16_to_f32_row(cb_seq_cache_window_row(c, b, j0 + i) + e0, y + (size_t)i * ne, ne);
    return buf;
}
#undef DECODE_ROWS

#ifdef CB_QUANT_AVX2
/* lane i = sum of the 8 lanes of v[i] */
static inline __m256 hsum8x8(const __m256 v[8]) {
    __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
    __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
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
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* s[i] (+)= <q, k_i>, i < n, rows of stride ld; hd a multiple of 8. Inlined with constant hd for
 * the common head sizes so q stays in registers. */
static inline __attribute__((always_inline)) void
scores_v8(const float *q, const float *k, int64_t ld, int hd, int n, float *s, bool add) {
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
    case 32:
        scores_v8(q, k, ld, 32, n, s, add);
        return;
    case 64:
        scores_v8(q, k, ld, 64, n, s, add);
        return;
    case 128:
        scores_v8(q, k, ld, 128, n, s, add);
        return;
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

/* Row maximum of s[0..n). */
static float row_max(const float *s, int n) {
    int i = 0;
    float mx = -INFINITY;
#ifdef CB_QUANT_AVX2
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(s);
        for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        mx = _mm_cvtss_f32(h);
    }
#endif
    for (; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    return mx;
}

/* For one or two rows sharing the same tokens: acc_k[hdv] = acc_k * alpha_k + sum_i p_k[i] v_i
 * (value rows of stride ld). Two rows give eight independent FMA chains per 32 values (one row
 * alone alternates two sets of accumulators over the tokens), which keeps the FMA units busy
 * instead of waiting on one chain's latency; the value loads are shared by both rows. */
static void accumulate2(float *acc0, float *acc1, float al0, float al1, const float *p0,
                        const float *p1, const float *vd, int64_t ld, int hdv, int n) {
    int e = 0;
#ifdef CB_QUANT_AVX2
    if (acc1) {
        const __m256 a0v = _mm256_set1_ps(al0), a1v = _mm256_set1_ps(al1);
        for (; e + 32 <= hdv; e += 32) {
            __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e), a0v);
            __m256 x1 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e + 8), a0v);
            __m256 x2 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e + 16), a0v);
            __m256 x3 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e + 24), a0v);
            __m256 y0 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + e), a1v);
            __m256 y1 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + e + 8), a1v);
            __m256 y2 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + e + 16), a1v);
            __m256 y3 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + e + 24), a1v);
            for (int i = 0; i < n; i++) {
                const float *vr = vd + (size_t)i * (size_t)ld + e;
                const __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8);
                const __m256 v2 = _mm256_loadu_ps(vr + 16), v3 = _mm256_loadu_ps(vr + 24);
                const __m256 q0 = _mm256_broadcast_ss(p0 + i), q1 = _mm256_broadcast_ss(p1 + i);
                x0 = _mm256_fmadd_ps(q0, v0, x0);
                x1 = _mm256_fmadd_ps(q0, v1, x1);
                x2 = _mm256_fmadd_ps(q0, v2, x2);
                x3 = _mm256_fmadd_ps(q0, v3, x3);
                y0 = _mm256_fmadd_ps(q1, v0, y0);
                y1 = _mm256_fmadd_ps(q1, v1, y1);
                y2 = _mm256_fmadd_ps(q1, v2, y2);
                y3 = _mm256_fmadd_ps(q1, v3, y3);
            }
            _mm256_storeu_ps(acc0 + e, x0);
            _mm256_storeu_ps(acc0 + e + 8, x1);
            _mm256_storeu_ps(acc0 + e + 16, x2);
            _mm256_storeu_ps(acc0 + e + 24, x3);
            _mm256_storeu_ps(acc1 + e, y0);
            _mm256_storeu_ps(acc1 + e + 8, y1);
            _mm256_storeu_ps(acc1 + e + 16, y2);
            _mm256_storeu_ps(acc1 + e + 24, y3);
        }
    } else {
        const __m256 a0v = _mm256_set1_ps(al0), z = _mm256_setzero_ps();
        for (; e + 32 <= hdv; e += 32) {
            __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e), a0v);
            __m256 x1 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e + 8), a0v);
            __m256 x2 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e + 16), a0v);
            __m256 x3 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e + 24), a0v);
            __m256 y0 = z, y1 = z, y2 = z, y3 = z;
            int i = 0;
            for (; i + 2 <= n; i += 2) {
                const float *vr = vd + (size_t)i * (size_t)ld + e, *vs = vr + ld;
                const __m256 q0 = _mm256_broadcast_ss(p0 + i), q1 = _mm256_broadcast_ss(p0 + i + 1);
                x0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr), x0);
                x1 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr + 8), x1);
                x2 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr + 16), x2);
                x3 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr + 24), x3);
                y0 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(vs), y0);
                y1 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(vs + 8), y1);
                y2 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(vs + 16), y2);
                y3 = _mm256_fmadd_ps(q1, _mm256_loadu_ps(vs + 24), y3);
            }
            for (; i < n; i++) {
                const float *vr = vd + (size_t)i * (size_t)ld + e;
                const __m256 q0 = _mm256_broadcast_ss(p0 + i);
                x0 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr), x0);
                x1 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr + 8), x1);
                x2 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr + 16), x2);
                x3 = _mm256_fmadd_ps(q0, _mm256_loadu_ps(vr + 24), x3);
            }
            _mm256_storeu_ps(acc0 + e, _mm256_add_ps(x0, y0));
            _mm256_storeu_ps(acc0 + e + 8, _mm256_add_ps(x1, y1));
            _mm256_storeu_ps(acc0 + e + 16, _mm256_add_ps(x2, y2));
            _mm256_storeu_ps(acc0 + e + 24, _mm256_add_ps(x3, y3));
        }
    }
    for (; e + 8 <= hdv; e += 8) { /* rows one at a time for an 8..24 remainder */
        __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + e), _mm256_set1_ps(al0));
        __m256 y0 = acc1 ? _mm256_mul_ps(_mm256_loadu_ps(acc1 + e), _mm256_set1_ps(al1))
                         : _mm256_setzero_ps();
        for (int i = 0; i < n; i++) {
            const __m256 v0 = _mm256_loadu_ps(vd + (size_t)i * (size_t)ld + e);
            x0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + i), v0, x0);
            if (acc1) y0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p1 + i), v0, y0);
        }
        _mm256_storeu_ps(acc0 + e, x0);
        if (acc1) _mm256_storeu_ps(acc1 + e, y0);
    }
#endif
    for (; e < hdv; e++) {
        float x = acc0[e] * al0, y = acc1 ? acc1[e] * al1 : 0.0f;
        for (int i = 0; i < n; i++) {
            const float v = vd[(size_t)i * (size_t)ld + e];
            x += p0[i] * v;
            if (acc1) y += p1[i] * v;
        }
        acc0[e] = x;
        if (acc1) acc1[e] = y;
    }
}

typedef struct plan {
    const cb_kv_attn_cfg *cfg;
    dims d;
    const cb_seq_cache *k, *v, *k2;
    int64_t wsk, wsv, wsk2;
    const float *q, *q2;
    float *out, *lse;
    int64_t TB, ntb, NG, nchunks, chunk_len, kmin, kmax;
    int tile;
    bool k_whole, k2_whole, v_whole; /* decode all the item's heads of a row at once */
    float *pm, *pl, *pacc;           /* partial states [chunk][B][H][T] (x hdv), when nchunks > 1 */
} plan;

typedef struct scratch {
    float *qs, *q2s, *m, *l, *acc, *s, *alpha, *kbuf, *k2buf, *vbuf;
    int *live; /* G entries */
} scratch;

static float *carve(float **p, size_t n) {
    float *r = *p;
    *p += (n + 15) / 16 * 16;
    return r;
}

/* Decode buffer width of a tensor: one head, or all the item's heads (whole). */
static size_t buf_width(const plan *P, int64_t hd, bool whole) {
    return (size_t)(whole ? P->NG * hd : hd);
}

static size_t scratch_floats(const plan *P) {
    const size_t R = (size_t)(P->TB * P->NG * P->d.G);
    size_t n =
        R * (size_t)(P->d.hd + P->d.hd2 + P->d.hdv + 2) + (size_t)P->d.G * (P->tile + 2) +
        (size_t)P->tile * (buf_width(P, P->d.hd, P->k_whole) + buf_width(P, P->d.hd2, P->k2_whole) +
                           buf_width(P, P->d.hdv, P->v_whole));
    return n + 16 * 10;
}

static void run_item(const plan *P, int64_t item, scratch *S) {
    const dims *d = &P->d;
    const cb_kv_attn_cfg *cfg = P->cfg;
    const int64_t c = item % P->nchunks;
    int64_t rest = item / P->nchunks;
    const int64_t tb = rest % P->ntb;
    rest /= P->ntb;
    const int64_t ngb = d->Hkv / P->NG, gb = rest % ngb, b = rest / ngb;
    const int64_t g0 = gb * P->NG, g1 = g0 + P->NG;
    const int64_t t0 = tb * P->TB, t1 = t0 + P->TB < d->T ? t0 + P->TB : d->T;
    const int64_t G = d->G, NG = P->NG, R = (t1 - t0) * NG * G;
#define ROW(t, g, i) ((((t)-t0) * NG + ((g)-g0)) * G + (i))

    /* row ROW(t, g, i) is query t of head h = g*G + i */
    for (int64_t t = t0; t < t1; t++)
        for (int64_t g = g0; g < g1; g++)
            for (int64_t i = 0; i < G; i++) {
                const int64_t r = ROW(t, g, i), h = g * G + i;
                const float *qr = P->q + ((b * d->T + t) * d->H + h) * d->hd;
                for (int64_t e = 0; e < d->hd; e++) S->qs[r * d->hd + e] = qr[e] * cfg->scale;
                if (P->q2) {
                    const float *q2r = P->q2 + ((b * d->T + t) * d->H + h) * d->hd2;
                    for (int64_t e = 0; e < d->hd2; e++)
                        S->q2s[r * d->hd2 + e] = q2r[e] * cfg->scale2;
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

    const int tile = P->tile;
    for (int64_t j0 = u_lo; j0 < u_hi; j0 += tile) {
        const int n = (int)(u_hi - j0 < tile ? u_hi - j0 : tile);
        /* kv heads one after the other over the same tile of token rows: with all heads in one
         * item the rows are streamed front to back once, the later heads hit L1/L2 */
        /* tensors whose heads straddle quantization blocks: decode the rows of all the item's
         * heads once, instead of every straddled block once per head */
        int64_t ldka = 0, ldk2a = 0, ldva = 0;
        const float *ka = P->k_whole ? load_tile(P->k, P->wsk, b, j0, n, tile, g0 * d->hd,
                                                 (int)(NG * d->hd), S->kbuf, &ldka)
                                     : NULL;
        const float *k2a = P->k2_whole ? load_tile(P->k2, P->wsk2, b, j0, n, tile, g0 * d->hd2,
                                                   (int)(NG * d->hd2), S->k2buf, &ldk2a)
                                       : NULL;
        const float *va = P->v_whole ? load_tile(P->v, P->wsv, b, j0, n, tile, g0 * d->hdv,
                                                 (int)(NG * d->hdv), S->vbuf, &ldva)
                                     : NULL;
        for (int64_t g = g0; g < g1; g++) {
            int64_t ldk = ldka, ldk2 = ldk2a, ldv = ldva;
            const float *kd =
                ka ? ka + (g - g0) * d->hd
                   : load_tile(P->k, P->wsk, b, j0, n, tile, g * d->hd, (int)d->hd, S->kbuf, &ldk);
            const float *k2d = !P->k2 ? NULL
                               : k2a  ? k2a + (g - g0) * d->hd2
                                      : load_tile(P->k2, P->wsk2, b, j0, n, tile, g * d->hd2,
                                                  (int)d->hd2, S->k2buf, &ldk2);
            const float *vd = va ? va + (g - g0) * d->hdv
                                 : load_tile(P->v, P->wsv, b, j0, n, tile, g * d->hdv, (int)d->hdv,
                                             S->vbuf, &ldv);
            for (int64_t t = t0; t < t1; t++) {
                int64_t lo, hi;
                key_range(cfg, d->L, cfg->q_pos0 + t, &lo, &hi);
                if (lo < j0) lo = j0;
                if (hi > j0 + n) hi = j0 + n;
                if (lo >= hi) continue;
                const int a = (int)(lo - j0), cnt = (int)(hi - lo);
                /* scores and softmax statistics of the G rows (t, g, .); probabilities land in
                 * s[i] (one tile-long buffer per head), alpha[i] rescales the old accumulator */
                int *live = S->live, nlive = 0;
                for (int64_t i = 0; i < G; i++) {
                    const int64_t r = ROW(t, g, i);
                    float *sc = S->s + i * tile;
                    scores(S->qs + r * d->hd, kd + (size_t)a * (size_t)ldk, ldk, (int)d->hd, cnt,
                           sc, false);
                    if (k2d)
                        scores(S->q2s + r * d->hd2, k2d + (size_t)a * (size_t)ldk2, ldk2,
                               (int)d->hd2, cnt, sc, true);
                    const float mx = row_max(sc, cnt);
                    const float m_old = S->m[r], m_new = mx > m_old ? mx : m_old;
                    if (m_new == -INFINITY) continue; /* every score -inf: contributes nothing */
                    const float alpha = m_old == m_new       ? 1.0f
                                        : m_old == -INFINITY ? 0.0f
                                                             : expf(m_old - m_new);
                    S->l[r] = S->l[r] * alpha + exp_sum(sc, cnt, m_new);
                    S->m[r] = m_new;
                    S->alpha[i] = alpha;
                    live[nlive++] = (int)i;
                }
                const float *vt = vd + (size_t)a * (size_t)ldv;
                for (int u = 0; u < nlive; u += 2) {
                    const int i0 = live[u], i1 = u + 1 < nlive ? live[u + 1] : -1;
                    float *acc0 = S->acc + ROW(t, g, i0) * d->hdv;
                    float *acc1 = i1 >= 0 ? S->acc + ROW(t, g, i1) * d->hdv : NULL;
                    accumulate2(acc0, acc1, S->alpha[i0], i1 >= 0 ? S->alpha[i1] : 0.0f,
                                S->s + i0 * tile, i1 >= 0 ? S->s + i1 * tile : NULL, vt, ldv,
                                (int)d->hdv, cnt);
                }
            }
        }
    }

    for (int64_t t = t0; t < t1; t++)
        for (int64_t g = g0; g < g1; g++)
            for (int64_t i = 0; i < G; i++) {
                const int64_t r = ROW(t, g, i), h = g * G + i;
                const float *acc = S->acc + r * d->hdv;
                if (P->nchunks == 1) {
                    float *o = P->out + ((b * d->T + t) * d->H + h) * d->hdv;
                    const float l = S->l[r], inv = l > 0.0f ? 1.0f / l : 0.0f;
                    for (int64_t e = 0; e < d->hdv; e++) o[e] = acc[e] * inv;
                    if (P->lse)
                        P->lse[(b * d->H + h) * d->T + t] =
                            l > 0.0f ? S->m[r] + logf(l) : -INFINITY;
                } else {
                    const int64_t idx = ((c * d->B + b) * d->H + h) * d->T + t;
                    P->pm[idx] = S->m[r];
                    P->pl[idx] = S->l[r];
                    memcpy(P->pacc + idx * d->hdv, acc, (size_t)d->hdv * sizeof(float));
                }
            }
#undef ROW
}

static void merge_row(const plan *P, int64_t b, int64_t h, int64_t t) {
    const dims *d = &P->d;
    const int64_t stride = d->B * d->H * d->T, base = (b * d->H + h) * d->T + t;
    float M = -INFINITY;
    for (int64_t c = 0; c < P->nchunks; c++)
        M = P->pm[c * stride + base] > M ? P->pm[c * stride + base] : M;
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

    P.tile = d->hd + d->hd2 + d->hdv <= 128 ? TILE_BIG : TILE_SMALL;
    /* Decode-sized query blocks (T * H <= ROWS_ALL rows) take every kv head in one item, so each
     * item streams whole token rows front to back; parallelism then comes from split-K. Larger
     * blocks (prefill through the cache) are split per kv head and into blocks of queries. */
    if (d->T * d->H <= ROWS_ALL) {
        P.NG = d->Hkv;
        P.TB = d->T;
    } else {
        P.NG = 1;
        P.TB = d->T * d->G <= ROWS_MAX ? d->T : (ROWS_MAX / d->G > 0 ? ROWS_MAX / d->G : 1);
    }
    P.ntb = (d->T + P.TB - 1) / P.TB;
#define WHOLE(c, hd) (P.NG > 1 && cb_kv_kind_is_quantized((c)->kind) && (hd) % CB_QK != 0)
    P.k_whole = WHOLE(k, d->hd);
    P.k2_whole = P.k2 && WHOLE(k2, d->hd2);
    P.v_whole = WHOLE(v, d->hdv);
#undef WHOLE
    /* keys any query may see */
    int64_t lo0, hi0, lo1, hi1;
    key_range(cfg, d->L, cfg->q_pos0, &lo0, &hi0);
    key_range(cfg, d->L, cfg->q_pos0 + d->T - 1, &lo1, &hi1);
    P.kmin = lo0;
    P.kmax = hi1 > lo0 ? hi1 : lo0;
    const int64_t span = P.kmax - P.kmin;
    const int nthreads = omp_get_max_threads();
    const int64_t base_items = d->B * (d->Hkv / P.NG) * P.ntb;
    P.nchunks = 1;
    if (nthreads > 1 && base_items < 4 * (int64_t)nthreads && span >= 2 * MIN_CHUNK) {
        int64_t want = (4 * (int64_t)nthreads + base_items - 1) / base_items;
        int64_t most = span / MIN_CHUNK;
        P.nchunks = want < most ? want : most;
    }
    P.chunk_len = (span + P.nchunks - 1) / P.nchunks;
    P.chunk_len = (P.chunk_len + P.tile - 1) / P.tile * P.tile;
    if (P.chunk_len == 0) P.chunk_len = P.tile;
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
            const size_t R = (size_t)(P.TB * P.NG * d->G);
            S.qs = carve(&p, R * (size_t)d->hd);
            S.q2s = carve(&p, R * (size_t)d->hd2);
            S.m = carve(&p, R);
            S.l = carve(&p, R);
            S.acc = carve(&p, R * (size_t)d->hdv);
            S.s = carve(&p, (size_t)d->G * P.tile);
            S.alpha = carve(&p, (size_t)d->G);
            S.live = (int *)carve(&p, (size_t)d->G); /* int and float have the same size */
            S.kbuf = carve(&p, (size_t)P.tile * buf_width(&P, d->hd, P.k_whole));
            S.k2buf = carve(&p, (size_t)P.tile * buf_width(&P, d->hd2, P.k2_whole));
            S.vbuf = carve(&p, (size_t)P.tile * buf_width(&P, d->hdv, P.v_whole));
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
    return cb_kv_attention(cfg, q, &lc->k, &lc->v, q2, lc->decoupled ? &lc->k_geo : NULL, out, lse);
}
