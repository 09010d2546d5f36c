/* safetensors reader (mmap + validated header) and writer (atomic, 8-byte aligned data).
 *
 * File layout: u64 LE header length N | N bytes of JSON (space padded) | data section.
 * The reader treats the file as hostile. Every check below names the file and, where one is
 * involved, the tensor; nothing in the data section is touched until the header has been proven
 * to describe it exactly (no holes, no overlaps, no trailing bytes -- the same rule as the
 * reference implementation, which keeps polyglot files out). */
#include "caramba/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"
#include "caramba/fileio.h"

/* Same cap as the reference implementation: real headers are kilobytes. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Largest integer a JSON number (a double, in cJSON) holds exactly. */
#define ST_MAX_EXACT ((double)(1ull << 53))

static const struct {
    const char *name;
    cb_dtype dt;
} st_dtypes[] = {
    {"F32", CB_F32}, {"BF16", CB_BF16}, {"F16", CB_F16}, {"I32", CB_I32},
    {"I64", CB_I64}, {"U16", CB_U16},   {"U32", CB_U32}, {"U8", CB_U8},
};

/* dtypes the format defines that caramba does not read. */
static const char *const st_other_dtypes[] = {
    "F64", "BOOL",    "I8",      "I16",  "U64", "F8_E4M3",     "F8_E5M2",     "F8_E8M0",
    "F4",  "F6_E2M3", "F6_E3M2", "E8M0", "C64", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
};

static const char *st_dtype_name(cb_dtype dt) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
    return NULL;
}

static cb_status st_dtype_parse(const char *file, const char *tensor, const char *s,
                                cb_dtype *out) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = st_dtypes[i].dt;
            return CB_OK;
        }
    for (size_t i = 0; i < sizeof st_other_dtypes / sizeof st_other_dtypes[0]; i++)
        if (strcmp(s, st_other_dtypes[i]) == 0)
            return cb_fail(CB_ERR_UNSUPPORTED,
                           "%s: tensor '%s': unsupported dtype '%s' (caramba reads F32, BF16, F16, "
                           "I32, I64, U16, U32, U8)",
                           file, tensor, s);
    return cb_fail(CB_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'", file, tensor, s);
}

/* A JSON number that is a whole number in [0, 2^53]. */
static int st_json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_EXACT) || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const cb_st_entry *)a)->name, ((const cb_st_entry *)b)->name);
}

typedef struct st_range {
    uint64_t begin, end;
    int idx;
} st_range;

static int cmp_range(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

void cb_safetensors_close(cb_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_entries; i++) free(st->entries[i].name);
    free(st->entries);
    free(st->metadata_json);
    free(st->path);
    cb_unmap_file(st->map, st->map_size);
    free(st);
}

/* Validates one tensor description and fills e (except data). */
static cb_status st_parse_entry(const char *file, const cJSON *item, uint64_t data_size,
                                cb_st_entry *e, uint64_t *begin_out, uint64_t *end_out) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return cb_fail(CB_ERR_FORMAT,
                       "%s: tensor '%s': expected an object with dtype, shape, "
                       "data_offsets",
                       file, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(jd))
        return cb_fail(CB_ERR_FORMAT, "%s: tensor '%s': missing or non-string 'dtype'", file, name);
    CB_TRY(st_dtype_parse(file, name, jd->valuestring, &e->dtype));
    if (!cJSON_IsArray(js))
        return cb_fail(CB_ERR_FORMAT, "%s: tensor '%s': missing or non-array 'shape'", file, name);
    int rank = cJSON_GetArraySize(js);
    if (rank > CB_MAX_DIMS)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "%s: tensor '%s': rank %d exceeds caramba's maximum of %d", file, name, rank,
                       CB_MAX_DIMS);
    e->ndim = rank;
    for (int i = 0; i < CB_MAX_DIMS; i++) e->shape[i] = 1;
    uint64_t numel = 1;
    int overflow = 0, i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        uint64_t v;
        if (!st_json_uint(d, &v)) {
            if (cJSON_IsNumber(d))
                return cb_fail(CB_ERR_FORMAT,
                               "%s: tensor '%s': dimension %d is %g, not a non-negative integer",
                               file, name, i, d->valuedouble);
            return cb_fail(CB_ERR_FORMAT, "%s: tensor '%s': dimension %d is not a number", file,
                           name, i);
        }
        e->shape[i++] = (int64_t)v;
        if (v != 0 && numel > ((uint64_t)INT64_MAX / 16) / v)
            overflow = 1;
        else
            numel *= v;
    }
    /* A zero dimension makes the product 0 however large the others; keep rejecting absurd
     * shapes so that no later product can overflow. */
    if (overflow)
        return cb_fail(CB_ERR_FORMAT, "%s: tensor '%s': shape is absurdly large", file, name);
    uint64_t nbytes = numel * cb_dtype_size(e->dtype);
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return cb_fail(CB_ERR_FORMAT, "%s: tensor '%s': 'data_offsets' must be [begin, end]", file,
                       name);
    uint64_t b, en;
    if (!st_json_uint(cJSON_GetArrayItem(jo, 0), &b) ||
        !st_json_uint(cJSON_GetArrayItem(jo, 1), &en))
        return cb_fail(CB_ERR_FORMAT,
                       "%s: tensor '%s': 'data_offsets' must hold two non-negative integers", file,
                       name);
    if (b > en)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", file,
                       name, (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                       "section (%llu bytes; truncated file?)",
                       file, name, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)data_size);
    if (en - b != nbytes) {
        char sh[96];
        return cb_fail(CB_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s %s needs "
                       "%llu",
                       file, name, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)(en - b), jd->valuestring,
                       cb_dims_str(e->ndim, e->shape, sh, sizeof sh), (unsigned long long)nbytes);
    }
    e->nbytes = (size_t)nbytes;
    *begin_out = b;
    *end_out = en;
    return CB_OK;
}

static cb_status st_parse_metadata(const char *file, const cJSON *meta, char **out) {
    if (cJSON_IsNull(meta)) return CB_OK;
    if (!cJSON_IsObject(meta))
        return cb_fail(CB_ERR_FORMAT, "%s: '__metadata__' must be an object of strings", file);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return cb_fail(CB_ERR_FORMAT, "%s: '__metadata__' key '%s' must map to a string", file,
                           kv->string);
    }
    *out = cJSON_PrintUnformatted(meta);
    if (!*out) return cb_fail(CB_ERR_NOMEM, "%s: cannot re-serialise __metadata__", file);
    return CB_OK;
}

static cb_status st_parse_header(cb_safetensors *st, const char *file, const unsigned char *buf,
                                 size_t size) {
    if (size < 8)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                       file, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > (uint64_t)size - 8)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%zu bytes; "
                       "truncated, or not a safetensors file)",
                       file, (unsigned long long)n, size);
    if (n > ST_MAX_HEADER)
        return cb_fail(CB_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                       file, (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    if (n < 2)
        return cb_fail(CB_ERR_FORMAT, "%s: header of %llu bytes cannot hold a JSON object", file,
                       (unsigned long long)n);
    uint64_t data_size = (uint64_t)size - 8 - n;
    const unsigned char *data = buf + 8 + n;

    /* cJSON wants a NUL-terminated string; copy the header so the mapping stays read-only and an
     * embedded NUL shows up as trailing garbage below instead of silently ending the text. */
    char *text = malloc((size_t)n + 1);
    if (!text)
        return cb_fail(CB_ERR_NOMEM, "%s: cannot allocate %llu bytes for the header", file,
                       (unsigned long long)n + 1);
    memcpy(text, buf + 8, (size_t)n);
    text[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        free(text);
        return cb_fail(CB_ERR_FORMAT, "%s: header is not valid JSON (error at header byte %zu)",
                       file, at);
    }
    for (size_t i = (size_t)(end - text); i < (size_t)n; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            cJSON_Delete(root);
            free(text);
            return cb_fail(CB_ERR_FORMAT,
                           "%s: trailing garbage after the JSON header (header byte %zu of %llu)",
                           file, i, (unsigned long long)n);
        }
    }
    free(text);
    cb_status stt = CB_OK;
    st_range *ranges = NULL;
    if (!cJSON_IsObject(root)) {
        stt = cb_fail(CB_ERR_FORMAT, "%s: header is JSON but not an object", file);
        goto done;
    }
    int count = 0, have_meta = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (have_meta++) {
                stt = cb_fail(CB_ERR_FORMAT, "%s: duplicate '__metadata__'", file);
                goto done;
            }
            stt = st_parse_metadata(file, item, &st->metadata_json);
            if (stt != CB_OK) goto done;
        } else {
            count++;
        }
    }
    st->entries = calloc(count ? (size_t)count : 1, sizeof *st->entries);
    ranges = calloc(count ? (size_t)count : 1, sizeof *ranges);
    if (!st->entries || !ranges) {
        stt = cb_fail(CB_ERR_NOMEM, "%s: cannot allocate %d tensor entries", file, count);
        goto done;
    }
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) continue;
        int k = st->n_entries;
        cb_st_entry *e = &st->entries[k];
        e->name = strdup(item->string);
        if (!e->name) {
            stt = cb_fail(CB_ERR_NOMEM, "%s: out of memory", file);
            goto done;
        }
        st->n_entries++;
        stt = st_parse_entry(file, item, data_size, e, &ranges[k].begin, &ranges[k].end);
        if (stt != CB_OK) goto done;
        ranges[k].idx = k;
        e->data = data + ranges[k].begin;
    }
    /* The byte ranges must tile the data section exactly. */
    qsort(ranges, (size_t)count, sizeof *ranges, cmp_range);
    uint64_t pos = 0;
    for (int k = 0; k < count; k++) {
        if (ranges[k].begin < pos) {
            stt = cb_fail(CB_ERR_FORMAT,
                          "%s: tensors '%s' and '%s' overlap (data_offsets [%llu, %llu])", file,
                          st->entries[ranges[k - 1].idx].name, st->entries[ranges[k].idx].name,
                          (unsigned long long)ranges[k].begin, (unsigned long long)ranges[k].end);
            goto done;
        }
        if (ranges[k].begin > pos) {
            stt = cb_fail(CB_ERR_FORMAT,
                          "%s: data section has unreferenced bytes [%llu, %llu) before tensor '%s'",
                          file, (unsigned long long)pos, (unsigned long long)ranges[k].begin,
                          st->entries[ranges[k].idx].name);
            goto done;
        }
        pos = ranges[k].end;
    }
    if (pos != data_size) {
        stt = cb_fail(CB_ERR_FORMAT,
                      "%s: %llu trailing bytes after the last tensor (data section is %llu bytes, "
                      "tensors cover %llu)",
                      file, (unsigned long long)(data_size - pos), (unsigned long long)data_size,
                      (unsigned long long)pos);
        goto done;
    }
    qsort(st->entries, (size_t)count, sizeof *st->entries, cmp_entry_name);
    for (int k = 1; k < count; k++)
        if (strcmp(st->entries[k - 1].name, st->entries[k].name) == 0) {
            stt =
                cb_fail(CB_ERR_FORMAT, "%s: duplicate tensor name '%s'", file, st->entries[k].name);
            goto done;
        }
done:
    free(ranges);
    cJSON_Delete(root);
    return stt;
}

cb_status cb_safetensors_parse(cb_safetensors **out, const void *buf, size_t size,
                               const char *name_for_errors) {
    if (!out) return cb_fail(CB_ERR_ARG, "cb_safetensors_parse: out is NULL");
    *out = NULL;
    const char *file = name_for_errors ? name_for_errors : "<memory>";
    if (!buf && size) return cb_fail(CB_ERR_ARG, "%s: NULL buffer", file);
    cb_safetensors *st = calloc(1, sizeof *st);
    if (!st) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", file);
    st->path = strdup(file);
    if (!st->path) {
        free(st);
        return cb_fail(CB_ERR_NOMEM, "%s: out of memory", file);
    }
    cb_status s = st_parse_header(st, file, buf, size);
    if (s != CB_OK) {
        cb_safetensors_close(st);
        return s;
    }
    *out = st;
    return CB_OK;
}

cb_status cb_safetensors_open(cb_safetensors **out, const char *path) {
    if (!out || !path) return cb_fail(CB_ERR_ARG, "cb_safetensors_open: NULL argument");
    *out = NULL;
    void *map;
    size_t size;
    CB_TRY(cb_map_file(path, &map, &size));
    cb_status s = cb_safetensors_parse(out, map, size, path);
    if (s != CB_OK) {
        cb_unmap_file(map, size);
        return s;
    }
    (*out)->map = map;
    (*out)->map_size = size;
    return CB_OK;
}

const cb_st_entry *cb_safetensors_find(const cb_safetensors *st, const char *name) {
    if (!st || !name || st->n_entries == 0) return NULL;
    cb_st_entry key = {.name = (char *)name};
    return bsearch(&key, st->entries, (size_t)st->n_entries, sizeof key, cmp_entry_name);
}

cb_status cb_safetensors_metadata_get(const cb_safetensors *st, const char *key, char *out,
                                      size_t n) {
    if (!st || !key || !out || !n) return cb_fail(CB_ERR_ARG, "metadata_get: NULL argument");
    out[0] = 0;
    cJSON *m = st->metadata_json ? cJSON_Parse(st->metadata_json) : NULL;
    const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, key) : NULL;
    cb_status s = CB_OK;
    if (!cJSON_IsString(v)) {
        s = cb_fail(CB_ERR_NOTFOUND, "%s: no __metadata__ key '%s'", st->path, key);
    } else if (strlen(v->valuestring) >= n) {
        s = cb_fail(CB_ERR_ARG, "%s: __metadata__ '%s' is longer than %zu bytes", st->path, key,
                    n - 1);
    } else {
        memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    }
    cJSON_Delete(m);
    return s;
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct st_buf {
    char *p;
    size_t len, cap;
    int oom;
} st_buf;

static void sb_put(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(st_buf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_fmt(st_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(st_buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* JSON string literal: quotes, backslashes and control bytes escaped; other bytes verbatim. */
static void sb_json_string(st_buf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char esc[2] = {'\\', (char)*c};
            sb_put(b, esc, 2);
        } else if (*c < 0x20) {
            sb_fmt(b, "\\u%04x", *c);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

typedef struct st_order {
    const cb_named_tensor *t;
    size_t elem;
} st_order;

/* Larger elements first (then by name): every tensor then starts at a multiple of its element
 * size, because the header is padded to 8 bytes and the sizes are powers of two. */
static int cmp_order(const void *a, const void *b) {
    const st_order *x = a, *y = b;
    if (x->elem != y->elem) return x->elem > y->elem ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

static int cmp_order_name(const void *a, const void *b) {
    return strcmp(((const st_order *)a)->t->name, ((const st_order *)b)->t->name);
}

static cb_status st_write_data(cb_atomic_file *af, const char *path, const cb_named_tensor *nt) {
    const cb_tensor *t = nt->tensor;
    size_t nb = cb_tensor_nbytes(t);
    if (nb == 0) return CB_OK;
    const void *src = t->data;
    void *staged = NULL;
    if (t->device != CB_CPU) {
        staged = malloc(nb);
        if (!staged)
            return cb_fail(CB_ERR_NOMEM, "%s: tensor '%s': cannot stage %zu bytes", path, nt->name,
                           nb);
        cb_status s = cb_device_copy(CB_CPU, staged, t->device, t->data, nb);
        if (s != CB_OK) {
            free(staged);
            return cb_fail_context(s, "%s: tensor '%s'", path, nt->name);
        }
        src = staged;
    }
    size_t w = fwrite(src, 1, nb, af->f);
    free(staged);
    if (w != nb)
        return cb_fail(CB_ERR_IO, "%s: tensor '%s': write failed: %s", path, nt->name,
                       strerror(errno));
    return CB_OK;
}

cb_status cb_safetensors_write(const char *path, const cb_named_tensor *tensors, int n,
                               const char *const *metadata_kv) {
    if (!path) return cb_fail(CB_ERR_ARG, "safetensors write: NULL path");
    if (n < 0 || (n > 0 && !tensors))
        return cb_fail(CB_ERR_ARG, "%s: bad tensor list (n = %d)", path, n);
    st_order *ord = calloc(n ? (size_t)n : 1, sizeof *ord);
    if (!ord) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", path);
    cb_status s = CB_OK;
    st_buf hb = {0};
    for (int i = 0; i < n; i++) {
        const cb_named_tensor *nt = &tensors[i];
        if (!nt->name || !nt->tensor) {
            s = cb_fail(CB_ERR_ARG, "%s: tensor #%d has no name or no tensor", path, i);
            goto out;
        }
        const cb_tensor *t = nt->tensor;
        if (strcmp(nt->name, "__metadata__") == 0) {
            s = cb_fail(CB_ERR_ARG, "%s: '__metadata__' cannot be a tensor name", path);
            goto out;
        }
        if (!st_dtype_name(t->dtype)) {
            s = cb_fail(CB_ERR_UNSUPPORTED,
                        "%s: tensor '%s': dtype %s cannot be stored in safetensors", path, nt->name,
                        cb_dtype_name(t->dtype));
            goto out;
        }
        if (t->ndim < 0 || t->ndim > CB_MAX_DIMS) {
            s = cb_fail(CB_ERR_ARG, "%s: tensor '%s': rank %d", path, nt->name, t->ndim);
            goto out;
        }
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0) {
                s = cb_fail(CB_ERR_ARG, "%s: tensor '%s': negative dimension", path, nt->name);
                goto out;
            }
        if (!t->data && cb_tensor_nbytes(t) > 0) {
            s = cb_fail(CB_ERR_ARG, "%s: tensor '%s' has no data", path, nt->name);
            goto out;
        }
        ord[i].t = nt;
        ord[i].elem = cb_dtype_size(t->dtype);
    }
    qsort(ord, (size_t)n, sizeof *ord, cmp_order_name);
    for (int i = 1; i < n; i++)
        if (strcmp(ord[i - 1].t->name, ord[i].t->name) == 0) {
            s = cb_fail(CB_ERR_ARG, "%s: tensor name '%s' given twice", path, ord[i].t->name);
            goto out;
        }
    qsort(ord, (size_t)n, sizeof *ord, cmp_order);

    sb_str(&hb, "{");
    int first = 1;
    if (metadata_kv && metadata_kv[0]) {
        sb_str(&hb, "\"__metadata__\":{");
        for (int k = 0; metadata_kv[k]; k += 2) {
            if (!metadata_kv[k + 1]) {
                s = cb_fail(CB_ERR_ARG, "%s: metadata key '%s' has no value", path, metadata_kv[k]);
                goto out;
            }
            if (k) sb_str(&hb, ",");
            sb_json_string(&hb, metadata_kv[k]);
            sb_str(&hb, ":");
            sb_json_string(&hb, metadata_kv[k + 1]);
        }
        sb_str(&hb, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const cb_tensor *t = ord[i].t->tensor;
        if (!first) sb_str(&hb, ",");
        first = 0;
        sb_json_string(&hb, ord[i].t->name);
        sb_fmt(&hb, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) sb_fmt(&hb, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        uint64_t nb = cb_tensor_nbytes(t);
        sb_fmt(&hb, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
               (unsigned long long)(off + nb));
        off += nb;
    }
    sb_str(&hb, "}");
    while (hb.len % 8) sb_str(&hb, " ");
    if (hb.oom) {
        s = cb_fail(CB_ERR_NOMEM, "%s: out of memory building the header", path);
        goto out;
    }
    cb_atomic_file af;
    s = cb_atomic_open(&af, path);
    if (s != CB_OK) goto out;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hb.len >> (8 * i));
    if (fwrite(len8, 1, 8, af.f) != 8 || fwrite(hb.p, 1, hb.len, af.f) != hb.len)
        s = cb_fail(CB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    for (int i = 0; i < n && s == CB_OK; i++) s = st_write_data(&af, path, ord[i].t);
    if (s != CB_OK)
        cb_atomic_abort(&af);
    else
        s = cb_atomic_commit(&af);
out:
    free(hb.p);
    free(ord);
    return s;
}
