/* Token files: .npy mapped in place, .tokens/.txt parsed; and the streaming token .npy writer. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "caramba/data.h"
#include "caramba/fileio.h"

/* Token bytes are read and written as the host's integers; .npy token files are little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "caramba assumes a little-endian host");

static bool suffix_is(const char *path, const char *suf) {
    size_t n = strlen(path), m = strlen(suf);
    return n >= m && strcasecmp(path + n - m, suf) == 0;
}

/* Whitespace-separated non-negative decimal ids, each < 2^31. */
static cb_status parse_text_tokens(cb_token_file *f, const char *s, size_t len) {
    size_t cap = len / 2 + 1, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", f->path);
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            line++;
            line_start = ++i;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
            i++;
            continue;
        }
        size_t start = i;
        int64_t v = 0;
        bool ok = true;
        while (i < len && !isspace((unsigned char)s[i])) {
            if (s[i] < '0' || s[i] > '9' || v > INT32_MAX)
                ok = false;
            else
                v = v * 10 + (s[i] - '0');
            i++;
        }
        if (!ok || v > INT32_MAX) {
            free(ids);
            return cb_fail(CB_ERR_FORMAT,
                           "%s:%zu:%zu: '%.*s' is not a token id (a .tokens/.txt "
                           "token file holds whitespace-separated ids in 0..2^31-1; "
                           "turn text into tokens with caramba prepare-data)",
                           f->path, line, start - line_start + 1,
                           (int)(i - start < 40 ? i - start : 40), s + start);
        }
        ids[n++] = (int32_t)v; /* n <= len/2 + 1: every id takes a digit and a separator */
    }
    f->owned = ids;
    f->data = ids;
    f->n = (int64_t)n;
    f->dtype = CB_I32;
    return CB_OK;
}

cb_status cb_tokens_open(cb_token_file **out, const char *path) {
    *out = NULL;
    cb_token_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return cb_fail(CB_ERR_NOMEM, "out of memory");
    }
    cb_status st;
    if (suffix_is(path, ".tokens") || suffix_is(path, ".txt")) {
        void *map;
        size_t size;
        st = cb_map_file(path, &map, &size);
        if (st == CB_OK) {
            st = parse_text_tokens(f, map, size);
            cb_unmap_file(map, size);
        }
    } else {
        st = cb_npy_open(&f->npy, path);
        if (st == CB_OK) {
            cb_dtype dt = f->npy->dtype;
            if (dt != CB_U8 && dt != CB_U16 && dt != CB_U32 && dt != CB_I32 && dt != CB_I64) {
                st = cb_fail(CB_ERR_FORMAT, "%s: token ids must be integers; this .npy holds %s",
                             path, cb_dtype_name(dt));
            } else {
                f->dtype = dt;
                f->data = f->npy->data;
                f->n = (int64_t)(f->npy->nbytes / cb_dtype_size(dt));
            }
        }
    }
    if (st != CB_OK) {
        cb_tokens_close(f);
        return st;
    }
    *out = f;
    return CB_OK;
}

void cb_tokens_close(cb_token_file *f) {
    if (!f) return;
    cb_npy_close(f->npy);
    free(f->owned);
    free(f->path);
    free(f);
}

void cb_tokens_read_i64(const cb_token_file *f, int64_t start, int64_t n, int64_t *dst) {
    switch (f->dtype) {
    case CB_U16: {
        const uint16_t *s = (const uint16_t *)f->data + start;
        for (int64_t i = 0; i < n; i++) dst[i] = s[i];
        break;
    }
    case CB_I64:
        memcpy(dst, (const int64_t *)f->data + start, (size_t)n * sizeof *dst);
        break;
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = cb_tokens_at(f, start + i);
    }
}

void cb_tokens_read_i32(const cb_token_file *f, int64_t start, int64_t n, int32_t *dst) {
    switch (f->dtype) {
    case CB_U16: {
        const uint16_t *s = (const uint16_t *)f->data + start;
        for (int64_t i = 0; i < n; i++) dst[i] = s[i];
        break;
    }
    case CB_I32:
        memcpy(dst, (const int32_t *)f->data + start, (size_t)n * sizeof *dst);
        break;
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = (int32_t)cb_tokens_at(f, start + i);
    }
}

cb_status cb_tokens_validate(const cb_token_file *f, int64_t vocab_size) {
    int64_t hi = vocab_size > 0 ? vocab_size : (int64_t)INT32_MAX + 1;
    for (int64_t i = 0; i < f->n; i++) {
        int64_t v = cb_tokens_at(f, i);
        if (v < 0 || v >= hi)
            return cb_fail(CB_ERR_FORMAT, "%s: token %lld at position %lld is outside [0, %lld)%s",
                           f->path, (long long)v, (long long)i, (long long)hi,
                           vocab_size > 0 ? " (the vocabulary size)" : "");
    }
    return CB_OK;
}

cb_dtype cb_tokens_dtype_for_vocab(int64_t vocab_size) {
    return vocab_size <= 65536 ? CB_U16 : CB_U32;
}

/* ---- writer ------------------------------------------------------------------------------- */

enum { TOKW_HEADER = 128, TOKW_BUF = 1 << 16 };

struct cb_token_writer {
    cb_atomic_file af;
    cb_dtype dtype;
    int64_t count;
    unsigned char buf[TOKW_BUF];
    size_t buf_n;
};

static void format_header(char *h, cb_dtype dt, int64_t count) {
    memset(h, ' ', TOKW_HEADER);
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = TOKW_HEADER - 10;
    h[9] = 0;
    char dict[TOKW_HEADER];
    int n =
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
                 dt == CB_U16   ? "<u2"
                 : dt == CB_U32 ? "<u4"
                 : dt == CB_I32 ? "<i4"
                                : "<i8",
                 (long long)count);
    memcpy(h + 10, dict, (size_t)n);
    h[TOKW_HEADER - 1] = '\n';
}

cb_status cb_token_writer_open(cb_token_writer **out, const char *path, cb_dtype dtype) {
    *out = NULL;
    if (dtype != CB_U16 && dtype != CB_U32 && dtype != CB_I32 && dtype != CB_I64)
        return cb_fail(CB_ERR_ARG, "%s: token files are u16, u32, i32 or i64, not %s", path,
                       cb_dtype_name(dtype));
    cb_token_writer *w = calloc(1, sizeof *w);
    if (!w) return cb_fail(CB_ERR_NOMEM, "out of memory");
    w->dtype = dtype;
    cb_status st = cb_atomic_open(&w->af, path);
    if (st != CB_OK) {
        free(w);
        return st;
    }
    char h[TOKW_HEADER];
    format_header(h, dtype, 0);
    if (fwrite(h, 1, TOKW_HEADER, w->af.f) != TOKW_HEADER) {
        st = cb_fail(CB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        cb_token_writer_abort(w);
        return st;
    }
    *out = w;
    return CB_OK;
}

static cb_status flush_buf(cb_token_writer *w) {
    if (w->buf_n && fwrite(w->buf, 1, w->buf_n, w->af.f) != w->buf_n)
        return cb_fail(CB_ERR_IO, "%s: write failed: %s", w->af.path, strerror(errno));
    w->buf_n = 0;
    return CB_OK;
}

cb_status cb_token_writer_append(cb_token_writer *w, const int32_t *ids, size_t n) {
    size_t item = cb_dtype_size(w->dtype);
    int64_t max = w->dtype == CB_U16 ? 65535 : INT32_MAX;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id > max)
            return cb_fail(CB_ERR_ARG, "%s: token id %d does not fit %s", w->af.path, id,
                           cb_dtype_name(w->dtype));
        if (w->buf_n + item > TOKW_BUF) CB_TRY(flush_buf(w));
        unsigned char *p = w->buf + w->buf_n;
        if (w->dtype == CB_U16) {
            uint16_t v = (uint16_t)id;
            memcpy(p, &v, 2);
        } else if (w->dtype == CB_I64) {
            int64_t v = id;
            memcpy(p, &v, 8);
        } else {
            memcpy(p, &id, 4);
        }
        w->buf_n += item;
    }
    w->count += (int64_t)n;
    return CB_OK;
}

int64_t cb_token_writer_count(const cb_token_writer *w) {
    return w->count;
}

cb_status cb_token_writer_commit(cb_token_writer *w) {
    cb_status st = flush_buf(w);
    char h[TOKW_HEADER];
    format_header(h, w->dtype, w->count);
    if (st == CB_OK &&
        (fseek(w->af.f, 0, SEEK_SET) != 0 || fwrite(h, 1, TOKW_HEADER, w->af.f) != TOKW_HEADER))
        st = cb_fail(CB_ERR_IO, "%s: write failed: %s", w->af.path, strerror(errno));
    if (st == CB_OK)
        st = cb_atomic_commit(&w->af);
    else
        cb_atomic_abort(&w->af);
    free(w);
    return st;
}

void cb_token_writer_abort(cb_token_writer *w) {
    if (!w) return;
    cb_atomic_abort(&w->af);
    free(w);
}
