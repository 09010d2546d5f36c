/* Element types and conversions between f32 and the 16-bit float formats.
 * Conversions round to nearest even and keep NaN/Inf, matching PyTorch's casts. */
#ifndef CARAMBA_DTYPE_H
#define CARAMBA_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cb_dtype {
    CB_F32 = 0,
    CB_BF16,
    CB_F16,
    CB_I32,
    CB_I64,
    CB_U16,
    CB_U32,
    CB_U8,
    CB_Q8_0, /* blocks of 32: fp16 scale + 32 int8 (ggml layout) */
    CB_Q4_0, /* blocks of 32: fp16 scale + 16 bytes of nibbles (ggml layout) */
    CB_NF4,  /* blocks of 32: fp16 absmax + 16 bytes of NF4 codes (q4_0 nibble order) */
    CB_DTYPE_COUNT
} cb_dtype;

/* Bytes per element for plain types; for block types, bytes per block. */
size_t cb_dtype_size(cb_dtype dt);
/* Elements per block (1 for plain types, 32 for the quantized kinds). */
int cb_dtype_block(cb_dtype dt);
/* Bytes needed for n elements (n must be a multiple of the block for block types). */
size_t cb_dtype_bytes(cb_dtype dt, int64_t n);
const char *cb_dtype_name(cb_dtype dt);
/* Parses "f32", "float32", "bf16", "bfloat16", "f16", "fp16", "float16", "i32", "int32", ...
 * Returns CB_ERR_ARG with a message naming the text if unknown. */
cb_status cb_dtype_parse(const char *name, cb_dtype *out);
int cb_dtype_is_float(cb_dtype dt);

static inline float cb_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}

static inline uint16_t cb_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {.f = f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* quiet NaN */
    uint32_t rounding_bias = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding_bias) >> 16);
}

float cb_f16_to_f32(uint16_t h);
uint16_t cb_f32_to_f16(float f);

/* Bulk conversions (vectorised where the CPU allows). */
void cb_convert_f16_to_f32(const uint16_t *src, float *dst, int64_t n);
void cb_convert_f32_to_f16(const float *src, uint16_t *dst, int64_t n);
void cb_convert_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);
void cb_convert_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
