/* The autograd tape and per-step memory.
 *
 * A cb_graph owns everything a forward/backward step creates: activations and their gradients
 * come from a device arena, tensor descriptors and tape nodes from a host arena. Ops record a
 * node when grad is enabled and any input requires grad; cb_backward walks the tape once in
 * reverse. cb_graph_reset() drops the tape and rewinds both arenas (parameters and their
 * gradients are persistent and untouched). */
#ifndef CARAMBA_GRAPH_H
#define CARAMBA_GRAPH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "caramba/arena.h"
#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_graph cb_graph;
typedef struct cb_node cb_node;
typedef cb_status (*cb_backward_fn)(cb_graph *g, cb_node *n);

enum { CB_NODE_MAX_IN = 5, CB_NODE_MAX_AUX = 3 };

struct cb_node {
    const char *op;
    cb_backward_fn backward;
    cb_tensor *out;
    cb_tensor *in[CB_NODE_MAX_IN];
    cb_tensor *aux[CB_NODE_MAX_AUX]; /* saved tensors (rstd, lse, ...) */
    float f[4];                      /* scalar attributes */
    int64_t i[8];
    void *extra; /* op-specific block (e.g. attention config), lives in the host arena */
};

/* Per-op wall time, collected when profiling is on (CARAMBA_PROFILE=1 or cb_graph.profile). */
typedef struct cb_op_profile {
    const char *op;
    double forward_s, backward_s;
    int64_t calls;
} cb_op_profile;

enum { CB_PROFILE_MAX_OPS = 48 };

struct cb_graph {
    cb_device device;
    cb_dtype act_dtype; /* dtype of activations created by ops (f32 on the CPU) */
    cb_arena act;       /* device memory: activations, saved tensors, activation grads */
    cb_arena host;      /* host memory: descriptors, nodes' extras */
    cb_node *nodes;
    int64_t n_nodes, cap_nodes;
    bool grad_enabled;
    bool training;         /* dropout active */
    uint64_t seed;         /* dropout stream */
    uint64_t rng_counter;  /* advances by the number of elements each dropout consumes */
    const void *kernels;   /* const cb_kernels * of the device */
    struct cb_trace *trace; /* when set, module outputs matching it are recorded (trace.h) */
    bool checkpointing;     /* activation checkpointing: blocks keep only their input and are
                               re-run inside backward (model/recompute.c) */
    size_t checkpoint_min_bytes; /* blocks whose input is smaller run normally */
    struct cb_graph *recompute; /* scratch graph those re-runs use (created on demand) */
    bool profile;          /* accumulate per-op times into prof[] (CPU timings; see below) */
    cb_op_profile prof[CB_PROFILE_MAX_OPS];
    int n_prof;
};

cb_status cb_graph_init(cb_graph *g, cb_device dev);
void cb_graph_reset(cb_graph *g);
void cb_graph_free(cb_graph *g);
void cb_graph_set_grad(cb_graph *g, bool enabled);

/* A new activation tensor (uninitialised) from the arena, or NULL with a message. */
cb_tensor *cb_graph_tensor(cb_graph *g, cb_dtype dt, int ndim, const int64_t *shape);
cb_tensor *cb_graph_zeros(cb_graph *g, cb_dtype dt, int ndim, const int64_t *shape);
/* A descriptor aliasing existing storage (no copy). */
cb_tensor *cb_graph_view(cb_graph *g, const cb_tensor *base, int ndim, const int64_t *shape);
/* Wraps caller memory as a graph tensor (e.g. token ids). */
cb_tensor *cb_graph_wrap(cb_graph *g, cb_dtype dt, int ndim, const int64_t *shape, void *data);

/* Records a node; returns it so the op can fill in attributes, or NULL when nothing is
 * recorded (grad off, or no input requires grad). Marks out as requiring grad when recorded. */
cb_node *cb_graph_record(cb_graph *g, const char *op, cb_backward_fn bw, cb_tensor *out,
                         cb_tensor *const *inputs, int n_inputs);
/* The gradient buffer of t, allocated (zeroed) from the arena on first use. */
cb_tensor *cb_graph_grad(cb_graph *g, cb_tensor *t);
/* Same, but a first allocation is left uninitialised and *fresh says so: a backward that writes
 * the whole buffer in one go (a GEMM with beta = 0) then skips zeroing it. */
cb_tensor *cb_graph_grad_uninit(cb_graph *g, cb_tensor *t, bool *fresh);

/* Profiling: cb_graph_init turns it on when CARAMBA_PROFILE is set. Times are host wall time
 * around each kernel call; on a GPU the device is synchronised around each call, so they are
 * kernel times (plus a synchronisation each), and profiling slows the step down. */
cb_op_profile *cb_graph_prof_slot(cb_graph *g, const char *op);
double cb_now(void);
/* cb_now() after waiting for the graph's device (profiling on a GPU times kernels, not launches). */
double cb_graph_prof_clock(const cb_graph *g);
/* Prints ops sorted by total time, with their share. */
void cb_graph_profile_print(const cb_graph *g, FILE *f);

/* Seeds d(loss)/d(loss) = 1 (loss must have one element) and runs the tape backwards. */
cb_status cb_backward(cb_graph *g, cb_tensor *loss);
/* Runs the tape backwards from y with the given output gradient dy (same shape as y). */
cb_status cb_backward_from(cb_graph *g, cb_tensor *y, const cb_tensor *dy);

#ifdef __cplusplus
}
#endif
#endif
