/* GEMM through cuBLASLt.
 *   A [batch][M,K] (or [K,M] if transA), B [batch][K,N] (or [N,K] if transB), C [batch][M,N],
 *   all row-major with leading dims lda, ldb, ldc and batch strides in elements.
 *
 * cuBLASLt is column-major: a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T,
 * so B goes in as the library's first operand and A as its second, with M and N swapped.
 * f32 x f32 computes in full f32 (CUBLAS_COMPUTE_32F, no TF32) so it matches the CPU closely;
 * bf16 x bf16 (or f16 x f16) runs on the tensor cores with f32 accumulation, C in f32 or the
 * 16-bit type. A 16-bit operand paired with an f32 one is first rounded to that 16-bit type (what
 * autocast does), in scratch memory. */
#include <cublasLt.h>
#include <string.h>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

static cudaDataType_t lt_type(cb_dtype dt) {
    return dt == CB_BF16 ? CUDA_R_16BF : dt == CB_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* Largest power of two (<= 256) dividing the address and every stride, in bytes. */
static uint32_t align_of(const void *p, size_t es, int64_t ld, int64_t stride) {
    uint64_t v = (uint64_t)(uintptr_t)p | (uint64_t)(ld * (int64_t)es) |
                 (uint64_t)(stride * (int64_t)es) | 256u;
    return (uint32_t)(v & (~v + 1));
}

/* y = alpha * x, converting to dt (for the mixed-dtype rounding and K == 0). */
__global__ void k_convert(int64_t n, cb_tv x, cb_tv y) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        cb_st(y, i, cb_ld(x, i));
}

/* C[b][m, :N] *= beta for every row (K == 0 case). */
__global__ void k_scale_rows(int64_t batch, int64_t M, int64_t N, int64_t ldc, int64_t strideC,
                             float beta, cb_tv C) {
    int64_t n = batch * M * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = i / (M * N), r = (i / N) % M, c = i % N;
        int64_t o = b * strideC + r * ldc + c;
        cb_st(C, o, beta == 0.f ? 0.f : beta * cb_ld(C, o));
    }
}

#define LT_TRY(expr, what)                                                                         \
    do {                                                                                           \
        cublasStatus_t s_ = (expr);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            st = cb_fail(CB_ERR_DEVICE, "cuda gemm: %s failed (cuBLAS status %d) for M=%lld "      \
                                        "N=%lld K=%lld batch=%lld",                                \
                         what, (int)s_, (long long)M, (long long)N, (long long)K,                  \
                         (long long)batch);                                                        \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* Plans (descriptors + the heuristic's algorithm) cached by problem: building them costs tens of
 * microseconds of host time per call, more than a small GEMM runs, and a training step or a
 * decode step repeats the same few dozen shapes. Open addressing; when full, plans are built per
 * call as before. Driven by one host thread at a time (as the whole backend). */
struct lt_key {
    int64_t M, N, K, lda, ldb, ldc, sa, sb, sc, batch;
    int32_t ta, tb, adt, bdt, cdt;
    uint32_t al1, al2, alc;
};

struct lt_plan {
    lt_key key;
    bool used;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};

enum { LT_CACHE = 1024 };
static lt_plan lt_cache[LT_CACHE];

static uint64_t lt_hash(const lt_key &k) {
    const unsigned char *p = (const unsigned char *)&k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof k; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static cb_status lt_matmul(cb_cuda_ctx *c, bool transA, bool transB, int64_t M, int64_t N,
                           int64_t K, float alpha, const void *A, cb_dtype adt, int64_t lda,
                           int64_t strideA, const void *B, cb_dtype bdt, int64_t ldb,
                           int64_t strideB, float beta, void *C, cb_dtype cdt, int64_t ldc,
                           int64_t strideC, int64_t batch) {
    cb_status st = CB_OK;
    cublasLtHandle_t lt = (cublasLtHandle_t)c->lt;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulHeuristicResult_t heur;
    int nres = 0;
    /* library operand 1 = our B, operand 2 = our A */
    cublasOperation_t op1 = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op2 = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
    size_t ea = cb_dtype_size(adt), ec = cb_dtype_size(cdt);
    int32_t bc = (int32_t)batch;
    uint32_t al1 = align_of(B, ea, ldb, strideB), al2 = align_of(A, ea, lda, strideA);
    uint32_t alc = align_of(C, ec, ldc, strideC);
    lt_key key;
    memset(&key, 0, sizeof key); /* padding takes part in the hash */
    key.M = M, key.N = N, key.K = K, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    key.sa = batch > 1 ? strideA : 0, key.sb = batch > 1 ? strideB : 0;
    key.sc = batch > 1 ? strideC : 0, key.batch = batch;
    key.ta = transA, key.tb = transB, key.adt = adt, key.bdt = bdt, key.cdt = cdt;
    key.al1 = al1, key.al2 = al2, key.alc = alc;
    uint64_t h = lt_hash(key);
    lt_plan *slot = nullptr;
    for (int probe = 0; probe < 16; probe++) {
        lt_plan *e = &lt_cache[(h + (uint64_t)probe) % LT_CACHE];
        if (!e->used) {
            slot = e;
            break;
        }
        if (memcmp(&e->key, &key, sizeof key) == 0) {
            LT_TRY(cublasLtMatmul(lt, e->op, &alpha, B, e->la, A, e->lb, &beta, C, e->lc, C, e->lc,
                                  &e->algo, c->lt_ws, c->lt_ws_size, c->stream),
                   "matmul");
            return CB_OK;
        }
    }

    LT_TRY(cublasLtMatmulDescCreate(&op, ct, CUDA_R_32F), "matmul descriptor");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &op1, sizeof op1),
           "transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &op2, sizeof op2),
           "transb");
    /* stored shapes (column-major): operand 1 is N x K (or K x N when transposed) */
    LT_TRY(cublasLtMatrixLayoutCreate(&la, lt_type(bdt), transB ? K : N, transB ? N : K, ldb),
           "layout B");
    LT_TRY(cublasLtMatrixLayoutCreate(&lb, lt_type(adt), transA ? M : K, transA ? K : M, lda),
           "layout A");
    LT_TRY(cublasLtMatrixLayoutCreate(&lc, lt_type(cdt), N, M, ldc), "layout C");
    if (batch > 1) {
        LT_TRY(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc,
                                                sizeof bc), "batch B");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &strideB, sizeof strideB), "stride B");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc,
                                                sizeof bc), "batch A");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &strideA, sizeof strideA), "stride A");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc,
                                                sizeof bc), "batch C");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &strideC, sizeof strideC), "stride C");
    }
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "preference");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &c->lt_ws_size, sizeof c->lt_ws_size),
           "workspace preference");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &al1, sizeof al1), "alignment A");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &al2, sizeof al2), "alignment B");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &alc, sizeof alc), "alignment C");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &alc, sizeof alc), "alignment D");
    LT_TRY(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &nres),
           "heuristic");
    if (nres == 0) {
        st = cb_fail(CB_ERR_UNSUPPORTED,
                     "cuda gemm: cuBLASLt has no algorithm for %s x %s -> %s, M=%lld N=%lld "
                     "K=%lld batch=%lld",
                     cb_dtype_name(adt), cb_dtype_name(bdt), cb_dtype_name(cdt), (long long)M,
                     (long long)N, (long long)K, (long long)batch);
        goto done;
    }
    LT_TRY(cublasLtMatmul(lt, op, &alpha, B, la, A, lb, &beta, C, lc, C, lc, &heur.algo,
                          c->lt_ws, c->lt_ws_size, c->stream),
           "matmul");
    if (slot) { /* keep the plan: the descriptors now belong to the cache */
        slot->key = key;
        slot->op = op, slot->la = la, slot->lb = lb, slot->lc = lc;
        slot->algo = heur.algo;
        slot->used = true;
        op = nullptr, la = lb = lc = nullptr;
    }
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}

extern "C" cb_status cb_cuda_gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                                  float alpha, const cb_tensor *A, int64_t lda, int64_t strideA,
                                  const cb_tensor *B, int64_t ldb, int64_t strideB, float beta,
                                  cb_tensor *C, int64_t ldc, int64_t strideC, int64_t batch) {
    CB_CU_FLOATS("gemm", A, B, C);
    CB_CU_CTX(c);
    if (M <= 0 || N <= 0 || batch <= 0) return CB_OK;
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || batch > INT32_MAX)
        return cb_fail(CB_ERR_UNSUPPORTED, "cuda gemm: dimension beyond 32-bit range");
    if (K <= 0) {
        k_scale_rows<<<cb_cu_blocks(batch * M * N, 256), 256, 0, c->stream>>>(
            strideC == 0 ? 1 : batch, M, N, ldc, strideC, beta, cb_view(C));
        CB_CU_LAUNCHED("gemm_scale_rows");
        return CB_OK;
    }
    const void *pa = A->data, *pb = B->data;
    cb_dtype adt = A->dtype, bdt = B->dtype;
    if (adt != bdt) {
        /* round the f32 operand (whole strided span) to the other's 16-bit type */
        bool conv_a = adt == CB_F32;
        if (!conv_a && bdt != CB_F32)
            return cb_fail(CB_ERR_UNSUPPORTED, "cuda gemm: cannot mix %s and %s operands",
                           cb_dtype_name(adt), cb_dtype_name(bdt));
        const cb_tensor *src = conv_a ? A : B;
        cb_dtype to = conv_a ? bdt : adt;
        int64_t n = cb_tensor_numel(src);
        void *tmp = cb_cu_scratch((size_t)n * 2);
        if (!tmp) return CB_ERR_NOMEM;
        cb_tv tv = {tmp, (int)to};
        k_convert<<<cb_cu_blocks(n, 256), 256, 0, c->stream>>>(n, cb_view(src), tv);
        CB_CU_LAUNCHED("gemm_convert");
        if (conv_a) {
            pa = tmp;
            adt = to;
        } else {
            pb = tmp;
            bdt = to;
        }
    }
    if (strideC == 0 && batch > 1) {
        /* every product lands in the same C: apply them in order, as the CPU loop does */
        size_t ea = cb_dtype_size(adt);
        for (int64_t b = 0; b < batch; b++)
            CB_TRY(lt_matmul(c, transA, transB, M, N, K, alpha,
                             (const char *)pa + (size_t)(b * strideA) * ea, adt, lda, 0,
                             (const char *)pb + (size_t)(b * strideB) * ea, bdt, ldb, 0, beta,
                             C->data, C->dtype, ldc, 0, 1));
        return CB_OK;
    }
    return lt_matmul(c, transA, transB, M, N, K, alpha, pa, adt, lda, strideA, pb, bdt, ldb,
                     strideB, beta, C->data, C->dtype, ldc, strideC, batch);
}
