/* Block quantization formats used by the KV cache (and usable for weights).
 *
 * All quantized formats hold 32 values per block with one fp16 scale, byte-compatible with ggml
 * (anchors.md §2.1) for q8_0 and q4_0:
 *
 *   q8_0  { fp16 d; int8 qs[32]; }      34 bytes   d = amax/127, q = roundf(x * (1/d)),
 *                                                   decode x = q * fp16(d)
 *   q4_0  { fp16 d; uint8 qs[16]; }     18 bytes   m = the element of largest magnitude with its
 *                                                   sign (the first one on ties), d = m / -8,
 *                                                   q = min(15, trunc(x * (1/d) + 8.5)),
 *                                                   decode x = (q - 8) * fp16(d)
 *   nf4   { fp16 absmax; uint8 qs[16]; } 18 bytes  q = index of the NF4 level nearest to
 *                                                   x / absmax (see below), decode
 *                                                   x = cb_nf4_levels[q] * fp16(absmax)
 *
 * Nibble order (q4_0 and nf4 alike, ggml's order, NOT bitsandbytes'): byte j (0..15) holds
 * element j in its low nibble and element j + 16 in its high nibble.
 *
 * Codes are computed from the unrounded f32 scale (q8_0/q4_0 multiply by 1/d, as ggml does; nf4
 * divides by absmax); the stored and decoding scale is the fp16-rounded one. Differences from
 * ggml, for inputs ggml does not handle: a scale whose magnitude exceeds 65504 is stored as
 * +-65504 instead of inf (values beyond 127*65504 (q8_0), 8*65504 (q4_0), 65504 (nf4) saturate);
 * NaN inputs give code 0 (q8_0), 8 (q4_0), 7 (nf4) instead of undefined behaviour.
 *
 * NF4 decision rule: idx = number of midpoints M[k] = (L[k] + L[k+1]) * 0.5f (computed in f32)
 * with M[k] < y, i.e. the nearest level, and a value exactly on a midpoint goes to the LOWER
 * level (bitsandbytes' and the original's rule). An all-zero block gives absmax 0 and codes 7
 * (level 0.0), byte 0x77.
 *
 * Rows: a row of width w is quantized as ceil(w/32) blocks; when w is not a multiple of 32 the
 * row is padded with zeros to the next multiple of 32 and the padding counts in the byte size
 * (cb_quant_row_bytes). */
#ifndef CARAMBA_QUANT_H
#define CARAMBA_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/dtype.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CB_QK 32 /* values per block for every quantized format */

typedef struct cb_block_q8_0 {
    uint16_t d;       /* fp16 scale */
    int8_t qs[CB_QK]; /* codes, -127..127 */
} cb_block_q8_0;

typedef struct cb_block_q4_0 {
    uint16_t d;            /* fp16 scale (signed: d = m / -8) */
    uint8_t qs[CB_QK / 2]; /* byte j: element j low nibble, element j+16 high nibble */
} cb_block_q4_0;

typedef struct cb_block_nf4 {
    uint16_t d;            /* fp16 absmax */
    uint8_t qs[CB_QK / 2]; /* NF4 level indices, same nibble order as q4_0 */
} cb_block_nf4;

static_assert(sizeof(cb_block_q8_0) == 34, "q8_0 block must be 34 bytes (ggml layout)");
static_assert(sizeof(cb_block_q4_0) == 18, "q4_0 block must be 18 bytes (ggml layout)");
static_assert(sizeof(cb_block_nf4) == 18, "nf4 block must be 18 bytes");

/* The 16 NF4 levels (anchors.md §2.2), index 0..15, ascending. */
extern const float cb_nf4_levels[16];

/* Per-format functions. n is a multiple of `block` (32 for the quantized formats, 1 for f32/f16);
 * rows are whole blocks. */
typedef struct cb_quant_traits {
    cb_dtype type;
    const char *name;
    int block;          /* values per block */
    size_t block_bytes; /* bytes per block */
    /* dst (n/block blocks) = quantize(x[n]) */
    void (*quantize_row)(const float *x, void *dst, int64_t n);
    /* y[n] = dequantize(src) */
    void (*dequantize_row)(const void *src, float *y, int64_t n);
    /* returns sum_i x[i] * dequant(row)[i] (f32 accumulation) */
    float (*dot)(const float *x, const void *row, int64_t n);
    /* acc[i] += w * dequant(row)[i] */
    void (*axpy)(float w, const void *row, float *acc, int64_t n);
} cb_quant_traits;

/* Traits for CB_F32, CB_F16, CB_Q8_0, CB_Q4_0, CB_NF4: the fastest implementation this build has
 * (AVX2/FMA/F16C when compiled with them). NULL with a message for other dtypes. */
const cb_quant_traits *cb_quant_traits_get(cb_dtype dt);
/* The scalar reference implementation (same results up to f32 summation order). */
const cb_quant_traits *cb_quant_traits_ref(cb_dtype dt);
/* True for the three block formats. */
int cb_quant_is_block(cb_dtype dt);

/* Width padded to whole blocks (w itself for f32/f16). */
int64_t cb_quant_padded_width(cb_dtype dt, int64_t w);
/* Bytes of one row of w values, padding included: f32 4w, f16 2w, q8_0 34*ceil(w/32),
 * q4_0/nf4 18*ceil(w/32). 0 for unsupported dtypes. */
size_t cb_quant_row_bytes(cb_dtype dt, int64_t w);

/* Quantizes one row of any width w (zero-padded to whole blocks) into dst
 * (cb_quant_row_bytes(dt, w) bytes). */
cb_status cb_quantize_row(cb_dtype dt, const float *x, int64_t w, void *dst);
/* Dequantizes the first w values of a row (the padding is not written). */
cb_status cb_dequantize_row(cb_dtype dt, const void *src, int64_t w, float *y);

/* Element-range helpers over a stored row, with the given traits (cb_quant_traits_get or _ref):
 * elements [e0, e0 + n) of the row, any offset and length; partial blocks at either end are
 * decoded one block at a time into a stack buffer. They never allocate. */
void cb_quant_dequant_range(const cb_quant_traits *tr, const void *row, int64_t e0, int64_t n,
                            float *y);
float cb_quant_dot_range(const cb_quant_traits *tr, const float *x, const void *row, int64_t e0,
                         int64_t n);
void cb_quant_axpy_range(const cb_quant_traits *tr, float w, const void *row, int64_t e0, int64_t n,
                         float *acc);

#ifdef __cplusplus
}
#endif
#endif
