/* Instrumentation: JSONL metric logs, TensorBoard event files, console progress bars.
 *
 * Design rule: instrumentation never fails a training run. The writers return a status so a
 * caller can report the first failure, after which the sink disables itself (later calls are
 * no-ops). See docs/training.md for the JSONL schema and the event-file layout. */
#ifndef CARAMBA_INSTRUMENT_H
#define CARAMBA_INSTRUMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- JSONL -------------------------------------------------------------------------------- */

/* One JSON object per line, appended to a file (created with its directory when missing). Each
 * line is built in memory and written with one fwrite + fflush, so a crash leaves whole lines. */
typedef struct cb_jsonl cb_jsonl;

cb_status cb_jsonl_open(cb_jsonl **out, const char *path);
void cb_jsonl_close(cb_jsonl *j);
const char *cb_jsonl_path(const cb_jsonl *j);

/* Line builder: begin, then members in the order they should appear, then end (writes the line).
 * Numbers that are not finite are written as null. Strings are escaped (UTF-8 kept). */
void cb_jsonl_begin(cb_jsonl *j, const char *type);
void cb_jsonl_str(cb_jsonl *j, const char *key, const char *value); /* NULL -> null */
void cb_jsonl_int(cb_jsonl *j, const char *key, int64_t value);
void cb_jsonl_num(cb_jsonl *j, const char *key, double value); /* shortest round-trip form */
void cb_jsonl_bool(cb_jsonl *j, const char *key, bool value);
/* A pre-rendered JSON value (object, array...) inserted verbatim. */
void cb_jsonl_raw(cb_jsonl *j, const char *key, const char *json);
cb_status cb_jsonl_end(cb_jsonl *j);

/* Shortest "%.*g" rendering of v (15..17 digits) that reads back to exactly v; "null" when v is
 * not finite. buf needs 32 bytes. */
char *cb_fmt_double(double v, char *buf, size_t n);

/* ---- TensorBoard event files --------------------------------------------------------------- */

/* Writes `events.out.tfevents.<unix seconds>.<host>.<pid>` in dir: a TFRecord stream of Event
 * protobufs, the first carrying file_version "brain.Event:2", then one Event per scalar with
 * summary { value { tag, simple_value } }. */
typedef struct cb_tb_writer cb_tb_writer;

cb_status cb_tb_open(cb_tb_writer **out, const char *dir);
cb_status cb_tb_scalar(cb_tb_writer *w, const char *tag, int64_t step, float value);
void cb_tb_close(cb_tb_writer *w);
const char *cb_tb_path(const cb_tb_writer *w);

/* The pieces, exposed for tests.
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF):
 * cb_crc32c("123456789", 9) == 0xE3069283. */
uint32_t cb_crc32c(const void *data, size_t n);
/* TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t cb_tfrecord_masked_crc(const void *data, size_t n);
/* Frames payload as one TFRecord: u64 length (LE), u32 masked CRC of those 8 bytes, payload,
 * u32 masked CRC of the payload. Returns bytes written to out (n + 16), 0 if cap is too small. */
size_t cb_tfrecord_frame(const void *payload, size_t n, uint8_t *out, size_t cap);
/* Event protobufs. wall_time: field 1 (double); step: field 2 (varint); file_version: field 3
 * (string); summary: field 5 (message Summary { repeated Value value = 1 }, Value { string tag =
 * 1; float simple_value = 2 }). Return the encoded size, 0 if cap is too small. */
size_t cb_tb_encode_version_event(uint8_t *out, size_t cap, double wall_time);
size_t cb_tb_encode_scalar_event(uint8_t *out, size_t cap, double wall_time, int64_t step,
                                 const char *tag, float value);

/* ---- console progress --------------------------------------------------------------------- */

/* A progress line on stderr: redrawn in place (at most ~8 times a second) on a terminal, with a
 * bar, the count, caller-supplied fields (loss, tok/s) and the ETA; when stderr is not a terminal,
 * plain lines at every 10% (and at least every 30 s) so logs stay readable. */
typedef struct cb_progress {
    const char *label;
    int64_t begin, total, done;
    double t0, last_draw, last_line;
    int last_decile;
    bool tty, enabled, drawn;
    FILE *f;
} cb_progress;

/* Counts run from `begin` (e.g. a resumed step) to `total`; ETA uses the rate since begin. */
void cb_progress_start(cb_progress *p, const char *label, int64_t begin, int64_t total,
                       bool enabled);
void cb_progress_update(cb_progress *p, int64_t done, const char *fields);
/* Draws the final state and ends the line. */
void cb_progress_finish(cb_progress *p, const char *fields);
/* "1h02m", "3m05s", "42s" */
char *cb_fmt_duration(double seconds, char *buf, size_t n);
/* Monotonic seconds. */
double cb_clock_seconds(void);

#ifdef __cplusplus
}
#endif
#endif
