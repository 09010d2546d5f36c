/* Core: dtype conversions match IEEE / PyTorch rounding, arena, tensor copies. */
#include <math.h>
#include <string.h>

#include "caramba/arena.h"
#include "caramba/dtype.h"
#include "caramba/tensor.h"
#include "testutil.h"

static void test_f16_roundtrip(void **state) {
    (void)state;
    /* exact values from the binary16 definition */
    assert_int_equal(cb_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(cb_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(cb_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(cb_f32_to_f16(65520.0f), 0x7c00); /* rounds to inf */
    assert_int_equal(cb_f32_to_f16(5.9604645e-08f), 0x0001); /* smallest subnormal */
    assert_int_equal(cb_f32_to_f16(1.0f + 1.0f / 2048.0f), 0x3c00); /* tie -> even */
    assert_int_equal(cb_f32_to_f16(1.0f + 3.0f / 2048.0f), 0x3c02); /* tie -> even (up) */
    assert_true(cb_f16_to_f32(0x7e00) != cb_f16_to_f32(0x7e00)); /* NaN */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
        float f = cb_f16_to_f32((uint16_t)h);
        assert_int_equal(cb_f32_to_f16(f), h);
    }
    float src[19], back[19];
    uint16_t h[19];
    for (int i = 0; i < 19; i++) src[i] = (float)i * 0.37f - 3.0f;
    cb_convert_f32_to_f16(src, h, 19);
    cb_convert_f16_to_f32(h, back, 19);
    for (int i = 0; i < 19; i++) {
        assert_int_equal(h[i], cb_f32_to_f16(src[i]));
        assert_true(fabsf(back[i] - src[i]) <= 2e-3f);
    }
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(cb_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is a tie between 1 and 1+2^-7: rounds to even (1.0) */
    assert_int_equal(cb_f32_to_bf16(1.00390625f), 0x3f80);
    assert_int_equal(cb_f32_to_bf16(1.01171875f), 0x3f82);
    assert_true(cb_bf16_to_f32(0x4049) == 3.140625f);
}

static void test_arena(void **state) {
    (void)state;
    cb_arena a;
    cb_arena_init(&a, CB_CPU);
    char *p = cb_arena_alloc(&a, 100);
    char *q = cb_arena_alloc(&a, 3 << 20); /* forces a second block */
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % 64, 0);
    memset(q, 1, 3 << 20);
    size_t peak = a.peak;
    assert_true(peak >= (3u << 20) + 100);
    cb_arena_reset(&a);
    assert_int_equal(a.used_total, 0);
    assert_true(a.capacity >= peak);
    char *r = cb_arena_alloc(&a, 3 << 20);
    char *s = cb_arena_alloc(&a, 100);
    assert_non_null(r);
    assert_non_null(s);
    assert_int_equal(cb_arena_blocks(&a), 1); /* merged: one block serves the whole step */
    cb_arena_free(&a);
}

static void test_tensor_copy(void **state) {
    (void)state;
    int64_t shape[2] = {2, 3};
    cb_tensor *a, *b;
    assert_int_equal(cb_tensor_new(&a, CB_F32, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_tensor_new(&b, CB_BF16, CB_CPU, 2, shape), CB_OK);
    for (int i = 0; i < 6; i++) cb_f32(a)[i] = (float)i + 0.5f;
    assert_int_equal(cb_tensor_copy(b, a), CB_OK);
    assert_int_equal(((uint16_t *)b->data)[3], cb_f32_to_bf16(3.5f));
    int64_t bad[2] = {3, 3};
    cb_tensor *c;
    assert_int_equal(cb_tensor_new(&c, CB_F32, CB_CPU, 2, bad), CB_OK);
    assert_int_equal(cb_tensor_copy(c, a), CB_ERR_SHAPE);
    assert_non_null(strstr(cb_last_error(), "[3, 3]"));
    cb_tensor_free(a);
    cb_tensor_free(b);
    cb_tensor_free(c);
    int64_t neg[1] = {-1};
    cb_tensor t;
    assert_int_equal(cb_tensor_init(&t, CB_F32, CB_CPU, 1, neg, NULL), CB_ERR_ARG);
    assert_int_equal(cb_tensor_init(&t, CB_F32, CB_CPU, 5, shape, NULL), CB_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_roundtrip),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_tensor_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
