/* Trace: capture the outputs of the modules whose kind or path matches, during a forward.
 * Used by blockwise distillation and teacher/student comparison (one output per attention layer
 * per forward), and by tests that compare hidden states with a reference.
 *
 *   cb_trace t;
 *   cb_trace_init(&t, "AttentionLayer");          // kind name, or a path glob like
 *                                                 // "topology.layers.0.layers.*"
 *   g.trace = &t;  cb_model_forward(m, &g, ids, NULL);  g.trace = NULL;
 *   t.outputs[i], t.modules[i]                    // in execution order, valid until the graph
 *                                                 // is reset
 */
#ifndef CARAMBA_TRACE_H
#define CARAMBA_TRACE_H

#include "caramba/module.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CB_TRACE_MAX = 1024 };

typedef struct cb_trace {
    char pattern[256]; /* a module kind name ("AttentionLayer") or an fnmatch glob on the path */
    int n;
    const cb_module *modules[CB_TRACE_MAX];
    cb_tensor *outputs[CB_TRACE_MAX];
    bool overflow; /* more matches than CB_TRACE_MAX happened (the rest were dropped) */
} cb_trace;

/* Fails when the pattern is empty or too long. */
cb_status cb_trace_init(cb_trace *t, const char *pattern);
bool cb_trace_matches(const cb_trace *t, const cb_module *m);
void cb_trace_clear(cb_trace *t);
/* Called by cb_module_forward for every module output while g->trace is set. */
void cb_trace_record(cb_trace *t, const cb_module *m, cb_tensor *y);
/* Checks that the pattern matches at least one module of the tree (a typo otherwise traces
 * nothing, silently). */
cb_status cb_trace_check(const cb_trace *t, cb_module *root);

#ifdef __cplusplus
}
#endif
#endif
