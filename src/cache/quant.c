/* Block quantization: q8_0, q4_0 (ggml layouts), nf4, plus f32/f16 rows behind the same traits.
 * Formats and rounding rules are documented in include/caramba/quant.h. The scalar functions
 * (*_ref) are the definition; the AVX2 versions of dot/axpy/dequantize only reorder f32 sums. */
#include "caramba/quant.h"

#include <math.h>
#include <string.h>

#include "cache/quant_simd.h"

const float cb_nf4_levels[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* Decision midpoints (L[k] + L[k+1]) * 0.5 in f32, spelled out from the same literals so the
 * compiler folds them with f32 arithmetic. */
#define NF4_MID(a, b) (((a) + (b)) * 0.5f)
static const float nf4_mid[15] = {
    NF4_MID(-1.0f, -0.6961928009986877f),
    NF4_MID(-0.6961928009986877f, -0.5250730514526367f),
    NF4_MID(-0.5250730514526367f, -0.39491748809814453f),
    NF4_MID(-0.39491748809814453f, -0.28444138169288635f),
    NF4_MID(-0.28444138169288635f, -0.18477343022823334f),
    NF4_MID(-0.18477343022823334f, -0.09105003625154495f),
    NF4_MID(-0.09105003625154495f, 0.0f),
    NF4_MID(0.0f, 0.07958029955625534f),
    NF4_MID(0.07958029955625534f, 0.16093020141124725f),
    NF4_MID(0.16093020141124725f, 0.24611230194568634f),
    NF4_MID(0.24611230194568634f, 0.33791524171829224f),
    NF4_MID(0.33791524171829224f, 0.44070982933044434f),
    NF4_MID(0.44070982933044434f, 0.5626170039176941f),
    NF4_MID(0.5626170039176941f, 0.7229568362236023f),
    NF4_MID(0.7229568362236023f, 1.0f),
};

/* fp16 scale, saturated to +-65504 instead of overflowing to inf. */
static uint16_t store_scale(float d) {
    if (d > 65504.0f) d = 65504.0f;
    if (d < -65504.0f) d = -65504.0f;
    return cb_f32_to_f16(d);
}

/* ---- q8_0 ------------------------------------------------------------------------------ */

static void q8_0_quantize(const float *x, void *dst, int64_t n) {
    cb_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / CB_QK; i++, x += CB_QK) {
        float amax = 0.0f;
        for (int j = 0; j < CB_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = store_scale(d);
        for (int j = 0; j < CB_QK; j++) {
            float v = roundf(x[j] * id); /* half away from zero, as ggml */
            int c = v >= 127.0f ? 127 : v <= -127.0f ? -127 : v == v ? (int)v : 0;
            y[i].qs[j] = (int8_t)c;
        }
    }
}

static void q8_0_dequantize_ref(const void *src, float *y, int64_t n) {
    const cb_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / CB_QK; i++) cbq_decode_q8_0_ref(b + i, y + i * CB_QK);
}

static float q8_0_dot_ref(const float *x, const void *row, int64_t n) {
    const cb_block_q8_0 *b = row;
    float s = 0.0f;
    for (int64_t i = 0; i < n / CB_QK; i++) {
        float d = cb_f16_to_f32(b[i].d);
        for (int j = 0; j < CB_QK; j++) s += x[i * CB_QK + j] * ((float)b[i].qs[j] * d);
    }
    return s;
}

static void q8_0_axpy_ref(float w, const void *row, float *acc, int64_t n) {
    const cb_block_q8_0 *b = row;
    for (int64_t i = 0; i < n / CB_QK; i++) {
        float d = cb_f16_to_f32(b[i].d);
        for (int j = 0; j < CB_QK; j++) acc[i * CB_QK + j] += w * ((float)b[i].qs[j] * d);
    }
}

/* ---- q4_0 ------------------------------------------------------------------------------ */

static int q4_code(float v) { /* v = x/d + 8.5, truncated toward zero, capped at 15 */
    if (v >= 15.0f) return 15;
    if (v > 0.0f) return (int)v;
    return v == v ? 0 : 8;
}

static void q4_0_quantize(const float *x, void *dst, int64_t n) {
    cb_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / CB_QK; i++, x += CB_QK) {
        float amax = 0.0f, m = 0.0f;
        for (int j = 0; j < CB_QK; j++)
            if (amax < fabsf(x[j])) { /* strict: the first extreme wins a tie */
                amax = fabsf(x[j]);
                m = x[j];
            }
        const float d = m / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = store_scale(d);
        for (int j = 0; j < CB_QK / 2; j++) {
            int lo = q4_code(x[j] * id + 8.5f);
            int hi = q4_code(x[j + CB_QK / 2] * id + 8.5f);
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void q4_0_dequantize_ref(const void *src, float *y, int64_t n) {
    const cb_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / CB_QK; i++) cbq_decode_q4_0_ref(b + i, y + i * CB_QK);
}

static float q4_0_dot_ref(const float *x, const void *row, int64_t n) {
    float y[CB_QK], s = 0.0f;
    for (int64_t i = 0; i < n / CB_QK; i++) {
        cbq_decode_q4_0_ref((const cb_block_q4_0 *)row + i, y);
        for (int j = 0; j < CB_QK; j++) s += x[i * CB_QK + j] * y[j];
    }
    return s;
}

static void q4_0_axpy_ref(float w, const void *row, float *acc, int64_t n) {
    float y[CB_QK];
    for (int64_t i = 0; i < n / CB_QK; i++) {
        cbq_decode_q4_0_ref((const cb_block_q4_0 *)row + i, y);
        for (int j = 0; j < CB_QK; j++) acc[i * CB_QK + j] += w * y[j];
    }
}

/* ---- nf4 ------------------------------------------------------------------------------- */

static int nf4_code(float y) {
    if (y != y) return 7;
    int idx = 0;
    for (int k = 0; k < 15; k++) idx += nf4_mid[k] < y;
    return idx;
}

static void nf4_quantize(const float *x, void *dst, int64_t n) {
    cb_block_nf4 *y = dst;
    for (int64_t i = 0; i < n / CB_QK; i++, x += CB_QK) {
        float amax = 0.0f;
        for (int j = 0; j < CB_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        y[i].d = store_scale(amax);
        for (int j = 0; j < CB_QK / 2; j++) {
            int lo = nf4_code(amax > 0.0f ? x[j] / amax : 0.0f);
            int hi = nf4_code(amax > 0.0f ? x[j + CB_QK / 2] / amax : 0.0f);
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void nf4_dequantize_ref(const void *src, float *y, int64_t n) {
    const cb_block_nf4 *b = src;
    for (int64_t i = 0; i < n / CB_QK; i++) cbq_decode_nf4_ref(b + i, y + i * CB_QK);
}

static float nf4_dot_ref(const float *x, const void *row, int64_t n) {
    float y[CB_QK], s = 0.0f;
    for (int64_t i = 0; i < n / CB_QK; i++) {
        cbq_decode_nf4_ref((const cb_block_nf4 *)row + i, y);
        for (int j = 0; j < CB_QK; j++) s += x[i * CB_QK + j] * y[j];
    }
    return s;
}

static void nf4_axpy_ref(float w, const void *row, float *acc, int64_t n) {
    float y[CB_QK];
    for (int64_t i = 0; i < n / CB_QK; i++) {
        cbq_decode_nf4_ref((const cb_block_nf4 *)row + i, y);
        for (int j = 0; j < CB_QK; j++) acc[i * CB_QK + j] += w * y[j];
    }
}

/* ---- f32 / f16 rows --------------------------------------------------------------------- */

static void f32_quantize(const float *x, void *dst, int64_t n) {
    memcpy(dst, x, (size_t)n * 4);
}
static void f32_dequantize(const void *src, float *y, int64_t n) {
    memcpy(y, src, (size_t)n * 4);
}
static float f32_dot_ref(const float *x, const void *row, int64_t n) {
    const float *r = row;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += x[i] * r[i];
    return s;
}
static void f32_axpy_ref(float w, const void *row, float *acc, int64_t n) {
    const float *r = row;
    for (int64_t i = 0; i < n; i++) acc[i] += w * r[i];
}

static void f16_quantize_ref(const float *x, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = cb_f32_to_f16(x[i]);
}
static void f16_dequantize_ref(const void *src, float *y, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) y[i] = cb_f16_to_f32(h[i]);
}
static float f16_dot_ref(const float *x, const void *row, int64_t n) {
    const uint16_t *h = row;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += x[i] * cb_f16_to_f32(h[i]);
    return s;
}
static void f16_axpy_ref(float w, const void *row, float *acc, int64_t n) {
    const uint16_t *h = row;
    for (int64_t i = 0; i < n; i++) acc[i] += w * cb_f16_to_f32(h[i]);
}
static void f16_quantize(const float *x, void *dst, int64_t n) {
    cb_convert_f32_to_f16(x, dst, n);
}
static void f16_dequantize(const void *src, float *y, int64_t n) {
    cb_convert_f16_to_f32(src, y, n);
}

/* ---- AVX2 dot / axpy / dequantize -------------------------------------------------------- */
#ifdef CB_QUANT_AVX2

#define DEF_BLOCK_FNS(NAME, BT, CODES)                                                             \
    static void NAME##_dequantize(const void *src, float *y, int64_t n) {                          \
        const BT *b = src;                                                                         \
        for (int64_t i = 0; i < n / CB_QK; i++) {                                                  \
            __m256 v[4], d = _mm256_set1_ps(cbq_h2f(b[i].d));                                      \
            CODES(b + i, v);                                                                       \
            for (int k = 0; k < 4; k++)                                                            \
                _mm256_storeu_ps(y + i * CB_QK + 8 * k, _mm256_mul_ps(v[k], d));                   \
        }                                                                                          \
    }                                                                                              \
    static float NAME##_dot(const float *x, const void *row, int64_t n) {                          \
        const BT *b = row;                                                                         \
        __m256 acc = _mm256_setzero_ps();                                                          \
        for (int64_t i = 0; i < n / CB_QK; i++) {                                                  \
            __m256 v[4];                                                                           \
            CODES(b + i, v);                                                                       \
            const float *xb = x + i * CB_QK;                                                       \
            __m256 s = _mm256_mul_ps(_mm256_loadu_ps(xb), v[0]);                                   \
            s = _mm256_fmadd_ps(_mm256_loadu_ps(xb + 8), v[1], s);                                 \
            s = _mm256_fmadd_ps(_mm256_loadu_ps(xb + 16), v[2], s);                                \
            s = _mm256_fmadd_ps(_mm256_loadu_ps(xb + 24), v[3], s);                                \
            acc = _mm256_fmadd_ps(s, _mm256_set1_ps(cbq_h2f(b[i].d)), acc);                        \
        }                                                                                          \
        return cbq_hsum256(acc);                                                                   \
    }                                                                                              \
    static void NAME##_axpy(float w, const void *row, float *acc, int64_t n) {                     \
        const BT *b = row;                                                                         \
        for (int64_t i = 0; i < n / CB_QK; i++) {                                                  \
            __m256 v[4], wd = _mm256_set1_ps(w * cbq_h2f(b[i].d));                                 \
            CODES(b + i, v);                                                                       \
            float *ab = acc + i * CB_QK;                                                           \
            for (int k = 0; k < 4; k++)                                                            \
                _mm256_storeu_ps(ab + 8 * k,                                                       \
                                 _mm256_fmadd_ps(wd, v[k], _mm256_loadu_ps(ab + 8 * k)));          \
        }                                                                                          \
    }

DEF_BLOCK_FNS(q8_0, cb_block_q8_0, cbq_q8_0_codes)
DEF_BLOCK_FNS(q4_0, cb_block_q4_0, cbq_q4_0_codes)
DEF_BLOCK_FNS(nf4, cb_block_nf4, cbq_nf4_codes)

static float f32_dot(const float *x, const void *row, int64_t n) {
    const float *r = row;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(r + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(r + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(r + i), a0);
    float s = cbq_hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * r[i];
    return s;
}
static void f32_axpy(float w, const void *row, float *acc, int64_t n) {
    const float *r = row;
    __m256 wv = _mm256_set1_ps(w);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(acc + i,
                         _mm256_fmadd_ps(wv, _mm256_loadu_ps(r + i), _mm256_loadu_ps(acc + i)));
    for (; i < n; i++) acc[i] += w * r[i];
}
static float f16_dot(const float *x, const void *row, int64_t n) {
    const uint16_t *h = row;
    __m256 a0 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))), a0);
    float s = cbq_hsum256(a0);
    for (; i < n; i++) s += x[i] * cbq_h2f(h[i]);
    return s;
}
static void f16_axpy(float w, const void *row, float *acc, int64_t n) {
    const uint16_t *h = row;
    __m256 wv = _mm256_set1_ps(w);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            acc + i, _mm256_fmadd_ps(wv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))),
                                     _mm256_loadu_ps(acc + i)));
    for (; i < n; i++) acc[i] += w * cbq_h2f(h[i]);
}
#else
#define q8_0_dequantize q8_0_dequantize_ref
#define q8_0_dot q8_0_dot_ref
#define q8_0_axpy q8_0_axpy_ref
#define q4_0_dequantize q4_0_dequantize_ref
#define q4_0_dot q4_0_dot_ref
#define q4_0_axpy q4_0_axpy_ref
#define nf4_dequantize nf4_dequantize_ref
#define nf4_dot nf4_dot_ref
#define nf4_axpy nf4_axpy_ref
#define f32_dot f32_dot_ref
#define f32_axpy f32_axpy_ref
#define f16_dot f16_dot_ref
#define f16_axpy f16_axpy_ref
#endif

/* ---- tables ---------------------------------------------------------------------------- */

static const cb_quant_traits traits_ref[CB_DTYPE_COUNT] = {
    [CB_F32] = {CB_F32, "fp32", 1, 4, f32_quantize, f32_dequantize, f32_dot_ref, f32_axpy_ref},
    [CB_F16] = {CB_F16, "fp16", 1, 2, f16_quantize_ref, f16_dequantize_ref, f16_dot_ref,
                f16_axpy_ref},
    [CB_Q8_0] = {CB_Q8_0, "q8_0", CB_QK, sizeof(cb_block_q8_0), q8_0_quantize, q8_0_dequantize_ref,
                 q8_0_dot_ref, q8_0_axpy_ref},
    [CB_Q4_0] = {CB_Q4_0, "q4_0", CB_QK, sizeof(cb_block_q4_0), q4_0_quantize, q4_0_dequantize_ref,
                 q4_0_dot_ref, q4_0_axpy_ref},
    [CB_NF4] = {CB_NF4, "nf4", CB_QK, sizeof(cb_block_nf4), nf4_quantize, nf4_dequantize_ref,
                nf4_dot_ref, nf4_axpy_ref},
};

static const cb_quant_traits traits_fast[CB_DTYPE_COUNT] = {
    [CB_F32] = {CB_F32, "fp32", 1, 4, f32_quantize, f32_dequantize, f32_dot, f32_axpy},
    [CB_F16] = {CB_F16, "fp16", 1, 2, f16_quantize, f16_dequantize, f16_dot, f16_axpy},
    [CB_Q8_0] = {CB_Q8_0, "q8_0", CB_QK, sizeof(cb_block_q8_0), q8_0_quantize, q8_0_dequantize,
                 q8_0_dot, q8_0_axpy},
    [CB_Q4_0] = {CB_Q4_0, "q4_0", CB_QK, sizeof(cb_block_q4_0), q4_0_quantize, q4_0_dequantize,
                 q4_0_dot, q4_0_axpy},
    [CB_NF4] = {CB_NF4, "nf4", CB_QK, sizeof(cb_block_nf4), nf4_quantize, nf4_dequantize, nf4_dot,
                nf4_axpy},
};

static int supported(cb_dtype dt) {
    return dt == CB_F32 || dt == CB_F16 || dt == CB_Q8_0 || dt == CB_Q4_0 || dt == CB_NF4;
}

const cb_quant_traits *cb_quant_traits_get(cb_dtype dt) {
    if (!supported(dt)) {
        cb_fail(CB_ERR_UNSUPPORTED,
                "no quantization traits for dtype %s (expected f32, f16, "
                "q8_0, q4_0 or nf4)",
                cb_dtype_name(dt));
        return NULL;
    }
    return &traits_fast[dt];
}

const cb_quant_traits *cb_quant_traits_ref(cb_dtype dt) {
    if (!supported(dt)) {
        cb_fail(CB_ERR_UNSUPPORTED,
                "no quantization traits for dtype %s (expected f32, f16, "
                "q8_0, q4_0 or nf4)",
                cb_dtype_name(dt));
        return NULL;
    }
    return &traits_ref[dt];
}

int cb_quant_is_block(cb_dtype dt) {
    return dt == CB_Q8_0 || dt == CB_Q4_0 || dt == CB_NF4;
}

int64_t cb_quant_padded_width(cb_dtype dt, int64_t w) {
    return cb_quant_is_block(dt) ? (w + CB_QK - 1) / CB_QK * CB_QK : w;
}

size_t cb_quant_row_bytes(cb_dtype dt, int64_t w) {
    if (!supported(dt) || w < 0) return 0;
    const cb_quant_traits *t = &traits_ref[dt];
    return (size_t)(cb_quant_padded_width(dt, w) / t->block) * t->block_bytes;
}

cb_status cb_quantize_row(cb_dtype dt, const float *x, int64_t w, void *dst) {
    const cb_quant_traits *t = cb_quant_traits_get(dt);
    if (!t) return CB_ERR_UNSUPPORTED;
    if (w < 0) return cb_fail(CB_ERR_ARG, "quantize_row: negative width %lld", (long long)w);
    int64_t full = w / t->block * t->block;
    t->quantize_row(x, dst, full);
    if (full < w) { /* zero-padded tail block */
        float tmp[CB_QK] = {0};
        memcpy(tmp, x + full, (size_t)(w - full) * sizeof(float));
        t->quantize_row(tmp, (char *)dst + (size_t)(full / t->block) * t->block_bytes, CB_QK);
    }
    return CB_OK;
}

cb_status cb_dequantize_row(cb_dtype dt, const void *src, int64_t w, float *y) {
    const cb_quant_traits *t = cb_quant_traits_get(dt);
    if (!t) return CB_ERR_UNSUPPORTED;
    if (w < 0) return cb_fail(CB_ERR_ARG, "dequantize_row: negative width %lld", (long long)w);
    cb_quant_dequant_range(t, src, 0, w, y);
    return CB_OK;
}

/* ---- element ranges ------------------------------------------------------------------- */

void cb_quant_dequant_range(const cb_quant_traits *tr, const void *row, int64_t e0, int64_t n,
                            float *y) {
    const int bs = tr->block;
    const char *base = row;
    int64_t e = e0, end = e0 + n;
    while (e < end) {
        int64_t blk = e / bs, off = e - blk * bs;
        if (off == 0 && end - e >= bs) { /* run of whole blocks */
            int64_t nb = (end - e) / bs;
            tr->dequantize_row(base + (size_t)blk * tr->block_bytes, y + (e - e0), nb * bs);
            e += nb * bs;
        } else {
            float tmp[CB_QK];
            tr->dequantize_row(base + (size_t)blk * tr->block_bytes, tmp, bs);
            int64_t take = bs - off < end - e ? bs - off : end - e;
            memcpy(y + (e - e0), tmp + off, (size_t)take * sizeof(float));
            e += take;
        }
    }
}

float cb_quant_dot_range(const cb_quant_traits *tr, const float *x, const void *row, int64_t e0,
                         int64_t n) {
    const int bs = tr->block;
    const char *base = row;
    float s = 0.0f;
    int64_t e = e0, end = e0 + n;
    while (e < end) {
        int64_t blk = e / bs, off = e - blk * bs;
        if (off == 0 && end - e >= bs) {
            int64_t nb = (end - e) / bs;
            s += tr->dot(x + (e - e0), base + (size_t)blk * tr->block_bytes, nb * bs);
            e += nb * bs;
        } else {
            float tmp[CB_QK];
            tr->dequantize_row(base + (size_t)blk * tr->block_bytes, tmp, bs);
            int64_t take = bs - off < end - e ? bs - off : end - e;
            for (int64_t i = 0; i < take; i++) s += x[e - e0 + i] * tmp[off + i];
            e += take;
        }
    }
    return s;
}

void cb_quant_axpy_range(const cb_quant_traits *tr, float w, const void *row, int64_t e0, int64_t n,
                         float *acc) {
    const int bs = tr->block;
    const char *base = row;
    int64_t e = e0, end = e0 + n;
    while (e < end) {
        int64_t blk = e / bs, off = e - blk * bs;
        if (off == 0 && end - e >= bs) {
            int64_t nb = (end - e) / bs;
            tr->axpy(w, base + (size_t)blk * tr->block_bytes, acc + (e - e0), nb * bs);
            e += nb * bs;
        } else {
            float tmp[CB_QK];
            tr->dequantize_row(base + (size_t)blk * tr->block_bytes, tmp, bs);
            int64_t take = bs - off < end - e ? bs - off : end - e;
            for (int64_t i = 0; i < take; i++) acc[e - e0 + i] += w * tmp[off + i];
            e += take;
        }
    }
}
