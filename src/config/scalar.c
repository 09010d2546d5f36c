/* YAML 1.2 core-schema scalar resolution and YAML-style float rendering. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}
static int is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int eq(const char *t, size_t len, const char *lit) {
    return strlen(lit) == len && memcmp(t, lit, len) == 0;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float_text(const char *t, size_t len) {
    size_t i = 0;
    if (i < len && (t[i] == '-' || t[i] == '+')) i++;
    size_t d0 = i;
    while (i < len && is_digit(t[i])) i++;
    size_t nint = i - d0;
    if (i < len && t[i] == '.') {
        i++;
        size_t f0 = i;
        while (i < len && is_digit(t[i])) i++;
        if (nint == 0 && i == f0) return 0;
    } else if (nint == 0) {
        return 0;
    }
    if (i < len && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < len && (t[i] == '-' || t[i] == '+')) i++;
        size_t e0 = i;
        while (i < len && is_digit(t[i])) i++;
        if (i == e0) return 0;
    }
    return i == len;
}

bool cb_scalar_resolve(const char *t, size_t len, cb_scalar_type *type, int64_t *iv, double *fv,
                       bool *bv) {
    *type = CB_SCALAR_STR;
    *iv = 0;
    *fv = 0;
    *bv = false;
    if (len == 0 || eq(t, len, "~") || eq(t, len, "null") || eq(t, len, "Null") ||
        eq(t, len, "NULL")) {
        *type = CB_SCALAR_NULL;
        return true;
    }
    if (eq(t, len, "true") || eq(t, len, "True") || eq(t, len, "TRUE")) {
        *type = CB_SCALAR_BOOL;
        *bv = true;
        return true;
    }
    if (eq(t, len, "false") || eq(t, len, "False") || eq(t, len, "FALSE")) {
        *type = CB_SCALAR_BOOL;
        return true;
    }
    if (len > 64) return true; /* no number is this long; keep it a string */
    char tmp[80];
    memcpy(tmp, t, len);
    tmp[len] = 0;
    /* integers */
    int base = 0;
    size_t start = 0;
    if (len > 2 && t[0] == '0' && t[1] == 'o') {
        base = 8;
        start = 2;
        for (size_t k = 2; k < len; k++)
            if (t[k] < '0' || t[k] > '7') base = -1;
    } else if (len > 2 && t[0] == '0' && t[1] == 'x') {
        base = 16;
        start = 2;
        for (size_t k = 2; k < len; k++)
            if (!is_hex(t[k])) base = -1;
    } else {
        size_t k = (t[0] == '-' || t[0] == '+') ? 1 : 0;
        if (k < len) {
            base = 10;
            for (; k < len; k++)
                if (!is_digit(t[k])) base = -1;
        } else {
            base = -1;
        }
    }
    if (base > 0) {
        *type = CB_SCALAR_INT;
        errno = 0;
        char *end = NULL;
        if (base == 10) {
            long long v = strtoll(tmp, &end, 10);
            *iv = v;
        } else {
            unsigned long long v = strtoull(tmp + start, &end, base);
            if (v > (unsigned long long)INT64_MAX) errno = ERANGE;
            *iv = v > (unsigned long long)INT64_MAX ? INT64_MAX : (int64_t)v;
        }
        *fv = (double)*iv;
        return errno != ERANGE;
    }
    if (eq(t, len, ".inf") || eq(t, len, ".Inf") || eq(t, len, ".INF") || eq(t, len, "+.inf") ||
        eq(t, len, "+.Inf") || eq(t, len, "+.INF")) {
        *type = CB_SCALAR_FLOAT;
        *fv = INFINITY;
        return true;
    }
    if (eq(t, len, "-.inf") || eq(t, len, "-.Inf") || eq(t, len, "-.INF")) {
        *type = CB_SCALAR_FLOAT;
        *fv = -INFINITY;
        return true;
    }
    if (eq(t, len, ".nan") || eq(t, len, ".NaN") || eq(t, len, ".NAN")) {
        *type = CB_SCALAR_FLOAT;
        *fv = NAN;
        return true;
    }
    if (is_float_text(t, len)) {
        *type = CB_SCALAR_FLOAT;
        *fv = strtod(tmp, NULL); /* overflow gives +-inf, which validation rejects as not finite */
        return true;
    }
    return true;
}

const char *cb_format_float(double v, char buf[32]) {
    if (isnan(v)) return strcpy(buf, ".nan");
    if (isinf(v)) return strcpy(buf, v > 0 ? ".inf" : "-.inf");
    if (v == 0) return strcpy(buf, signbit(v) ? "-0.0" : "0.0");
    /* shortest %.*e that reads back exactly (Python's repr rule) */
    char e[40];
    int prec = 0;
    for (prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    const char *s = e;
    int neg = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (is_digit(*s) && nd < 23) digits[nd++] = *s;
    digits[nd] = 0;
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    int exp10 = atoi(s + 1);
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int k = 0; k < -exp10 - 1; k++) *o++ = '0';
            for (int k = 0; k < nd; k++) *o++ = digits[k];
        } else {
            for (int k = 0; k <= exp10; k++) *o++ = k < nd ? digits[k] : '0';
            *o++ = '.';
            if (nd > exp10 + 1)
                for (int k = exp10 + 1; k < nd; k++) *o++ = digits[k];
            else
                *o++ = '0';
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        *o++ = '.';
        if (nd > 1)
            for (int k = 1; k < nd; k++) *o++ = digits[k];
        else
            *o++ = '0';
        snprintf(o, (size_t)(32 - (o - buf)), "e%c%02d", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
    }
    return buf;
}
