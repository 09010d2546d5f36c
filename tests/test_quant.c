/* Block quantization formats (include/caramba/quant.h) against their definitions:
 * q8_0 and q4_0 as ggml defines them (anchors.md §2.1), nf4 with the QLoRA levels (§2.2).
 * Every expected byte / value below was computed by hand (or with IEEE f32/f16 arithmetic in a
 * separate script) from those definitions, not from this code. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/quant.h"
#include "testutil.h"

static void test_sizes(void **state) {
    (void)state;
    assert_int_equal(sizeof(cb_block_q8_0), 34);
    assert_int_equal(sizeof(cb_block_q4_0), 18);
    assert_int_equal(sizeof(cb_block_nf4), 18);
    /* padded rows: 40 values -> 2 blocks */
    assert_int_equal(cb_quant_row_bytes(CB_Q8_0, 32), 34);
    assert_int_equal(cb_quant_row_bytes(CB_Q8_0, 40), 68);
    assert_int_equal(cb_quant_row_bytes(CB_Q4_0, 40), 36);
    assert_int_equal(cb_quant_row_bytes(CB_NF4, 1), 18);
    assert_int_equal(cb_quant_row_bytes(CB_F16, 40), 80);
    assert_int_equal(cb_quant_row_bytes(CB_F32, 40), 160);
    assert_int_equal(cb_quant_padded_width(CB_Q4_0, 33), 64);
    assert_int_equal(cb_quant_padded_width(CB_F16, 33), 33);
    assert_null(cb_quant_traits_get(CB_I32));
    assert_non_null(strstr(cb_last_error(), "i32"));
    const cb_quant_traits *t = cb_quant_traits_get(CB_Q4_0);
    assert_int_equal(t->block, 32);
    assert_int_equal(t->block_bytes, 18);
}

static void quant1(cb_dtype dt, const float *x, void *blk) {
    assert_int_equal(cb_quantize_row(dt, x, 32, blk), CB_OK);
}

static void test_q8_0_exact(void **state) {
    (void)state;
    cb_block_q8_0 b;
    float y[32];
    /* amax 127: d = 1 exactly; roundf rounds halves away from zero (ggml), not to even */
    float x[32] = {127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.49f, 100.25f, -127.0f};
    quant1(CB_Q8_0, x, &b);
    assert_int_equal(b.d, 0x3c00);
    const int8_t e1[8] = {127, 3, 4, -3, -1, 0, 100, -127};
    for (int i = 0; i < 32; i++) assert_int_equal(b.qs[i], i < 8 ? e1[i] : 0);
    cb_dequantize_row(CB_Q8_0, &b, 32, y);
    for (int i = 0; i < 8; i++) assert_true(y[i] == (float)e1[i]);

    /* amax 1: d = 1/127 = 0.007874015718698502 (f32), fp16 0x2008 = 0.00787353515625;
     * codes use 1/d = 127.0: -0.5 -> -63.5 -> -64, 0.25 -> 31.75 -> 32, 1/256 -> 0.496 -> 0 */
    float x2[32] = {1.0f, -0.5f, 0.25f, 0.00390625f};
    quant1(CB_Q8_0, x2, &b);
    assert_int_equal(b.d, 0x2008);
    assert_int_equal(b.qs[0], 127);
    assert_int_equal(b.qs[1], -64);
    assert_int_equal(b.qs[2], 32);
    assert_int_equal(b.qs[3], 0);
    cb_dequantize_row(CB_Q8_0, &b, 32, y);
    assert_true(y[0] == 0.99993896484375f);
    assert_true(y[1] == -0.50390625f);
    assert_true(y[2] == 0.251953125f);
    assert_true(y[3] == 0.0f);

    /* amax 3: d = 3/127 = 0.023622047156095505, fp16 0x260c = 0.02362060546875,
     * 1/d = 42.33333206176758; x/d = [127, -63.5, 29.63, -0.847, 50.8, -122.77] */
    float x3[32] = {3.0f, -1.5f, 0.7f, -0.02f, 1.2f, -2.9f};
    quant1(CB_Q8_0, x3, &b);
    assert_int_equal(b.d, 0x260c);
    const int8_t e3[6] = {127, -64, 30, -1, 51, -123};
    const float d3[6] = {2.99981689453125f,  -1.51171875f,      0.7086181640625f,
                         -0.02362060546875f, 1.20465087890625f, -2.90533447265625f};
    cb_dequantize_row(CB_Q8_0, &b, 32, y);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(b.qs[i], e3[i]);
        assert_true(y[i] == d3[i]);
    }

    /* all-zero block: d = 0, codes 0, decodes to 0 */
    float z[32] = {0};
    quant1(CB_Q8_0, z, &b);
    assert_int_equal(b.d, 0);
    for (int i = 0; i < 32; i++) assert_int_equal(b.qs[i], 0);
}

static void test_q4_0_exact(void **state) {
    (void)state;
    cb_block_q4_0 b;
    float y[32];
    /* largest magnitude is +1.0 -> m = 1, d = m / -8 = -0.125 (negative scale), 1/d = -8.
     * codes trunc(x * -8 + 8.5): 1 -> 0.5 -> 0; -0.5 -> 12.5 -> 12; 0.25 -> 6.5 -> 6;
     * 1/256 -> 8.47 -> 8; 0 -> 8; x[16] -0.75 -> 14.5 -> 14; x[17] 0.375 -> 5.5 -> 5.
     * Byte j = code[j] | code[j+16] << 4. */
    float x[32] = {1.0f, -0.5f, 0.25f, 0.00390625f};
    x[16] = -0.75f;
    x[17] = 0.375f;
    quant1(CB_Q4_0, x, &b);
    assert_int_equal(b.d, 0xb000); /* -0.125 */
    const uint8_t e[16] = {0xe0, 0x5c, 0x86, 0x88, 0x88, 0x88, 0x88, 0x88,
                           0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
    assert_memory_equal(b.qs, e, 16);
    cb_dequantize_row(CB_Q4_0, &b, 32, y);
    assert_true(y[0] == 1.0f); /* the extreme is reproduced exactly */
    assert_true(y[1] == -0.5f);
    assert_true(y[2] == 0.25f);
    assert_true(y[3] == 0.0f);
    assert_true(y[16] == -0.75f);
    assert_true(y[17] == 0.375f);

    /* negative extreme, tie on magnitude (first wins: -2 before +2), clipping at 15 and
     * round-half-up of trunc(v + 8.5): m = -2, d = 0.25, 1/d = 4.
     * x:     -2    0.5   2     0.37  -0.37  0.125 -0.125 0.375 -0.375
     * x/d+8.5: 0.5 10.5  16.5  9.98   7.02  9.0    8.0   10.0   7.0
     * code:   0    10    15    9      7     9      8     10     7          */
    float x2[32] = {-2.0f, 0.5f, 2.0f, 0.37f, -0.37f, 0.125f, -0.125f, 0.375f, -0.375f};
    quant1(CB_Q4_0, x2, &b);
    assert_int_equal(b.d, 0x3400); /* +0.25 */
    const int codes[9] = {0, 10, 15, 9, 7, 9, 8, 10, 7};
    for (int i = 0; i < 9; i++) assert_int_equal(b.qs[i] & 0x0f, codes[i]);
    for (int i = 0; i < 16; i++) assert_int_equal(b.qs[i] >> 4, 8); /* elements 16..31 are 0 */
    cb_dequantize_row(CB_Q4_0, &b, 32, y);
    const float dq[9] = {-2.0f, 0.5f, 1.75f, 0.25f, -0.25f, 0.25f, 0.0f, 0.5f, -0.25f};
    for (int i = 0; i < 9; i++) assert_true(y[i] == dq[i]);

    /* all-zero block: m = 0, d = 0 / -8 = -0 (fp16 0x8000, as ggml), every code 8 */
    float z[32] = {0};
    quant1(CB_Q4_0, z, &b);
    assert_int_equal(b.d, 0x8000);
    for (int i = 0; i < 16; i++) assert_int_equal(b.qs[i], 0x88);
    cb_dequantize_row(CB_Q4_0, &b, 32, y);
    for (int i = 0; i < 32; i++) assert_true(y[i] == 0.0f);
}

static void test_nf4_exact(void **state) {
    (void)state;
    cb_block_nf4 b;
    float y[32];
    /* absmax 1: y = x. Midpoints: M1 = -0.6106, M2 = -0.4600, M6 = -0.0455, M7 = 0.0398,
     * M9 = 0.2035, M10 = 0.2920, M12 = 0.5017, M13 = 0.6428.
     * 1 -> 15; -0.5 -> 2; 0.25 -> 10; 1/256 -> 7; x[16] -1 -> 0; x[17] 0.6 -> 13; 0 -> 7. */
    float x[32] = {1.0f, -0.5f, 0.25f, 0.00390625f};
    x[16] = -1.0f;
    x[17] = 0.6f;
    quant1(CB_NF4, x, &b);
    assert_int_equal(b.d, 0x3c00);
    const uint8_t e[16] = {0x0f, 0xd2, 0x7a, 0x77, 0x77, 0x77, 0x77, 0x77,
                           0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77};
    assert_memory_equal(b.qs, e, 16);
    cb_dequantize_row(CB_NF4, &b, 32, y);
    assert_true(y[0] == 1.0f);
    assert_true(y[1] == -0.5250730514526367f);
    assert_true(y[2] == 0.24611230194568634f);
    assert_true(y[3] == 0.0f);
    assert_true(y[16] == -1.0f);
    assert_true(y[17] == 0.5626170039176941f);

    /* absmax 2 (fp16 0x4000): y = x/2; decode = level * 2 */
    float x2[32] = {2.0f, -1.0f, 0.0f, 0.3f};
    quant1(CB_NF4, x2, &b);
    assert_int_equal(b.d, 0x4000);
    /* 0.3/2 = 0.15: M8 = 0.1203 < 0.15 < M9 = 0.2035 -> 9 */
    assert_int_equal(b.qs[0], 0x70 | 15);
    assert_int_equal(b.qs[1], 0x70 | 2);
    assert_int_equal(b.qs[2], 0x70 | 7);
    assert_int_equal(b.qs[3], 0x70 | 9);
    cb_dequantize_row(CB_NF4, &b, 32, y);
    assert_true(y[1] == -0.5250730514526367f * 2.0f);
    assert_true(y[3] == 0.16093020141124725f * 2.0f);

    /* ties: a value exactly on the f32 midpoint M7 = (0 + 0.0795803) * 0.5 = 0.03979014977812767
     * goes to the LOWER level (7, i.e. 0.0); the next float up goes to 8. Same on the negative
     * side: exactly M6 = -0.045525018125772476 -> 6 (-0.091), the next float up -> 7. */
    const float m7 = 0.03979014977812767f, m6 = -0.045525018125772476f;
    assert_true(m7 == (0.0f + 0.07958029955625534f) * 0.5f);
    assert_true(m6 == (-0.09105003625154495f + 0.0f) * 0.5f);
    float x3[32] = {1.0f, m7, nextafterf(m7, 1.0f), m6, nextafterf(m6, 1.0f)};
    quant1(CB_NF4, x3, &b);
    assert_int_equal(b.qs[1] & 0x0f, 7);
    assert_int_equal(b.qs[2] & 0x0f, 8);
    assert_int_equal(b.qs[3] & 0x0f, 6);
    assert_int_equal(b.qs[4] & 0x0f, 7);

    /* all-zero block: absmax 0, codes 7 (level 0.0) */
    float z[32] = {0};
    quant1(CB_NF4, z, &b);
    assert_int_equal(b.d, 0);
    for (int i = 0; i < 16; i++) assert_int_equal(b.qs[i], 0x77);
    cb_dequantize_row(CB_NF4, &b, 32, y);
    for (int i = 0; i < 32; i++) assert_true(y[i] == 0.0f);
}

static uint64_t rng_state = 88172645463325252ull;
static float urand(void) { /* uniform [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* Round trip of random blocks against each format's worst-case bound, per block of amax A:
 *   q8_0: |x - x'| <= d/2 (rounding) + 127 d 2^-11 (fp16 scale) = A (1/254 + 2^-11)
 *   q4_0: |x - x'| <= |d|/2 + 8 |d| 2^-11 = A (1/16 + 2^-11), except where the code clips at 15
 *         (x/d >= 7.5, i.e. x/m <= -0.9375 with m the signed extreme): there the value decodes
 *         to 7d and |x - x'| <= |d| + 7 |d| 2^-11 <= A (1/8 + 2^-11)
 *   nf4:  half the widest level gap (levels -1 and -0.6962: 0.15190) * A + A 2^-11 */
static void test_roundtrip_bounds(void **state) {
    (void)state;
    enum { W = 32 * 64 };
    float *x = malloc(W * sizeof(float)), *y = malloc(W * sizeof(float));
    void *q = malloc(cb_quant_row_bytes(CB_Q8_0, W));
    const cb_dtype dts[3] = {CB_Q8_0, CB_Q4_0, CB_NF4};
    for (int i = 0; i < W; i++) x[i] = urand() * (1.0f + (float)(i / 32) * 0.5f); /* varying A */
    int clipped = 0;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(cb_quantize_row(dts[k], x, W, q), CB_OK);
        assert_int_equal(cb_dequantize_row(dts[k], q, W, y), CB_OK);
        for (int blk = 0; blk < W / 32; blk++) {
            double A = 0.0, m = 0.0;
            for (int j = 0; j < 32; j++)
                if (fabs(x[blk * 32 + j]) > A) {
                    A = fabs(x[blk * 32 + j]);
                    m = x[blk * 32 + j];
                }
            for (int j = 0; j < 32; j++) {
                const int i = blk * 32 + j;
                double err = fabs((double)x[i] - (double)y[i]), bound;
                if (dts[k] == CB_Q8_0) {
                    bound = A * (1.0 / 254 + 1.0 / 2048);
                } else if (dts[k] == CB_Q4_0) {
                    bool clip = x[i] / m <= -0.9375;
                    clipped += clip;
                    bound = A * ((clip ? 1.0 / 8 : 1.0 / 16) + 1.0 / 2048);
                } else {
                    bound = A * (0.15191 + 1.0 / 2048);
                }
                assert_true(err <= bound * 1.0001);
            }
        }
    }
    assert_true(clipped > 0); /* the data exercised the clipped case */
    free(x);
    free(y);
    free(q);
}

/* Padding: a 40-wide row is 2 blocks; the last 24 values are zero padding. */
static void test_padding(void **state) {
    (void)state;
    float x[40], y[40];
    for (int i = 0; i < 40; i++) x[i] = (float)(i - 20) / 8.0f;
    cb_block_q8_0 b[2];
    memset(b, 0xab, sizeof b);
    assert_int_equal(cb_quantize_row(CB_Q8_0, x, 40, b), CB_OK);
    /* block 1 holds x[32..39] = 1.5 .. 2.375 then zeros: amax 2.375 */
    for (int j = 8; j < 32; j++) assert_int_equal(b[1].qs[j], 0);
    float full[64] = {0};
    memcpy(full, x, sizeof x);
    cb_block_q8_0 ref[2];
    cb_quantize_row(CB_Q8_0, full, 64, ref);
    assert_memory_equal(b, ref, sizeof b);
    y[39] = 12345.0f;
    assert_int_equal(cb_dequantize_row(CB_Q8_0, b, 39, y), CB_OK);
    assert_true(y[39] == 12345.0f); /* writes exactly w values */
}

/* dot / axpy (both the reference and the fast traits) equal the f32 operation on the
 * dequantized row, up to f32 summation order: |err| <= 1e-5 * sum |x_i y_i| + 1e-6. The fast
 * dequantizer is bit-identical to the reference one. Ranges at unaligned offsets too. */
static void test_dot_axpy(void **state) {
    (void)state;
    enum { W = 32 * 8 };
    const cb_dtype dts[5] = {CB_F32, CB_F16, CB_Q8_0, CB_Q4_0, CB_NF4};
    float x[W], deq[W], deq_fast[W], acc[W], acc2[W];
    for (int i = 0; i < W; i++) x[i] = urand() * 2.0f;
    unsigned char row[W * 4];
    for (int k = 0; k < 5; k++) {
        const cb_quant_traits *tf = cb_quant_traits_get(dts[k]), *tr = cb_quant_traits_ref(dts[k]);
        float src[W];
        for (int i = 0; i < W; i++) src[i] = urand();
        tr->quantize_row(src, row, W);
        tr->dequantize_row(row, deq, W);
        tf->dequantize_row(row, deq_fast, W);
        assert_memory_equal(deq, deq_fast, sizeof deq);
        double exact = 0.0, mag = 0.0;
        for (int i = 0; i < W; i++) {
            exact += (double)x[i] * deq[i];
            mag += fabs((double)x[i] * deq[i]);
        }
        const cb_quant_traits *both[2] = {tr, tf};
        for (int u = 0; u < 2; u++) {
            float d = both[u]->dot(x, row, W);
            assert_true(fabs(d - exact) <= 1e-5 * mag + 1e-6);
            for (int i = 0; i < W; i++) acc[i] = acc2[i] = x[i];
            both[u]->axpy(0.75f, row, acc, W);
            for (int i = 0; i < W; i++) {
                double want = (double)acc2[i] + 0.75 * deq[i];
                assert_true(fabs(acc[i] - want) <= 1e-6 * (fabs(want) + 1.0));
            }
            /* element ranges crossing block boundaries: [7, 7 + 70) */
            float part[70];
            cb_quant_dequant_range(both[u], row, 7, 70, part);
            assert_memory_equal(part, deq + 7, sizeof part);
            double pe = 0.0, pm = 0.0;
            for (int i = 0; i < 70; i++) {
                pe += (double)x[i] * deq[7 + i];
                pm += fabs((double)x[i] * deq[7 + i]);
            }
            assert_true(fabs(cb_quant_dot_range(both[u], x, row, 7, 70) - pe) <= 1e-5 * pm + 1e-6);
            float a3[70] = {0};
            cb_quant_axpy_range(both[u], 2.0f, row, 7, 70, a3);
            for (int i = 0; i < 70; i++) assert_true(a3[i] == 2.0f * deq[7 + i]);
        }
    }
}

/* NaN and huge values: no undefined behaviour, saturated (finite) scales. */
static void test_nonfinite(void **state) {
    (void)state;
    float x[32] = {NAN, 1.0f, -2.0f};
    cb_block_q8_0 a;
    cb_block_q4_0 b;
    cb_block_nf4 c;
    cb_quantize_row(CB_Q8_0, x, 32, &a);
    cb_quantize_row(CB_Q4_0, x, 32, &b);
    cb_quantize_row(CB_NF4, x, 32, &c);
    assert_int_equal(a.qs[0], 0);
    assert_int_equal(b.qs[0] & 0x0f, 8);
    assert_int_equal(c.qs[0] & 0x0f, 7);
    float big[32] = {1e6f, -5e5f};
    cb_quantize_row(CB_NF4, big, 32, &c);
    assert_int_equal(c.d, 0x7bff); /* 65504, not inf */
    assert_int_equal(c.qs[0] & 0x0f, 15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_q8_0_exact),
        cmocka_unit_test(test_q4_0_exact),
        cmocka_unit_test(test_nf4_exact),
        cmocka_unit_test(test_roundtrip_bounds),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_dot_axpy),
        cmocka_unit_test(test_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
