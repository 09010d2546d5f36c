/* JSONL metric log: one JSON object per line, appended. A line is assembled in a growable buffer
 * and written with a single fwrite + fflush so readers never see half a line from us. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "caramba/fileio.h"
#include "caramba/instrument.h"

struct cb_jsonl {
    FILE *f;
    char *path;
    char *buf;
    size_t len, cap;
    bool failed, oom;
};

char *cb_fmt_double(double v, char *buf, size_t n) {
    if (!isfinite(v)) {
        snprintf(buf, n, "null");
        return buf;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* JSON has no "inf"/"nan" (handled above); "1e+20" and "-0" are valid JSON numbers */
    return buf;
}

static void put(cb_jsonl *j, const char *s, size_t n) {
    if (j->oom) return;
    if (j->len + n + 2 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + n + 2) cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b) {
            j->oom = true;
            return;
        }
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
}

static void puts_(cb_jsonl *j, const char *s) { put(j, s, strlen(s)); }

static void put_string(cb_jsonl *j, const char *s) {
    put(j, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': puts_(j, "\\\""); break;
        case '\\': puts_(j, "\\\\"); break;
        case '\n': puts_(j, "\\n"); break;
        case '\r': puts_(j, "\\r"); break;
        case '\t': puts_(j, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                puts_(j, esc);
            } else {
                put(j, (const char *)p, 1);
            }
        }
    }
    put(j, "\"", 1);
}

static void key(cb_jsonl *j, const char *k) {
    put(j, ", ", 2);
    put_string(j, k);
    put(j, ": ", 2);
}

cb_status cb_jsonl_open(cb_jsonl **out, const char *path) {
    *out = NULL;
    char *dir = strdup(path);
    if (!dir) return cb_fail(CB_ERR_NOMEM, "jsonl: out of memory");
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        cb_status st = cb_mkdirs(dir);
        if (st != CB_OK) {
            free(dir);
            return st;
        }
    }
    free(dir);
    cb_jsonl *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        free(j);
        return cb_fail(CB_ERR_NOMEM, "jsonl: out of memory");
    }
    j->f = fopen(path, "ab");
    if (!j->f) {
        cb_status st = cb_fail(CB_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
        free(j->path);
        free(j);
        return st;
    }
    *out = j;
    return CB_OK;
}

void cb_jsonl_close(cb_jsonl *j) {
    if (!j) return;
    if (j->f) fclose(j->f);
    free(j->buf);
    free(j->path);
    free(j);
}

const char *cb_jsonl_path(const cb_jsonl *j) { return j ? j->path : ""; }

void cb_jsonl_begin(cb_jsonl *j, const char *type) {
    if (!j) return;
    j->len = 0;
    j->oom = false;
    char ts[40];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    puts_(j, "{\"type\": ");
    put_string(j, type);
    key(j, "ts");
    snprintf(ts, sizeof ts, "%.3f", (double)now.tv_sec + now.tv_nsec * 1e-9);
    puts_(j, ts);
}

void cb_jsonl_str(cb_jsonl *j, const char *k, const char *v) {
    if (!j) return;
    key(j, k);
    if (v) put_string(j, v);
    else puts_(j, "null");
}

void cb_jsonl_int(cb_jsonl *j, const char *k, int64_t v) {
    if (!j) return;
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)v);
    key(j, k);
    puts_(j, b);
}

void cb_jsonl_num(cb_jsonl *j, const char *k, double v) {
    if (!j) return;
    char b[40];
    key(j, k);
    puts_(j, cb_fmt_double(v, b, sizeof b));
}

void cb_jsonl_bool(cb_jsonl *j, const char *k, bool v) {
    if (!j) return;
    key(j, k);
    puts_(j, v ? "true" : "false");
}

void cb_jsonl_raw(cb_jsonl *j, const char *k, const char *json) {
    if (!j) return;
    key(j, k);
    puts_(j, json && *json ? json : "null");
}

cb_status cb_jsonl_end(cb_jsonl *j) {
    if (!j || j->failed) return CB_OK;
    puts_(j, "}\n");
    if (j->oom) return cb_fail(CB_ERR_NOMEM, "%s: out of memory building a log line", j->path);
    if (fwrite(j->buf, 1, j->len, j->f) != j->len || fflush(j->f) != 0) {
        j->failed = true; /* disable the sink: instrumentation never stops training */
        return cb_fail(CB_ERR_IO, "%s: write failed: %s (metrics logging disabled)", j->path,
                       strerror(errno));
    }
    return CB_OK;
}
