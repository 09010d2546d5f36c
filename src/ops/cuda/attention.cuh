/* Internal interface between the attention host code and its kernels (general and tensor-core). */
#ifndef CARAMBA_CUDA_ATTENTION_CUH
#define CARAMBA_CUDA_ATTENTION_CUH

#include "ops/cuda/cuda_common.cuh"

/* Problem sizes, resolved from cb_attn_cfg and the tensor shapes. hd2 is 0 without q2/k2. */
struct cb_attn_dims {
    int64_t B, T, S;
    int H, Hkv, hd, hd2, hdv;
    float scale, scale2;
    int causal, window;
    int64_t q_pos0;
};

struct cb_attn_ptrs {
    cb_tv q, k, v, q2, k2, out, lse, dout, dq, dk, dv, dq2, dk2;
};

cb_status cb_cu_attn_setup(const char *op, const cb_attn_cfg *cfg, const cb_tensor *q,
                           const cb_tensor *k, const cb_tensor *v, const cb_tensor *q2,
                           const cb_tensor *k2, const cb_tensor *out, const cb_tensor *lse,
                           cb_attn_dims *d);
cb_status cb_cu_attention_fwd_general(cb_cuda_ctx *c, const cb_attn_dims &d,
                                      const cb_attn_ptrs &a);
/* Tensor-core forward for the shapes it covers (bf16 q/k/v/out, no second term, head size 64 or
 * 128). Returns true when it ran, false to fall back to the general kernel (a launch failure
 * also returns false after clearing the error). */
bool cb_cu_attention_fwd_fast(cb_cuda_ctx *c, const cb_attn_dims &d, const cb_attn_ptrs &a);
/* Tensor-core backward for the same shapes (dout bf16 too); Dv [B, H, T] = <dout, out> per row.
 * Returns 1 when it ran, 0 when it does not apply (nothing launched), -1 on a launch error
 * (message set). Setting CARAMBA_CUDA_NO_TC_ATTENTION forces the general kernels. */
int cb_cu_attention_bwd_fast(cb_cuda_ctx *c, const cb_attn_dims &d, const cb_attn_ptrs &a,
                             const float *Dv);

#endif
