/* GEMM through OpenBLAS (cblas_sgemm), batched by looping over strided batches.
 *   A [batch][M,K] (or [K,M] if transA), B [batch][K,N] (or [N,K] if transB), C [batch][M,N] */
#include <cblas.h>

#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/cpu_math.h"

/* c[n] = alpha * sum_k B[n][k] a[k] + beta * c[n]   B [N, K] row stride ldb, a [K], c [N].
 * Decode-time linear layers: memory-bound, so stream each row once, four rows at a time with
 * sixteen-wide accumulators (1.3-1.5x OpenBLAS sgemv on these shapes). */
static void gemv_rows(int64_t N, int64_t K, float alpha, const float *B, int64_t ldb,
                      const float *a, float beta, float *c) {
    const int64_t K16 = K & ~(int64_t)15;
#pragma omp parallel for schedule(static) if (N * K > (1 << 17))
    for (int64_t n0 = 0; n0 < N; n0 += 4) {
        const int64_t nr = N - n0 < 4 ? N - n0 : 4;
        cb_v16 acc[4] = {{0}, {0}, {0}, {0}};
        for (int64_t k = 0; k < K16; k += 16) {
            cb_v16 x = cb_v16_load(a + k);
            for (int r = 0; r < nr; r++) acc[r] += cb_v16_load(B + (n0 + r) * ldb + k) * x;
        }
        for (int r = 0; r < nr; r++) {
            float s = cb_v16_hsum(acc[r]);
            for (int64_t k = K16; k < K; k++) s += B[(n0 + r) * ldb + k] * a[k];
            c[n0 + r] = alpha * s + (beta == 0.0f ? 0.0f : beta * c[n0 + r]);
        }
    }
}

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
            if (transB && inca == 1) /* B [N, K]: C = B a */
                gemv_rows(N, K, alpha, b + i * strideB, ldb, a + i * strideA, beta, c + i * strideC);
            else if (transB)
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
