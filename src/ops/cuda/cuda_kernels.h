/* CUDA backend kernels: one declaration per entry of cb_kernels (see ops/kernels.h for the
 * semantics and shapes). */
#ifndef CARAMBA_CUDA_KERNELS_H
#define CARAMBA_CUDA_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif
#include "ops/kernels.h"
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif

cb_status cb_cuda_gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const cb_tensor *A, int64_t lda, int64_t strideA, const cb_tensor *B,
                      int64_t ldb, int64_t strideB, float beta, cb_tensor *C, int64_t ldc,
                      int64_t strideC, int64_t batch);
cb_status cb_cuda_bias_add(cb_tensor *y, const cb_tensor *b);
cb_status cb_cuda_bias_grad(const cb_tensor *dy, cb_tensor *db);
cb_status cb_cuda_embedding_fwd(const cb_tensor *ids, const cb_tensor *W, cb_tensor *out);
cb_status cb_cuda_embedding_bwd(const cb_tensor *ids, const cb_tensor *dout, cb_tensor *dW);
cb_status cb_cuda_add(const cb_tensor *a, const cb_tensor *b, cb_tensor *out);
cb_status cb_cuda_mul(const cb_tensor *a, const cb_tensor *b, cb_tensor *out);
cb_status cb_cuda_scale(const cb_tensor *a, float alpha, cb_tensor *out);
cb_status cb_cuda_axpy(float alpha, const cb_tensor *src, cb_tensor *dst);
cb_status cb_cuda_reduce_rows_acc(float alpha, const cb_tensor *src, cb_tensor *dst);
cb_status cb_cuda_mul_bwd(const cb_tensor *a, const cb_tensor *b, const cb_tensor *dout,
                         cb_tensor *da, cb_tensor *db);
cb_status cb_cuda_rmsnorm_fwd(const cb_tensor *x, const cb_tensor *w, float eps, cb_tensor *y,
                             cb_tensor *rstd);
cb_status cb_cuda_rmsnorm_bwd(const cb_tensor *x, const cb_tensor *w, const cb_tensor *rstd,
                             const cb_tensor *dy, cb_tensor *dx, cb_tensor *dw);
cb_status cb_cuda_layernorm_fwd(const cb_tensor *x, const cb_tensor *w, const cb_tensor *b,
                               float eps, cb_tensor *y, cb_tensor *mean, cb_tensor *rstd);
cb_status cb_cuda_layernorm_bwd(const cb_tensor *x, const cb_tensor *w, const cb_tensor *mean,
                               const cb_tensor *rstd, const cb_tensor *dy, cb_tensor *dx,
                               cb_tensor *dw, cb_tensor *db);
cb_status cb_cuda_silu_fwd(const cb_tensor *x, cb_tensor *y);
cb_status cb_cuda_silu_bwd(const cb_tensor *x, const cb_tensor *dy, cb_tensor *dx, bool dx_fresh);
cb_status cb_cuda_swiglu_fwd(const cb_tensor *gate, const cb_tensor *up, cb_tensor *y);
cb_status cb_cuda_swiglu_bwd(const cb_tensor *gate, const cb_tensor *up, const cb_tensor *dy,
                            cb_tensor *dgate, cb_tensor *dup, bool dgate_fresh, bool dup_fresh);
cb_status cb_cuda_rope(const cb_tensor *x, int n_heads, const cb_tensor *cos, const cb_tensor *sin,
                      int64_t pos0, bool inverse, cb_tensor *y);
cb_status cb_cuda_attention_fwd(const cb_attn_cfg *cfg, const cb_tensor *q, const cb_tensor *k,
                               const cb_tensor *v, const cb_tensor *q2, const cb_tensor *k2,
                               cb_tensor *out, cb_tensor *lse);
cb_status cb_cuda_attention_bwd(const cb_attn_cfg *cfg, const cb_tensor *q, const cb_tensor *k,
                               const cb_tensor *v, const cb_tensor *q2, const cb_tensor *k2,
                               const cb_tensor *out, const cb_tensor *lse, const cb_tensor *dout,
                               cb_tensor *dq, cb_tensor *dk, cb_tensor *dv, cb_tensor *dq2,
                               cb_tensor *dk2);
cb_status cb_cuda_softmax_fwd(const cb_tensor *x, cb_tensor *y);
cb_status cb_cuda_softmax_bwd(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx);
cb_status cb_cuda_cross_entropy_fwd(const cb_tensor *logits, const cb_tensor *targets,
                                   int64_t ignore_index, cb_tensor *loss, cb_tensor *lse,
                                   int64_t *count);
cb_status cb_cuda_cross_entropy_bwd(const cb_tensor *logits, const cb_tensor *targets,
                                   int64_t ignore_index, const cb_tensor *lse, float dloss,
                                   int64_t count, cb_tensor *dlogits, bool fresh);
cb_status cb_cuda_dropout_fwd(const cb_tensor *x, float p, uint64_t seed, uint64_t offset,
                             cb_tensor *y);
cb_status cb_cuda_dropout_bwd(const cb_tensor *dy, float p, uint64_t seed, uint64_t offset,
                             cb_tensor *dx);
cb_status cb_cuda_strided_copy(const cb_tensor *src, int64_t src_off, const int64_t sstride[4],
                              cb_tensor *dst, int64_t dst_off, const int64_t dstride[4],
                              const int64_t shape[4], bool accumulate);
cb_status cb_cuda_adamw(cb_tensor *param, const cb_tensor *grad, cb_tensor *m, cb_tensor *v,
                       float lr, float beta1, float beta2, float eps, float weight_decay,
                       int64_t step, float grad_scale);
cb_status cb_cuda_sum_squares(const cb_tensor *x, double *out);
cb_status cb_cuda_sigmoid_fwd(const cb_tensor *x, cb_tensor *y);
cb_status cb_cuda_sigmoid_bwd(const cb_tensor *y, const cb_tensor *dy, cb_tensor *dx);
cb_status cb_cuda_exp_clamp_fwd(const cb_tensor *x, float lo, float hi, cb_tensor *y);
cb_status cb_cuda_exp_clamp_bwd(const cb_tensor *x, const cb_tensor *y, float lo, float hi,
                                const cb_tensor *dy, cb_tensor *dx);
cb_status cb_cuda_head_scale_fwd(const cb_tensor *q, const cb_tensor *s, int n_heads, cb_tensor *y);
cb_status cb_cuda_head_scale_bwd(const cb_tensor *q, const cb_tensor *s, int n_heads,
                                 const cb_tensor *dy, cb_tensor *dq, cb_tensor *ds);

#ifdef __cplusplus
}
#endif
#endif
