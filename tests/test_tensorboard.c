/* TensorBoard event files against the format definitions:
 *   CRC-32C check values (CRC catalogue "123456789" -> 0xE3069283; RFC 3720 B.4 vectors),
 *   TFRecord framing (tensorflow/core/lib/io/record_writer.cc: u64 length, masked CRC of the
 *   length, data, masked CRC of the data; mask = rotate right 15 + 0xa282ead8),
 *   Event protobuf bytes written out by hand from event.proto / summary.proto field numbers,
 *   and a written file decoded record by record with an independent protobuf reader. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/instrument.h"
#include "testutil.h"

static void test_crc32c_vectors(void **state) {
    (void)state;
    assert_int_equal(cb_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(cb_crc32c("", 0), 0u);
    uint8_t buf[32];
    memset(buf, 0, 32);
    assert_int_equal(cb_crc32c(buf, 32), 0x8A9136AAu); /* RFC 3720 B.4: 32 bytes of zeros */
    memset(buf, 0xFF, 32);
    assert_int_equal(cb_crc32c(buf, 32), 0x62A8AB43u); /* 32 bytes of ones */
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)i;
    assert_int_equal(cb_crc32c(buf, 32), 0x46DD794Eu); /* incrementing */
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)(31 - i);
    assert_int_equal(cb_crc32c(buf, 32), 0x113FDB5Cu); /* decrementing */
    /* masking: rotate right by 15, add the constant */
    uint32_t c = cb_crc32c("123456789", 9);
    assert_int_equal(cb_tfrecord_masked_crc("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

/* wall_time 1.0, step 3, tag "a", simple_value 0.5, encoded by hand:
 *   09 <1.0 as f64 LE>            field 1 (wall_time), wire type 1
 *   10 03                         field 2 (step), varint
 *   2a 0a                         field 5 (summary), 10 bytes
 *     0a 08                       Summary.value (field 1), 8 bytes
 *       0a 01 61                  Value.tag (field 1) = "a"
 *       15 00 00 00 3f            Value.simple_value (field 2, fixed32) = 0.5f */
static void test_event_bytes(void **state) {
    (void)state;
    const uint8_t want[] = {0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08,
                            0x0a, 0x01, 0x61, 0x15, 0, 0, 0, 0x3f};
    uint8_t got[64];
    size_t n = cb_tb_encode_scalar_event(got, sizeof got, 1.0, 3, "a", 0.5f);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(got, want, sizeof want);
    /* the file_version event: 09 <f64> 1a 0d "brain.Event:2" */
    n = cb_tb_encode_version_event(got, sizeof got, 2.0);
    assert_int_equal(n, 9 + 2 + 13);
    assert_int_equal(got[9], 0x1a);
    assert_int_equal(got[10], 13);
    assert_memory_equal(got + 11, "brain.Event:2", 13);
    /* a step above 127 takes a multi-byte varint: 300 = ac 02 */
    n = cb_tb_encode_scalar_event(got, sizeof got, 0.0, 300, "a", 0.5f);
    assert_int_equal(got[9], 0x10);
    assert_int_equal(got[10], 0xac);
    assert_int_equal(got[11], 0x02);
    /* too small a buffer is refused, not overrun */
    assert_int_equal(cb_tb_encode_scalar_event(got, 10, 1.0, 3, "a", 0.5f), 0);
}

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static uint32_t mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

static void test_framing(void **state) {
    (void)state;
    const char *payload = "hello tfrecord";
    size_t n = strlen(payload);
    uint8_t out[64];
    assert_int_equal(cb_tfrecord_frame(payload, n, out, sizeof out), n + 16);
    assert_int_equal(rd64(out), n);
    assert_int_equal(rd32(out + 8), mask(cb_crc32c(out, 8)));
    assert_memory_equal(out + 12, payload, n);
    assert_int_equal(rd32(out + 12 + n), mask(cb_crc32c(payload, n)));
    assert_int_equal(cb_tfrecord_frame(payload, n, out, n + 15), 0);
}

/* ---- an independent reader ---------------------------------------------------------------- */

typedef struct event {
    double wall_time;
    int64_t step;
    char version[32];
    char tag[64];
    float value;
    int has_value;
} event;

static uint64_t varint(const uint8_t **p, const uint8_t *end) {
    uint64_t v = 0;
    for (int s = 0; *p < end && s < 64; s += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return v;
    }
    fail_msg("truncated varint");
    return 0;
}

static void decode_value(const uint8_t *p, const uint8_t *end, event *e) {
    while (p < end) {
        uint64_t key = varint(&p, end);
        if (key == 0x0a) {
            uint64_t l = varint(&p, end);
            assert_true(l < sizeof e->tag && p + l <= end);
            memcpy(e->tag, p, l);
            e->tag[l] = 0;
            p += l;
        } else if (key == 0x15) {
            uint32_t u = rd32(p);
            memcpy(&e->value, &u, 4);
            e->has_value = 1;
            p += 4;
        } else {
            fail_msg("unexpected Value field key %llu", (unsigned long long)key);
        }
    }
}

static void decode_event(const uint8_t *p, const uint8_t *end, event *e) {
    memset(e, 0, sizeof *e);
    while (p < end) {
        uint64_t key = varint(&p, end);
        switch (key) {
        case 0x09: {
            uint64_t u = rd64(p);
            memcpy(&e->wall_time, &u, 8);
            p += 8;
            break;
        }
        case 0x10: e->step = (int64_t)varint(&p, end); break;
        case 0x1a: {
            uint64_t l = varint(&p, end);
            assert_true(l < sizeof e->version);
            memcpy(e->version, p, l);
            p += l;
            break;
        }
        case 0x2a: { /* Summary */
            uint64_t l = varint(&p, end);
            const uint8_t *se = p + l;
            while (p < se) {
                assert_int_equal(varint(&p, se), 0x0a);
                uint64_t vl = varint(&p, se);
                decode_value(p, p + vl, e);
                p += vl;
            }
            break;
        }
        default: fail_msg("unexpected Event field key %llu", (unsigned long long)key);
        }
    }
}

static void test_written_file(void **state) {
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tb/run", tu_tmpdir());
    cb_tb_writer *w;
    assert_int_equal(cb_tb_open(&w, dir), CB_OK);
    const char *name = strrchr(cb_tb_path(w), '/') + 1;
    assert_int_equal(strncmp(name, "events.out.tfevents.", 20), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s", cb_tb_path(w));
    for (int s = 1; s <= 5; s++) {
        assert_int_equal(cb_tb_scalar(w, "train/loss", s * 10, 5.0f / (float)s), CB_OK);
        assert_int_equal(cb_tb_scalar(w, "train/lr", s * 10, 1e-3f), CB_OK);
    }
    cb_tb_close(w);
    char *buf;
    size_t size;
    assert_int_equal(cb_read_file(path, 1 << 20, &buf, &size), CB_OK);
    const uint8_t *p = (const uint8_t *)buf, *end = p + size;
    int rec = 0;
    while (p < end) {
        assert_true(end - p >= 16);
        uint64_t len = rd64(p);
        assert_int_equal(rd32(p + 8), mask(cb_crc32c(p, 8)));
        assert_true((uint64_t)(end - p - 16) >= len);
        const uint8_t *data = p + 12;
        assert_int_equal(rd32(data + len), mask(cb_crc32c(data, len)));
        event e;
        decode_event(data, data + len, &e);
        assert_true(e.wall_time > 1.5e9); /* seconds since the epoch */
        if (rec == 0) {
            assert_string_equal(e.version, "brain.Event:2");
            assert_false(e.has_value);
        } else {
            int s = (rec + 1) / 2;
            assert_int_equal(e.step, s * 10);
            assert_true(e.has_value);
            if (rec % 2) {
                assert_string_equal(e.tag, "train/loss");
                assert_true(e.value == 5.0f / (float)s);
            } else {
                assert_string_equal(e.tag, "train/lr");
                assert_true(e.value == 1e-3f);
            }
        }
        p = data + len + 4;
        rec++;
    }
    assert_int_equal(rec, 11);
    free(buf);
    char root[4096];
    snprintf(root, sizeof root, "%s", dir);
    *strstr(root, "/tb/run") = 0;
    tu_rmtree(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_event_bytes),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_written_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
