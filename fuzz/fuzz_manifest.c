/* libFuzzer target: the whole manifest pipeline (YAML and JSON parse, vars, aliases, schema,
 * repeat expansion, validation, plan printing) on arbitrary bytes. Every input must either load or
 * fail with a message; nothing may crash, leak, hang or read out of bounds. Files named by the
 * manifest (eval suites) are not read here (no_includes). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "caramba/manifest.h"
#include "caramba/plan.h"

static FILE *devnull;

static void one(const char *name, const uint8_t *data, size_t size) {
    cb_manifest_opts opts = {.no_includes = true};
    cb_diags errs = {0};
    cb_manifest *m = NULL;
    cb_status st = cb_manifest_parse(name, (const char *)data, size, &opts, &m, &errs);
    if (st == CB_OK) {
        if (!m) __builtin_trap();
        cb_plan_opts po = {.batch = 2, .seq = 8};
        cb_plan_print(devnull, m, &po);
        cb_manifest_free(m);
    } else {
        /* a failure always explains itself with a position */
        if (m || errs.n == 0 || !strchr(errs.msg[0], ':')) __builtin_trap();
    }
    cb_diags_free(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!devnull) devnull = fopen("/dev/null", "w");
    if (size > (1u << 20)) return 0;
    one("fuzz.yml", data, size);
    if (size && (data[0] == '{' || data[0] == '[' || data[0] == ' ')) one("fuzz.json", data, size);
    return 0;
}
