/* HF config.json (legacy and rope_parameters layouts), hf:// resolution, llama3 RoPE frequencies.
 *
 * References: the tiny_llama3 fixture's config.json (written by transformers), its documented
 * shape in PROVENANCE.md, and the RoPE formulas of transformers evaluated here in double
 * precision. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caramba/fileio.h"
#include "caramba/hf.h"
#include "caramba/rope_freqs.h"
#include "caramba/safetensors.h"
#include "testutil.h"

#define FIXTURE_DIR "tests/data/tiny_llama3"

static void assert_msg_has(const char *needle) {
    const char *msg = cb_last_error();
    if (!strstr(msg, needle)) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", msg, needle);
        fail();
    }
}

static void check_fixture_config(const cb_llama_config *c) {
    assert_int_equal(c->vocab_size, 384);
    assert_int_equal(c->hidden_size, 64);
    assert_int_equal(c->intermediate_size, 176);
    assert_int_equal(c->num_hidden_layers, 2);
    assert_int_equal(c->num_attention_heads, 4);
    assert_int_equal(c->num_key_value_heads, 2);
    assert_int_equal(c->head_dim, 16);
    assert_int_equal(c->rope_dim, 16);
    assert_int_equal(c->max_position_embeddings, 256);
    assert_true(c->rms_norm_eps == 1e-5);
    assert_true(c->rope_theta == 500000.0);
    assert_true(c->rope.theta == 500000.0f);
    assert_int_equal(c->rope.type, CB_ROPE_LLAMA3);
    assert_true(c->rope.factor == 32.0f);
    assert_true(c->rope.low_freq_factor == 1.0f);
    assert_true(c->rope.high_freq_factor == 4.0f);
    assert_int_equal(c->rope.original_max_pos, 64);
    assert_false(c->tie_word_embeddings);
    assert_false(c->attention_bias);
    assert_false(c->mlp_bias);
    assert_int_equal(c->bos_token_id, 1);
    assert_int_equal(c->eos_token_id, 2);
    assert_int_equal(c->n_eos_token_ids, 1);
    assert_string_equal(c->hidden_act, "silu");
    assert_string_equal(c->dtype, "float32");
    assert_string_equal(c->model_type, "llama");
}

static void test_fixture_config(void **state) {
    (void)state;
    cb_llama_config c;
    assert_int_equal(cb_llama_config_load(tu_path(FIXTURE_DIR), &c), CB_OK);
    check_fixture_config(&c);
    assert_int_equal(cb_llama_config_load(tu_path(FIXTURE_DIR "/config.json"), &c), CB_OK);
    check_fixture_config(&c);
    assert_int_equal(cb_llama_config_load(tu_path(FIXTURE_DIR "/nope.json"), &c), CB_ERR_IO);
    assert_msg_has("nope.json");
}

/* ---- variants built from the fixture with cJSON ------------------------------------------ */

static cJSON *fixture_json(void) {
    char *text;
    size_t n;
    assert_int_equal(cb_read_file(tu_path(FIXTURE_DIR "/config.json"), 1 << 20, &text, &n), CB_OK);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static cb_status parse_json(cJSON *j, cb_llama_config *c) {
    char *s = cJSON_PrintUnformatted(j);
    cb_status st = cb_llama_config_parse(s, strlen(s), "config.json", c);
    free(s);
    return st;
}

static void set(cJSON *j, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(j, key))
        cJSON_ReplaceItemInObjectCaseSensitive(j, key, v);
    else
        cJSON_AddItemToObject(j, key, v);
}

/* transformers 5 layout: rope_parameters carries rope_type and rope_theta. */
static void test_rope_parameters_layout(void **state) {
    (void)state;
    const char *text =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\","
        " \"vocab_size\": 128256, \"hidden_size\": 2048, \"intermediate_size\": 8192,"
        " \"num_hidden_layers\": 16, \"num_attention_heads\": 32,"
        " \"max_position_embeddings\": 131072, \"rms_norm_eps\": 1e-05,"
        " \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0,"
        "   \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
        "   \"original_max_position_embeddings\": 8192},"
        " \"tie_word_embeddings\": true, \"bos_token_id\": null,"
        " \"eos_token_id\": [128001, 128008, 128009], \"dtype\": \"bfloat16\"}\n";
    cb_llama_config c;
    assert_int_equal(cb_llama_config_parse(text, strlen(text), "config.json", &c), CB_OK);
    assert_int_equal(c.vocab_size, 128256);
    assert_int_equal(c.num_key_value_heads, 32); /* defaults to the head count */
    assert_int_equal(c.head_dim, 64);            /* hidden / heads */
    assert_int_equal(c.rope_dim, 64);
    assert_true(c.rope_theta == 500000.0);
    assert_int_equal(c.rope.type, CB_ROPE_LLAMA3);
    assert_true(c.rope.factor == 32.0f);
    assert_int_equal(c.rope.original_max_pos, 8192);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.eos_token_id, 128001);
    assert_int_equal(c.n_eos_token_ids, 3);
    assert_int_equal(c.eos_token_ids[2], 128009);
    assert_string_equal(c.dtype, "bfloat16");
    assert_true(c.rms_norm_eps == 1e-5);
    assert_false(c.attention_bias);

    /* default rope in the new layout; defaults for absent keys */
    const char *plain = "{\"vocab_size\": 100, \"hidden_size\": 48, \"intermediate_size\": 96,"
                        " \"num_hidden_layers\": 1, \"num_attention_heads\": 3,"
                        " \"num_key_value_heads\": 1,"
                        " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e6},"
                        " \"attention_bias\": true, \"mlp_bias\": true}";
    assert_int_equal(cb_llama_config_parse(plain, strlen(plain), "config.json", &c), CB_OK);
    assert_int_equal(c.rope.type, CB_ROPE_DEFAULT);
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.num_key_value_heads, 1);
    assert_true(c.attention_bias && c.mlp_bias);
    assert_int_equal(c.max_position_embeddings, 2048); /* LlamaConfig defaults */
    assert_true(c.rms_norm_eps == 1e-6);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.eos_token_id, 2);
    assert_string_equal(c.hidden_act, "silu");
    assert_string_equal(c.dtype, "");

    /* rope_parameters keyed by layer type */
    const char *per_layer =
        "{\"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 96,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"head_dim\": 32,"
        " \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"llama3\", \"rope_theta\": "
        "5e5,"
        "   \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
        "   \"original_max_position_embeddings\": 8192}}}";
    assert_int_equal(cb_llama_config_parse(per_layer, strlen(per_layer), "config.json", &c), CB_OK);
    assert_int_equal(c.rope.type, CB_ROPE_LLAMA3);
    assert_true(c.rope.factor == 8.0f);
    assert_int_equal(c.head_dim, 32); /* explicit head_dim wins over hidden / heads */
    assert_int_equal(c.rope_dim, 32);

    /* no rope keys at all: theta 10000, default rope; legacy "type" key */
    const char *bare = "{\"vocab_size\": 10, \"hidden_size\": 8, \"intermediate_size\": 16,"
                       " \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                       " \"rope_scaling\": null, \"torch_dtype\": \"float16\"}";
    assert_int_equal(cb_llama_config_parse(bare, strlen(bare), "config.json", &c), CB_OK);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.rope.type, CB_ROPE_DEFAULT);
    assert_string_equal(c.dtype, "float16");
    const char *legacy_type =
        "{\"vocab_size\": 10, \"hidden_size\": 8, \"intermediate_size\": 16,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"rope_theta\": 250000,"
        " \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 4, \"low_freq_factor\": 1,"
        " \"high_freq_factor\": 2, \"original_max_position_embeddings\": 16}}";
    assert_int_equal(cb_llama_config_parse(legacy_type, strlen(legacy_type), "config.json", &c),
                     CB_OK);
    assert_int_equal(c.rope.type, CB_ROPE_LLAMA3);
    assert_true(c.rope.theta == 250000.0f);
    assert_true(c.rope.high_freq_factor == 2.0f);
}

static void test_variants(void **state) {
    (void)state;
    cb_llama_config c;
    cJSON *j = fixture_json();
    set(j, "tie_word_embeddings", cJSON_CreateTrue());
    cJSON_DeleteItemFromObject(j, "head_dim");
    cJSON_DeleteItemFromObject(j, "num_key_value_heads");
    set(j, "eos_token_id", cJSON_CreateNull());
    assert_int_equal(parse_json(j, &c), CB_OK);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.num_key_value_heads, 4);
    assert_int_equal(c.eos_token_id, -1);
    assert_int_equal(c.n_eos_token_ids, 0);
    cJSON_Delete(j);

    /* the fixture re-expressed in the new layout gives the same config */
    j = fixture_json();
    cJSON *rs = cJSON_DetachItemFromObject(j, "rope_scaling");
    cJSON_DeleteItemFromObject(j, "rope_theta");
    cJSON_AddItemToObject(j, "rope_parameters", rs);
    assert_int_equal(parse_json(j, &c), CB_OK);
    check_fixture_config(&c);
    cJSON_Delete(j);
}

typedef struct bad_case {
    const char *key;
    const char *value_json; /* NULL: delete the key */
    cb_status st;
    const char *msg;
} bad_case;

static void test_bad_values(void **state) {
    (void)state;
    static const bad_case cases[] = {
        {"num_attention_heads", "-1", CB_ERR_FORMAT, "config.json: key 'num_attention_heads': "},
        {"num_attention_heads", "0", CB_ERR_FORMAT, "key 'num_attention_heads'"},
        {"num_attention_heads", "\"4\"", CB_ERR_FORMAT,
         "key 'num_attention_heads': expected an integer, got a string"},
        {"num_attention_heads", "4.5", CB_ERR_FORMAT, "key 'num_attention_heads'"},
        {"num_attention_heads", NULL, CB_ERR_FORMAT, "key 'num_attention_heads': missing"},
        {"vocab_size", NULL, CB_ERR_FORMAT, "key 'vocab_size': missing"},
        {"vocab_size", "1e20", CB_ERR_FORMAT, "key 'vocab_size'"},
        {"hidden_size", "true", CB_ERR_FORMAT,
         "key 'hidden_size': expected an integer, got a boolean"},
        {"intermediate_size", "[176]", CB_ERR_FORMAT, "key 'intermediate_size'"},
        {"num_hidden_layers", "0", CB_ERR_FORMAT, "key 'num_hidden_layers'"},
        {"num_key_value_heads", "3", CB_ERR_FORMAT,
         "key 'num_key_value_heads': num_attention_heads (4) is not a multiple"},
        {"num_key_value_heads", "8", CB_ERR_FORMAT, "key 'num_key_value_heads'"},
        {"head_dim", "15", CB_ERR_FORMAT, "key 'head_dim': 15 must be even"},
        {"head_dim", "-16", CB_ERR_FORMAT, "key 'head_dim'"},
        {"max_position_embeddings", "0", CB_ERR_FORMAT, "key 'max_position_embeddings'"},
        {"rms_norm_eps", "0", CB_ERR_FORMAT, "key 'rms_norm_eps'"},
        {"rms_norm_eps", "\"1e-5\"", CB_ERR_FORMAT, "key 'rms_norm_eps'"},
        {"hidden_act", "\"gelu\"", CB_ERR_UNSUPPORTED, "key 'hidden_act': 'gelu'"},
        {"hidden_act", "1", CB_ERR_FORMAT, "key 'hidden_act'"},
        {"tie_word_embeddings", "\"yes\"", CB_ERR_FORMAT, "key 'tie_word_embeddings'"},
        {"attention_bias", "1", CB_ERR_FORMAT, "key 'attention_bias'"},
        {"mlp_bias", "[]", CB_ERR_FORMAT, "key 'mlp_bias'"},
        {"eos_token_id", "[2, \"x\"]", CB_ERR_FORMAT, "key 'eos_token_id[1]'"},
        {"eos_token_id", "-2", CB_ERR_FORMAT, "key 'eos_token_id'"},
        {"eos_token_id", "{}", CB_ERR_FORMAT, "key 'eos_token_id'"},
        {"eos_token_id", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]", CB_ERR_FORMAT,
         "key 'eos_token_id'"},
        {"bos_token_id", "1.5", CB_ERR_FORMAT, "key 'bos_token_id'"},
        {"rope_theta", "0", CB_ERR_FORMAT, "key 'rope_theta'"},
        {"rope_scaling", "{\"rope_type\": \"default\", \"rope_theta\": 1e300}", CB_ERR_FORMAT,
         "key 'rope_scaling.rope_theta': 1e+300 does not fit in float32"},
        {"rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 2.0}", CB_ERR_UNSUPPORTED,
         "key 'rope_scaling.rope_type': unsupported rope_scaling type 'linear'"},
        {"rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}", CB_ERR_UNSUPPORTED,
         "unsupported rope_scaling type 'dynamic'"},
        {"rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 2.0}", CB_ERR_UNSUPPORTED,
         "unsupported rope_scaling type 'yarn'"},
        {"rope_scaling", "{\"factor\": 2.0}", CB_ERR_FORMAT,
         "key 'rope_scaling.rope_type': missing"},
        {"rope_scaling", "[1]", CB_ERR_FORMAT, "key 'rope_scaling': expected an object"},
        {"rope_scaling",
         "{\"rope_type\": \"llama3\", \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
         " \"original_max_position_embeddings\": 64}",
         CB_ERR_FORMAT, "key 'rope_scaling.factor': missing"},
        {"rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4,"
         " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 64}",
         CB_ERR_FORMAT, "key 'rope_scaling.high_freq_factor'"},
        {"rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": -8, \"low_freq_factor\": 1,"
         " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 64}",
         CB_ERR_FORMAT, "key 'rope_scaling.factor'"},
        {"rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1,"
         " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 6.5}",
         CB_ERR_FORMAT, "key 'rope_scaling.original_max_position_embeddings'"},
        {"rope_parameters", "{\"rope_type\": \"longrope\", \"rope_theta\": 1e4}",
         CB_ERR_UNSUPPORTED,
         "key 'rope_parameters.rope_type': unsupported rope_scaling type 'longrope'"},
        {"rope_parameters", "{\"rope_type\": \"llama3\", \"rope_theta\": -5}", CB_ERR_FORMAT,
         "key 'rope_parameters.rope_theta'"},
        {"partial_rotary_factor", "0.1", CB_ERR_FORMAT, "key 'partial_rotary_factor'"},
        {"partial_rotary_factor", "2", CB_ERR_FORMAT, "key 'partial_rotary_factor'"},
        {"torch_dtype", "5", CB_ERR_FORMAT, "key 'torch_dtype'"},
        {"model_type", "\"an extremely long model type name that overflows\"", CB_ERR_FORMAT,
         "key 'model_type'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j = fixture_json();
        if (cases[i].value_json) {
            cJSON *v = cJSON_Parse(cases[i].value_json);
            assert_non_null(v);
            set(j, cases[i].key, v);
        } else {
            cJSON_DeleteItemFromObject(j, cases[i].key);
        }
        cb_llama_config c;
        cb_status st = parse_json(j, &c);
        if (st != cases[i].st || !strstr(cb_last_error(), cases[i].msg))
            fprintf(stderr, "case %zu (%s = %s): %s: %s\n", i, cases[i].key,
                    cases[i].value_json ? cases[i].value_json : "(deleted)", cb_status_name(st),
                    cb_last_error());
        assert_int_equal(st, cases[i].st);
        assert_msg_has(cases[i].msg);
        cJSON_Delete(j);
    }
    /* hidden size not divisible by the heads without head_dim */
    cJSON *j = fixture_json();
    cJSON_DeleteItemFromObject(j, "head_dim");
    set(j, "hidden_size", cJSON_CreateNumber(66));
    cb_llama_config c;
    assert_int_equal(parse_json(j, &c), CB_ERR_FORMAT);
    assert_msg_has("key 'num_attention_heads': hidden_size (66)");
    cJSON_Delete(j);

    /* not JSON, not an object, trailing garbage */
    const char *texts[] = {"{\"vocab_size\": ", "[1, 2]", "{} x", "", "nul\0l"};
    const char *msgs[] = {"not valid JSON", "expected a JSON object", "trailing garbage",
                          "not valid JSON", "not valid JSON"};
    size_t lens[] = {15, 6, 4, 0, 5};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cb_llama_config_parse(texts[i], lens[i], "config.json", &c),
                         CB_ERR_FORMAT);
        assert_msg_has("config.json: ");
        assert_msg_has(msgs[i]);
    }

    /* through a file, the message carries its path */
    const char *tmp = tu_tmpdir();
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s", tmp);
    snprintf(p, sizeof p, "%s/config.json", dir);
    const char *bad = "{\"vocab_size\": 10, \"hidden_size\": 8, \"intermediate_size\": 16,"
                      " \"num_hidden_layers\": 1, \"num_attention_heads\": -2}";
    assert_int_equal(tu_write_file(p, bad, strlen(bad)), 0);
    assert_int_equal(cb_llama_config_load(dir, &c), CB_ERR_FORMAT);
    char want[1200];
    snprintf(want, sizeof want, "%s: key 'num_attention_heads'", p);
    assert_msg_has(want);
    tu_rmtree(dir);
}

/* ---- hf:// --------------------------------------------------------------------------------- */

static void mkdir_p(const char *fmt, const char *a, const char *b) {
    char p[2048];
    snprintf(p, sizeof p, fmt, a, b);
    assert_int_equal(cb_mkdirs(p), CB_OK);
}

static void set_mtime(const char *path, long sec) {
    struct timespec ts[2] = {{sec, 0}, {sec, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_hf_resolve(void **state) {
    (void)state;
    const char *tmp = tu_tmpdir();
    char home[1024], hub[1100], repo[1200], snap_a[1300], snap_b[1300], out[4096], want[2048];
    snprintf(home, sizeof home, "%s", tmp);
    snprintf(hub, sizeof hub, "%s/hub", home);
    snprintf(repo, sizeof repo, "%s/models--tiny-org--tiny_llama3.v1", hub);
    snprintf(snap_a, sizeof snap_a, "%s/snapshots/aaaa1111", repo);
    snprintf(snap_b, sizeof snap_b, "%s/snapshots/bbbb2222", repo);
    mkdir_p("%s%s", snap_a, "");
    mkdir_p("%s%s", snap_b, "");
    mkdir_p("%s%s", repo, "/refs");
    mkdir_p("%s%s", repo, "/blobs");
    unsetenv("HF_HUB_CACHE");
    unsetenv("XDG_CACHE_HOME");
    setenv("HF_HOME", home, 1);
    char fake_home[1100];
    snprintf(fake_home, sizeof fake_home, "%s/nohome", home);
    setenv("HOME", fake_home, 1);

    /* config.json copied, model.safetensors a symlink into blobs as huggingface_hub lays it out */
    char *text;
    size_t n;
    assert_int_equal(cb_read_file(tu_path(FIXTURE_DIR "/config.json"), 1 << 20, &text, &n), CB_OK);
    char p[2048];
    snprintf(p, sizeof p, "%s/config.json", snap_a);
    assert_int_equal(tu_write_file(p, text, n), 0);
    free(text);
    assert_int_equal(cb_read_file(tu_path(FIXTURE_DIR "/model.safetensors"), 1 << 22, &text, &n),
                     CB_OK);
    snprintf(p, sizeof p, "%s/blobs/0123abcd", repo);
    assert_int_equal(tu_write_file(p, text, n), 0);
    free(text);
    snprintf(p, sizeof p, "%s/model.safetensors", snap_a);
    assert_int_equal(symlink("../../blobs/0123abcd", p), 0);

    /* refs/main names the older snapshot: it wins over the newer one */
    set_mtime(snap_a, 1000);
    set_mtime(snap_b, 2000);
    snprintf(p, sizeof p, "%s/refs/main", repo);
    assert_int_equal(tu_write_file(p, "aaaa1111\n", 9), 0);
    assert_int_equal(cb_hf_resolve("hf://tiny-org/tiny_llama3.v1", out, sizeof out), CB_OK);
    assert_string_equal(out, snap_a);
    cb_llama_config c;
    assert_int_equal(cb_llama_config_load("hf://tiny-org/tiny_llama3.v1", &c), CB_OK);
    check_fixture_config(&c);
    cb_checkpoint *ck;
    assert_int_equal(cb_checkpoint_open(&ck, "hf://tiny-org/tiny_llama3.v1"), CB_OK);
    assert_int_equal(cb_checkpoint_count(ck), 21);
    cb_checkpoint_close(ck);
    /* a file inside the snapshot */
    assert_int_equal(cb_hf_resolve("hf://tiny-org/tiny_llama3.v1/config.json", out, sizeof out),
                     CB_OK);
    snprintf(want, sizeof want, "%s/config.json", snap_a);
    assert_string_equal(out, want);
    assert_int_equal(cb_hf_resolve("hf://tiny-org/tiny_llama3.v1/missing.json", out, sizeof out),
                     CB_ERR_NOTFOUND);
    assert_msg_has("missing.json");

    /* refs/main pointing nowhere, or absent: the most recently modified snapshot */
    assert_int_equal(tu_write_file(p, "cccc3333", 8), 0);
    assert_int_equal(cb_hf_resolve("hf://tiny-org/tiny_llama3.v1", out, sizeof out), CB_OK);
    assert_string_equal(out, snap_b);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(cb_hf_resolve("hf://tiny-org/tiny_llama3.v1", out, sizeof out), CB_OK);
    assert_string_equal(out, snap_b);
    set_mtime(snap_a, 3000);
    assert_int_equal(cb_hf_resolve("hf://tiny-org/tiny_llama3.v1", out, sizeof out), CB_OK);
    assert_string_equal(out, snap_a);
    /* HF_HUB_CACHE takes precedence over HF_HOME */
    setenv("HF_HUB_CACHE", hub, 1);
    setenv("HF_HOME", fake_home, 1);
    assert_int_equal(cb_hf_resolve("hf://tiny-org/tiny_llama3.v1/", out, sizeof out), CB_OK);
    assert_string_equal(out, snap_a);
    unsetenv("HF_HUB_CACHE");
    setenv("HF_HOME", home, 1);

    /* absent models list every path tried */
    assert_int_equal(cb_hf_resolve("hf://tiny-org/absent", out, sizeof out), CB_ERR_NOTFOUND);
    assert_msg_has("hf://tiny-org/absent");
    snprintf(want, sizeof want, "%s/models--tiny-org--absent (no such directory)", hub);
    assert_msg_has(want);
    snprintf(want, sizeof want, "%s/.cache/huggingface/hub/models--tiny-org--absent", fake_home);
    assert_msg_has(want);
    mkdir_p("%s%s", hub, "/models--tiny-org--nosnap/snapshots");
    assert_int_equal(cb_hf_resolve("hf://tiny-org/nosnap", out, sizeof out), CB_ERR_NOTFOUND);
    assert_msg_has("no snapshot");
    /* malformed references */
    const char *bad[] = {"hf://",
                         "hf://onlyorg",
                         "hf://org/",
                         "hf:///name",
                         "hf://org/../x",
                         "hf://or g/name",
                         "hf://org/name/../../etc/passwd",
                         "hf://../x/y",
                         "hf://org/.."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cb_status st = cb_hf_resolve(bad[i], out, sizeof out);
        if (st != CB_ERR_ARG) fprintf(stderr, "%s: %s\n", bad[i], cb_last_error());
        assert_int_equal(st, CB_ERR_ARG);
        assert_msg_has(bad[i]);
    }
    /* local paths pass through when they exist */
    assert_int_equal(cb_hf_resolve(tu_path(FIXTURE_DIR), out, sizeof out), CB_OK);
    assert_string_equal(out, tu_path(FIXTURE_DIR));
    assert_int_equal(cb_hf_resolve(tu_path("tests/data/no_such_model"), out, sizeof out),
                     CB_ERR_NOTFOUND);
    assert_msg_has("no_such_model");
    char small[8];
    assert_int_equal(cb_hf_resolve(tu_path(FIXTURE_DIR), small, sizeof small), CB_ERR_ARG);
    tu_rmtree(home);
}

/* ---- RoPE inverse frequencies ---------------------------------------------------------------- */

/* transformers' formulas, in double precision. */
static double ref_default(double theta, int dim, int i) {
    return 1.0 / pow(theta, (2.0 * i) / dim);
}

static double ref_llama3(double theta, int dim, int i, double factor, double low, double high,
                         double orig) {
    double inv = ref_default(theta, dim, i);
    double wavelen = 2 * M_PI / inv;
    double low_wl = orig / low, high_wl = orig / high;
    if (wavelen < high_wl) return inv;
    if (wavelen > low_wl) return inv / factor;
    double smooth = (orig / wavelen - low) / (high - low);
    return (1 - smooth) * inv / factor + smooth * inv;
}

static void test_rope_inv_freq(void **state) {
    (void)state;
    float f[256];
    /* exact values: 10000^(k/4) for k = 0..3 are 1, 10, 100, 1000 */
    cb_rope_params p = {.theta = 10000.0f, .type = CB_ROPE_DEFAULT};
    assert_int_equal(cb_rope_inv_freq(&p, 8, f), CB_OK);
    assert_true(f[0] == 1.0f && f[1] == 0.1f && f[2] == 0.01f && f[3] == 0.001f);
    assert_int_equal(cb_rope_inv_freq(&p, 4, f), CB_OK);
    assert_true(f[0] == 1.0f && f[1] == 0.01f);

    static const struct {
        double theta;
        int dim;
    } defaults[] = {{10000, 64}, {10000, 80}, {500000, 128}, {1e6, 96}, {1e4, 2}};
    for (size_t k = 0; k < sizeof defaults / sizeof defaults[0]; k++) {
        p.theta = (float)defaults[k].theta;
        assert_int_equal(cb_rope_inv_freq(&p, defaults[k].dim, f), CB_OK);
        for (int i = 0; i < defaults[k].dim / 2; i++) {
            double r = ref_default(defaults[k].theta, defaults[k].dim, i);
            assert_true(fabs(f[i] - r) <= 1e-6 * r);
        }
    }

    /* llama3: the fixture's settings, Llama 3.1 8B (factor 8) and Llama 3.2 1B (factor 32) */
    static const struct {
        double theta, factor, low, high;
        int orig, dim;
    } l3[] = {
        {500000, 32, 1, 4, 64, 16},
        {500000, 8, 1, 4, 8192, 128},
        {500000, 32, 1, 4, 8192, 64},
        {10000, 4, 1, 2, 16, 32},
    };
    for (size_t k = 0; k < sizeof l3 / sizeof l3[0]; k++) {
        cb_rope_params q = {.theta = (float)l3[k].theta,
                            .type = CB_ROPE_LLAMA3,
                            .factor = (float)l3[k].factor,
                            .low_freq_factor = (float)l3[k].low,
                            .high_freq_factor = (float)l3[k].high,
                            .original_max_pos = l3[k].orig};
        assert_int_equal(cb_rope_inv_freq(&q, l3[k].dim, f), CB_OK);
        int n_low = 0, n_mid = 0, n_high = 0;
        for (int i = 0; i < l3[k].dim / 2; i++) {
            double r = ref_llama3(l3[k].theta, l3[k].dim, i, l3[k].factor, l3[k].low, l3[k].high,
                                  l3[k].orig);
            double d = ref_default(l3[k].theta, l3[k].dim, i);
            double wl = 2 * M_PI / d;
            n_high += wl < l3[k].orig / l3[k].high;
            n_low += wl > l3[k].orig / l3[k].low;
            n_mid += !(wl < l3[k].orig / l3[k].high) && !(wl > l3[k].orig / l3[k].low);
            if (!(fabs(f[i] - r) <= 1e-6 * r))
                fprintf(stderr, "case %zu i=%d: %.9g vs %.9g (rel %.3g)\n", k, i, f[i], r,
                        fabs(f[i] - r) / r);
            assert_true(fabs(f[i] - r) <= 1e-6 * r);
        }
        /* each case exercises all three bands */
        assert_true(n_low > 0 && n_mid > 0 && n_high > 0);
        /* exact: the first frequency is 1; low-band ones are the default divided by the factor
         * (a power of two here, so exact in float) */
        assert_true(f[0] == 1.0f);
        float dflt[128];
        cb_rope_params d = {.theta = q.theta, .type = CB_ROPE_DEFAULT};
        assert_int_equal(cb_rope_inv_freq(&d, l3[k].dim, dflt), CB_OK);
        int last = l3[k].dim / 2 - 1;
        assert_true(f[last] == dflt[last] / q.factor);
    }
    /* the fixture: i = 1 is the only medium-band frequency; 500000^(-1/8) / 32 at the end */
    cb_rope_params fx = {500000.0f, CB_ROPE_LLAMA3, 32.0f, 1.0f, 4.0f, 64};
    assert_int_equal(cb_rope_inv_freq(&fx, 16, f), CB_OK);
    assert_true(fabs(f[7] - pow(500000.0, -7.0 / 8.0) / 32.0) <= 1e-6 * f[7]);

    /* bad parameters */
    assert_int_equal(cb_rope_inv_freq(&fx, 15, f), CB_ERR_ARG);
    assert_int_equal(cb_rope_inv_freq(&fx, 0, f), CB_ERR_ARG);
    cb_rope_params badp = fx;
    badp.theta = 0;
    assert_int_equal(cb_rope_inv_freq(&badp, 16, f), CB_ERR_ARG);
    badp = fx;
    badp.high_freq_factor = 1.0f;
    assert_int_equal(cb_rope_inv_freq(&badp, 16, f), CB_ERR_ARG);
    badp = fx;
    badp.original_max_pos = 0;
    assert_int_equal(cb_rope_inv_freq(&badp, 16, f), CB_ERR_ARG);
    badp = fx;
    badp.type = 7;
    assert_int_equal(cb_rope_inv_freq(&badp, 16, f), CB_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_config), cmocka_unit_test(test_rope_parameters_layout),
        cmocka_unit_test(test_variants),       cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_hf_resolve),     cmocka_unit_test(test_rope_inv_freq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
