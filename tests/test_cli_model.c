/* End to end through the command line: `caramba logits` and `caramba grads` reproduce the
 * tiny_llama3 fixture, and bad input of every kind gives exit status 1 and a message naming
 * what was wrong. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/npy.h"
#include "caramba/safetensors.h"
#include "testutil.h"

static char out[65536];
static const char *tmp;

#define FIX "tests/data/tiny_llama3"

static void test_logits_cli(void **state) {
    (void)state;
    int rc = tu_run(out, sizeof out, "%s logits --model %s --ids %s/ref_input_ids.npy --out %s/l.npy", tu_bin(),
                    tu_path(FIX), tu_path(FIX), tmp);
    if (rc) fail_msg("exit %d: %s", rc, out);
    char p[600];
    snprintf(p, sizeof p, "%s/l.npy", tmp);
    cb_npy *got, *ref;
    assert_int_equal(cb_npy_open(&got, p), CB_OK);
    assert_int_equal(cb_npy_open(&ref, tu_path(FIX "/ref_logits.npy")), CB_OK);
    assert_int_equal(got->dtype, CB_F32);
    assert_int_equal(got->ndim, 3);
    assert_int_equal(got->shape[2], 384);
    int64_t n = 2 * 24 * 384;
    assert_true(tu_max_abs_diff(got->data, ref->data, n) <= 1e-4 * tu_max_abs(ref->data, n));
    cb_npy_close(got);
    cb_npy_close(ref);
}

static void test_grads_cli(void **state) {
    (void)state;
    int rc = tu_run(out, sizeof out, "%s grads --model %s --ids %s/ref_input_ids.npy --out %s/g.safetensors",
                    tu_bin(), tu_path(FIX), tu_path(FIX), tmp);
    if (rc) fail_msg("exit %d: %s", rc, out);
    const char *l = strstr(out, "loss: ");
    assert_non_null(l);
    assert_true(fabs(atof(l + 6) - 6.247769355773926) <= 1e-5 * 6.25);
    char p[600];
    snprintf(p, sizeof p, "%s/g.safetensors", tmp);
    cb_safetensors *got, *ref;
    assert_int_equal(cb_safetensors_open(&got, p), CB_OK);
    assert_int_equal(cb_safetensors_open(&ref, tu_path(FIX "/ref_grads.safetensors")), CB_OK);
    assert_int_equal(got->n_entries, ref->n_entries);
    for (int i = 0; i < ref->n_entries; i++) {
        const cb_st_entry *e = cb_safetensors_find(got, ref->entries[i].name);
        if (!e) fail_msg("missing %s", ref->entries[i].name);
        assert_int_equal(e->dtype, CB_F32);
        assert_int_equal(e->nbytes, ref->entries[i].nbytes);
        assert_true(tu_rel_l2(e->data, ref->entries[i].data, (int64_t)(e->nbytes / 4)) <= 1e-3);
    }
    cb_safetensors_close(got);
    cb_safetensors_close(ref);
}

/* Each bad invocation: exit 1, an "error:" line containing `expect`, and no output file. */
static void bad(const char *expect, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4500];
    snprintf(full, sizeof full, "%s %s", tu_bin(), cmd);
    int rc = tu_run(out, sizeof out, "%s", full);
    if (rc != 1 || !strstr(out, "error:") || !strstr(out, expect))
        fail_msg("`%s`: exit %d, wanted 1 with '%s'; output: %s", cmd, rc, expect, out);
    char p[600];
    snprintf(p, sizeof p, "%s/bad.npy", tmp);
    FILE *f = fopen(p, "rb");
    if (f) {
        fclose(f);
        fail_msg("`%s` left an output file", cmd);
    }
}

static void copy_file(const char *from, const char *to, long keep) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    int c;
    long n = 0;
    while ((c = fgetc(a)) != EOF && (keep < 0 || n < keep)) {
        fputc(c, b);
        n++;
    }
    fclose(a);
    fclose(b);
}

static void test_bad_input(void **state) {
    (void)state;
    const char *ids = tu_path(FIX "/ref_input_ids.npy");
    char model[600], p[700];
    bad("unknown option '--nope'", "logits --nope");
    bad("--model is required", "logits --ids %s --out %s/bad.npy", ids, tmp);
    bad("/no/such/dir", "logits --model /no/such/dir --ids %s --out %s/bad.npy", ids, tmp);
    bad("no-such.npy", "logits --model %s --ids %s/no-such.npy --out %s/bad.npy", tu_path(FIX), tmp, tmp);
    /* float ids */
    bad("ids must be int32 or int64", "logits --model %s --ids %s --out %s/bad.npy", tu_path(FIX),
        tu_path(FIX "/ref_logits.npy"), tmp);
    /* an id outside the vocabulary */
    {
        snprintf(p, sizeof p, "%s/big.npy", tmp);
        int32_t big[2] = {1, 384};
        unsigned char hdr[128] = "\x93NUMPY\x01\x00";
        const char *dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }";
        size_t hl = 118; /* pad header to 128 bytes total */
        hdr[8] = (unsigned char)hl;
        hdr[9] = 0;
        memset(hdr + 10, ' ', hl);
        memcpy(hdr + 10, dict, strlen(dict));
        hdr[127] = '\n';
        FILE *f = fopen(p, "wb");
        fwrite(hdr, 1, 128, f);
        fwrite(big, 4, 2, f);
        fclose(f);
        bad("outside the vocabulary", "logits --model %s --ids %s --out %s/bad.npy", tu_path(FIX), p, tmp);
    }
    /* a checkpoint directory with a truncated model.safetensors */
    snprintf(model, sizeof model, "%s/trunc", tmp);
    assert_true(snprintf(p, sizeof p, "mkdir -p %s && cp %s/config.json %s/", model, tu_path(FIX),
                         model) < (int)sizeof p);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", model);
    copy_file(tu_path(FIX "/model.safetensors"), p, 300000);
    bad("model.safetensors", "logits --model %s --ids %s --out %s/bad.npy", model, ids, tmp);
    /* config.json that is not JSON */
    snprintf(p, sizeof p, "%s/config.json", model);
    copy_file(tu_path(FIX "/ref_input_ids.npy"), p, -1);
    bad("config.json", "logits --model %s --ids %s --out %s/bad.npy", model, ids, tmp);
    bad("--max-new-tokens", "generate --model %s --ids %s --max-new-tokens -3 --out %s/bad.npy", tu_path(FIX), ids, tmp);
}

static int setup(void **state) {
    (void)state;
    tmp = tu_tmpdir();
    return tmp && tu_bin() ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tu_rmtree(tmp);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_cli),
        cmocka_unit_test(test_grads_cli),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
