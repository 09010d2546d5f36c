/* RoPE inverse frequencies, computed exactly as Hugging Face transformers does (float32 math).
 *
 * default: inv_freq[i] = 1 / theta^(2i/dim), i = 0 .. dim/2-1, exponent rounded to float.
 * llama3 (transformers' _compute_llama3_parameters): with wavelen = 2*pi / inv_freq,
 *   wavelen < orig/high_freq_factor            -> unchanged
 *   wavelen > orig/low_freq_factor             -> inv_freq / factor
 *   otherwise, smooth = (orig/wavelen - low) / (high - low),
 *                      inv = (1 - smooth) * inv / factor + smooth * inv.
 * Every step is evaluated in float32 in the same order as the PyTorch expression (Python scalars
 * are rounded to float32 where PyTorch rounds them), so results match transformers' buffer. */
#ifndef CARAMBA_ROPE_FREQS_H
#define CARAMBA_ROPE_FREQS_H

#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CB_ROPE_DEFAULT = 0, CB_ROPE_LLAMA3 = 1 };

typedef struct cb_rope_params {
    float theta; /* rope_theta (base) */
    int type;    /* CB_ROPE_DEFAULT or CB_ROPE_LLAMA3 */
    /* llama3 only */
    float factor;
    float low_freq_factor;
    float high_freq_factor;
    int original_max_pos; /* original_max_position_embeddings */
} cb_rope_params;

/* Writes rot_dim/2 inverse frequencies. rot_dim must be even and positive; the parameters are
 * validated (theta > 0; for llama3 factor > 0, 0 < low < high, original_max_pos > 0). */
cb_status cb_rope_inv_freq(const cb_rope_params *p, int rot_dim, float *inv_freq_out);

#ifdef __cplusplus
}
#endif
#endif
