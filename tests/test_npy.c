/* .npy reader/writer against files written by NumPy (tests/data/npy/, see make_npy.py there):
 * every dtype and format version, exact values, byte-identical output, and hostile input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/npy.h"
#include "testutil.h"

/* make_npy.py: element k is (k * 7 + 1) % m, m = 251 for 1-byte types, 30011 otherwise. */
static double expected(int64_t k, int m) {
    return (double)((k * 7 + 1) % m);
}

static double elem(const cb_npy *n, int64_t k) {
    switch (n->dtype) {
    case CB_U16:
        return ((const uint16_t *)n->data)[k];
    case CB_U32:
        return ((const uint32_t *)n->data)[k];
    case CB_I32:
        return ((const int32_t *)n->data)[k];
    case CB_I64:
        return (double)((const int64_t *)n->data)[k];
    case CB_F32:
        return ((const float *)n->data)[k];
    case CB_F16:
        return cb_f16_to_f32(((const uint16_t *)n->data)[k]);
    case CB_U8:
        return ((const uint8_t *)n->data)[k];
    default:
        return -1;
    }
}

static void check_file(const char *file, cb_dtype dt, int ndim, const int64_t *shape) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/npy/%s", file);
    cb_npy *n = NULL;
    cb_status st = cb_npy_open(&n, tu_path(rel));
    if (st != CB_OK) fail_msg("%s: %s", file, cb_last_error());
    assert_int_equal(n->dtype, dt);
    assert_int_equal(n->ndim, ndim);
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(n->shape[i], shape[i]);
        count *= shape[i];
    }
    assert_int_equal(n->nbytes, (size_t)count * cb_dtype_size(dt));
    /* the data pointer lies inside the mapping: no copy was made */
    assert_true((const char *)n->data >= (const char *)n->map &&
                (const char *)n->data + n->nbytes == (const char *)n->map + n->map_size);
    int m = cb_dtype_size(dt) == 1 ? 251 : 30011;
    for (int64_t k = 0; k < count; k++) assert_true(elem(n, k) == expected(k, m));
    cb_tensor t = cb_npy_tensor(n);
    assert_int_equal(t.dtype, dt);
    assert_int_equal(t.ndim, ndim);
    assert_ptr_equal(t.data, n->data);
    assert_int_equal(cb_tensor_numel(&t), count);
    cb_npy_close(n);
}

static void test_numpy_files(void **state) {
    (void)state;
    check_file("u16_1d.npy", CB_U16, 1, (int64_t[]){5});
    check_file("u32_2d.npy", CB_U32, 2, (int64_t[]){2, 3});
    check_file("i32_2d.npy", CB_I32, 2, (int64_t[]){4, 2});
    check_file("i64_3d.npy", CB_I64, 3, (int64_t[]){2, 3, 4});
    check_file("f32_4d.npy", CB_F32, 4, (int64_t[]){1, 2, 3, 4});
    check_file("f16_1d.npy", CB_F16, 1, (int64_t[]){7});
    check_file("u8_1d.npy", CB_U8, 1, (int64_t[]){300});
    check_file("v2_i32.npy", CB_I32, 1, (int64_t[]){10});
    check_file("v3_u16.npy", CB_U16, 1, (int64_t[]){9});
    check_file("empty_i64.npy", CB_I64, 2, (int64_t[]){0, 3});
    cb_npy *n;
    assert_int_equal(cb_npy_open(&n, tu_path("tests/data/npy/scalar_f32.npy")), CB_OK);
    assert_int_equal(n->ndim, 0);
    assert_true(*(const float *)n->data == 42.5f);
    cb_npy_close(n);
}

static void expect_error(const char *file, cb_status want, const char *needle) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/npy/%s", file);
    cb_npy *n = (cb_npy *)1;
    cb_status st = cb_npy_open(&n, tu_path(rel));
    assert_int_equal(st, want);
    assert_null(n);
    if (!strstr(cb_last_error(), needle))
        fail_msg("%s: message '%s' lacks '%s'", file, cb_last_error(), needle);
    if (!strstr(cb_last_error(), file)) fail_msg("message '%s' lacks the file", cb_last_error());
}

static void test_refused_numpy_files(void **state) {
    (void)state;
    expect_error("bigendian_i4.npy", CB_ERR_UNSUPPORTED, "big-endian");
    expect_error("fortran_i32.npy", CB_ERR_UNSUPPORTED, "Fortran");
    expect_error("f64_1d.npy", CB_ERR_UNSUPPORTED, "unsupported .npy dtype '<f8'");
    expect_error("bool_1d.npy", CB_ERR_UNSUPPORTED, "'|b1'");
    expect_error("five_dims.npy", CB_ERR_UNSUPPORTED, "more than 4 dimensions");
}

/* Parses a modified copy of a valid file image; returns the status. */
static cb_status parse_image(const char *img, size_t n) {
    cb_npy *out = NULL;
    cb_status st = cb_npy_parse(&out, img, n, "img.npy");
    if (st == CB_OK)
        cb_npy_close(out);
    else
        assert_null(out);
    return st;
}

static void test_bad_headers(void **state) {
    (void)state;
    char *buf;
    size_t size;
    assert_int_equal(cb_read_file(tu_path("tests/data/npy/i32_2d.npy"), 1 << 20, &buf, &size),
                     CB_OK);
    assert_int_equal(parse_image(buf, size), CB_OK);
    char *img = malloc(size + 64);
    /* every truncation is an error, never a crash */
    for (size_t cut = 0; cut < size; cut++) {
        memcpy(img, buf, cut);
        assert_int_not_equal(parse_image(img, cut), CB_OK);
    }
    memcpy(img, buf, size);
    assert_int_equal(parse_image(img, size - 1), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "truncated .npy data"));
    assert_non_null(strstr(cb_last_error(), "[4, 2]"));
    /* trailing garbage after the data */
    memcpy(img, buf, size);
    memcpy(img + size, "\0\0\0\0", 4);
    assert_int_equal(parse_image(img, size + 4), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "after the data"));

    struct {
        const char *from, *to, *needle;
    } edits[] = {
        {"\x93NUMPY", "\x93NUMPX", "bad magic"},
        {"\x01\x00", "\x04\x00", "version 4.0"},
        {"'descr'", "'dascr'", "unexpected or repeated key 'dascr'"},
        {"'<i4'", "'<x4'", "unsupported .npy dtype '<x4'"},
        {"'<i4'", "'>i4'", "big-endian"},
        {"False", "Fals ", "'fortran_order' must be"},
        {"(4, 2)", "(4, -2)", "non-negative"},
        {"(4, 2)", "(4; 2)", "expected ',' or ')'"},
        {"(4, 2)", "[4, 2]", "expected '('"},
        {"{'descr'", "('descr'", "expected '{'"},
        {"'shape'", "'descr'", "repeated key 'descr'"},
        {"'<i4'", "'<i4\\", "unsupported or too long string"},
        {"}", "]", "expected a quoted string"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(img, buf, size);
        char *at = memmem(img, size, edits[i].from, strlen(edits[i].from));
        assert_non_null(at);
        memcpy(at, edits[i].to, strlen(edits[i].to));
        assert_int_not_equal(parse_image(img, size), CB_OK);
        if (!strstr(cb_last_error(), edits[i].needle))
            fail_msg("edit %zu: message '%s' lacks '%s'", i, cb_last_error(), edits[i].needle);
        assert_non_null(strstr(cb_last_error(), "img.npy"));
    }
    /* header length pointing past the end */
    memcpy(img, buf, size);
    img[8] = (char)0xff;
    img[9] = (char)0xff;
    assert_int_equal(parse_image(img, size), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "runs past the end"));
    /* missing key: drop 'fortran_order' by blanking it out */
    memcpy(img, buf, size);
    char *fo = memmem(img, size, "'fortran_order': False, ", 24);
    memset(fo, ' ', 24);
    assert_int_equal(parse_image(img, size), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "missing key 'fortran_order'"));
    /* a shape whose byte count overflows */
    const char huge[] = "{'descr': '<i8', 'fortran_order': False, 'shape': (4611686018427387904, "
                        "4611686018427387904), }\n";
    size_t hl = strlen(huge);
    memcpy(img, "\x93NUMPY\x01\x00", 8);
    img[8] = (char)hl;
    img[9] = 0;
    memcpy(img + 10, huge, hl);
    assert_int_equal(parse_image(img, 10 + hl), CB_ERR_FORMAT);
    free(img);
    free(buf);
}

static void test_write_matches_numpy(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    const char *files[] = {"u16_1d.npy", "u32_2d.npy",     "i32_2d.npy",
                           "i64_3d.npy", "f32_4d.npy",     "f16_1d.npy",
                           "u8_1d.npy",  "scalar_f32.npy", "empty_i64.npy"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char rel[256], out[4200];
        snprintf(rel, sizeof rel, "tests/data/npy/%s", files[i]);
        cb_npy *n;
        assert_int_equal(cb_npy_open(&n, tu_path(rel)), CB_OK);
        cb_tensor t = cb_npy_tensor(n);
        snprintf(out, sizeof out, "%s/%s", dir, files[i]);
        assert_int_equal(cb_npy_write(out, &t), CB_OK);
        /* NumPy writes the same dict text and 64-byte padding: the files are identical */
        char *a, *b;
        size_t na, nb;
        assert_int_equal(cb_read_file(tu_path(rel), 1 << 20, &a, &na), CB_OK);
        assert_int_equal(cb_read_file(out, 1 << 20, &b, &nb), CB_OK);
        assert_int_equal(na, nb);
        if (memcmp(a, b, na) != 0) fail_msg("%s differs from NumPy's file", files[i]);
        free(a);
        free(b);
        cb_npy_close(n);
    }
    cb_tensor bf;
    int64_t shape[1] = {2};
    uint16_t data[2] = {0, 0};
    assert_int_equal(cb_tensor_init(&bf, CB_BF16, CB_CPU, 1, shape, data), CB_OK);
    char out[4200];
    snprintf(out, sizeof out, "%s/bf16.npy", dir);
    assert_int_equal(cb_npy_write(out, &bf), CB_ERR_UNSUPPORTED);
    assert_false(cb_file_exists(out));
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numpy_files),
        cmocka_unit_test(test_refused_numpy_files),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_write_matches_numpy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
