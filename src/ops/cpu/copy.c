/* Strided 4-d copy (transpose, slice, concat and their backwards).
 *   dst[d0 + i0*ds0 + i1*ds1 + i2*ds2 + i3*ds3] (+)= src[s0 + i0*ss0 + ...] over shape[4] */
#include "ops/cpu/cpu_kernels.h"

cb_status cb_cpu_strided_copy(const cb_tensor *src, int64_t src_off, const int64_t ss[4],
                              cb_tensor *dst, int64_t dst_off, const int64_t ds[4],
                              const int64_t shape[4], bool accumulate) {
    const float *s = (const float *)src->data + src_off;
    float *d = (float *)dst->data + dst_off;
#pragma omp parallel for collapse(2) if (shape[0] * shape[1] * shape[2] * shape[3] > (1 << 15))
    for (int64_t a = 0; a < shape[0]; a++)
        for (int64_t b = 0; b < shape[1]; b++)
            for (int64_t c = 0; c < shape[2]; c++) {
                const float *sr = s + a * ss[0] + b * ss[1] + c * ss[2];
                float *dr = d + a * ds[0] + b * ds[1] + c * ds[2];
                if (accumulate)
                    for (int64_t e = 0; e < shape[3]; e++) dr[e * ds[3]] += sr[e * ss[3]];
                else
                    for (int64_t e = 0; e < shape[3]; e++) dr[e * ds[3]] = sr[e * ss[3]];
            }
    return CB_OK;
}
