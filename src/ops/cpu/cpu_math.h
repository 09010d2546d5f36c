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
    x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f); /* vroundps: no libm call */
    float r = x - n * 0.693145751953125f; /* ln2 split in a high part ... */
    r = r - n * 1.428606765330187045e-06f; /* ... and a low part for accuracy */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float cb_sigmoidf(float x) { return 1.0f / (1.0f + cb_fast_expf(-x)); }

#endif
