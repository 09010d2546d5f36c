/* AdamW on one f32 tensor (decoupled weight decay, bias-corrected moments).
 *   param, grad, m, v [n] */
#include <math.h>

#include "ops/cpu/cpu_kernels.h"

cb_status cb_cpu_adamw(cb_tensor *param, const cb_tensor *grad, cb_tensor *m, cb_tensor *v,
                       float lr, float beta1, float beta2, float eps, float weight_decay,
                       int64_t step, float grad_scale) {
    float *p = param->data, *ms = m->data, *vs = v->data;
    const float *g = grad->data;
    int64_t n = cb_tensor_numel(param);
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
#pragma omp parallel for simd if (n > (1 << 15)) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * ms[i] + (1.0f - beta1) * gi;
        float vi = beta2 * vs[i] + (1.0f - beta2) * gi * gi;
        ms[i] = mi;
        vs[i] = vi;
        float update = (mi / bc1) / (sqrtf(vi / bc2) + eps);
        p[i] -= lr * (update + weight_decay * p[i]);
    }
    return CB_OK;
}
