/* Warp-level tensor-core primitives shared by the attention kernels (Hopper runs the Ampere
 * mma.sync / ldmatrix instructions): m16n8k16 with f32 accumulation, A row-major and B column-
 * major in registers as PTX lays them out, and 8x8 16-bit matrix loads from shared memory.
 *
 * Fragments of mma.m16n8k16 (lane l, g = l / 4, t = l % 4; each register holds two 16-bit
 * values, the lower column / row first):
 *   A [16 x 16]: a[0] (g, 2t..2t+1), a[1] (g + 8, 2t..), a[2] (g, 2t + 8..), a[3] (g + 8, 2t + 8..)
 *   B [16 x 8]:  b0 (rows 2t..2t+1, col g), b1 (rows 2t + 8.., col g)
 *   C [16 x 8]:  c[0..1] (g, 2t..2t+1), c[2..3] (g + 8, 2t..2t+1) */
#ifndef CARAMBA_CUDA_MMA_CUH
#define CARAMBA_CUDA_MMA_CUH

#include <stdint.h>

/* c += A . B, bf16 operands */
__device__ __forceinline__ void cb_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                            uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* c += A . B, f16 operands */
__device__ __forceinline__ void cb_mma_f16(float c[4], const uint32_t a[4], uint32_t b0,
                                           uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four 8x8 matrices of 16-bit values; lanes 8m..8m+7 pass the row addresses of matrix m (16-byte
 * aligned shared memory). Lane l receives row l / 4, columns 2 (l % 4).. of each matrix. */
__device__ __forceinline__ void cb_ldsm4(uint32_t r[4], const void *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* The same, each matrix transposed: lane l receives column l / 4, rows 2 (l % 4).. */
__device__ __forceinline__ void cb_ldsm4t(uint32_t r[4], const void *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

#endif
