/* Scalar math written so that GCC vectorises the loops that call it (no libm calls inside). */
#ifndef CARAMBA_CPU_MATH_H
#define CARAMBA_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for x in float range, ~1.5 ulp: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
 * polynomial, 2^n assembled in the exponent bits. Inputs below -87.3 flush to 0 (softmax
 * weights that small are exactly 0 in f32 anyway). */
static inline float cb_fast_expf(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x); /* NaN passes through unchanged */
    /* round x*log2(e) to an integer with the 1.5*2^23 trick: no float-to-int conversion, so NaN
     * stays a NaN instead of undefined behaviour */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693145751953125f; /* ln2 split in a high part ... */
    r = r - n * 1.428606765330187045e-06f; /* ... and a low part for accuracy */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t bits = (tb - 0x4B400000u + 127u) << 23; /* low mantissa bits of t hold n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float cb_sigmoidf(float x) { return 1.0f / (1.0f + cb_fast_expf(-x)); }

/* 16-float vectors (GCC vector extensions): one zmm with AVX-512, two ymm with AVX2, so the same
 * source is fast on both. Loads/stores go through memcpy: unaligned and alias-safe. */
typedef float cb_v16 __attribute__((vector_size(64)));
typedef int32_t cb_v16i __attribute__((vector_size(64)));

static inline cb_v16 cb_v16_load(const float *p) {
    cb_v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void cb_v16_store(float *p, cb_v16 v) { memcpy(p, &v, sizeof v); }
static inline cb_v16 cb_v16_set1(float x) { return (cb_v16){0} + x; }
/* mask ? a : b (mask lanes are all-ones or zero, as vector comparisons give) */
static inline cb_v16 cb_v16_select(cb_v16i mask, cb_v16 a, cb_v16 b) {
    cb_v16i ai, bi;
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    cb_v16i r = (mask & ai) | (~mask & bi);
    cb_v16 out;
    memcpy(&out, &r, sizeof out);
    return out;
}
static inline cb_v16 cb_v16_max(cb_v16 a, cb_v16 b) { return cb_v16_select(a > b, a, b); }
static inline cb_v16 cb_v16_min(cb_v16 a, cb_v16 b) { return cb_v16_select(a < b, a, b); }
static inline float cb_v16_hmax(cb_v16 v) {
    float m = v[0];
    for (int i = 1; i < 16; i++) m = v[i] > m ? v[i] : m;
    return m;
}
static inline float cb_v16_hsum(cb_v16 v) {
    float s = 0;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}

/* Vector exp with the same reduction as cb_fast_expf; round-to-nearest by the 1.5*2^23 trick. */
static inline cb_v16 cb_v16_exp(cb_v16 x) {
    const cb_v16 lo = cb_v16_set1(-87.3f), hi = cb_v16_set1(88.0f);
    x = cb_v16_min(cb_v16_max(x, lo), hi);
    const cb_v16 magic = cb_v16_set1(12582912.0f);
    cb_v16 n = (x * 1.44269504088896341f + magic) - magic;
    cb_v16 r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    cb_v16 p = cb_v16_set1(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    cb_v16i e = (__builtin_convertvector(n, cb_v16i) + 127) << 23;
    cb_v16 scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

#endif
