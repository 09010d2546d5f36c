/* The CUDA backend context (stream, cuBLASLt handle, scratch, report slot) and device memory.
 *
 * Memory comes from cudaMalloc, never managed memory. Freed blocks go to a cache and are handed
 * out again to requests of a similar size: every kernel and copy runs on the one backend stream,
 * so a block reused by a later op is never touched by an earlier one still in flight. */
#include <cublasLt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda/cuda_common.cuh"

/* ---- error helpers --------------------------------------------------------------------------- */

cb_status cb_cu_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return CB_OK;
    return cb_fail(CB_ERR_DEVICE, "cuda: %s: %s (%s)", what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}

cb_status cb_cu_launch_check(const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return CB_OK;
    return cb_fail(CB_ERR_DEVICE, "cuda: kernel %s failed to launch: %s", what,
                   cudaGetErrorString(e));
}

cb_status cb_cu_check_float(const char *op, int n, const cb_tensor *const *ts) {
    for (int i = 0; i < n; i++) {
        const cb_tensor *t = ts[i];
        if (!t) continue;
        if (t->device != CB_CUDA)
            return cb_fail(CB_ERR_ARG, "cuda %s: operand %d lives on the CPU, not the GPU", op, i);
        if (!cb_cu_is_float(t))
            return cb_fail(CB_ERR_UNSUPPORTED,
                           "cuda %s: operand %d has dtype %s (expected f32, bf16 or f16)", op, i,
                           cb_dtype_name(t->dtype));
    }
    return CB_OK;
}

/* ---- context --------------------------------------------------------------------------------- */

static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static cb_cuda_ctx ctx_storage;
static cb_cuda_ctx *ctx_ptr;       /* NULL when initialisation failed */
static char ctx_error[512];        /* why, when it failed */
static char ctx_desc[1024];

static void ctx_init(void) {
    cb_cuda_ctx *c = &ctx_storage;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(ctx_error, sizeof ctx_error, "no usable CUDA device (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
        snprintf(ctx_desc, sizeof ctx_desc, "none: %s", ctx_error);
        cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
        return;
    }
    c->device = 0;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
        snprintf(ctx_error, sizeof ctx_error, "cannot open CUDA device 0: %s", cudaGetErrorString(e));
        snprintf(ctx_desc, sizeof ctx_desc, "none: %s", ctx_error);
        return;
    }
    c->num_sms = prop.multiProcessorCount;
    c->max_smem_optin = prop.sharedMemPerBlockOptin;
    snprintf(ctx_desc, sizeof ctx_desc, "%s, %d SMs, sm_%d%d, %.1f GiB", prop.name,
             prop.multiProcessorCount, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    if (prop.major < 8) {
        snprintf(ctx_error, sizeof ctx_error,
                 "CUDA device %s has compute capability %d.%d; caramba needs 8.0 or newer",
                 prop.name, prop.major, prop.minor);
        return;
    }
    if ((e = cudaStreamCreate(&c->stream)) != cudaSuccess) {
        snprintf(ctx_error, sizeof ctx_error, "cudaStreamCreate: %s", cudaGetErrorString(e));
        return;
    }
    cublasLtHandle_t lt;
    cublasStatus_t bs = cublasLtCreate(&lt);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(ctx_error, sizeof ctx_error, "cublasLtCreate failed (status %d)", (int)bs);
        return;
    }
    c->lt = lt;
    c->lt_ws_size = 32u << 20; /* cuBLASLt's recommendation for Hopper */
    if ((e = cudaMalloc(&c->lt_ws, c->lt_ws_size)) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->d_slot, 8 * sizeof(int64_t))) != cudaSuccess ||
        (e = cudaMallocHost((void **)&c->h_slot, 8 * sizeof(int64_t))) != cudaSuccess) {
        snprintf(ctx_error, sizeof ctx_error, "cannot allocate the backend's buffers: %s",
                 cudaGetErrorString(e));
        return;
    }
    ctx_ptr = c;
}

cb_cuda_ctx *cb_cu_ctx(void) {
    pthread_once(&ctx_once, ctx_init);
    if (!ctx_ptr) cb_fail(CB_ERR_DEVICE, "cuda: %s", ctx_error);
    return ctx_ptr;
}

extern "C" int cb_cuda_available(void) { return cb_cu_ctx() != nullptr; }

extern "C" const char *cb_cuda_device_description(void) {
    cb_cu_ctx();
    return ctx_desc;
}

extern "C" void *cb_cuda_stream(void) {
    cb_cuda_ctx *c = cb_cu_ctx();
    return c ? (void *)c->stream : nullptr;
}

extern "C" cb_status cb_cuda_sync(void) {
    CB_CU_CTX(c);
    return cb_cu_check(cudaStreamSynchronize(c->stream), "stream synchronize");
}

cb_status cb_cu_read_slot(int n, int64_t *out) {
    CB_CU_CTX(c);
    CB_TRY(cb_cu_check(cudaMemcpyAsync(c->h_slot, c->d_slot, (size_t)n * sizeof(int64_t),
                                       cudaMemcpyDeviceToHost, c->stream),
                       "read report slot"));
    CB_TRY(cb_cu_check(cudaStreamSynchronize(c->stream), "read report slot (sync)"));
    memcpy(out, c->h_slot, (size_t)n * sizeof(int64_t));
    return CB_OK;
}

/* ---- caching allocator ----------------------------------------------------------------------- */

struct cb_blk {
    void *p;
    size_t size;
};

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
/* live blocks: open addressing on the pointer; p == NULL empty, p == TOMB deleted */
static cb_blk *live;
static size_t live_cap, live_n, live_used; /* used counts tombstones too */
static cb_blk *cache;                      /* free blocks kept for reuse */
static size_t cache_n, cache_cap;
static size_t held_bytes, in_use_bytes;
#define CB_TOMB ((void *)1)

static size_t round_size(size_t b) {
    if (b < (1u << 20)) return (b + 511) & ~(size_t)511;
    return (b + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
}

static size_t hash_ptr(void *p, size_t cap) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static int live_grow(void) {
    size_t ncap = live_cap ? live_cap * 2 : 1024;
    while (live_n * 2 >= ncap) ncap *= 2;
    cb_blk *nt = (cb_blk *)calloc(ncap, sizeof *nt);
    if (!nt) return -1;
    for (size_t i = 0; i < live_cap; i++) {
        void *p = live[i].p;
        if (!p || p == CB_TOMB) continue;
        size_t h = hash_ptr(p, ncap);
        while (nt[h].p) h = (h + 1) & (ncap - 1);
        nt[h] = live[i];
    }
    free(live);
    live = nt;
    live_cap = ncap;
    live_used = live_n;
    return 0;
}

static int live_insert(void *p, size_t size) {
    if ((live_used + 1) * 2 >= live_cap && live_grow() != 0) return -1;
    size_t h = hash_ptr(p, live_cap);
    while (live[h].p && live[h].p != CB_TOMB) h = (h + 1) & (live_cap - 1);
    if (!live[h].p) live_used++;
    live[h].p = p;
    live[h].size = size;
    live_n++;
    return 0;
}

static size_t live_remove(void *p) {
    if (!live_cap) return 0;
    size_t h = hash_ptr(p, live_cap);
    while (live[h].p) {
        if (live[h].p == p) {
            size_t s = live[h].size;
            live[h].p = CB_TOMB;
            live_n--;
            return s;
        }
        h = (h + 1) & (live_cap - 1);
    }
    return 0;
}

static void release_cache_locked(void) {
    for (size_t i = 0; i < cache_n; i++) {
        cudaFree(cache[i].p);
        held_bytes -= cache[i].size;
    }
    cache_n = 0;
}

extern "C" void *cb_cuda_alloc(size_t bytes) {
    if (!cb_cu_ctx()) return nullptr;
    size_t size = round_size(bytes ? bytes : 1);
    pthread_mutex_lock(&mem_lock);
    /* best fit among cached blocks no more than twice the request */
    size_t best = (size_t)-1;
    for (size_t i = 0; i < cache_n; i++)
        if (cache[i].size >= size && cache[i].size <= 2 * size &&
            (best == (size_t)-1 || cache[i].size < cache[best].size))
            best = i;
    void *p = nullptr;
    if (best != (size_t)-1) {
        p = cache[best].p;
        size = cache[best].size;
        cache[best] = cache[--cache_n];
    } else {
        cudaError_t e = cudaMalloc(&p, size);
        if (e != cudaSuccess) {
            cudaGetLastError();
            release_cache_locked();
            e = cudaMalloc(&p, size);
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            size_t fr = 0, tot = 0;
            cudaMemGetInfo(&fr, &tot);
            pthread_mutex_unlock(&mem_lock);
            cb_fail(CB_ERR_NOMEM,
                    "cuda: cannot allocate %zu bytes of GPU memory (%s; %zu MiB free of %zu MiB, "
                    "%zu MiB held by caramba)",
                    bytes, cudaGetErrorString(e), fr >> 20, tot >> 20, held_bytes >> 20);
            return nullptr;
        }
        held_bytes += size;
    }
    if (live_insert(p, size) != 0) {
        cudaFree(p);
        held_bytes -= size;
        pthread_mutex_unlock(&mem_lock);
        cb_fail(CB_ERR_NOMEM, "cuda: allocator bookkeeping out of host memory");
        return nullptr;
    }
    in_use_bytes += size;
    pthread_mutex_unlock(&mem_lock);
    return p;
}

extern "C" void cb_cuda_free(void *p) {
    if (!p) return;
    pthread_mutex_lock(&mem_lock);
    size_t size = live_remove(p);
    if (size == 0) { /* not ours (or double free): leave it alone */
        pthread_mutex_unlock(&mem_lock);
        return;
    }
    in_use_bytes -= size;
    if (cache_n == cache_cap) {
        size_t nc = cache_cap ? cache_cap * 2 : 256;
        cb_blk *n = (cb_blk *)realloc(cache, nc * sizeof *n);
        if (!n) {
            cudaFree(p);
            held_bytes -= size;
            pthread_mutex_unlock(&mem_lock);
            return;
        }
        cache = n;
        cache_cap = nc;
    }
    cache[cache_n].p = p;
    cache[cache_n].size = size;
    cache_n++;
    pthread_mutex_unlock(&mem_lock);
}

extern "C" void cb_cuda_release_cached(void) {
    pthread_mutex_lock(&mem_lock);
    release_cache_locked();
    pthread_mutex_unlock(&mem_lock);
}

extern "C" void cb_cuda_memory_stats(size_t *held, size_t *in_use) {
    pthread_mutex_lock(&mem_lock);
    if (held) *held = held_bytes;
    if (in_use) *in_use = in_use_bytes;
    pthread_mutex_unlock(&mem_lock);
}

extern "C" cb_status cb_cuda_memset0(void *p, size_t bytes) {
    CB_CU_CTX(c);
    if (!bytes) return CB_OK;
    return cb_cu_check(cudaMemsetAsync(p, 0, bytes, c->stream), "memset");
}

extern "C" cb_status cb_cuda_copy(int dst_is_dev, void *dst, int src_is_dev, const void *src,
                                  size_t bytes) {
    CB_CU_CTX(c);
    if (!bytes) return CB_OK;
    cudaMemcpyKind kind = dst_is_dev ? (src_is_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                     : (src_is_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    CB_TRY(cb_cu_check(cudaMemcpyAsync(dst, src, bytes, kind, c->stream), "copy"));
    if (kind != cudaMemcpyDeviceToDevice)
        CB_TRY(cb_cu_check(cudaStreamSynchronize(c->stream), "copy (sync)"));
    return CB_OK;
}

/* ---- scratch --------------------------------------------------------------------------------- */

static void *scratch_p;
static size_t scratch_size;

void *cb_cu_scratch(size_t bytes) {
    cb_cuda_ctx *c = cb_cu_ctx();
    if (!c) return nullptr;
    if (bytes <= scratch_size) return scratch_p;
    size_t want = scratch_size ? scratch_size : (4u << 20);
    while (want < bytes) want *= 2;
    if (scratch_p) {
        cudaStreamSynchronize(c->stream);
        cudaFree(scratch_p);
        scratch_p = nullptr;
        scratch_size = 0;
    }
    cudaError_t e = cudaMalloc(&scratch_p, want);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cb_cuda_release_cached();
        e = cudaMalloc(&scratch_p, want);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        scratch_p = nullptr;
        cb_fail(CB_ERR_NOMEM, "cuda: cannot allocate %zu bytes of scratch", want);
        return nullptr;
    }
    scratch_size = want;
    return scratch_p;
}
