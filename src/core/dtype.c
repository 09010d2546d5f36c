/* dtype traits and f16 conversions (IEEE binary16, round to nearest even). */
#include "caramba/dtype.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    size_t size;
    int block;
} traits[CB_DTYPE_COUNT] = {
    [CB_F32] = {"f32", 4, 1},      [CB_BF16] = {"bf16", 2, 1},    [CB_F16] = {"f16", 2, 1},
    [CB_I32] = {"i32", 4, 1},      [CB_I64] = {"i64", 8, 1},      [CB_U16] = {"u16", 2, 1},
    [CB_U32] = {"u32", 4, 1},      [CB_U8] = {"u8", 1, 1},        [CB_Q8_0] = {"q8_0", 34, 32},
    [CB_Q4_0] = {"q4_0", 18, 32},  [CB_NF4] = {"nf4", 18, 32},
};

size_t cb_dtype_size(cb_dtype dt) { return (unsigned)dt < CB_DTYPE_COUNT ? traits[dt].size : 0; }
int cb_dtype_block(cb_dtype dt) { return (unsigned)dt < CB_DTYPE_COUNT ? traits[dt].block : 1; }
const char *cb_dtype_name(cb_dtype dt) {
    return (unsigned)dt < CB_DTYPE_COUNT ? traits[dt].name : "?";
}
size_t cb_dtype_bytes(cb_dtype dt, int64_t n) {
    int b = cb_dtype_block(dt);
    return (size_t)((n + b - 1) / b) * cb_dtype_size(dt);
}
int cb_dtype_is_float(cb_dtype dt) { return dt == CB_F32 || dt == CB_BF16 || dt == CB_F16; }

cb_status cb_dtype_parse(const char *name, cb_dtype *out) {
    static const struct {
        const char *alias;
        cb_dtype dt;
    } aliases[] = {
        {"f32", CB_F32},      {"float32", CB_F32},  {"fp32", CB_F32},     {"float", CB_F32},
        {"bf16", CB_BF16},    {"bfloat16", CB_BF16}, {"f16", CB_F16},     {"fp16", CB_F16},
        {"float16", CB_F16},  {"half", CB_F16},     {"i32", CB_I32},      {"int32", CB_I32},
        {"i64", CB_I64},      {"int64", CB_I64},    {"u16", CB_U16},      {"uint16", CB_U16},
        {"u32", CB_U32},      {"uint32", CB_U32},   {"u8", CB_U8},        {"uint8", CB_U8},
        {"q8_0", CB_Q8_0},    {"q4_0", CB_Q4_0},    {"nf4", CB_NF4},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(name, aliases[i].alias) == 0) {
            *out = aliases[i].dt;
            return CB_OK;
        }
    return cb_fail(CB_ERR_ARG, "unknown dtype '%s' (expected f32, bf16, f16, i32, i64, u16, ...)",
                   name);
}

float cb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    union { uint32_t u; float f; } v = {.u = bits};
    return v.f;
}

uint16_t cb_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {.f = f};
    uint32_t x = v.u;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return sign | 0x7e00; /* NaN */
    if (absx >= 0x477ff000u) return sign | 0x7c00; /* overflow (rounds to inf) or inf */
    if (absx < 0x38800000u) {                      /* result is subnormal or zero */
        if (absx < 0x33000000u) return sign;       /* below half the smallest subnormal */
        uint32_t exp = absx >> 23;
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        int shift = (int)(126 - exp); /* 113 - exp + 13 */
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t q = absx - 0x38000000u; /* rebias exponent by (127-15) << 23 */
    uint32_t rem = q & 0x1fff;
    q >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return sign | (uint16_t)q;
}

#if defined(__F16C__)
#include <immintrin.h>
#endif

void cb_convert_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = cb_f16_to_f32(src[i]);
}

void cb_convert_f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) dst[i] = cb_f32_to_f16(src[i]);
}

void cb_convert_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = cb_bf16_to_f32(src[i]);
}

void cb_convert_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = cb_f32_to_bf16(src[i]);
}
