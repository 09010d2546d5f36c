/* Shared helpers for the cmocka tests: paths to test data, numeric comparisons, temp dirs. */
#ifndef CARAMBA_TESTUTIL_H
#define CARAMBA_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Absolute path of a file relative to the source tree (CARAMBA_SOURCE_DIR, else cwd). The
 * returned string lives in a rotating static buffer: copy it if you need more than four. */
const char *tu_path(const char *rel);
/* A fresh empty directory under $TMPDIR for this test; removed by tu_rmtree. */
const char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* Path of the caramba executable (CARAMBA_BIN), or NULL when unknown. */
const char *tu_bin(void);
/* Runs a shell command, captures stdout+stderr into out (may be NULL); returns exit status. */
int tu_run(char *out, size_t out_size, const char *fmt, ...);

double tu_max_abs(const float *a, int64_t n);
double tu_max_abs_diff(const float *a, const float *b, int64_t n);
/* ||a-b|| / max(||b||, tiny) */
double tu_rel_l2(const float *a, const float *b, int64_t n);
/* Writes a whole file; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);

#endif
