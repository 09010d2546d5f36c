/* TensorBoard event files, written by hand: TFRecord framing around Event protobufs.
 *
 * TFRecord (tensorflow/core/lib/io/record_writer): for each record
 *     uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
 * Event (tensorflow/core/util/event.proto), the fields used here:
 *     double wall_time = 1;  int64 step = 2;  string file_version = 3;  Summary summary = 5;
 * Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
 * Protobuf wire format: key = (field << 3) | wire_type with wire types 0 varint, 1 fixed64,
 * 2 length-delimited, 5 fixed32; fixed-width values are little-endian. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "caramba/fileio.h"
#include "caramba/instrument.h"

struct cb_tb_writer {
    FILE *f;
    char *path;
    bool failed;
};

/* ---- protobuf encoding --------------------------------------------------------------------- */

typedef struct pbuf {
    uint8_t *p;
    size_t n, cap;
    bool overflow;
} pbuf;

static void pb_byte(pbuf *b, uint8_t v) {
    if (b->n < b->cap) b->p[b->n] = v;
    else b->overflow = true;
    b->n++;
}

static void pb_varint(pbuf *b, uint64_t v) {
    while (v >= 0x80) {
        pb_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    pb_byte(b, (uint8_t)v);
}

static void pb_fixed(pbuf *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) pb_byte(b, (uint8_t)(v >> (8 * i)));
}

static void pb_key(pbuf *b, int field, int wire) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

static void pb_bytes(pbuf *b, int field, const void *data, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    for (size_t i = 0; i < n; i++) pb_byte(b, ((const uint8_t *)data)[i]);
}

static void pb_double(pbuf *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    pb_key(b, field, 1);
    pb_fixed(b, u, 8);
}

static void pb_float(pbuf *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    pb_key(b, field, 5);
    pb_fixed(b, u, 4);
}

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t cb_tb_encode_version_event(uint8_t *out, size_t cap, double wall_time) {
    pbuf b = {out, 0, cap, false};
    pb_double(&b, 1, wall_time);
    static const char version[] = "brain.Event:2";
    pb_bytes(&b, 3, version, sizeof version - 1);
    return b.overflow ? 0 : b.n;
}

size_t cb_tb_encode_scalar_event(uint8_t *out, size_t cap, double wall_time, int64_t step,
                                 const char *tag, float value) {
    pbuf b = {out, 0, cap, false};
    size_t tlen = strlen(tag);
    /* Value = tag (key + len + bytes) + simple_value (key + 4) */
    size_t value_len = 1 + varint_len(tlen) + tlen + 1 + 4;
    /* Summary = value (key + len + Value) */
    size_t summary_len = 1 + varint_len(value_len) + value_len;
    pb_double(&b, 1, wall_time);
    pb_key(&b, 2, 0);
    pb_varint(&b, (uint64_t)step); /* int64: negative steps take 10 bytes, as protobuf does */
    pb_key(&b, 5, 2);
    pb_varint(&b, summary_len);
    pb_key(&b, 1, 2);
    pb_varint(&b, value_len);
    pb_bytes(&b, 1, tag, tlen);
    pb_float(&b, 2, value);
    return b.overflow ? 0 : b.n;
}

/* ---- TFRecord framing ---------------------------------------------------------------------- */

size_t cb_tfrecord_frame(const void *payload, size_t n, uint8_t *out, size_t cap) {
    if (cap < n + 16) return 0;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    uint32_t lc = cb_tfrecord_masked_crc(len, 8), dc = cb_tfrecord_masked_crc(payload, n);
    memcpy(out, len, 8);
    for (int i = 0; i < 4; i++) out[8 + i] = (uint8_t)(lc >> (8 * i));
    memcpy(out + 12, payload, n);
    for (int i = 0; i < 4; i++) out[12 + n + i] = (uint8_t)(dc >> (8 * i));
    return n + 16;
}

/* ---- the writer ---------------------------------------------------------------------------- */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static cb_status write_record(cb_tb_writer *w, const uint8_t *payload, size_t n) {
    if (w->failed) return CB_OK;
    uint8_t frame[1024];
    size_t fn = cb_tfrecord_frame(payload, n, frame, sizeof frame);
    if (fn == 0 || fwrite(frame, 1, fn, w->f) != fn || fflush(w->f) != 0) {
        w->failed = true;
        return cb_fail(CB_ERR_IO, "%s: cannot write a TensorBoard record: %s (TensorBoard "
                                  "logging disabled)",
                       w->path, fn == 0 ? "record too large" : strerror(errno));
    }
    return CB_OK;
}

cb_status cb_tb_open(cb_tb_writer **out, const char *dir) {
    *out = NULL;
    CB_TRY(cb_mkdirs(dir));
    char host[128] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    size_t n = strlen(dir) + strlen(host) + 96;
    cb_tb_writer *w = calloc(1, sizeof *w);
    char *path = malloc(n);
    if (!w || !path) {
        free(w);
        free(path);
        return cb_fail(CB_ERR_NOMEM, "tensorboard: out of memory");
    }
    snprintf(path, n, "%s/events.out.tfevents.%lld.%s.%d", dir, (long long)time(NULL), host,
             (int)getpid());
    w->path = path;
    w->f = fopen(path, "ab");
    if (!w->f) {
        cb_status st = cb_fail(CB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        free(path);
        free(w);
        return st;
    }
    uint8_t ev[64];
    size_t en = cb_tb_encode_version_event(ev, sizeof ev, wall_now());
    cb_status st = write_record(w, ev, en);
    if (st != CB_OK) {
        cb_tb_close(w);
        return st;
    }
    *out = w;
    return CB_OK;
}

cb_status cb_tb_scalar(cb_tb_writer *w, const char *tag, int64_t step, float value) {
    if (!w || w->failed) return CB_OK;
    uint8_t ev[768];
    size_t n = cb_tb_encode_scalar_event(ev, sizeof ev, wall_now(), step, tag, value);
    if (n == 0) return cb_fail(CB_ERR_ARG, "tensorboard: tag too long: %.60s...", tag);
    return write_record(w, ev, n);
}

void cb_tb_close(cb_tb_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    free(w->path);
    free(w);
}

const char *cb_tb_path(const cb_tb_writer *w) { return w ? w->path : ""; }
