/* Hopper's bulk copy engine (cp.async.bulk, plain sm_90) and the shared-memory barriers it
 * completes on. A copy moves a contiguous run of global memory into shared memory without
 * passing through registers; its barrier's phase flips once every byte announced with
 * cb_bulk_load has landed. Rules (PTX ISA): addresses 16-byte aligned, sizes multiples of 16;
 * global memory written by ordinary stores that a copy reads next needs cb_fence_async_global()
 * in each writing thread before the barrier that orders it ahead of the copy. */
#ifndef CARAMBA_CUDA_BULK_CUH
#define CARAMBA_CUDA_BULK_CUH

#include <stdint.h>

__device__ __forceinline__ uint32_t cb_smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* A barrier expecting `count` arrivals a phase; visible to the copy engine afterwards. */
__device__ __forceinline__ void cb_mbar_init(uint64_t *bar, unsigned count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(cb_smem_addr(bar)), "r"(count)
                 : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

/* Arrives on `bar` announcing `bytes`, and copies them from src (global) to dst (shared). */
__device__ __forceinline__ void cb_bulk_load(void *dst, const void *src, unsigned bytes,
                                             uint64_t *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(cb_smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], "
                 "%2, [%3];" ::"r"(cb_smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(cb_smem_addr(bar))
                 : "memory");
#endif
}

/* Waits until the phase of `bar` with parity `parity` has completed. */
__device__ __forceinline__ void cb_mbar_wait(uint64_t *bar, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t done = 0;
    while (!done)
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; "
                     "selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(cb_smem_addr(bar)), "r"(parity)
                     : "memory");
#endif
}

/* Orders this thread's earlier global stores before later bulk copies that read them. */
__device__ __forceinline__ void cb_fence_async_global() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.proxy.async.global;" ::: "memory");
#endif
}

#endif
