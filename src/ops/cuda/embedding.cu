/* Embedding lookup and its deterministic backward.
 *
 * The backward must sum the gradient rows of every token id into one row of dW. Atomics would
 * make the sum order (and so the bits) vary between runs; instead the positions are sorted by id
 * (a stable radix sort, so equal ids keep their position order) and one block per distinct id
 * adds that id's rows in position order and writes dW once. */
#include <cub/device/device_radix_sort.cuh>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

/* ids [N]; W [V, D]; out [N, D]. Rows with a bad id become zeros and the smallest bad position
 * is reported through slot[0]. */
__global__ void k_embedding_fwd(int64_t N, int64_t V, int64_t D, const void *ids, int idt, cb_tv W,
                                cb_tv out, unsigned long long *bad) {
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        int64_t id = cb_ld_id(ids, idt, i);
        bool ok = id >= 0 && id < V;
        if (!ok && threadIdx.x == 0) atomicMin(bad, (unsigned long long)i);
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
            cb_st(out, i * D + d, ok ? cb_ld(W, id * D + d) : 0.f);
    }
}

__global__ void k_set_slot(unsigned long long *p, unsigned long long v) { *p = v; }

static cb_status check_ids(const char *op, const cb_tensor *ids) {
    if (ids->device != CB_CUDA) return cb_fail(CB_ERR_ARG, "cuda %s: ids live on the CPU", op);
    if (ids->dtype != CB_I32 && ids->dtype != CB_I64)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda %s: ids have dtype %s (expected i32/i64)", op,
                       cb_dtype_name(ids->dtype));
    return CB_OK;
}

extern "C" cb_status cb_cuda_embedding_fwd(const cb_tensor *ids, const cb_tensor *W,
                                           cb_tensor *out) {
    CB_CU_FLOATS("embedding_fwd", W, out);
    CB_TRY(check_ids("embedding_fwd", ids));
    CB_CU_CTX(c);
    int64_t N = cb_tensor_numel(ids), V = W->shape[0], D = cb_tensor_numel(W) / (V ? V : 1);
    if (N == 0) return CB_OK;
    unsigned long long *bad = (unsigned long long *)c->d_slot;
    k_set_slot<<<1, 1, 0, c->stream>>>(bad, ~0ull);
    int threads = D >= 256 ? 256 : D >= 128 ? 128 : 64;
    unsigned blocks = (unsigned)(N < 65535LL * 32 ? N : 65535LL * 32);
    k_embedding_fwd<<<blocks, threads, 0, c->stream>>>(N, V, D, ids->data, ids->dtype, cb_view(W),
                                                       cb_view(out), bad);
    CB_CU_LAUNCHED("embedding_fwd");
    int64_t rep;
    CB_TRY(cb_cu_read_slot(1, &rep));
    if (rep != -1) {
        size_t es = ids->dtype == CB_I64 ? 8 : 4;
        int64_t id = 0;
        if (cb_cuda_copy(0, &id, 1, (const char *)ids->data + (size_t)rep * es, es) == CB_OK &&
            es == 4)
            id = (int64_t)(int32_t)id;
        return cb_fail(CB_ERR_ARG, "cuda embedding: id %lld at position %lld is outside [0, %lld)",
                       (long long)id, (long long)rep, (long long)V);
    }
    return CB_OK;
}

/* ids [N] -> keys [N] (bad ids map to V so they sort last), vals[i] = i */
__global__ void k_emb_keys(int64_t N, int64_t V, const void *ids, int idt, int *keys, int *vals) {
    CB_GRID_LOOP(i, N) {
        int64_t id = cb_ld_id(ids, idt, i);
        keys[i] = (id >= 0 && id < V) ? (int)id : (int)V;
        vals[i] = (int)i;
    }
}

/* skeys, spos [N] sorted by id; dout [N, D]; dW [V, D]. Block s works only when s starts a run
 * of equal ids: dW[id, :] += sum over the run of dout[pos, :], in position order. (Fallback when
 * the segment scratch below does not fit.) */
__global__ void k_emb_bwd(int64_t N, int64_t V, int64_t D, const int *skeys, const int *spos,
                          cb_tv dout, cb_tv dW) {
    for (int64_t s = blockIdx.x; s < N; s += gridDim.x) {
        int key = skeys[s];
        if (key >= V || (s > 0 && skeys[s - 1] == key)) continue;
        int64_t e = s + 1;
        while (e < N && skeys[e] == key) e++;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int64_t k = s; k < e; k++) acc += cb_ld(dout, (int64_t)spos[k] * D + d);
            cb_acc(dW, (int64_t)key * D + d, acc);
        }
    }
}

#define EMB_SEG 32

/* First index in sorted keys[0, n) not less than (or, upper, greater than) key. */
__device__ __forceinline__ int64_t bound(const int *keys, int64_t n, int key, bool upper) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) >> 1;
        if (keys[mid] < key || (upper && keys[mid] == key)) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* A frequent id (padding, "the") makes one long run; it is cut into segments of EMB_SEG positions
 * so many blocks share it. Block s works when s starts a segment: a run of at most EMB_SEG adds
 * straight into dW; a longer run leaves its segment sum in partial[s, :] for k_emb_runs.
 *   skeys, spos [N]; dout [N, D]; dW [V, D]; partial [N, D] f32 */
__global__ void k_emb_segments(int64_t N, int64_t V, int64_t D, const int *skeys, const int *spos,
                               cb_tv dout, cb_tv dW, float *partial) {
    for (int64_t s = blockIdx.x; s < N; s += gridDim.x) {
        int key = skeys[s];
        if (key >= V) continue;
        int64_t rs = (s > 0 && skeys[s - 1] == key) ? bound(skeys, s, key, false) : s;
        if ((s - rs) % EMB_SEG) continue;
        int64_t re = bound(skeys, N, key, true);
        int64_t e = s + EMB_SEG < re ? s + EMB_SEG : re;
        bool direct = re - rs <= EMB_SEG;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int64_t k = s; k < e; k++) acc += cb_ld(dout, (int64_t)spos[k] * D + d);
            if (direct) cb_acc(dW, (int64_t)key * D + d, acc);
            else partial[s * D + d] = acc;
        }
    }
}

/* Block s works when s starts a run longer than EMB_SEG: dW[id, :] += its segment sums in order. */
__global__ void k_emb_runs(int64_t N, int64_t V, int64_t D, const int *skeys, const float *partial,
                           cb_tv dW) {
    for (int64_t s = blockIdx.x; s < N; s += gridDim.x) {
        int key = skeys[s];
        if (key >= V || (s > 0 && skeys[s - 1] == key)) continue;
        int64_t re = bound(skeys, N, key, true);
        if (re - s <= EMB_SEG) continue;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.f;
            for (int64_t k = s; k < re; k += EMB_SEG) acc += partial[k * D + d];
            cb_acc(dW, (int64_t)key * D + d, acc);
        }
    }
}

extern "C" cb_status cb_cuda_embedding_bwd(const cb_tensor *ids, const cb_tensor *dout,
                                           cb_tensor *dW) {
    CB_CU_FLOATS("embedding_bwd", dout, dW);
    CB_TRY(check_ids("embedding_bwd", ids));
    CB_CU_CTX(c);
    int64_t N = cb_tensor_numel(ids), V = dW->shape[0], D = cb_tensor_numel(dW) / (V ? V : 1);
    if (N == 0 || D == 0) return CB_OK;
    if (N >= INT32_MAX || V >= INT32_MAX)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda embedding_bwd: %lld ids or %lld rows too many",
                       (long long)N, (long long)V);
    int end_bit = 1;
    while (end_bit < 31 && (1LL << end_bit) <= V) end_bit++;
    size_t temp = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, temp, (const int *)nullptr, (int *)nullptr,
                                    (const int *)nullptr, (int *)nullptr, (int)N, 0, end_bit,
                                    c->stream);
    size_t arr = ((size_t)N * sizeof(int) + 255) & ~(size_t)255;
    size_t tmpb = (temp + 255) & ~(size_t)255;
    size_t part = (size_t)N * (size_t)D * sizeof(float);
    bool segmented = part <= ((size_t)512 << 20);
    char *scr = (char *)cb_cu_scratch(4 * arr + tmpb + (segmented ? part : 0));
    if (!scr) return CB_ERR_NOMEM;
    int *keys = (int *)scr, *vals = (int *)(scr + arr), *skeys = (int *)(scr + 2 * arr),
        *svals = (int *)(scr + 3 * arr);
    k_emb_keys<<<cb_cu_blocks(N, 256), 256, 0, c->stream>>>(N, V, ids->data, ids->dtype, keys,
                                                            vals);
    CB_CU_LAUNCHED("embedding_keys");
    cudaError_t e = cub::DeviceRadixSort::SortPairs(scr + 4 * arr, temp, keys, skeys, vals, svals,
                                                    (int)N, 0, end_bit, c->stream);
    CB_TRY(cb_cu_check(e, "embedding_bwd radix sort"));
    int threads = D >= 256 ? 256 : D >= 128 ? 128 : 64;
    unsigned blocks = (unsigned)(N < 65535LL * 32 ? N : 65535LL * 32);
    if (!segmented) {
        k_emb_bwd<<<blocks, threads, 0, c->stream>>>(N, V, D, skeys, svals, cb_view(dout),
                                                     cb_view(dW));
        CB_CU_LAUNCHED("embedding_bwd");
        return CB_OK;
    }
    float *partial = (float *)(scr + 4 * arr + tmpb);
    k_emb_segments<<<blocks, threads, 0, c->stream>>>(N, V, D, skeys, svals, cb_view(dout),
                                                      cb_view(dW), partial);
    CB_CU_LAUNCHED("embedding_bwd_segments");
    k_emb_runs<<<blocks, threads, 0, c->stream>>>(N, V, D, skeys, partial, cb_view(dW));
    CB_CU_LAUNCHED("embedding_bwd_runs");
    return CB_OK;
}
