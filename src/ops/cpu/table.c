/* The CPU kernel table and device dispatch. */
#include "ops/cpu/cpu_kernels.h"

static const cb_kernels cpu_table = {
    .name = "cpu",
    .gemm = cb_cpu_gemm,
    .bias_add = cb_cpu_bias_add,
    .bias_grad = cb_cpu_bias_grad,
    .embedding_fwd = cb_cpu_embedding_fwd,
    .embedding_bwd = cb_cpu_embedding_bwd,
    .add = cb_cpu_add,
    .mul = cb_cpu_mul,
    .scale = cb_cpu_scale,
    .axpy = cb_cpu_axpy,
    .reduce_rows_acc = cb_cpu_reduce_rows_acc,
    .mul_bwd = cb_cpu_mul_bwd,
    .rmsnorm_fwd = cb_cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cb_cpu_rmsnorm_bwd,
    .layernorm_fwd = cb_cpu_layernorm_fwd,
    .layernorm_bwd = cb_cpu_layernorm_bwd,
    .silu_fwd = cb_cpu_silu_fwd,
    .silu_bwd = cb_cpu_silu_bwd,
    .swiglu_fwd = cb_cpu_swiglu_fwd,
    .swiglu_bwd = cb_cpu_swiglu_bwd,
    .rope = cb_cpu_rope,
    .attention_fwd = cb_cpu_attention_fwd,
    .attention_bwd = cb_cpu_attention_bwd,
    .softmax_fwd = cb_cpu_softmax_fwd,
    .softmax_bwd = cb_cpu_softmax_bwd,
    .cross_entropy_fwd = cb_cpu_cross_entropy_fwd,
    .cross_entropy_bwd = cb_cpu_cross_entropy_bwd,
    .dropout_fwd = cb_cpu_dropout_fwd,
    .dropout_bwd = cb_cpu_dropout_bwd,
    .strided_copy = cb_cpu_strided_copy,
    .adamw = cb_cpu_adamw,
    .sum_squares = cb_cpu_sum_squares,
    .sigmoid_fwd = cb_cpu_sigmoid_fwd,
    .sigmoid_bwd = cb_cpu_sigmoid_bwd,
    .exp_clamp_fwd = cb_cpu_exp_clamp_fwd,
    .exp_clamp_bwd = cb_cpu_exp_clamp_bwd,
    .head_scale_fwd = cb_cpu_head_scale_fwd,
    .head_scale_bwd = cb_cpu_head_scale_bwd,
};

const cb_kernels *cb_cpu_kernels(void) {
    return &cpu_table;
}
