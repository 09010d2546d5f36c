/* The CUDA kernel table (ops/kernels.h). */
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

static const cb_kernels cuda_table = {
    .name = "cuda",
    .gemm = cb_cuda_gemm,
    .bias_add = cb_cuda_bias_add,
    .bias_grad = cb_cuda_bias_grad,
    .embedding_fwd = cb_cuda_embedding_fwd,
    .embedding_bwd = cb_cuda_embedding_bwd,
    .add = cb_cuda_add,
    .mul = cb_cuda_mul,
    .scale = cb_cuda_scale,
    .axpy = cb_cuda_axpy,
    .reduce_rows_acc = cb_cuda_reduce_rows_acc,
    .mul_bwd = cb_cuda_mul_bwd,
    .rmsnorm_fwd = cb_cuda_rmsnorm_fwd,
    .rmsnorm_bwd = cb_cuda_rmsnorm_bwd,
    .layernorm_fwd = cb_cuda_layernorm_fwd,
    .layernorm_bwd = cb_cuda_layernorm_bwd,
    .silu_fwd = cb_cuda_silu_fwd,
    .silu_bwd = cb_cuda_silu_bwd,
    .swiglu_fwd = cb_cuda_swiglu_fwd,
    .swiglu_bwd = cb_cuda_swiglu_bwd,
    .rope = cb_cuda_rope,
    .attention_fwd = cb_cuda_attention_fwd,
    .attention_bwd = cb_cuda_attention_bwd,
    .softmax_fwd = cb_cuda_softmax_fwd,
    .softmax_bwd = cb_cuda_softmax_bwd,
    .cross_entropy_fwd = cb_cuda_cross_entropy_fwd,
    .cross_entropy_bwd = cb_cuda_cross_entropy_bwd,
    .dropout_fwd = cb_cuda_dropout_fwd,
    .dropout_bwd = cb_cuda_dropout_bwd,
    .strided_copy = cb_cuda_strided_copy,
    .adamw = cb_cuda_adamw,
    .sum_squares = cb_cuda_sum_squares,
    .sigmoid_fwd = cb_cuda_sigmoid_fwd,
    .sigmoid_bwd = cb_cuda_sigmoid_bwd,
    .exp_clamp_fwd = cb_cuda_exp_clamp_fwd,
    .exp_clamp_bwd = cb_cuda_exp_clamp_bwd,
    .head_scale_fwd = cb_cuda_head_scale_fwd,
    .head_scale_bwd = cb_cuda_head_scale_bwd,
};

/* NULL with a message when no usable GPU is present. */
extern "C" const cb_kernels *cb_cuda_kernels(void) {
    if (!cb_cu_ctx()) return nullptr;
    return &cuda_table;
}
