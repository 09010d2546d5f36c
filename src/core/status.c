/* Thread-local error message buffer behind cb_fail / cb_last_error. */
#include "caramba/status.h"

#include <stdio.h>
#include <string.h>

enum { CB_ERRBUF = 2048 };
static _Thread_local char cb_errbuf[CB_ERRBUF];

cb_status cb_vfail(cb_status st, const char *fmt, va_list ap) {
    vsnprintf(cb_errbuf, sizeof cb_errbuf, fmt, ap);
    return st;
}

cb_status cb_fail(cb_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cb_vfail(st, fmt, ap);
    va_end(ap);
    return st;
}

cb_status cb_fail_context(cb_status st, const char *fmt, ...) {
    char prev[CB_ERRBUF];
    memcpy(prev, cb_errbuf, sizeof prev);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cb_errbuf, sizeof cb_errbuf, fmt, ap);
    va_end(ap);
    /* the earlier message is cut to what still fits: the newest context comes first */
    if (n >= 0 && (size_t)n < sizeof cb_errbuf && prev[0] &&
        snprintf(cb_errbuf + n, sizeof cb_errbuf - (size_t)n, ": %s", prev) < 0)
        cb_errbuf[n] = '\0';
    return st;
}

const char *cb_last_error(void) { return cb_errbuf[0] ? cb_errbuf : "no error"; }

void cb_clear_error(void) { cb_errbuf[0] = 0; }

const char *cb_status_name(cb_status st) {
    switch (st) {
    case CB_OK: return "ok";
    case CB_ERR_ARG: return "invalid argument";
    case CB_ERR_IO: return "i/o error";
    case CB_ERR_FORMAT: return "format error";
    case CB_ERR_SHAPE: return "shape mismatch";
    case CB_ERR_NOMEM: return "out of memory";
    case CB_ERR_UNSUPPORTED: return "unsupported";
    case CB_ERR_NOTFOUND: return "not found";
    case CB_ERR_DEVICE: return "device error";
    case CB_ERR_INTERNAL: return "internal error";
    }
    return "unknown";
}
