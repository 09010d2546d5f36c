/* RoPE inverse frequencies in float32, step for step as transformers computes them.
 *
 * PyTorch semantics reproduced here:
 *  - `theta ** (arange(0, dim, 2).float() / dim)`: the exponent is a float32 division and the
 *    power is a float32 result. We take the correctly rounded float of theta^e (computed in double
 *    and rounded once); glibc's powf is off by one ulp for about 1 in 1000 exponents, PyTorch's
 *    vectorised pow is accurate to the last bit in the cases that matter here.
 *  - `scalar / tensor` is `tensor.reciprocal() * scalar` in PyTorch, so 1/x and 2*pi/x are a
 *    float reciprocal followed by a float multiply.
 *  - Python scalars meeting a float32 tensor are rounded to float32 first (factor, 2*pi, the
 *    wavelength thresholds, high - low computed in double then rounded). */
#include "caramba/rope_freqs.h"

#include <math.h>

/* PyTorch runs each operation as its own kernel: no fused multiply-adds (gcc's ISO C mode already
 * leaves contraction off; clang needs telling). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static float pow_f32(float base, float e) {
    return (float)pow((double)base, (double)e);
}

cb_status cb_rope_inv_freq(const cb_rope_params *p, int rot_dim, float *out) {
    if (!p || !out) return cb_fail(CB_ERR_ARG, "rope: NULL argument");
    if (rot_dim <= 0 || rot_dim % 2)
        return cb_fail(CB_ERR_ARG, "rope: rotary dimension %d must be positive and even", rot_dim);
    if (!(p->theta > 0.0f) || !isfinite(p->theta))
        return cb_fail(CB_ERR_ARG, "rope: rope_theta %g must be positive", (double)p->theta);
    if (p->type != CB_ROPE_DEFAULT && p->type != CB_ROPE_LLAMA3)
        return cb_fail(CB_ERR_ARG, "rope: unknown rope type %d", p->type);
    if (p->type == CB_ROPE_LLAMA3) {
        if (!(p->factor > 0.0f) || !isfinite(p->factor))
            return cb_fail(CB_ERR_ARG, "rope: llama3 factor %g must be positive",
                           (double)p->factor);
        if (!(p->low_freq_factor > 0.0f) || !(p->high_freq_factor > p->low_freq_factor) ||
            !isfinite(p->high_freq_factor))
            return cb_fail(CB_ERR_ARG,
                           "rope: llama3 needs 0 < low_freq_factor < high_freq_factor, got %g, %g",
                           (double)p->low_freq_factor, (double)p->high_freq_factor);
        if (p->original_max_pos <= 0)
            return cb_fail(CB_ERR_ARG,
                           "rope: llama3 original_max_position_embeddings %d must be "
                           "positive",
                           p->original_max_pos);
    }
    const float two_pi = (float)(2.0 * M_PI);
    const double orig = (double)p->original_max_pos;
    const float low_wavelen = (float)(orig / (double)p->low_freq_factor);
    const float high_wavelen = (float)(orig / (double)p->high_freq_factor);
    const float band = (float)((double)p->high_freq_factor - (double)p->low_freq_factor);
    for (int i = 0; i < rot_dim / 2; i++) {
        float e = (float)(2 * i) / (float)rot_dim;
        float inv = 1.0f / pow_f32(p->theta, e);
        if (p->type == CB_ROPE_LLAMA3) {
            float wavelen = (1.0f / inv) * two_pi;
            float inv_l = wavelen > low_wavelen ? inv / p->factor : inv;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = ((1.0f / wavelen) * (float)orig - p->low_freq_factor) / band;
                inv_l = (1.0f - smooth) * inv_l / p->factor + smooth * inv_l;
            }
            inv = inv_l;
        }
        out[i] = inv;
    }
    return CB_OK;
}
