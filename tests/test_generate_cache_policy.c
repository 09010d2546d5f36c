/* cache_kind "auto": SHA-1 (FIPS 180 test vectors), the plan key (spec-infer §12.5 test vector),
 * exact byte estimates (kv_cache.h formulas), budget choice, fidelity and needle gates,
 * micro-benchmark, persisted decisions and re-probing. Model: tests/data/tiny_llama3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/cache_policy.h"
#include "caramba/fileio.h"
#include "caramba/threads.h"
#include "testutil.h"

#define FIX "tests/data/tiny_llama3"

static cb_model *open_fixture(void) {
    cb_model *m = NULL;
    if (cb_model_open_hf(&m, tu_path(FIX), CB_CPU) != CB_OK) fail_msg("open: %s", cb_last_error());
    return m;
}

static void hex(const uint8_t *d, int n, char *out) {
    for (int i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha1(void **state) {
    (void)state;
    uint8_t d[20];
    char h[41];
    cb_sha1("abc", 3, d);
    hex(d, 20, h);
    assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    cb_sha1("", 0, d);
    hex(d, 20, h);
    assert_string_equal(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    const char *m56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cb_sha1(m56, strlen(m56), d);
    hex(d, 20, h);
    assert_string_equal(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    cb_sha1(a, 1000000, d);
    hex(d, 20, h);
    assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(a);
}

/* spec-infer §12.5: the original's payload serialises to this text and key. */
static void test_plan_key_vector(void **state) {
    (void)state;
    const char *canon =
        "{\"auto_bench_prompt_len\":64,\"auto_bench_steps\":8,\"auto_benchmark\":false,\"batch_"
        "size\":1,"
        "\"budget_mb\":null,\"max_seq_len\":2048,\"model\":\"caramba.model.Model\",\"qblock\":32,"
        "\"quality\":{\"decode_steps\":4,\"max_delta_nll\":null,\"max_mean_kl\":null,\"max_ppl_"
        "ratio\":null,"
        "\"prompt_len\":64},\"residual_len\":0}";
    const char *shuffled =
        "{ \"quality\": {\"prompt_len\": 64, \"max_ppl_ratio\": null, \"decode_steps\": 4, "
        "\"max_mean_kl\": null,"
        " \"max_delta_nll\": null}, \"model\": \"caramba.model.Model\", \"batch_size\": 1, "
        "\"max_seq_len\": 2048,"
        " \"qblock\": 32, \"residual_len\": 0, \"budget_mb\": null, \"auto_benchmark\": false,"
        " \"auto_bench_steps\": 8, \"auto_bench_prompt_len\": 64 }";
    char *c;
    assert_int_equal(cb_json_canonicalize(shuffled, &c), CB_OK);
    assert_string_equal(c, canon);
    free(c);
    char key[17];
    assert_int_equal(cb_cache_plan_key_of_json(shuffled, key), CB_OK);
    assert_string_equal(key, "3c731f94bfaff9d4");
    assert_int_equal(cb_cache_plan_key_of_json("{bad", key), CB_ERR_FORMAT);
    /* escapes and non-integers */
    assert_int_equal(cb_json_canonicalize("{\"b\":[1.5,1e-05,\"x\\ny\\u0001\"],\"a\":true}", &c),
                     CB_OK);
    assert_string_equal(c, "{\"a\":true,\"b\":[1.5,1e-05,\"x\\ny\\u0001\"]}");
    free(c);
}

/* kv_cache.h: row bytes 4w (fp32), 2w (fp16), 34 ceil(w/32) (q8_0), 18 ceil(w/32) (q4_0, nf4);
 * the fixture has 2 layers with k and v of width 2 x 16 = 32. */
static void test_estimates(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    const char *kinds[] = {"fp32", "fp16", "q8_0", "q4_0", "nf4"};
    const size_t row[] = {128, 64, 34, 18, 18};
    for (int i = 0; i < 5; i++) {
        cb_kv_policy p;
        assert_int_equal(cb_kv_policy_parse(kinds[i], &p), CB_OK);
        assert_int_equal(cb_infer_caches_estimate(m, 1, 128, &p, 0, 0), 2 * 2 * 128 * row[i]);
        assert_int_equal(cb_infer_caches_estimate(m, 3, 128, &p, 0, 0), 3 * 2 * 2 * 128 * row[i]);
    }
    cb_kv_policy p;
    assert_int_equal(cb_kv_policy_parse("q4_0", &p), CB_OK);
    /* prefix layer 0 kept in fp16 */
    assert_int_equal(cb_infer_caches_estimate(m, 1, 128, &p, 0, 1), 2 * 128 * 64 + 2 * 128 * 18);
    /* per tensor: k q8_0, v q4_0 */
    assert_int_equal(cb_kv_policy_parse("k:q8_0,v:q4_0", &p), CB_OK);
    assert_int_equal(cb_infer_caches_estimate(m, 1, 128, &p, 0, 0), 2 * 128 * (34 + 18));
    /* the estimate equals what the caches allocate once grown to capacity */
    cb_infer_ctx ctx;
    assert_int_equal(cb_kv_policy_parse("q8_0", &p), CB_OK);
    assert_int_equal(cb_infer_caches_new(m, 2, 300, &p, 16, 0, &ctx), CB_OK);
    assert_int_equal(cb_infer_caches_reserve(&ctx, 300), CB_OK);
    assert_int_equal(cb_infer_caches_bytes(&ctx), cb_infer_caches_estimate(m, 2, 300, &p, 16, 0));
    cb_model_caches_free(&ctx);
    cb_model_free(m);
}

static cb_generate_config base_cfg(void) {
    cb_generate_config c;
    cb_generate_config_default(&c);
    c.max_seq_len = 128;
    c.cache_kind = "auto";
    c.cache_quality_prompt_len = 24;
    c.cache_quality_decode_steps = 4;
    return c;
}

static void test_budget(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    cb_generate_config c = base_cfg();
    cb_cache_decision d;
    c.cache_budget_mb = 0; /* nothing fits: the smallest, q4_0 (ties with nf4 go to the later) */
    assert_int_equal(cb_cache_choose_by_budget(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "q4_0");
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "q4_0");
    assert_string_equal(d.source, "budget");
    assert_true(strlen(d.note) > 0);
    c.cache_budget_mb = -1; /* no budget: the first candidate */
    assert_int_equal(cb_cache_choose_by_budget(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "fp16");
    /* q8_0's exact size fits (<=), fp16 does not */
    c.cache_budget_mb = (double)(2 * 2 * 128 * 34) / 1048576.0;
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "q8_0");
    assert_string_equal(d.source, "default");
    assert_false(d.cand[0].fits);
    assert_true(d.cand[1].fits);
    /* a non-auto kind is returned as given (canonical) */
    c.cache_kind = "v:q4_0, k:q8_0";
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "k:q8_0,v:q4_0");
    /* custom candidate lists with per-tensor mixes; bad ones are errors */
    c.cache_kind = "auto";
    c.cache_budget_mb = -1;
    c.cache_auto_candidates = "k:q8_0,v:q4_0;q4_0";
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "k:q8_0,v:q4_0");
    c.cache_auto_candidates = "q8_0;auto";
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_ERR_ARG);
    cb_model_free(m);
}

static void test_fidelity_and_needle(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    cb_generate_config c = base_cfg();
    enum { B = 2, T = 40 };
    int32_t tok[B * T];
    cb_rng r;
    cb_rng_seed(&r, 1);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)cb_rng_below(&r, 384);
    cb_cache_fidelity f;
    assert_int_equal(cb_cache_fidelity_check(m, &c, "fp32", "fp32", tok, B, T, 24, &f), CB_OK);
    assert_true(f.delta_nll == 0 && f.ppl_ratio == 1);
    assert_true(f.baseline_nll > 3 &&
                f.baseline_nll < 10); /* ~log(384) = 5.95 for a random model */
    assert_int_equal(cb_cache_fidelity_check(m, &c, "fp32", "fp16", tok, B, T, 24, &f), CB_OK);
    assert_true(fabs(f.delta_nll) < 1e-3);
    assert_int_equal(cb_cache_fidelity_check(m, &c, "fp32", "q4_0", tok, B, T, 24, &f), CB_OK);
    assert_true(isfinite(f.delta_nll));
    assert_int_equal(cb_cache_long_context_check(m, &c, "fp32", "q8_0", tok, B, T, 64, &f),
                     CB_ERR_ARG);

    /* the needle: key (2 tokens) + value planted early, the key again at the end */
    enum { P = 40, S = 4 };
    int32_t prompt[B * P], value[B * S];
    int64_t at;
    assert_int_equal(cb_cache_needle_prompt(5, 384, B, P, S, prompt, value, &at), CB_OK);
    assert_int_equal(at, P / 5);
    for (int b = 0; b < B; b++) {
        const int32_t *row = prompt + b * P;
        assert_int_equal(row[P - 2], row[at]);
        assert_int_equal(row[P - 1], row[at + 1]);
        for (int s = 0; s < S; s++) assert_int_equal(row[at + 2 + s], value[b * S + s]);
        for (int i = 0; i < P; i++) /* the key appears nowhere else */
            if (i != at && i != P - 2) assert_true(row[i] != row[at]);
    }
    cb_needle_result n;
    assert_int_equal(cb_cache_needle_gate(m, &c, "fp32", "fp32", B, 40, 4, 5, &n), CB_OK);
    assert_true(n.mean_kl == 0 && n.max_kl == 0 && n.base_hit == n.cand_hit);
    double kl16, kl4;
    assert_int_equal(cb_cache_needle_gate(m, &c, "fp32", "fp16", B, 40, 4, 5, &n), CB_OK);
    kl16 = n.mean_kl;
    assert_int_equal(cb_cache_needle_gate(m, &c, "fp32", "q4_0", B, 40, 4, 5, &n), CB_OK);
    kl4 = n.mean_kl;
    print_message("needle KL: fp16 %.3g, q4_0 %.3g\n", kl16, kl4);
    assert_true(kl16 >= 0 && kl16 < 1e-5);
    assert_true(kl4 > kl16);
    assert_true(n.max_kl >= n.mean_kl);
    /* too small a context for a needle */
    c.max_seq_len = 8;
    assert_int_equal(cb_cache_needle_gate(m, &c, "fp32", "fp16", B, 40, 4, 5, &n), CB_ERR_ARG);
    cb_model_free(m);
}

static void test_gates_choose(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    cb_generate_config c = base_cfg();
    cb_cache_decision d, d2;
    /* an unreachable KL gate: nobody passes, the decision says so and keeps the first */
    c.cache_quality_max_mean_kl = 0;
    c.cache_auto_candidates = "q4_0;q8_0";
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.source, "gates_failed");
    assert_string_equal(d.policy, "q4_0");
    assert_non_null(strstr(d.note, "quality gates"));
    assert_true(d.cand[0].gated && d.cand[1].gated);
    double kl4 = d.cand[0].mean_kl, kl8 = d.cand[1].mean_kl;
    print_message("gate KL: q4_0 %.3g, q8_0 %.3g; needle hit q4_0 %.2f\n", kl4, kl8,
                  d.cand[0].needle_hit);
    assert_true(kl8 < kl4);
    /* deterministic: the probes are seeded */
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d2), CB_OK);
    assert_true(d2.cand[0].mean_kl == kl4 && d2.cand[1].mean_kl == kl8);
    /* a threshold between them: q4_0 fails, q8_0 passes */
    c.cache_quality_max_mean_kl = 0.5 * (kl4 + kl8);
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "q8_0");
    assert_false(d.cand[0].passed);
    assert_true(d.cand[1].passed);
    /* NLL gates: generous thresholds pass fp16 first */
    c = base_cfg();
    c.cache_quality_max_delta_nll = 0.05;
    c.cache_quality_max_ppl_ratio = 1.05;
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "fp16");
    assert_true(isfinite(d.cand[0].delta_nll) && fabs(d.cand[0].delta_nll) < 1e-3);
    assert_true(fabs(d.cand[0].ppl_ratio - exp(d.cand[0].delta_nll)) < 1e-12);
    cb_model_free(m);
}

static void test_benchmark(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    cb_generate_config c = base_cfg();
    c.cache_auto_benchmark = true;
    c.cache_auto_bench_steps = 4;
    c.cache_auto_bench_prompt_len = 16;
    c.cache_auto_candidates = "fp16;q8_0";
    cb_cache_decision d;
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.source, "bench");
    assert_true(d.cand[0].tps > 0 && d.cand[1].tps > 0);
    assert_true(d.tps == (d.cand[0].tps >= d.cand[1].tps ? d.cand[0].tps : d.cand[1].tps));
    double tps;
    assert_int_equal(cb_cache_bench(m, &c, "nf4", 1, 16, 3, 1, &tps), CB_OK);
    assert_true(tps > 0);
    cb_model_free(m);
}

static void test_plan_file(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/sub/plans.json", dir);
    /* save / load / staleness */
    cb_cache_plan_entry e = {
        .has_ts = true, .ts = 1000, .has_tps = true, .tps = 123, .source = "bench"};
    snprintf(e.cache_kind, sizeof e.cache_kind, "q8_0");
    assert_int_equal(cb_cache_plan_save(path, "0123456789abcdef", &e, "{\"x\":1}"), CB_OK);
    cb_cache_plan_entry g;
    bool found;
    assert_int_equal(cb_cache_plan_load(path, "0123456789abcdef", &g, &found), CB_OK);
    assert_true(found);
    assert_string_equal(g.cache_kind, "q8_0");
    assert_true(g.has_tps && g.tps == 123);
    assert_string_equal(g.source, "bench");
    assert_false(cb_cache_plan_stale(&g, 3600, 1000 + 3599));
    assert_true(cb_cache_plan_stale(&g, 3600, 1000 + 3600));
    assert_true(cb_cache_plan_stale(&g, 0, 1000));
    g.has_ts = false;
    assert_true(cb_cache_plan_stale(&g, 3600, 1000)); /* an entry without ts is stale */
    assert_int_equal(cb_cache_plan_load(path, "ffffffffffffffff", &g, &found), CB_OK);
    assert_false(found);
    char *text;
    size_t n;
    assert_int_equal(cb_read_file(path, 1 << 20, &text, &n), CB_OK);
    assert_true(n > 0 && text[n - 1] == '\n');
    assert_non_null(strstr(
        text, "{\"plans\":{\"0123456789abcdef\":{\"cache_kind\":\"q8_0\",\"payload\":{\"x\":1},"
              "\"source\":\"bench\",\"tps\":123,\"ts\":1000}},\"version\":1}"));
    free(text);

    /* resolve persists, then reuses; probing re-selects once the entry is stale */
    snprintf(path, sizeof path, "%s/plans2.json", dir);
    cb_generate_config c = base_cfg();
    c.cache_plan_path = path;
    c.cache_budget_mb = (double)(2 * 2 * 128 * 34) / 1048576.0;
    cb_cache_decision d;
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "q8_0");
    assert_string_equal(d.source, "default");
    assert_int_equal(strlen(d.key), 16);
    assert_int_equal(cb_cache_plan_load(path, d.key, &g, &found), CB_OK);
    assert_true(found && strcmp(g.cache_kind, "q8_0") == 0 && g.has_ts);
    /* overwrite the stored kind by hand: a later resolve must return it (it came from the file) */
    snprintf(g.cache_kind, sizeof g.cache_kind, "nf4");
    assert_int_equal(cb_cache_plan_save(path, d.key, &g, NULL), CB_OK);
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "nf4");
    assert_string_equal(d.source, "plan");
    c.cache_plan_probe = true; /* fresh (ts = now): still from the plan */
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.source, "plan");
    c.cache_plan_probe_interval_sec = 0; /* always stale: re-select and re-save */
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.policy, "q8_0");
    assert_string_equal(d.source, "default");
    assert_int_equal(cb_cache_plan_load(path, d.key, &g, &found), CB_OK);
    assert_string_equal(g.cache_kind, "q8_0");
    /* another device / model identity / candidate list: another key */
    char k1[17], k2[17];
    snprintf(k1, sizeof k1, "%s", d.key);
    c.cache_plan_model_id = "/models/other";
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    snprintf(k2, sizeof k2, "%s", d.key);
    assert_string_not_equal(k1, k2);
    char *pl = cb_cache_plan_payload(m, 1, &c);
    assert_non_null(strstr(pl, "\"device\":\"cpu\""));
    assert_non_null(strstr(pl, "\"dtype\":\"f32\""));
    assert_non_null(strstr(pl, "\"candidates\":[\"fp16\",\"q8_0\",\"nf4\",\"q4_0\"]"));
    free(pl);
    /* a corrupt file is no plan, and is replaced on the next save */
    assert_int_equal(tu_write_file(path, "{not json", 9), 0);
    c.cache_plan_probe = false;
    assert_int_equal(cb_cache_policy_resolve(m, 1, &c, &d), CB_OK);
    assert_string_equal(d.source, "default");
    assert_int_equal(cb_cache_plan_load(path, d.key, &g, &found), CB_OK);
    assert_true(found);
    /* an entry with an unknown kind is ignored */
    const char *badent =
        "{\"plans\":{\"0000000000000000\":{\"cache_kind\":\"q3_k\",\"ts\":1}},\"version\":1}";
    assert_int_equal(tu_write_file(path, badent, strlen(badent)), 0);
    assert_int_equal(cb_cache_plan_load(path, "0000000000000000", &g, &found), CB_OK);
    assert_false(found);
    tu_rmtree(dir);
    cb_model_free(m);
}

/* A generator with cache_kind auto resolves once and uses the decision. */
static void test_generator_auto(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    cb_generate_config c = base_cfg();
    c.cache_budget_mb = 0;
    c.temperature = 0;
    c.max_new_tokens = 4;
    int32_t prompt[4] = {1, 2, 3, 4}, out[8];
    int64_t len;
    cb_generator *g;
    assert_int_equal(cb_generator_new(&g, m, &c), CB_OK);
    assert_int_equal(cb_generator_generate(g, prompt, 1, 4, out, &len, NULL, NULL), CB_OK);
    assert_string_equal(cb_generator_cache_policy(g), "q4_0");
    assert_int_equal(cb_generator_cache_bytes(g), cb_infer_caches_bytes(cb_generator_ctx(g)));
    cb_generator_free(g);
    cb_model_free(m);
}

int main(void) {
    cb_threads_init(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1),
        cmocka_unit_test(test_plan_key_vector),
        cmocka_unit_test(test_estimates),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_fidelity_and_needle),
        cmocka_unit_test(test_gates_choose),
        cmocka_unit_test(test_benchmark),
        cmocka_unit_test(test_plan_file),
        cmocka_unit_test(test_generator_auto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
