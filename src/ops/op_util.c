#include "ops/op_util.h"

#include <stdarg.h>

cb_tensor *cb_op_fail(cb_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cb_vfail(st, fmt, ap);
    va_end(ap);
    return NULL;
}

bool cb_op_check_float(const cb_graph *g, const char *op, const cb_tensor *t, const char *what) {
    if (t->device != g->device) {
        cb_fail(CB_ERR_ARG, "%s: %s is on %s but the graph runs on %s", op, what,
                t->device == CB_CUDA ? "cuda" : "cpu", g->device == CB_CUDA ? "cuda" : "cpu");
        return false;
    }
    if (t->dtype != CB_F32 && !(g->device == CB_CUDA && (t->dtype == CB_BF16 || t->dtype == CB_F16))) {
        cb_fail(CB_ERR_UNSUPPORTED, "%s: %s has dtype %s; the %s backend computes in f32", op, what,
                cb_dtype_name(t->dtype), g->device == CB_CUDA ? "cuda" : "cpu");
        return false;
    }
    return true;
}
