/* Trace: records module outputs during a forward (see caramba/trace.h). */
#include "caramba/trace.h"

#include <fnmatch.h>
#include <string.h>

cb_status cb_trace_init(cb_trace *t, const char *pattern) {
    memset(t, 0, sizeof *t);
    if (!pattern || !*pattern || strlen(pattern) >= sizeof t->pattern)
        return cb_fail(CB_ERR_ARG, "trace: pattern must be 1..%zu characters", sizeof t->pattern - 1);
    strcpy(t->pattern, pattern);
    return CB_OK;
}

bool cb_trace_matches(const cb_trace *t, const cb_module *m) {
    if (strcmp(t->pattern, cb_module_kind_name(m->kind)) == 0) return true;
    return m->path && fnmatch(t->pattern, m->path, 0) == 0;
}

void cb_trace_clear(cb_trace *t) {
    t->n = 0;
    t->overflow = false;
}

void cb_trace_record(cb_trace *t, const cb_module *m, cb_tensor *y) {
    if (!y || !cb_trace_matches(t, m)) return;
    if (t->n == CB_TRACE_MAX) {
        t->overflow = true;
        return;
    }
    t->modules[t->n] = m;
    t->outputs[t->n++] = y;
}

typedef struct {
    const cb_trace *t;
    int hits;
} check_state;

static void count_hits(cb_module *m, void *user) {
    check_state *cs = user;
    cs->hits += cb_trace_matches(cs->t, m);
}

cb_status cb_trace_check(const cb_trace *t, cb_module *root) {
    check_state cs = {t, 0};
    cb_module_walk(root, count_hits, &cs);
    if (cs.hits == 0) return cb_fail(CB_ERR_NOTFOUND, "trace: pattern '%s' matches no module", t->pattern);
    return CB_OK;
}
