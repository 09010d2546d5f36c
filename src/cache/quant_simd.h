/* Internal: block decoders shared by the quantization traits (quant.c) and the cache attention
 * kernels (cache_attention.c). Scalar decoders are the definition; the AVX2 decoders produce
 * bit-identical values (q * d, level * d are single f32 products either way). */
#ifndef CARAMBA_CACHE_QUANT_SIMD_H
#define CARAMBA_CACHE_QUANT_SIMD_H

#include <stdint.h>
#include <string.h>

#include "caramba/dtype.h"
#include "caramba/quant.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CB_QUANT_AVX2 1
#include <immintrin.h>
#endif

/* fp16 -> f32 for a block scale (F16C when available). */
static inline float cbq_h2f(uint16_t h) {
#ifdef CB_QUANT_AVX2
    return _cvtsh_ss(h);
#else
    return cb_f16_to_f32(h);
#endif
}

/* ---- scalar decoders: y[0..31] = dequant(block) ------------------------------------------- */

static inline void cbq_decode_q8_0_ref(const cb_block_q8_0 *b, float *y) {
    float d = cb_f16_to_f32(b->d);
    for (int j = 0; j < CB_QK; j++) y[j] = (float)b->qs[j] * d;
}

static inline void cbq_decode_q4_0_ref(const cb_block_q4_0 *b, float *y) {
    float d = cb_f16_to_f32(b->d);
    for (int j = 0; j < CB_QK / 2; j++) {
        y[j] = (float)((int)(b->qs[j] & 0x0f) - 8) * d;
        y[j + CB_QK / 2] = (float)((int)(b->qs[j] >> 4) - 8) * d;
    }
}

static inline void cbq_decode_nf4_ref(const cb_block_nf4 *b, float *y) {
    float d = cb_f16_to_f32(b->d);
    for (int j = 0; j < CB_QK / 2; j++) {
        y[j] = cb_nf4_levels[b->qs[j] & 0x0f] * d;
        y[j + CB_QK / 2] = cb_nf4_levels[b->qs[j] >> 4] * d;
    }
}

#ifdef CB_QUANT_AVX2
/* ---- AVX2 register decoders: v[0..3] hold elements 0-7, 8-15, 16-23, 24-31 ---------------- */

/* Codes as floats, unscaled. */
static inline void cbq_q8_0_codes(const cb_block_q8_0 *b, __m256 v[4]) {
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + 8 * k))));
}

/* q4_0 codes minus 8, as floats, unscaled. */
static inline void cbq_q4_0_codes(const cb_block_q4_0 *b, __m256 v[4]) {
    const __m128i m4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    __m128i raw = _mm_loadu_si128((const __m128i *)b->qs);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);                    /* elems 0..15 */
    __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight); /* 16..31 */
    v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    v[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    v[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

/* NF4 levels looked up with two 8-entry permutes and a blend on bit 3, unscaled. */
static inline void cbq_nf4_codes(const cb_block_nf4 *b, __m256 v[4]) {
    const __m256 tlo = _mm256_loadu_ps(cb_nf4_levels), thi = _mm256_loadu_ps(cb_nf4_levels + 8);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i raw = _mm_loadu_si128((const __m128i *)b->qs);
    __m128i lo = _mm_and_si128(raw, m4);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256i idx = _mm256_cvtepu8_epi32(parts[k]);
        __m256 a = _mm256_permutevar8x32_ps(tlo, idx);
        __m256 c = _mm256_permutevar8x32_ps(thi, idx);
        __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)); /* bit 3 -> sign bit */
        v[k] = _mm256_blendv_ps(a, c, sel);
    }
}

static inline float cbq_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Decoded, scaled block stored to y[0..31]. */
static inline void cbq_decode_q8_0(const cb_block_q8_0 *b, float *y) {
    __m256 v[4], d = _mm256_set1_ps(cbq_h2f(b->d));
    cbq_q8_0_codes(b, v);
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(v[k], d));
}
static inline void cbq_decode_q4_0(const cb_block_q4_0 *b, float *y) {
    __m256 v[4], d = _mm256_set1_ps(cbq_h2f(b->d));
    cbq_q4_0_codes(b, v);
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(v[k], d));
}
static inline void cbq_decode_nf4(const cb_block_nf4 *b, float *y) {
    __m256 v[4], d = _mm256_set1_ps(cbq_h2f(b->d));
    cbq_nf4_codes(b, v);
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(v[k], d));
}
#else
#define cbq_decode_q8_0 cbq_decode_q8_0_ref
#define cbq_decode_q4_0 cbq_decode_q4_0_ref
#define cbq_decode_nf4 cbq_decode_nf4_ref
#endif

#endif
