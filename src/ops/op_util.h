/* Helpers shared by the op implementations (private to src/ops). */
#ifndef CARAMBA_OPS_OP_UTIL_H
#define CARAMBA_OPS_OP_UTIL_H

#include <stdio.h>

#include "caramba/graph.h"
#include "caramba/ops.h"
#include "ops/kernels.h"

static inline const cb_kernels *cb_k(const cb_graph *g) { return (const cb_kernels *)g->kernels; }

/* Sets the message and returns NULL (ops return tensors). */
cb_tensor *cb_op_fail(cb_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Ops accept float tensors of the graph's device; the CPU backend computes in f32 only. */
bool cb_op_check_float(const cb_graph *g, const char *op, const cb_tensor *t, const char *what);

/* Runs a kernel call; on failure turns the status into a NULL return with context. */
#define CB_OP_KERNEL(op, call)                                                                     \
    do {                                                                                           \
        double op_t0_ = g->profile ? cb_graph_prof_clock(g) : 0;                                   \
        cb_status op_st_ = (call);                                                                 \
        if (g->profile) {                                                                          \
            cb_op_profile *op_p_ = cb_graph_prof_slot(g, op);                                      \
            if (op_p_) {                                                                           \
                op_p_->forward_s += cb_graph_prof_clock(g) - op_t0_;                               \
                op_p_->calls++;                                                                    \
            }                                                                                      \
        }                                                                                          \
        if (op_st_ != CB_OK) {                                                                     \
            cb_fail_context(op_st_, "%s", op);                                                     \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

/* The values a kernel should read for parameter W: its 16-bit copy when the graph computes in
 * that dtype (AMP), else W itself. Gradients always go to W (the f32 master). */
static inline const cb_tensor *cb_op_weight(const cb_graph *g, const cb_tensor *W) {
    return W && W->lowp && W->lowp->dtype == g->act_dtype ? W->lowp : W;
}

/* Gradient buffer of an input, or NULL when it needs none. */
static inline cb_tensor *cb_need_grad(cb_graph *g, cb_tensor *t) {
    return cb_tensor_requires_grad(t) ? cb_graph_grad(g, t) : NULL;
}

#endif
