#include "ops/cuda/attention.cuh"
bool cb_cu_attention_fwd_fast(cb_cuda_ctx *c, const cb_attn_dims &d, const cb_attn_ptrs &a) {
    (void)c; (void)d; (void)a;
    return false;
}
