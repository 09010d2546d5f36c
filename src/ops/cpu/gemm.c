/* GEMM through OpenBLAS (cblas_sgemm), batched by looping over strided batches.
 *   A [batch][M,K] (or [K,M] if transA), B [batch][K,N] (or [N,K] if transB), C [batch][M,N] */
#include <cblas.h>

#include "ops/cpu/cpu_kernels.h"

cb_status cb_cpu_gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const cb_tensor *A, int64_t lda, int64_t strideA, const cb_tensor *B,
                      int64_t ldb, int64_t strideB, float beta, cb_tensor *C, int64_t ldc,
                      int64_t strideC, int64_t batch) {
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return cb_fail(CB_ERR_UNSUPPORTED, "gemm: dimension beyond 32-bit BLAS range");
    const float *a = A->data, *b = B->data;
    float *c = C->data;
    if (M == 1) {
        /* One row (a decode step): sgemm would pack the whole of B on every call, tripling the
         * memory traffic of a memory-bound step; sgemv streams B once. C[n] = sum_k a[k] op(B)[k,n],
         * a read with stride lda when A is transposed ([K, 1]). */
        const int inca = transA ? (int)lda : 1;
        for (int64_t i = 0; i < batch; i++) {
            if (transB) /* B [N, K]: C = B a */
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, alpha, b + i * strideB,
                            (int)ldb, a + i * strideA, inca, beta, c + i * strideC, 1);
            else /* B [K, N]: C = B^T a */
                cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, alpha, b + i * strideB,
                            (int)ldb, a + i * strideA, inca, beta, c + i * strideC, 1);
        }
        return CB_OK;
    }
    for (int64_t i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha,
                    a + i * strideA, (int)lda, b + i * strideB, (int)ldb, beta, c + i * strideC,
                    (int)ldc);
    return CB_OK;
}
