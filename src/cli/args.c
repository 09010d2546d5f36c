#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cb_opt *cb_args_get(cb_cmd_spec *spec, const char *name) {
    for (int i = 0; i < spec->n_opts; i++)
        if (strcmp(spec->opts[i].name, name) == 0) return &spec->opts[i];
    return NULL;
}

void cb_args_help(const cb_cmd_spec *spec) {
    printf("usage: caramba %s %s\n\n%s\n", spec->name, spec->synopsis, spec->summary);
    if (spec->n_opts) printf("\noptions:\n");
    for (int i = 0; i < spec->n_opts; i++) {
        const cb_opt *o = &spec->opts[i];
        char left[96];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        printf("  %-28s %s\n", left, o->help);
    }
    printf("  %-28s %s\n", "--help", "show this help and exit");
}

int cb_args_parse(cb_cmd_spec *spec, int argc, char **argv, const char **positional, int *n_pos) {
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cb_args_help(spec);
            return CB_ARGS_HELP;
        }
        if (strncmp(a, "--", 2) == 0 && a[2]) {
            char name[128];
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (len >= sizeof name) len = sizeof name - 1;
            memcpy(name, a + 2, len);
            name[len] = 0;
            cb_opt *o = cb_args_get(spec, name);
            if (!o) {
                fprintf(stderr, "error: caramba %s: unknown option '--%s' (see caramba %s --help)\n",
                        spec->name, name, spec->name);
                return CB_ARGS_ERROR;
            }
            const char *val = "1";
            if (o->metavar) {
                if (eq) val = eq + 1;
                else if (i + 1 < argc) val = argv[++i];
                else {
                    fprintf(stderr, "error: caramba %s: option '--%s' needs a value %s\n",
                            spec->name, name, o->metavar);
                    return CB_ARGS_ERROR;
                }
            } else if (eq) {
                fprintf(stderr, "error: caramba %s: option '--%s' takes no value\n", spec->name,
                        name);
                return CB_ARGS_ERROR;
            }
            o->value = val;
            o->present = 1;
            if (o->n_values < (int)(sizeof o->values / sizeof o->values[0]))
                o->values[o->n_values++] = val;
            continue;
        }
        if (*n_pos >= spec->max_pos) {
            fprintf(stderr, "error: caramba %s: unexpected argument '%s'\n", spec->name, a);
            return CB_ARGS_ERROR;
        }
        positional[(*n_pos)++] = a;
    }
    if (*n_pos < spec->min_pos) {
        fprintf(stderr, "error: caramba %s: missing argument (usage: caramba %s %s)\n", spec->name,
                spec->name, spec->synopsis);
        return CB_ARGS_ERROR;
    }
    return CB_ARGS_OK;
}

const char *cb_args_require(cb_cmd_spec *spec, const char *name) {
    cb_opt *o = cb_args_get(spec, name);
    if (!o || !o->present || !o->value || !*o->value) {
        fprintf(stderr, "error: caramba %s: --%s is required (usage: caramba %s %s)\n", spec->name,
                name, spec->name, spec->synopsis);
        return NULL;
    }
    return o->value;
}

int cb_args_int(cb_cmd_spec *spec, const char *name, long long def, long long lo, long long hi,
                long long *out) {
    cb_opt *o = cb_args_get(spec, name);
    if (!o || !o->present) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(o->value, &end, 10);
    if (errno || end == o->value || *end) {
        fprintf(stderr, "error: caramba %s: --%s: '%s' is not an integer\n", spec->name, name,
                o->value);
        return 1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "error: caramba %s: --%s: %lld is outside [%lld, %lld]\n", spec->name,
                name, v, lo, hi);
        return 1;
    }
    *out = v;
    return 0;
}

int cb_args_float(cb_cmd_spec *spec, const char *name, double def, double lo, double hi,
                  double *out) {
    cb_opt *o = cb_args_get(spec, name);
    if (!o || !o->present) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(o->value, &end);
    if (errno || end == o->value || *end || !isfinite(v)) {
        fprintf(stderr, "error: caramba %s: --%s: '%s' is not a number\n", spec->name, name,
                o->value);
        return 1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "error: caramba %s: --%s: %g is outside [%g, %g]\n", spec->name, name, v,
                lo, hi);
        return 1;
    }
    *out = v;
    return 0;
}
