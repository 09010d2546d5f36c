/* Benchmarks (perplexity, latency, memory, accuracy, generation, suite) and eval-suite files. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "config/schema.h"

/* ---- benchmark specs ----------------------------------------------------------------------- */

static const char *const BENCH_TYPES[] = {"perplexity", "latency",    "memory",
                                          "accuracy",   "generation", "suite"};
static const char *const BENCH_MODELS[] = {"teacher", "student"};
static const char *const KV_KINDS[] = {"fp32", "fp16", "q8_0", "q4_0", "nf4"};
static const cb_kv_kind KV_DTYPES[] = {CB_KV_FP32, CB_KV_FP16, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};

static int64_t DEF_PROMPT_LENGTHS[] = {128, 512, 1024, 2048};
static int64_t DEF_GEN_LENGTHS[] = {128, 256, 512};
static int64_t DEF_BATCH_SIZES[] = {1, 4, 8};
static int64_t DEF_SEQ_LENGTHS[] = {512, 1024, 2048, 4096};
static const char *DEF_MODELS[] = {"teacher", "student"};

static int read_models(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_strs *l = dst;
    if (cb_sc_str_list(c, v, path, l)) return 1;
    if (l->n == 0) return cb_sc_err(c, v, path, "the list is empty (teacher, student)"), 1;
    for (int i = 0; i < l->n; i++) {
        int k;
        if (cb_sc_enum(c, v->items[i], cb_path_idx(c->pool, path, (size_t)i), BENCH_MODELS, 2, &k))
            return 1;
    }
    return 0;
}

static int read_pos_list(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return cb_sc_int_list(c, v, path, SF_POS | SF_DIM, dst);
}

static int read_kinds(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_bench_cfg *b = (cb_bench_cfg *)((char *)dst - offsetof(cb_bench_cfg, kinds));
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of cache kinds (%s), got %s",
                  "fp32, fp16, q8_0, q4_0, nf4", cb_sc_describe(c, v));
        return 1;
    }
    if (v->n == 0 || v->n > 8) {
        cb_sc_err(c, v, path, "expected 1 to 8 cache kinds, got %zu", v->n);
        return 1;
    }
    for (size_t i = 0; i < v->n; i++) {
        int k;
        if (cb_sc_enum(c, v->items[i], cb_path_idx(c->pool, path, i), KV_KINDS, 5, &k)) return 1;
        b->kinds[i] = KV_DTYPES[k];
    }
    b->n_kinds = (int)v->n;
    return 0;
}

static int read_tasks(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_strs *l = dst;
    if (cb_sc_str_list(c, v, path, l)) return 1;
    if (l->n == 0) return cb_sc_err(c, v, path, "the list of tasks is empty"), 1;
    return 0;
}

static int read_suite_path(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst);

#define BOFF(m) offsetof(cb_bench_cfg, m)
static const cb_sfield PPL_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"dataset", SF_STR, SF_REQ, BOFF(dataset), NULL, 0, NULL},
    {"block_size", SF_INT, SF_POS | SF_DIM, BOFF(block_size), NULL, 0, NULL},
    {"batch_size", SF_INT, SF_POS | SF_DIM, BOFF(batch_size), NULL, 0, NULL},
    {"num_batches", SF_INT, SF_POS | SF_NULLOK, BOFF(num_batches), NULL, 0, NULL},
    {"stride", SF_INT, SF_POS | SF_DIM | SF_NULLOK, BOFF(stride), NULL, 0, NULL},
};
static const cb_sfield LATENCY_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"prompt_lengths", SF_FN, 0, BOFF(prompt_lengths), NULL, 0, read_pos_list},
    {"generation_lengths", SF_FN, 0, BOFF(generation_lengths), NULL, 0, read_pos_list},
    {"batch_sizes", SF_FN, 0, BOFF(batch_sizes), NULL, 0, read_pos_list},
    {"warmup_runs", SF_INT, SF_NONNEG, BOFF(warmup_runs), NULL, 0, NULL},
    {"timed_runs", SF_INT, SF_POS, BOFF(timed_runs), NULL, 0, NULL},
    {"use_cache", SF_BOOL, 0, BOFF(use_cache), NULL, 0, NULL},
};
static const cb_sfield MEMORY_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"sequence_lengths", SF_FN, 0, BOFF(sequence_lengths), NULL, 0, read_pos_list},
    {"batch_sizes", SF_FN, 0, BOFF(batch_sizes), NULL, 0, read_pos_list},
    {"measure_peak", SF_BOOL, 0, BOFF(measure_peak), NULL, 0, NULL},
    {"measure_kvcache", SF_BOOL, 0, BOFF(measure_kvcache), NULL, 0, NULL},
    {"quantization_modes", SF_FN, 0, BOFF(kinds), NULL, 0, read_kinds},
};
static const cb_sfield ACCURACY_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"tasks", SF_FN, SF_REQ, BOFF(tasks), NULL, 0, read_tasks},
    {"num_fewshot", SF_INT, SF_NONNEG, BOFF(num_fewshot), NULL, 0, NULL},
    {"limit", SF_INT, SF_POS | SF_NULLOK, BOFF(limit), NULL, 0, NULL},
};
static const cb_sfield GENERATION_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"prompts_file", SF_STR, SF_REQ, BOFF(prompts_file), NULL, 0, NULL},
    {"max_new_tokens", SF_INT, SF_POS | SF_DIM, BOFF(max_new_tokens), NULL, 0, NULL},
    {"temperature", SF_FLOAT, SF_POS, BOFF(temperature), NULL, 0, NULL},
    {"top_p", SF_FLOAT, SF_PROB, BOFF(top_p), NULL, 0, NULL},
    {"repetition_penalty", SF_FLOAT, SF_POS, BOFF(repetition_penalty), NULL, 0, NULL},
};
static const cb_sfield SUITE_REF_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"path", SF_FN, SF_REQ, BOFF(suite_path), NULL, 0, read_suite_path},
};

static int read_bench_config(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_bench_cfg *b = (cb_bench_cfg *)((char *)dst - offsetof(cb_bench_cfg, type));
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (a benchmark config with a type), got %s",
                  cb_sc_describe(c, v));
        return 1;
    }
    const cb_doc_node *t = cb_doc_get(v, "type");
    const char *tp = cb_path_key(c->pool, path, "type");
    if (!t) {
        cb_sc_err(c, v, tp,
                  "required key 'type' is missing (perplexity, latency, memory, accuracy, "
                  "generation, suite)");
        return 1;
    }
    int i;
    if (cb_sc_enum(c, t, tp, BENCH_TYPES, 6, &i)) return 1;
    b->type = (cb_bench_type)i;
    switch (b->type) {
    case CB_BENCH_PERPLEXITY:
        return cb_sc_object(c, v, path, "a perplexity benchmark", PPL_FIELDS, SF_COUNT(PPL_FIELDS),
                            b);
    case CB_BENCH_LATENCY:
        return cb_sc_object(c, v, path, "a latency benchmark", LATENCY_FIELDS,
                            SF_COUNT(LATENCY_FIELDS), b);
    case CB_BENCH_MEMORY:
        return cb_sc_object(c, v, path, "a memory benchmark", MEMORY_FIELDS,
                            SF_COUNT(MEMORY_FIELDS), b);
    case CB_BENCH_ACCURACY:
        return cb_sc_object(c, v, path, "an accuracy benchmark", ACCURACY_FIELDS,
                            SF_COUNT(ACCURACY_FIELDS), b);
    case CB_BENCH_GENERATION:
        return cb_sc_object(c, v, path, "a generation benchmark", GENERATION_FIELDS,
                            SF_COUNT(GENERATION_FIELDS), b);
    case CB_BENCH_SUITE:
        return cb_sc_object(c, v, path, "a suite benchmark", SUITE_REF_FIELDS,
                            SF_COUNT(SUITE_REF_FIELDS), b);
    }
    return 1;
}

#define BSOFF(m) offsetof(cb_bench_cfg, m)
static const cb_sfield BENCH_FIELDS[] = {
    {"id", SF_STR, SF_REQ, BSOFF(id), NULL, 0, NULL},
    {"config", SF_FN, SF_REQ, BSOFF(type), NULL, 0, read_bench_config},
    {"models", SF_FN, 0, BSOFF(models), NULL, 0, read_models},
    {"repeats", SF_INT, SF_POS, BSOFF(repeats), NULL, 0, NULL},
};

static void bench_defaults(cb_bench_cfg *b) {
    memset(b, 0, sizeof *b);
    b->models.n = 2;
    b->models.v = DEF_MODELS;
    b->repeats = 1;
    b->block_size = 2048;
    b->batch_size = 1;
    b->prompt_lengths = (cb_cfg_ints){4, DEF_PROMPT_LENGTHS};
    b->generation_lengths = (cb_cfg_ints){3, DEF_GEN_LENGTHS};
    b->batch_sizes = (cb_cfg_ints){3, DEF_BATCH_SIZES};
    b->sequence_lengths = (cb_cfg_ints){4, DEF_SEQ_LENGTHS};
    b->warmup_runs = 3;
    b->timed_runs = 10;
    b->use_cache = true;
    b->measure_peak = true;
    b->measure_kvcache = true;
    b->n_kinds = 3;
    b->kinds[0] = CB_KV_FP16;
    b->kinds[1] = CB_KV_Q8_0;
    b->kinds[2] = CB_KV_Q4_0;
    b->max_new_tokens = 256;
    b->temperature = 1.0;
    b->top_p = 1.0;
    b->repetition_penalty = 1.0;
}

int cb_read_bench_list(cb_sctx *c, const cb_doc_node *v, const char *path, cb_bench_cfg **out,
                       int *n) {
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of benchmarks, got %s", cb_sc_describe(c, v));
        return 1;
    }
    cb_bench_cfg *a = cb_pool_alloc(c->pool, (v->n ? v->n : 1) * sizeof *a);
    if (!a) return cb_sc_err(c, v, path, "out of memory"), 1;
    int bad = 0;
    for (size_t i = 0; i < v->n; i++) {
        const char *bp = cb_path_idx(c->pool, path, i);
        bench_defaults(&a[i]);
        a[i].src = cb_sc_src(c, v->items[i], bp);
        bad += cb_sc_object(c, v->items[i], bp, "a benchmark", BENCH_FIELDS, SF_COUNT(BENCH_FIELDS),
                            &a[i]);
        for (size_t j = 0; j < i && !bad; j++)
            if (strcmp(a[j].id, a[i].id) == 0) {
                cb_sc_err_key(c, &a[i].src, "id", "duplicate benchmark id '%.60s' in this group",
                              a[i].id);
                bad++;
            }
    }
    *out = a;
    *n = (int)v->n;
    return bad;
}

/* ---- eval-suite files ---------------------------------------------------------------------- */

static const char *const AGGREGATIONS[] = {"all_pass", "any_pass", "weighted_average", "min_score"};
static const char *const SEVERITIES[] = {"low", "medium", "high", "critical"};
static const char *const CHECKS[] = {"loop_detection", "max_tokens", "blacklist", "whitelist",
                                     "regex"};
static const char *const PASS_TYPES[] = {"boolean", "partial_score"};

#define SOFF(m) offsetof(cb_eval_suite, m)
static const cb_sfield SCORING_FIELDS[] = {
    {"aggregation", SF_ENUM, 0, SOFF(aggregation), AGGREGATIONS, 4, NULL},
    {"pass_threshold", SF_FLOAT, SF_PROB, SOFF(pass_threshold), NULL, 0, NULL},
};
static const cb_sfield RULES_FIELDS[] = {
    {"max_output_tokens", SF_INT, SF_POS | SF_DIM, SOFF(max_output_tokens), NULL, 0, NULL},
    {"max_repetition_ratio", SF_FLOAT, SF_PROB, SOFF(max_repetition_ratio), NULL, 0, NULL},
};

#define CSOFF(m) offsetof(cb_suite_case, m)
static const cb_sfield CHECK_LOOP_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"max_consecutive_repeats", SF_INT, SF_POS, CSOFF(max_consecutive_repeats), NULL, 0, NULL},
    {"blacklist_patterns", SF_FN, 0, CSOFF(patterns), NULL, 0, NULL},
};
static const cb_sfield CHECK_MAXTOK_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"limit", SF_INT, SF_REQ | SF_POS | SF_DIM, CSOFF(limit), NULL, 0, NULL},
};
static const cb_sfield CHECK_LIST_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"patterns", SF_FN, SF_REQ, CSOFF(patterns), NULL, 0, NULL},
};
static const cb_sfield CHECK_REGEX_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"pattern", SF_FN, SF_REQ, CSOFF(pattern), NULL, 0, NULL},
    {"flags", SF_FN, 0, CSOFF(flags), NULL, 0, NULL},
};
static const cb_sfield PASS_BOOL_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"condition", SF_STR, 0, CSOFF(condition), NULL, 0, NULL},
};
static const cb_sfield PASS_PARTIAL_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"min_matches", SF_INT, SF_POS, CSOFF(min_matches), NULL, 0, NULL},
};

static int regex_ok(cb_sctx *c, const cb_doc_node *v, const char *path, const char *pat,
                    uint32_t opts) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts | PCRE2_UTF, &code, &off, NULL);
    if (re) {
        pcre2_code_free(re);
        return 1;
    }
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    cb_sc_err(c, v, path, "invalid regular expression at offset %zu: %s", (size_t)off, (char *)buf);
    return 0;
}

static int read_patterns(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_strs *l = dst;
    if (cb_sc_str_list(c, v, path, l)) return 1;
    if (l->n == 0) return cb_sc_err(c, v, path, "the list of patterns is empty"), 1;
    for (int i = 0; i < l->n; i++)
        if (!regex_ok(c, v->items[i], cb_path_idx(c->pool, path, (size_t)i), l->v[i], 0)) return 1;
    return 0;
}

static int read_pattern(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    if (cb_sc_str(c, v, path, (const char **)dst)) return 1;
    return regex_ok(c, v, path, *(const char **)dst, 0) ? 0 : 1;
}

static int read_flags(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    const char *s;
    if (cb_sc_str(c, v, path, &s)) return 1;
    if (strspn(s, "imsx") != strlen(s)) {
        cb_sc_err(c, v, path, "regex flags must be letters from \"imsx\", got \"%.20s\"", s);
        return 1;
    }
    *(const char **)dst = s;
    return 0;
}

static int read_check(cb_sctx *c, const cb_doc_node *v, const char *path, cb_suite_case *sc) {
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (a validation rule with a type), got %s",
                  cb_sc_describe(c, v));
        return 1;
    }
    const cb_doc_node *t = cb_doc_get(v, "type");
    const char *tp = cb_path_key(c->pool, path, "type");
    if (!t) return cb_sc_err(c, v, tp, "required key 'type' is missing in the validation rule"), 1;
    int i;
    if (cb_sc_enum(c, t, tp, CHECKS, 5, &i)) return 1;
    sc->check = (cb_check_type)(i + 1);
    /* the FN slots of the tables are filled here: the readers need the case pointer */
    cb_sfield f[3];
    int nf;
    switch (sc->check) {
    case CB_CHECK_LOOP_DETECTION:
        memcpy(f, CHECK_LOOP_FIELDS, sizeof CHECK_LOOP_FIELDS);
        f[2].fn = read_patterns;
        nf = 3;
        break;
    case CB_CHECK_MAX_TOKENS:
        memcpy(f, CHECK_MAXTOK_FIELDS, sizeof CHECK_MAXTOK_FIELDS);
        nf = 2;
        break;
    case CB_CHECK_BLACKLIST:
    case CB_CHECK_WHITELIST:
        memcpy(f, CHECK_LIST_FIELDS, sizeof CHECK_LIST_FIELDS);
        f[1].fn = read_patterns;
        nf = 2;
        break;
    default:
        memcpy(f, CHECK_REGEX_FIELDS, sizeof CHECK_REGEX_FIELDS);
        f[1].fn = read_pattern;
        f[2].fn = read_flags;
        nf = 3;
        break;
    }
    return cb_sc_object(c, v, path, cb_pool_printf(c->pool, "a %s rule", CHECKS[i]), f, nf, sc);
}

static int read_pass(cb_sctx *c, const cb_doc_node *v, const char *path, cb_suite_case *sc) {
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (pass criteria with a type), got %s",
                  cb_sc_describe(c, v));
        return 1;
    }
    const cb_doc_node *t = cb_doc_get(v, "type");
    const char *tp = cb_path_key(c->pool, path, "type");
    if (!t) return cb_sc_err(c, v, tp, "required key 'type' is missing in pass_criteria"), 1;
    int i;
    if (cb_sc_enum(c, t, tp, PASS_TYPES, 2, &i)) return 1;
    sc->pass_type = (cb_pass_type)i;
    if (i == 0)
        return cb_sc_object(c, v, path, "boolean pass criteria", PASS_BOOL_FIELDS,
                            SF_COUNT(PASS_BOOL_FIELDS), sc);
    return cb_sc_object(c, v, path, "partial_score pass criteria", PASS_PARTIAL_FIELDS,
                        SF_COUNT(PASS_PARTIAL_FIELDS), sc);
}

static int fn_check(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return read_check(c, v, path, (cb_suite_case *)((char *)dst - offsetof(cb_suite_case, check)));
}
static int fn_pass(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return read_pass(c, v, path,
                     (cb_suite_case *)((char *)dst - offsetof(cb_suite_case, pass_type)));
}
static int fn_tags(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return cb_sc_str_list(c, v, path, dst);
}

static const cb_sfield SUITE_CASE_FIELDS[] = {
    {"id", SF_STR, 0, CSOFF(id), NULL, 0, NULL},
    {"prompt", SF_STR, SF_REQ, CSOFF(prompt), NULL, 0, NULL},
    {"expected", SF_STR, SF_NULLOK, CSOFF(expected), NULL, 0, NULL},
    {"description", SF_STR, SF_NULLOK, CSOFF(description), NULL, 0, NULL},
    {"severity", SF_ENUM, 0, CSOFF(severity), SEVERITIES, 4, NULL},
    {"tags", SF_FN, 0, CSOFF(tags), NULL, 0, fn_tags},
    {"weight", SF_FLOAT, SF_POS, CSOFF(weight), NULL, 0, NULL},
    {"validation", SF_FN, SF_NULLOK, CSOFF(check), NULL, 0, fn_check},
    {"pass_criteria", SF_FN, SF_NULLOK, CSOFF(pass_type), NULL, 0, fn_pass},
};

static int fn_scoring(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_eval_suite *s = (cb_eval_suite *)((char *)dst - offsetof(cb_eval_suite, aggregation));
    return cb_sc_object(c, v, path, "scoring", SCORING_FIELDS, SF_COUNT(SCORING_FIELDS), s);
}
static int fn_rules(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_eval_suite *s = (cb_eval_suite *)((char *)dst - offsetof(cb_eval_suite, max_output_tokens));
    return cb_sc_object(c, v, path, "validation_rules", RULES_FIELDS, SF_COUNT(RULES_FIELDS), s);
}
static int fn_data(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_eval_suite *s = (cb_eval_suite *)((char *)dst - offsetof(cb_eval_suite, cases));
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of cases, got %s", cb_sc_describe(c, v));
        return 1;
    }
    if (v->n == 0) return cb_sc_err(c, v, path, "an eval suite needs at least one case"), 1;
    cb_suite_case *a = cb_pool_alloc(c->pool, v->n * sizeof *a);
    if (!a) return cb_sc_err(c, v, path, "out of memory"), 1;
    int bad = 0;
    for (size_t i = 0; i < v->n; i++) {
        cb_suite_case *sc = &a[i];
        const char *cp = cb_path_idx(c->pool, path, i);
        sc->src = cb_sc_src(c, v->items[i], cp);
        sc->severity = CB_SEV_MEDIUM;
        sc->weight = 1.0;
        sc->max_consecutive_repeats = 3;
        sc->min_matches = 1;
        int b = cb_sc_object(c, v->items[i], cp, "an eval-suite case", SUITE_CASE_FIELDS,
                             SF_COUNT(SUITE_CASE_FIELDS), sc);
        if (!b && !sc->prompt[0])
            b = (cb_sc_err_key(c, &sc->src, "prompt", "prompt must be non-empty"), 1);
        if (!b && !sc->id) sc->id = cb_pool_printf(c->pool, "case%zu", i);
        for (size_t j = 0; j < i && !b && !bad; j++)
            if (a[j].id && strcmp(a[j].id, sc->id) == 0) {
                cb_sc_err_key(c, &sc->src, "id", "duplicate case id '%.60s'", sc->id);
                b = 1;
            }
        bad += b;
    }
    s->cases = a;
    s->n_cases = (int)v->n;
    return bad;
}

static const cb_sfield SUITE_FIELDS[] = {
    {"id", SF_STR, SF_REQ, SOFF(id), NULL, 0, NULL},
    {"description", SF_STR, 0, SOFF(description), NULL, 0, NULL},
    {"scoring", SF_FN, SF_NULLOK, SOFF(aggregation), NULL, 0, fn_scoring},
    {"validation_rules", SF_FN, SF_NULLOK, SOFF(max_output_tokens), NULL, 0, fn_rules},
    {"data", SF_FN, SF_REQ, SOFF(cases), NULL, 0, fn_data},
};
static const cb_sfield SUITE_TOP_FIELDS[] = {
    {"benchmark", SF_IGNORE, SF_REQ, 0, NULL, 0, NULL},
};

int cb_read_suite(cb_sctx *c, const cb_doc_node *root, const char *file, cb_eval_suite *s) {
    memset(s, 0, sizeof *s);
    s->file = file;
    s->description = "";
    s->aggregation = CB_AGG_ALL_PASS;
    s->pass_threshold = 0.8;
    s->max_output_tokens = 2048;
    s->max_repetition_ratio = 0.5;
    if (!root || (root->kind == CB_DOC_SCALAR && root->type == CB_SCALAR_NULL)) {
        cb_diags_add(c->errs, file, 1, 1, "", "the eval-suite file is empty");
        return 1;
    }
    int bad = cb_sc_object(c, root, "", "an eval-suite file", SUITE_TOP_FIELDS,
                           SF_COUNT(SUITE_TOP_FIELDS), s);
    if (bad) return bad;
    return cb_sc_object(c, cb_doc_get(root, "benchmark"), "benchmark", "an eval suite",
                        SUITE_FIELDS, SF_COUNT(SUITE_FIELDS), s);
}

static int read_suite_path(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_bench_cfg *b = (cb_bench_cfg *)((char *)dst - offsetof(cb_bench_cfg, suite_path));
    const char *p;
    if (cb_sc_str(c, v, path, &p)) return 1;
    b->suite_path = p;
    if (c->opts && c->opts->no_includes) {
        cb_sc_err(c, v, path, "reading other files is disabled here");
        return 1;
    }
    if (!p[0]) return cb_sc_err(c, v, path, "the suite path is empty"), 1;
    const char *full = p[0] == '/' || !c->dir[0] ? p : cb_pool_printf(c->pool, "%s/%s", c->dir, p);
    if (!full || !cb_file_exists(full) || cb_is_dir(full)) {
        if (full && strcmp(full, p) != 0)
            cb_sc_err(c, v, path, "eval-suite file '%s' does not exist (looked for %s)", p, full);
        else
            cb_sc_err(c, v, path, "eval-suite file '%s' does not exist", p);
        return 1;
    }
    cb_doc *doc = NULL;
    if (cb_doc_load(full, &doc, c->errs) != CB_OK) return 1;
    cb_doc_link *l = cb_pool_alloc(c->pool, sizeof *l);
    cb_eval_suite *s = cb_pool_alloc(c->pool, sizeof *s);
    if (!l || !s) {
        cb_doc_free(doc);
        return cb_sc_err(c, v, path, "out of memory"), 1;
    }
    l->doc = doc;
    l->next = c->docs;
    c->docs = l;
    b->suite = s;
    return cb_read_suite(c, doc->root, doc->file, s);
}

/* ---- standalone suite files ---------------------------------------------------------------- */

typedef struct suite_holder {
    cb_eval_suite s;
    cb_pool pool;
    cb_doc *doc;
} suite_holder;

cb_status cb_eval_suite_load(const char *path, cb_eval_suite **out, cb_diags *errs) {
    *out = NULL;
    cb_diags local = {0};
    cb_diags *e = errs ? errs : &local;
    cb_doc *doc = NULL;
    cb_status st = cb_doc_load(path, &doc, e);
    if (st != CB_OK) {
        cb_diags_free(&local);
        return st;
    }
    suite_holder *h = calloc(1, sizeof *h);
    if (!h) {
        cb_doc_free(doc);
        cb_diags_free(&local);
        return cb_fail(CB_ERR_NOMEM, "%s: out of memory", path);
    }
    cb_pool_init(&h->pool);
    h->doc = doc;
    cb_sctx c = {.pool = &h->pool, .doc = doc, .errs = e, .dir = ""};
    c.errs0 = e->n + e->dropped;
    if (cb_read_suite(&c, doc->root, doc->file, &h->s) || cb_sc_nerr(&c)) {
        st = cb_fail(CB_ERR_FORMAT, "%s", e->n ? e->msg[0] : "invalid eval suite");
        cb_eval_suite_free(&h->s);
        cb_diags_free(&local);
        return st;
    }
    cb_diags_free(&local);
    *out = &h->s;
    return CB_OK;
}

void cb_eval_suite_free(cb_eval_suite *s) {
    if (!s) return;
    suite_holder *h = (suite_holder *)s;
    cb_pool_free(&h->pool);
    cb_doc_free(h->doc);
    free(h);
}

void cb_schema_register_bench(void);
void cb_schema_register_bench(void) {
    cb_sc_register("groups.benchmarks", BENCH_FIELDS, SF_COUNT(BENCH_FIELDS));
    cb_sc_register("benchmarks.perplexity", PPL_FIELDS, SF_COUNT(PPL_FIELDS));
    cb_sc_register("benchmarks.latency", LATENCY_FIELDS, SF_COUNT(LATENCY_FIELDS));
    cb_sc_register("benchmarks.memory", MEMORY_FIELDS, SF_COUNT(MEMORY_FIELDS));
    cb_sc_register("benchmarks.accuracy", ACCURACY_FIELDS, SF_COUNT(ACCURACY_FIELDS));
    cb_sc_register("benchmarks.generation", GENERATION_FIELDS, SF_COUNT(GENERATION_FIELDS));
    cb_sc_register("benchmarks.suite", SUITE_REF_FIELDS, SF_COUNT(SUITE_REF_FIELDS));
    cb_sc_register("suite.benchmark", SUITE_FIELDS, SF_COUNT(SUITE_FIELDS));
    cb_sc_register("suite.benchmark.scoring", SCORING_FIELDS, SF_COUNT(SCORING_FIELDS));
    cb_sc_register("suite.benchmark.validation_rules", RULES_FIELDS, SF_COUNT(RULES_FIELDS));
    cb_sc_register("suite.benchmark.data", SUITE_CASE_FIELDS, SF_COUNT(SUITE_CASE_FIELDS));
    cb_sc_register("suite.benchmark.data.validation.loop_detection", CHECK_LOOP_FIELDS,
                   SF_COUNT(CHECK_LOOP_FIELDS));
    cb_sc_register("suite.benchmark.data.validation.max_tokens", CHECK_MAXTOK_FIELDS,
                   SF_COUNT(CHECK_MAXTOK_FIELDS));
    cb_sc_register("suite.benchmark.data.validation.blacklist", CHECK_LIST_FIELDS,
                   SF_COUNT(CHECK_LIST_FIELDS));
    cb_sc_register("suite.benchmark.data.validation.regex", CHECK_REGEX_FIELDS,
                   SF_COUNT(CHECK_REGEX_FIELDS));
    cb_sc_register("suite.benchmark.data.pass_criteria.boolean", PASS_BOOL_FIELDS,
                   SF_COUNT(PASS_BOOL_FIELDS));
    cb_sc_register("suite.benchmark.data.pass_criteria.partial_score", PASS_PARTIAL_FIELDS,
                   SF_COUNT(PASS_PARTIAL_FIELDS));
}
