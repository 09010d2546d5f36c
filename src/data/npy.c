/* NumPy .npy reader (mmap, no copy) and atomic writer.
 *
 * Layout: "\x93NUMPY", major, minor, header length (u16 LE for 1.0, u32 LE for 2.0/3.0), then a
 * Python dict literal {'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), } padded with
 * spaces and ended by '\n', then the raw C-order data. The file is treated as hostile: every
 * length is checked against the buffer, the dict must hold exactly the three keys, and the data
 * must be exactly shape-product * itemsize bytes. */
#include "caramba/npy.h"

#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"
#include "caramba/fileio.h"

static const struct {
    const char *descr;
    cb_dtype dtype;
} npy_types[] = {
    {"<f4", CB_F32}, {"<f2", CB_F16}, {"<i4", CB_I32}, {"<i8", CB_I64},
    {"<u2", CB_U16}, {"<u4", CB_U32}, {"|u1", CB_U8},
};
enum { N_NPY_TYPES = sizeof npy_types / sizeof npy_types[0] };

typedef struct hdr_parser {
    const char *p, *end, *name;
} hdr_parser;

static void skip_ws(hdr_parser *h) {
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static cb_status expect(hdr_parser *h, char c, const char *what) {
    skip_ws(h);
    if (h->p >= h->end || *h->p != c)
        return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: expected '%c' %s", h->name, c, what);
    h->p++;
    return CB_OK;
}

/* A quoted Python string without escapes (numpy never writes any in these fields). */
static cb_status parse_str(hdr_parser *h, char *out, size_t cap) {
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: expected a quoted string", h->name);
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || (unsigned char)*h->p < 0x20 || n + 1 >= cap)
            return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: unsupported or too long string",
                           h->name);
        out[n++] = *h->p++;
    }
    if (h->p >= h->end)
        return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: unterminated string", h->name);
    h->p++;
    out[n] = 0;
    return CB_OK;
}

static int starts_with(hdr_parser *h, const char *word) {
    size_t n = strlen(word);
    return (size_t)(h->end - h->p) >= n && memcmp(h->p, word, n) == 0;
}

static cb_status parse_shape(hdr_parser *h, int *ndim, int64_t *shape) {
    CB_TRY(expect(h, '(', "to open 'shape'"));
    *ndim = 0;
    int trailing_comma = 0;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            /* Python needs "(n,)" for a 1-tuple; "(n)" is just an int. */
            if (*ndim == 1 && !trailing_comma)
                return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: 'shape' is not a tuple",
                               h->name);
            break;
        }
        if (h->p >= h->end || *h->p < '0' || *h->p > '9')
            return cb_fail(CB_ERR_FORMAT,
                           "%s: bad .npy header: 'shape' must be a tuple of "
                           "non-negative integers",
                           h->name);
        int64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            if (v > (INT64_MAX - 9) / 10)
                return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: dimension too large", h->name);
            v = v * 10 + (*h->p++ - '0');
        }
        if (*ndim >= CB_MAX_DIMS)
            return cb_fail(CB_ERR_UNSUPPORTED,
                           "%s: .npy arrays of more than %d dimensions are "
                           "not supported",
                           h->name, CB_MAX_DIMS);
        shape[(*ndim)++] = v;
        trailing_comma = 0;
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            trailing_comma = 1;
            continue;
        }
        if (h->p < h->end && *h->p == ')') continue; /* closed at the top of the loop */
        return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: expected ',' or ')' in 'shape'",
                       h->name);
    }
    return CB_OK;
}

/* Parses the dict into dtype/ndim/shape. */
static cb_status parse_header(const char *text, size_t len, const char *name, cb_npy *n) {
    hdr_parser h = {text, text + len, name};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    char descr[64] = "";
    CB_TRY(expect(&h, '{', "at the start of the header dict"));
    for (;;) {
        skip_ws(&h);
        if (h.p < h.end && *h.p == '}') {
            h.p++;
            break;
        }
        char key[32];
        CB_TRY(parse_str(&h, key, sizeof key));
        CB_TRY(expect(&h, ':', "after a key"));
        skip_ws(&h);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (h.p < h.end && (*h.p == '[' || *h.p == '('))
                return cb_fail(CB_ERR_UNSUPPORTED, "%s: structured .npy dtypes are not supported",
                               name);
            CB_TRY(parse_str(&h, descr, sizeof descr));
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (starts_with(&h, "False")) {
                h.p += 5;
            } else if (starts_with(&h, "True")) {
                return cb_fail(CB_ERR_UNSUPPORTED,
                               "%s: Fortran-order .npy arrays are not "
                               "supported (save with np.ascontiguousarray)",
                               name);
            } else {
                return cb_fail(CB_ERR_FORMAT,
                               "%s: bad .npy header: 'fortran_order' must be "
                               "True or False",
                               name);
            }
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            CB_TRY(parse_shape(&h, &n->ndim, n->shape));
            have_shape = 1;
        } else {
            return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: unexpected or repeated key '%s'",
                           name, key);
        }
        skip_ws(&h);
        if (h.p < h.end && *h.p == ',') {
            h.p++;
            continue;
        }
        CB_TRY(expect(&h, '}', "or ',' after a value"));
        break;
    }
    skip_ws(&h);
    if (h.p != h.end)
        return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: trailing characters after the dict",
                       name);
    if (!have_descr || !have_fortran || !have_shape)
        return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: missing key '%s'", name,
                       !have_descr     ? "descr"
                       : !have_fortran ? "fortran_order"
                                       : "shape");
    for (int i = 0; i < N_NPY_TYPES; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) {
            n->dtype = npy_types[i].dtype;
            return CB_OK;
        }
    if (descr[0] == '>' && descr[1])
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: big-endian .npy data ('%s') is not supported", name,
                       descr);
    return cb_fail(CB_ERR_UNSUPPORTED,
                   "%s: unsupported .npy dtype '%s' (supported: <f4 <f2 <i4 "
                   "<i8 <u2 <u4 |u1)",
                   name, descr);
}

static cb_status npy_parse_into(cb_npy *n, const void *buf, size_t size, const char *name) {
    const unsigned char *b = buf;
    if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return cb_fail(CB_ERR_FORMAT, "%s: not a .npy file (bad magic)", name);
    int major = b[6], minor = b[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: unsupported .npy format version %d.%d", name, major,
                       minor);
    size_t pre = major == 1 ? 10 : 12, hlen;
    if (size < pre) return cb_fail(CB_ERR_FORMAT, "%s: truncated .npy header", name);
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
    } else {
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    }
    if (hlen > size - pre)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: .npy header length %zu runs past the end of the file "
                       "(%zu bytes)",
                       name, hlen, size);
    for (size_t i = 0; i < hlen; i++)
        if (b[pre + i] == 0 || b[pre + i] >= 0x80)
            return cb_fail(CB_ERR_FORMAT, "%s: bad .npy header: non-ASCII byte at offset %zu", name,
                           pre + i);
    CB_TRY(parse_header((const char *)b + pre, hlen, name, n));

    size_t item = cb_dtype_size(n->dtype);
    uint64_t count = 1;
    for (int i = 0; i < n->ndim; i++) {
        uint64_t d = (uint64_t)n->shape[i];
        if (d && count > UINT64_MAX / 16 / d)
            return cb_fail(CB_ERR_FORMAT, "%s: .npy shape is absurdly large", name);
        count *= d;
    }
    uint64_t need = count * item;
    size_t off = pre + hlen;
    char dims[96];
    if (need > size - off)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: truncated .npy data: shape %s of %s needs %llu bytes, "
                       "the file has %zu after the header",
                       name, cb_dims_str(n->ndim, n->shape, dims, sizeof dims),
                       cb_dtype_name(n->dtype), (unsigned long long)need, size - off);
    if (need < size - off)
        return cb_fail(CB_ERR_FORMAT, "%s: .npy file has %llu bytes after the data of shape %s",
                       name, (unsigned long long)(size - off - need),
                       cb_dims_str(n->ndim, n->shape, dims, sizeof dims));
    if (need && ((uintptr_t)(b + off)) % item != 0)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "%s: .npy data offset %zu is not aligned to the "
                       "%zu-byte element size",
                       name, off, item);
    n->data = b + off;
    n->nbytes = (size_t)need;
    return CB_OK;
}

cb_status cb_npy_parse(cb_npy **out, const void *buf, size_t size, const char *name_for_errors) {
    *out = NULL;
    const char *name = name_for_errors ? name_for_errors : "<buffer>";
    cb_npy *n = calloc(1, sizeof *n);
    if (!n) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", name);
    cb_status st = npy_parse_into(n, buf, size, name);
    if (st != CB_OK) {
        free(n);
        return st;
    }
    *out = n;
    return CB_OK;
}

cb_status cb_npy_open(cb_npy **out, const char *path) {
    *out = NULL;
    void *map;
    size_t size;
    CB_TRY(cb_map_file(path, &map, &size));
    cb_npy *n = calloc(1, sizeof *n);
    if (!n) {
        cb_unmap_file(map, size);
        return cb_fail(CB_ERR_NOMEM, "%s: out of memory", path);
    }
    cb_status st = npy_parse_into(n, map, size, path);
    if (st == CB_OK && !(n->path = strdup(path))) st = cb_fail(CB_ERR_NOMEM, "out of memory");
    if (st != CB_OK) {
        cb_unmap_file(map, size);
        free(n);
        return st;
    }
    n->map = map;
    n->map_size = size;
    *out = n;
    return CB_OK;
}

void cb_npy_close(cb_npy *n) {
    if (!n) return;
    cb_unmap_file(n->map, n->map_size);
    free(n->path);
    free(n);
}

cb_tensor cb_npy_tensor(const cb_npy *n) {
    cb_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = n->dtype;
    t.device = CB_CPU;
    t.ndim = n->ndim;
    for (int i = 0; i < n->ndim; i++) t.shape[i] = n->shape[i];
    t.data = (void *)n->data;
    return t;
}

cb_status cb_npy_write(const char *path, const cb_tensor *t) {
    const char *descr = NULL;
    for (int i = 0; i < N_NPY_TYPES; i++)
        if (npy_types[i].dtype == t->dtype) descr = npy_types[i].descr;
    if (!descr)
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: cannot write %s tensors as .npy", path,
                       cb_dtype_name(t->dtype));
    if (t->ndim < 0 || t->ndim > CB_MAX_DIMS)
        return cb_fail(CB_ERR_ARG, "%s: bad tensor rank %d", path, t->ndim);
    char shape[160];
    size_t o = 0;
    o += (size_t)snprintf(shape + o, sizeof shape - o, "(");
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%lld%s", (long long)t->shape[i],
                              t->ndim == 1 ? "," : (i + 1 < t->ndim ? ", " : ""));
    snprintf(shape + o, sizeof shape - o, ")");
    char header[256];
    int hl = snprintf(header + 10, sizeof header - 10,
                      "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    size_t total = 10 + (size_t)hl + 1; /* + '\n' */
    size_t padded = (total + 63) / 64 * 64;
    memset(header + 10 + hl, ' ', padded - total);
    header[padded - 1] = '\n';
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    header[8] = (char)((padded - 10) & 0xff);
    header[9] = (char)((padded - 10) >> 8);

    size_t nbytes = cb_tensor_nbytes(t);
    const void *src = t->data;
    void *host = NULL;
    if (t->device != CB_CPU && nbytes) {
        host = malloc(nbytes);
        if (!host) return cb_fail(CB_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, nbytes);
        cb_status st = cb_device_copy(CB_CPU, host, t->device, t->data, nbytes);
        if (st != CB_OK) {
            free(host);
            return cb_fail_context(st, "%s", path);
        }
        src = host;
    }
    cb_atomic_file af;
    cb_status st = cb_atomic_open(&af, path);
    if (st == CB_OK) {
        if (fwrite(header, 1, padded, af.f) != padded ||
            (nbytes && fwrite(src, 1, nbytes, af.f) != nbytes)) {
            st = cb_fail(CB_ERR_IO, "%s: write failed", path);
            cb_atomic_abort(&af);
        } else {
            st = cb_atomic_commit(&af);
        }
    }
    free(host);
    return st;
}
