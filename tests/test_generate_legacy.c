/* Legacy `--mode sample` / `--mode chat` (src/cli/cmd_legacy_infer.c, compiled into this test):
 * chat keeps the KV cache between turns, so each reply equals generating on the whole
 * conversation so far; /reset forgets it; sample equals cb_generate. The fixture directory has no
 * tokenizer, so ids are typed and printed as numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/generate.h"
#include "caramba/threads.h"
#include "cli/cmd_legacy_infer.c"
#include "testutil.h"

#define FIX "tests/data/tiny_llama3"

static void greedy(cb_model *m, const int32_t *p, int64_t S, int64_t N, int32_t *out) {
    cb_generate_config c;
    cb_generate_config_default(&c);
    c.temperature = 0;
    c.max_new_tokens = N;
    c.max_seq_len = 256;
    c.eos_token_id = m->eos_id; /* the legacy modes stop at the model's EOS */
    int64_t len;
    assert_int_equal(cb_generate(m, &c, p, 1, S, out, &len, NULL, NULL), CB_OK);
    assert_int_equal(len, S + N); /* these prompts do not reach EOS */
}

static void fmt_ids(char *buf, size_t n, const int32_t *ids, int64_t k) {
    size_t o = 0;
    for (int64_t i = 0; i < k; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? " " : "", ids[i]);
    snprintf(buf + o, n - o, "\n");
}

static void test_chat_keeps_cache(void **state) {
    (void)state;
    cb_model *m;
    assert_int_equal(cb_model_open_hf(&m, tu_path(FIX), CB_CPU), CB_OK);
    const char *script = "1 2 3\n4 5\n/reset\n1 2 3\n/exit\n9 9\n";
    FILE *in = fmemopen((void *)script, strlen(script), "r");
    char *text = NULL;
    size_t tlen = 0;
    FILE *out = open_memstream(&text, &tlen), *err = tmpfile();
    cb_legacy_infer_opts o;
    cb_legacy_infer_opts_default(&o);
    o.ckpt = tu_path(FIX);
    o.temperature = 0;
    o.max_new_tokens = 4;
    o.max_seq_len = 64;
    o.in = in;
    o.out = out;
    o.err = err;
    assert_int_equal(cb_legacy_chat(&o), 0);
    fclose(out);
    /* expected: turn 1 on [1 2 3]; turn 2 on [1 2 3 r1 4 5]; after /reset turn 1 again */
    int32_t t1[7], p2[9], t2[13];
    int32_t p1[3] = {1, 2, 3};
    greedy(m, p1, 3, 4, t1);
    memcpy(p2, t1, sizeof t1);
    p2[7] = 4;
    p2[8] = 5;
    greedy(m, p2, 9, 4, t2);
    char want[256], a[64], b[64];
    fmt_ids(a, sizeof a, t1 + 3, 4);
    fmt_ids(b, sizeof b, t2 + 9, 4);
    snprintf(want, sizeof want, "%s%s%s", a, b, a);
    assert_string_equal(text, want);
    free(text);
    fclose(in);
    fclose(err);
    cb_model_free(m);
}

static void test_sample(void **state) {
    (void)state;
    cb_model *m;
    assert_int_equal(cb_model_open_hf(&m, tu_path(FIX), CB_CPU), CB_OK);
    char *text = NULL;
    size_t tlen = 0;
    FILE *out = open_memstream(&text, &tlen), *err = tmpfile();
    cb_legacy_infer_opts o;
    cb_legacy_infer_opts_default(&o);
    /* a .safetensors file with config.json beside it */
    o.ckpt = tu_path(FIX "/model.safetensors");
    o.prompt = "7 8 9";
    o.temperature = 0;
    o.max_new_tokens = 5;
    o.out = out;
    o.err = err;
    assert_int_equal(cb_legacy_sample(&o), 0);
    fclose(out);
    int32_t p[3] = {7, 8, 9}, g[8];
    greedy(m, p, 3, 5, g);
    char want[128];
    fmt_ids(want, sizeof want, g, 8);
    assert_string_equal(text, want);
    free(text);
    /* a model built by the router (here: the fixture) is used as given */
    text = NULL;
    out = open_memstream(&text, &tlen);
    o.ckpt = NULL;
    o.model = m;
    o.out = out;
    assert_int_equal(cb_legacy_sample(&o), 0);
    fclose(out);
    assert_string_equal(text, want);
    free(text);
    /* errors: no checkpoint, a bad one, bad prompt ids */
    cb_legacy_infer_opts bad;
    cb_legacy_infer_opts_default(&bad);
    bad.err = err;
    bad.out = err;
    assert_int_equal(cb_legacy_sample(&bad), 1);
    bad.ckpt = "/nonexistent/ckpt";
    assert_int_equal(cb_legacy_sample(&bad), 1);
    bad.ckpt = tu_path(FIX);
    bad.prompt = "1 99999";
    assert_int_equal(cb_legacy_sample(&bad), 1);
    fclose(err);
    cb_model_free(m);
}

static void test_argv(void **state) {
    (void)state;
    char *bad_mode[] = {"caramba", "--mode", "train", "--ckpt", "x"};
    assert_int_equal(cb_legacy_infer_main(5, bad_mode), 2);
    char *unknown[] = {"caramba", "--mode", "sample", "--bogus", "1"};
    assert_int_equal(cb_legacy_infer_main(5, unknown), 2);
    char *badnum[] = {"caramba", "--mode", "sample", "--seed", "x"};
    assert_int_equal(cb_legacy_infer_main(5, badnum), 2);
    char ck[512];
    snprintf(ck, sizeof ck, "%s", tu_path(FIX));
    char *ok[] = {"caramba",  "--mode", "sample",           "--ckpt", ck,
                  "--prompt", "3 4",    "--max-new-tokens", "2",      "--temperature",
                  "0",        "--data", "ignored.npy",      "--seed", "5"};
    assert_int_equal(cb_legacy_infer_main(15, ok), 0);
}

int main(void) {
    cb_threads_init(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_keeps_cache),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_argv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
