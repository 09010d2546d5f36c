/* AdamW (single- and multi-tensor) and the sum of squares for global-norm clipping.
 *   param, m, v [n] (f32 master weights and moments; param may be 16-bit), grad [n]
 *   param->lowp [n] (16-bit copy for AMP, optional): the multi-tensor update rewrites it from the
 *   new master value in the same pass, so the copies are never stale after a step. */
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

#include <string.h>

struct adam_hp {
    float lr, b1, b2, eps, wd, grad_scale;
    float inv_bc1, inv_bc2; /* 1 / (1 - beta^step) */
};

__device__ __forceinline__ void adam_elem(const adam_hp &h, cb_tv p, cb_tv g, float *m, float *v,
                                          int64_t i) {
    float gi = cb_ld(g, i) * h.grad_scale;
    float mi = h.b1 * m[i] + (1.f - h.b1) * gi;
    float vi = h.b2 * v[i] + (1.f - h.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = cb_ld(p, i);
    float upd = (mi * h.inv_bc1) / (sqrtf(vi * h.inv_bc2) + h.eps) + h.wd * pi;
    cb_st(p, i, pi - h.lr * upd);
}

__global__ void k_adamw(int64_t n, adam_hp h, cb_tv p, cb_tv g, float *m, float *v, cb_tv lp) {
    CB_GRID_LOOP(i, n) {
        adam_elem(h, p, g, m, v, i);
        if (lp.p) cb_st(lp, i, cb_ld(p, i));
    }
}

static cb_status make_hp(adam_hp *h, float lr, float beta1, float beta2, float eps, float wd,
                         int64_t step, float grad_scale) {
    if (step < 1) return cb_fail(CB_ERR_ARG, "cuda adamw: step %lld must be >= 1", (long long)step);
    h->lr = lr;
    h->b1 = beta1;
    h->b2 = beta2;
    h->eps = eps;
    h->wd = wd;
    h->grad_scale = grad_scale;
    h->inv_bc1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)step)));
    h->inv_bc2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)step)));
    return CB_OK;
}

static cb_status check_moments(const cb_tensor *p, const cb_tensor *m, const cb_tensor *v) {
    if (m->dtype != CB_F32 || v->dtype != CB_F32)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda adamw: moments must be f32 (got %s, %s)",
                       cb_dtype_name(m->dtype), cb_dtype_name(v->dtype));
    int64_t n = cb_tensor_numel(p);
    if (cb_tensor_numel(m) != n || cb_tensor_numel(v) != n)
        return cb_fail(CB_ERR_SHAPE, "cuda adamw: moments and parameter differ in size");
    return CB_OK;
}

extern "C" cb_status cb_cuda_adamw(cb_tensor *param, const cb_tensor *grad, cb_tensor *m,
                                   cb_tensor *v, float lr, float beta1, float beta2, float eps,
                                   float weight_decay, int64_t step, float grad_scale) {
    CB_CU_FLOATS("adamw", param, grad, m, v);
    CB_TRY(check_moments(param, m, v));
    CB_CU_CTX(c);
    adam_hp h;
    CB_TRY(make_hp(&h, lr, beta1, beta2, eps, weight_decay, step, grad_scale));
    int64_t n = cb_tensor_numel(param);
    if (!n) return CB_OK;
    cb_tv lp = {nullptr, (int)CB_F32};
    if (param->lowp && cb_tensor_numel(param->lowp) == n && param->lowp->device == CB_CUDA)
        lp = cb_view(param->lowp);
    k_adamw<<<cb_cu_blocks(n, 256), 256, 0, c->stream>>>(n, h, cb_view(param), cb_view(grad),
                                                         (float *)m->data, (float *)v->data, lp);
    CB_CU_LAUNCHED("adamw");
    return CB_OK;
}

/* ---- multi-tensor AdamW ---------------------------------------------------------------------- */

#define MT_MAX 48

/* Tensors of one launch; block b works on tensor t where first_block[t] <= b < first_block[t+1],
 * chunk b - first_block[t] of MT_CHUNK elements. Passed by value (well under 4 KB). */
struct mt_args {
    void *p[MT_MAX];
    void *lp[MT_MAX]; /* the parameter's 16-bit copy (AMP), written with the update, or NULL */
    const void *g[MT_MAX];
    float *m[MT_MAX], *v[MT_MAX];
    int64_t n[MT_MAX];
    unsigned char pdt[MT_MAX], gdt[MT_MAX], lpdt[MT_MAX];
    int first_block[MT_MAX + 1];
    int count;
};

#define MT_CHUNK (256 * 16)

__global__ void k_adamw_multi(mt_args a, adam_hp h) {
    int b = blockIdx.x, t = 0;
    while (t + 1 < a.count && a.first_block[t + 1] <= b) t++;
    int64_t start = (int64_t)(b - a.first_block[t]) * MT_CHUNK;
    int64_t end = start + MT_CHUNK < a.n[t] ? start + MT_CHUNK : a.n[t];
    cb_tv p = {a.p[t], a.pdt[t]}, g = {(void *)a.g[t], a.gdt[t]}, lp = {a.lp[t], a.lpdt[t]};
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        adam_elem(h, p, g, a.m[t], a.v[t], i);
        if (lp.p) cb_st(lp, i, cb_ld(p, i)); /* same thread, so it reads the value just stored */
    }
}

extern "C" cb_status cb_cuda_adamw_multi(int n, cb_tensor *const *params,
                                         const cb_tensor *const *grads, cb_tensor *const *m,
                                         cb_tensor *const *v, float lr, float beta1, float beta2,
                                         float eps, float weight_decay, int64_t step,
                                         float grad_scale) {
    CB_CU_CTX(c);
    adam_hp h;
    CB_TRY(make_hp(&h, lr, beta1, beta2, eps, weight_decay, step, grad_scale));
    mt_args a;
    int i = 0;
    while (i < n) {
        a.count = 0;
        int blocks = 0;
        while (i < n && a.count < MT_MAX) {
            CB_CU_FLOATS("adamw_multi", params[i], grads[i], m[i], v[i]);
            CB_TRY(check_moments(params[i], m[i], v[i]));
            int64_t ne = cb_tensor_numel(params[i]);
            int64_t nb = (ne + MT_CHUNK - 1) / MT_CHUNK;
            if (blocks + nb > (1LL << 30)) break;
            int k = a.count++;
            a.p[k] = params[i]->data;
            const cb_tensor *lo = params[i]->lowp;
            a.lp[k] = lo && cb_tensor_numel(lo) == ne && lo->device == CB_CUDA ? lo->data : nullptr;
            a.lpdt[k] = (unsigned char)(lo ? lo->dtype : CB_F32);
            a.g[k] = grads[i]->data;
            a.m[k] = (float *)m[i]->data;
            a.v[k] = (float *)v[i]->data;
            a.n[k] = ne;
            a.pdt[k] = (unsigned char)params[i]->dtype;
            a.gdt[k] = (unsigned char)grads[i]->dtype;
            a.first_block[k] = blocks;
            blocks += (int)nb;
            i++;
        }
        a.first_block[a.count] = blocks;
        if (blocks > 0) {
            k_adamw_multi<<<blocks, 256, 0, c->stream>>>(a, h);
            CB_CU_LAUNCHED("adamw_multi");
        }
    }
    return CB_OK;
}

/* ---- sum of squares -------------------------------------------------------------------------- */

/* x [n] -> partial[blockIdx.x] (f64) */
__global__ void k_sumsq_partial(int64_t n, cb_tv x, double *partial) {
    __shared__ double sh[32];
    double s = 0.0;
    CB_GRID_LOOP(i, n) {
        float v = cb_ld(x, i);
        s += (double)v * v;
    }
    s = cb_block_sum_d(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* partial [k] -> *out (f64), fixed order */
__global__ void k_sumsq_final(int k, const double *partial, double *out) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) s += partial[i];
    s = cb_block_sum_d(s, sh);
    if (threadIdx.x == 0) *out = s;
}

#define SS_BLOCKS 512

extern "C" cb_status cb_cuda_sum_squares_multi(int n, const cb_tensor *const *xs, double *out) {
    CB_CU_CTX(c);
    double *partial = (double *)cb_cu_scratch((size_t)(n > 0 ? n : 1) * SS_BLOCKS * sizeof(double));
    if (!partial) return CB_ERR_NOMEM;
    int used = 0;
    for (int i = 0; i < n; i++) {
        CB_CU_FLOATS("sum_squares", xs[i]);
        int64_t ne = cb_tensor_numel(xs[i]);
        if (!ne) continue;
        unsigned blocks = cb_cu_blocks(ne, 256, SS_BLOCKS);
        k_sumsq_partial<<<blocks, 256, 0, c->stream>>>(ne, cb_view(xs[i]), partial + used);
        CB_CU_LAUNCHED("sum_squares_partial");
        used += (int)blocks;
    }
    if (used == 0) {
        *out = 0.0;
        return CB_OK;
    }
    k_sumsq_final<<<1, 1024, 0, c->stream>>>(used, partial, (double *)c->d_slot);
    CB_CU_LAUNCHED("sum_squares_final");
    int64_t bits;
    CB_TRY(cb_cu_read_slot(1, &bits));
    memcpy(out, &bits, sizeof *out);
    return CB_OK;
}

extern "C" cb_status cb_cuda_sum_squares(const cb_tensor *x, double *out) {
    return cb_cuda_sum_squares_multi(1, &x, out);
}
