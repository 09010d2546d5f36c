/* Manifest pipeline: YAML 1.2 scalars, positions, vars, aliases, merge keys, repeat expansion,
 * defaults, every cross-field rule, parameter counts (by hand) and honest KV-cache bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/manifest.h"
#include "caramba/model.h"
#include "caramba/module.h" /* the builder includes both: no name may clash */
#include "caramba/node.h"
#include "caramba/plan.h"
#include "compiler/compiler.h"
#include "testutil.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static cb_manifest *load(const char *name, const char *text, cb_diags *errs) {
    cb_manifest *m = NULL;
    cb_manifest_parse(name, text, strlen(text), NULL, &m, errs);
    return m;
}

static cb_manifest *load_ok(const char *text) {
    cb_diags errs = {0};
    cb_manifest *m = load("t.yml", text, &errs);
    if (!m) {
        for (int i = 0; i < errs.n; i++) fprintf(stderr, "unexpected: %s\n", errs.msg[i]);
        fail_msg("manifest did not load");
    }
    cb_diags_free(&errs);
    return m;
}

/* Loads `text` expecting failure: the first error must contain every needle; returns the
 * number of errors. */
static int expect_err_n(const char *name, const char *text, const char *n1, const char *n2) {
    cb_diags errs = {0};
    cb_manifest *m = load(name, text, &errs);
    if (m) {
        cb_manifest_free(m);
        fail_msg("expected an error containing '%s'", n1);
    }
    assert_true(errs.n >= 1);
    const char *e = errs.msg[0];
    if (!strstr(e, n1) || (n2 && !strstr(e, n2))) {
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", e);
        cb_diags_free(&errs);
        fail_msg("error\n  '%s'\nlacks\n  '%s' / '%s'", copy, n1, n2 ? n2 : "");
    }
    /* the library's last error is the first message too */
    assert_non_null(strstr(cb_last_error(), n1));
    int n = errs.n + errs.dropped;
    cb_diags_free(&errs);
    return n;
}

static void expect_err(const char *text, const char *n1, const char *n2) {
    int n = expect_err_n("t.yml", text, n1, n2);
    if (n != 1) fail_msg("expected exactly one error for '%s', got %d", n1, n);
}

/* A model-only manifest around a one-line flow topology (line 5). */
static char *with_topology(const char *topo, const char *extra_model) {
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "version: 1\n"
             "model:\n"
             "  type: transformer\n"
             "%s"
             "  topology: %s\n",
             extra_model ? extra_model : "", topo);
    return buf;
}

/* ---- scalars and positions ------------------------------------------------------------------ */

static void test_scalar_resolution(void **state) {
    (void)state;
    struct {
        const char *t;
        cb_scalar_type ty;
        double v;
    } cases[] = {
        {"", CB_SCALAR_NULL, 0},
        {"~", CB_SCALAR_NULL, 0},
        {"null", CB_SCALAR_NULL, 0},
        {"NULL", CB_SCALAR_NULL, 0},
        {"true", CB_SCALAR_BOOL, 1},
        {"False", CB_SCALAR_BOOL, 0},
        {"yes", CB_SCALAR_STR, 0},
        {"off", CB_SCALAR_STR, 0},
        {"42", CB_SCALAR_INT, 42},
        {"-7", CB_SCALAR_INT, -7},
        {"+3", CB_SCALAR_INT, 3},
        {"007", CB_SCALAR_INT, 7},
        {"0o17", CB_SCALAR_INT, 15},
        {"0x1F", CB_SCALAR_INT, 31},
        {"1e-5", CB_SCALAR_FLOAT, 1e-5},
        {"1.0e-5", CB_SCALAR_FLOAT, 1e-5},
        {".5", CB_SCALAR_FLOAT, 0.5},
        {"1.", CB_SCALAR_FLOAT, 1.0},
        {"-2.5E3", CB_SCALAR_FLOAT, -2500},
        {"500000.0", CB_SCALAR_FLOAT, 500000},
        {"1_000", CB_SCALAR_STR, 0},
        {"0x", CB_SCALAR_STR, 0},
        {"1e", CB_SCALAR_STR, 0},
        {"abc", CB_SCALAR_STR, 0},
        {"-0x10", CB_SCALAR_STR, 0},
        {"0o8", CB_SCALAR_STR, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cb_scalar_type ty;
        int64_t iv;
        double fv;
        bool bv;
        assert_true(cb_scalar_resolve(cases[i].t, strlen(cases[i].t), &ty, &iv, &fv, &bv));
        if (ty != cases[i].ty) fail_msg("'%s': type %d, want %d", cases[i].t, ty, cases[i].ty);
        if (ty == CB_SCALAR_INT) assert_int_equal(iv, (int64_t)cases[i].v);
        if (ty == CB_SCALAR_FLOAT) assert_true(fv == cases[i].v);
        if (ty == CB_SCALAR_BOOL) assert_int_equal(bv, cases[i].v != 0);
    }
    cb_scalar_type ty;
    int64_t iv;
    double fv;
    bool bv;
    assert_true(cb_scalar_resolve(".inf", 4, &ty, &iv, &fv, &bv) && ty == CB_SCALAR_FLOAT &&
                isinf(fv) && fv > 0);
    assert_true(cb_scalar_resolve("-.Inf", 5, &ty, &iv, &fv, &bv) && isinf(fv) && fv < 0);
    assert_true(cb_scalar_resolve(".NaN", 4, &ty, &iv, &fv, &bv) && isnan(fv));
    /* out of int64 range: flagged */
    assert_false(cb_scalar_resolve("99999999999999999999", 20, &ty, &iv, &fv, &bv));
    assert_int_equal(ty, CB_SCALAR_INT);
    assert_true(cb_scalar_resolve("9223372036854775807", 19, &ty, &iv, &fv, &bv));
    assert_int_equal(iv, INT64_MAX);
}

static void test_format_float(void **state) {
    (void)state;
    struct {
        double v;
        const char *s;
    } cases[] = {
        {500000.0, "500000.0"}, {1e-5, "1.0e-05"},     {0.0001, "0.0001"},
        {1e16, "1.0e+16"},      {0.1, "0.1"},          {3.0, "3.0"},
        {-2.5, "-2.5"},         {1.5e300, "1.5e+300"}, {123456789.125, "123456789.125"},
        {0.0, "0.0"},           {2e-7, "2.0e-07"},     {1e15, "1000000000000000.0"},
        {INFINITY, ".inf"},     {-INFINITY, "-.inf"},  {NAN, ".nan"},
        {0.3, "0.3"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cb_format_float(cases[i].v, buf);
        if (strcmp(buf, cases[i].s) != 0)
            fail_msg("%.17g -> '%s', want '%s'", cases[i].v, buf, cases[i].s);
        /* what we render reads back as the same float */
        if (isfinite(cases[i].v)) {
            cb_scalar_type ty;
            int64_t iv;
            double fv;
            bool bv;
            cb_scalar_resolve(buf, strlen(buf), &ty, &iv, &fv, &bv);
            assert_int_equal(ty, CB_SCALAR_FLOAT);
            assert_true(fv == cases[i].v);
        }
    }
}

static void test_positions_yaml(void **state) {
    (void)state;
    const char *y = "a: 1\n"
                    "b:\n"
                    "  - x\n"
                    "  - {k: \"v\", n: 2.5}\n"
                    "c: |\n"
                    "  text\n"
                    "d: 'quoted 12'\n";
    cb_doc *doc;
    cb_diags errs = {0};
    assert_int_equal(cb_doc_parse("p.yml", y, strlen(y), &doc, &errs), CB_OK);
    cb_doc_node *r = cb_doc_root(doc);
    assert_int_equal(r->kind, CB_DOC_MAP);
    cb_doc_node *a = cb_doc_get(r, "a");
    assert_int_equal(a->type, CB_SCALAR_INT);
    assert_int_equal(a->line, 1);
    assert_int_equal(a->col, 4);
    cb_doc_node *b = cb_doc_get(r, "b");
    assert_int_equal(b->kind, CB_DOC_SEQ);
    assert_int_equal(b->items[0]->line, 3);
    assert_int_equal(b->items[0]->col, 5);
    cb_doc_node *m = b->items[1];
    assert_int_equal(m->line, 4);
    assert_int_equal(m->col, 5);
    cb_doc_node *k = cb_doc_get(m, "k");
    assert_int_equal(k->type, CB_SCALAR_STR);
    assert_int_equal(k->col, 9);
    cb_doc_node *n = cb_doc_get(m, "n");
    assert_int_equal(n->type, CB_SCALAR_FLOAT);
    assert_true(n->f == 2.5);
    assert_int_equal(n->col, 17);
    assert_int_equal(cb_doc_get(r, "c")->type, CB_SCALAR_STR);
    assert_string_equal(cb_doc_get(r, "c")->text, "text\n");
    assert_int_equal(cb_doc_get(r, "d")->type, CB_SCALAR_STR); /* quoted stays a string */
    assert_string_equal(cb_doc_kind_name(b), "sequence");
    cb_doc_free(doc);
}

static void test_positions_json(void **state) {
    (void)state;
    const char *j = "{\n"
                    "  \"a\": 1,\n"
                    "  \"b\": [true, null, 2.0, \"s\"],\n"
                    "  \"c\": {\"d\": -3e2}\n"
                    "}\n";
    cb_doc *doc;
    assert_int_equal(cb_doc_parse("p.json", j, strlen(j), &doc, NULL), CB_OK);
    cb_doc_node *r = cb_doc_root(doc);
    cb_doc_node *a = cb_doc_get(r, "a");
    assert_int_equal(a->type, CB_SCALAR_INT);
    assert_int_equal(a->line, 2);
    assert_int_equal(a->col, 8);
    cb_doc_node *b = cb_doc_get(r, "b");
    assert_int_equal(b->line, 3);
    assert_int_equal(b->col, 8);
    assert_int_equal(b->items[0]->type, CB_SCALAR_BOOL);
    assert_int_equal(b->items[1]->type, CB_SCALAR_NULL);
    assert_int_equal(b->items[2]->type, CB_SCALAR_FLOAT); /* 2.0 is a float, as in YAML */
    assert_int_equal(b->items[2]->col, 21);
    assert_int_equal(b->items[3]->type, CB_SCALAR_STR);
    cb_doc_node *d = cb_doc_get(cb_doc_get(r, "c"), "d");
    assert_true(d->f == -300.0);
    assert_int_equal(d->line, 4);
    assert_int_equal(d->col, 14);
    cb_doc_free(doc);
    /* errors carry positions */
    cb_diags errs = {0};
    const char *bad = "{\n  \"a\": 1,\n  \"a\": 2\n}";
    assert_int_equal(cb_doc_parse("d.json", bad, strlen(bad), &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "d.json:3:3: a: duplicate key 'a'"));
    cb_diags_free(&errs);
    const char *bad2 = "{\"a\": [1, 2,, 3]}";
    assert_int_equal(cb_doc_parse("e.json", bad2, strlen(bad2), &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "e.json:1:13:"));
    cb_diags_free(&errs);
}

static void test_yaml_structure_errors(void **state) {
    (void)state;
    cb_doc *doc;
    cb_diags errs = {0};
    const char *dup = "a: 1\nb:\n  c: 1\n  c: 2\n";
    assert_int_equal(cb_doc_parse("d.yml", dup, strlen(dup), &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(
        errs.msg[0], "d.yml:4:3: b.c: duplicate key 'c' (first defined at line 3, column 3)"));
    cb_diags_free(&errs);
    const char *tab = "a:\n\tb: 1\n";
    assert_int_equal(cb_doc_parse("t.yml", tab, strlen(tab), &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "t.yml:2:1:"));
    assert_non_null(strstr(errs.msg[0], "tab"));
    cb_diags_free(&errs);
    /* 200 nested flow sequences: an error, not a stack overflow */
    char deep[512];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    deep[400] = 0;
    assert_int_equal(cb_doc_parse("n.yml", deep, 400, &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "nesting deeper than 128"));
    cb_diags_free(&errs);
    assert_int_equal(cb_doc_parse("n.json", deep, 400, &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "n.json:1:129: (root): nesting deeper than 128"));
    cb_diags_free(&errs);
    /* alias bomb: 10 levels of 10 aliases each */
    char bomb[4096];
    size_t o = (size_t)snprintf(bomb, sizeof bomb, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int l = 1; l < 10; l++) {
        o += (size_t)snprintf(bomb + o, sizeof bomb - o, "a%d: &a%d [", l, l);
        for (int k = 0; k < 10; k++)
            o += (size_t)snprintf(bomb + o, sizeof bomb - o, "%s*a%d", k ? ", " : "", l - 1);
        o += (size_t)snprintf(bomb + o, sizeof bomb - o, "]\n");
    }
    assert_int_equal(cb_doc_parse("b.yml", bomb, o, &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "more than 1000000 nodes"));
    cb_diags_free(&errs);
    const char *rec = "a: &x [1, *x]\n";
    assert_int_equal(cb_doc_parse("r.yml", rec, strlen(rec), &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "recursive alias"));
    cb_diags_free(&errs);
    const char *two = "a: 1\n---\nb: 2\n";
    assert_int_equal(cb_doc_parse("2.yml", two, strlen(two), &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "2.yml:2:1:"));
    cb_diags_free(&errs);
    assert_int_equal(cb_doc_parse("x.toml", "a = 1", 5, &doc, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(errs.msg[0], "unsupported manifest format '.toml'"));
    cb_diags_free(&errs);
}

static void test_anchors_and_merge(void **state) {
    (void)state;
    const char *y = "base: &b {d_model: 64, eps: 1.0e-6}\n"
                    "norm:\n"
                    "  <<: *b\n"
                    "  eps: 1.0e-5\n"
                    "list: [*b, *b]\n";
    cb_doc *doc;
    assert_int_equal(cb_doc_parse("m.yml", y, strlen(y), &doc, NULL), CB_OK);
    cb_doc_node *r = cb_doc_root(doc);
    cb_doc_node *norm = cb_doc_get(r, "norm");
    assert_int_equal(norm->n, 2);
    assert_int_equal(cb_doc_get(norm, "d_model")->i, 64);
    assert_true(cb_doc_get(norm, "eps")->f == 1e-5); /* explicit key beats the merged one */
    cb_doc_node *l = cb_doc_get(r, "list");
    assert_ptr_not_equal(l->items[0], l->items[1]); /* aliases are independent copies */
    assert_int_equal(cb_doc_get(l->items[1], "d_model")->i, 64);
    cb_doc_free(doc);
}

/* ---- vars ----------------------------------------------------------------------------------- */

static cb_doc *lower_vars(const char *y, cb_diags *errs, int *rc) {
    cb_doc *doc = NULL;
    assert_int_equal(cb_doc_parse("v.yml", y, strlen(y), &doc, errs), CB_OK);
    *rc = cb_lower_vars(doc, errs);
    return doc;
}

static void test_vars(void **state) {
    (void)state;
    const char *y = "vars:\n"
                    "  d: 128\n"
                    "  eps: 1e-5\n"
                    "  base: 500000.0\n"
                    "  on: true\n"
                    "  name: model\n"
                    "  ver: v1\n"
                    "  file: \"${name}_${ver}.pt\"\n"
                    "  dd: ${d}\n"
                    "  lst: [1, \"${d}\"]\n"
                    "  mp: {a: 1, b: x}\n"
                    "  nothing: null\n"
                    "a: ${d}\n"
                    "b: \"${eps}\"\n"
                    "c: ${on}\n"
                    "e: ${file}\n"
                    "f: w${d}\n"
                    "g: r${base}\n"
                    "h: ${dd}\n"
                    "i: ${lst}\n"
                    "j: \"m=${mp} l=${lst} e=${eps} t=${on} n=${nothing}\"\n"
                    "k: $d ${ d } ${a-b} $${d\n"
                    "l: [\"${d}\", {x: \"${mp}\"}]\n"
                    "${d}: keys are never substituted\n";
    cb_diags errs = {0};
    int rc;
    cb_doc *doc = lower_vars(y, &errs, &rc);
    assert_int_equal(rc, 0);
    cb_doc_node *r = cb_doc_root(doc);
    assert_int_equal(cb_doc_find(r, "vars"), -1); /* consumed */
    cb_doc_node *a = cb_doc_get(r, "a");
    assert_int_equal(a->type, CB_SCALAR_INT);
    assert_int_equal(a->i, 128);
    assert_int_equal(a->line, 13); /* positioned at the reference */
    assert_int_equal(cb_doc_get(r, "b")->type, CB_SCALAR_FLOAT);
    assert_true(cb_doc_get(r, "b")->f == 1e-5);
    assert_int_equal(cb_doc_get(r, "c")->type, CB_SCALAR_BOOL);
    assert_string_equal(cb_doc_get(r, "e")->text, "model_v1.pt");
    assert_int_equal(cb_doc_get(r, "f")->type, CB_SCALAR_STR);
    assert_string_equal(cb_doc_get(r, "f")->text, "w128");
    assert_string_equal(cb_doc_get(r, "g")->text, "r500000.0");
    assert_int_equal(cb_doc_get(r, "h")->i, 128); /* chained */
    cb_doc_node *i = cb_doc_get(r, "i");
    assert_int_equal(i->kind, CB_DOC_SEQ);
    assert_int_equal(i->items[1]->i, 128);
    assert_string_equal(cb_doc_get(r, "j")->text,
                        "m={a: 1, b: x} l=[1, 128] e=1.0e-05 t=true n=null");
    assert_string_equal(cb_doc_get(r, "k")->text, "$d ${ d } ${a-b} $${d"); /* no "}" */
    cb_doc_node *l = cb_doc_get(r, "l");
    assert_int_equal(cb_doc_get(cb_doc_get(l->items[1], "x"), "a")->i, 1);
    assert_int_equal(cb_doc_find(r, "${d}"), (int)r->n - 1);
    cb_doc_free(doc);

    /* errors name the key path */
    doc = lower_vars("vars: {d: 1}\nmodel:\n  x: [1, \"${dx}\"]\n", &errs, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(
        strstr(errs.msg[0], "v.yml:3:10: model.x[1]: unknown variable 'dx' (did you mean 'd'?)"));
    cb_diags_free(&errs);
    cb_doc_free(doc);
    doc = lower_vars("vars:\n  a: ${b}\n  b: \"x${c}\"\n  c: [\"${a}\"]\nm: ${a}\n", &errs, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(errs.msg[0], "variable cycle: a -> b -> c -> a"));
    assert_non_null(strstr(errs.msg[0], "vars.c[0]"));
    cb_diags_free(&errs);
    cb_doc_free(doc);
    /* resolution is lazy (spec-core §1.2): an unused variable is not checked */
    doc = lower_vars("vars:\n  a: 1\n  b: ${zz}\n  c: ${c}\nm: ${a}\n", &errs, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(cb_doc_get(cb_doc_root(doc), "m")->i, 1);
    cb_doc_free(doc);
    /* ... but a used one is, through the chain */
    doc = lower_vars("vars:\n  a: 1\n  b: ${zz}\nm: [\"${a}\", \"x${b}\"]\n", &errs, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(errs.msg[0], "v.yml:3:6: vars.b: unknown variable 'zz'"));
    cb_diags_free(&errs);
    cb_doc_free(doc);
    /* no vars section: nothing is substituted, and a type error says why */
    doc = lower_vars("m: ${a}\n", &errs, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(cb_doc_get(cb_doc_root(doc), "m")->text, "${a}");
    cb_doc_free(doc);
    expect_err(
        with_topology("{type: stacked, layers: [{type: rms_norm, d_model: \"${d}\"}]}", NULL),
        "d_model: expected a positive integer, got the string \"${d}\" (the manifest has no "
        "vars section, so ${...} is not substituted)",
        NULL);
    /* exponential string growth stops at the cap */
    char big[2048];
    size_t o = (size_t)snprintf(big, sizeof big, "vars:\n  v0: xxxxxxxxxxxxxxxx\n");
    for (int k = 1; k < 30; k++)
        o +=
            (size_t)snprintf(big + o, sizeof big - o, "  v%d: \"${v%d}${v%d}\"\n", k, k - 1, k - 1);
    o += (size_t)snprintf(big + o, sizeof big - o, "m: ${v29}\n");
    doc = lower_vars(big, &errs, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(errs.msg[0], "longer than"));
    cb_diags_free(&errs);
    cb_doc_free(doc);
}

static void test_var_types_in_manifest(void **state) {
    (void)state;
    /* the README shape: quoted whole-string references become ints */
    const char *y = "version: 1\n"
                    "vars: {d_model: 64, heads: 4, eps: 1e-6, causal: false}\n"
                    "model:\n"
                    "  type: transformer\n"
                    "  topology:\n"
                    "    type: StackedTopology\n"
                    "    layers:\n"
                    "      - type: AttentionLayer\n"
                    "        d_model: \"${d_model}\"\n"
                    "        n_heads: \"${heads}\"\n"
                    "        is_causal: \"${causal}\"\n"
                    "      - {type: RMSNormLayer, d_model: \"${d_model}\", eps: \"${eps}\"}\n";
    cb_manifest *m = load_ok(y);
    const cb_cfg_node *t = &m->model.topology;
    assert_int_equal(t->layers[0].attention.d_model, 64);
    assert_int_equal(t->layers[0].attention.n_heads, 4);
    assert_false(t->layers[0].attention.is_causal);
    assert_true(t->layers[1].rms_norm.eps == 1e-6);
    assert_string_equal(m->name, "t"); /* the file's stem */
    cb_manifest_free(m);
    /* an embedded reference gives a string: wrong type for an int field, at the reference */
    expect_err("version: 1\nvars: {d: 64}\nmodel:\n  type: transformer\n  topology:\n"
               "    {type: stacked, layers: [{type: rms_norm, d_model: \"x${d}\"}]}\n",
               "t.yml:6:56: model.topology.layers[0].d_model: expected a positive integer, got "
               "the string \"x64\"",
               NULL);
}

/* ---- aliases, repeat, defaults -----------------------------------------------------------------
 */

static void test_aliases(void **state) {
    (void)state;
    const char *y =
        "version: 1\n"
        "model:\n"
        "  type: transformer\n"
        "  topology:\n"
        "    type: stacked_topology\n"
        "    layers:\n"
        "      - {type: sequential, layers: [{type: linear, d_in: 8, d_out: 8}]}\n"
        "      - {type: residual, layers: [{type: layer_norm, d_model: 8}, {type: dropout, p: "
        "0.1}]}\n"
        "      - {type: cyclic, layers: [{type: rms_norm_layer, d_model: 8}]}\n"
        "      - {type: recurrent, layers: [{type: attention, d_model: 8, n_heads: 2}]}\n"
        "      - {type: nested, layers: [{type: swiglu, d_model: 8, d_ff: 16}]}\n"
        "      - {type: RMSNormLayer, d_model: 8}\n";
    cb_manifest *m = load_ok(y);
    const cb_cfg_node *t = &m->model.topology;
    assert_int_equal(m->model.type, CB_MODEL_TRANSFORMER);
    assert_int_equal(t->kind, CB_CFG_STACKED);
    assert_int_equal(t->layers[0].kind, CB_CFG_SEQUENTIAL);
    assert_int_equal(t->layers[0].layers[0].kind, CB_CFG_LINEAR);
    assert_int_equal(t->layers[1].kind, CB_CFG_RESIDUAL);
    assert_int_equal(t->layers[1].layers[0].kind, CB_CFG_LAYER_NORM);
    assert_int_equal(t->layers[1].layers[1].kind, CB_CFG_DROPOUT);
    assert_int_equal(t->layers[2].kind, CB_CFG_CYCLIC);
    assert_int_equal(t->layers[2].layers[0].kind, CB_CFG_RMS_NORM);
    assert_int_equal(t->layers[3].kind, CB_CFG_RECURRENT);
    assert_int_equal(t->layers[3].layers[0].kind, CB_CFG_ATTENTION);
    assert_int_equal(t->layers[4].kind, CB_CFG_NESTED);
    assert_int_equal(t->layers[4].layers[0].kind, CB_CFG_SWIGLU);
    assert_string_equal(cb_cfg_kind_name(t->layers[4].layers[0].kind), "SwiGLULayer");
    cb_manifest_free(m);
    expect_err(
        with_topology("{type: stacked, layers: [{type: atention, d_model: 8, n_heads: 2}]}", NULL),
        "t.yml:4:45: model.topology.layers[0].type: unknown type 'atention' (did you mean "
        "'attention'?)",
        NULL);
}

static void test_repeat_expansion(void **state) {
    (void)state;
    /* Stacked[ Nested x3 [ Nested x2 [Linear 8->8, Dropout], RMSNorm ] ] */
    const char *y = "version: 1\n"
                    "model:\n"
                    "  type: transformer\n"
                    "  topology:\n"
                    "    type: stacked\n"
                    "    layers:\n"
                    "      - type: nested\n"
                    "        repeat: 3\n"
                    "        layers:\n"
                    "          - {type: nested, repeat: 2, layers: [{type: linear, d_in: 8, d_out: "
                    "8}, {type: dropout}]}\n"
                    "          - {type: rms_norm, d_model: 8}\n";
    cb_manifest *m = load_ok(y);
    const cb_cfg_node *t = &m->model.topology;
    assert_string_equal(t->path, "topology");
    assert_int_equal(t->n_layers, 1);
    const cb_cfg_node *outer = &t->layers[0];
    assert_int_equal(outer->repeat, 1);
    assert_int_equal(outer->n_layers, 6); /* [inner, norm] x 3 */
    for (int r = 0; r < 3; r++) {
        const cb_cfg_node *inner = &outer->layers[2 * r];
        assert_int_equal(inner->kind, CB_CFG_NESTED);
        assert_int_equal(inner->rep, r);
        assert_int_equal(inner->n_layers, 4); /* [linear, dropout] x 2 */
        assert_int_equal(inner->layers[2].kind, CB_CFG_LINEAR);
        assert_int_equal(inner->layers[3].kind, CB_CFG_DROPOUT);
        assert_int_equal(outer->layers[2 * r + 1].kind, CB_CFG_RMS_NORM);
        /* source positions are shared by the copies */
        assert_string_equal(inner->layers[2].src.path,
                            "model.topology.layers[0].layers[0].layers[0]");
    }
    assert_string_equal(outer->layers[5].path, "topology.layers.0.layers.5");
    assert_string_equal(outer->layers[4].layers[3].path, "topology.layers.0.layers.4.layers.3");
    /* independent copies */
    assert_ptr_not_equal(outer->layers[0].layers, outer->layers[2].layers);
    /* params: 3 x (2 x (64 + 8) + 8) = 456 */
    assert_int_equal(m->model.n_params, 456);
    cb_manifest_free(m);
    /* the expansion cap */
    expect_err(
        with_topology("{type: stacked, layers: [{type: nested, repeat: 1000, layers: [{type: "
                      "nested, repeat: 1000, layers: [{type: dropout}]}]}]}",
                      NULL),
        "t.yml:4:61: model.topology.layers[0].repeat: repeat expands the model to more than "
        "100000 modules",
        NULL);
}

static void test_defaults(void **state) {
    (void)state;
    const char *y = "version: 1\n"
                    "model:\n"
                    "  type: transformer\n"
                    "  embedder: {type: token, vocab_size: 32, d_model: 8}\n"
                    "  topology:\n"
                    "    type: stacked\n"
                    "    layers:\n"
                    "      - {type: attention, d_model: 8, n_heads: 2}\n"
                    "      - {type: linear, d_in: 8, d_out: 8}\n"
                    "      - {type: swiglu, d_model: 8, d_ff: 4}\n"
                    "      - {type: rms_norm, d_model: 8}\n"
                    "      - {type: layer_norm, d_model: 8}\n"
                    "groups:\n"
                    "  - name: g\n"
                    "    runs:\n"
                    "      - id: r\n"
                    "        mode: train\n"
                    "        steps: 10\n"
                    "        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.001}\n"
                    "    benchmarks:\n"
                    "      - {id: lat, config: {type: latency}}\n"
                    "      - {id: mem, config: {type: memory}}\n"
                    "      - {id: acc, config: {type: accuracy, tasks: [hellaswag]}}\n";
    cb_manifest *m = load_ok(y);
    assert_true(m->model.tied_embeddings); /* default true, as in the original */
    const cb_cfg_attention *a = &m->model.topology.layers[0].attention;
    assert_int_equal(a->mode, CB_CFG_ATTN_STANDARD);
    assert_int_equal(a->n_kv_heads, 2);
    assert_int_equal(a->attn_dim, 8);
    assert_int_equal(a->head_dim, 4);
    assert_true(a->rope_enabled);
    assert_true(a->rope_base == 10000.0);
    assert_true(a->is_causal);
    assert_false(a->bias);
    assert_false(a->rope_scaling.enabled);
    assert_int_equal(a->mem_summarize, CB_CFG_MEM_MEAN);
    assert_int_equal(a->q_chunk, 0);
    assert_true(m->model.topology.layers[1].linear.bias); /* Linear bias defaults to true */
    assert_true(m->model.topology.layers[2].swiglu.bias); /* SwiGLU too */
    assert_true(m->model.topology.layers[3].rms_norm.eps == 1e-5);
    assert_true(m->model.topology.layers[3].rms_norm.elementwise_affine);
    assert_true(m->model.topology.layers[4].layer_norm.eps == 1e-5);
    const cb_defaults_cfg *d = &m->defaults;
    assert_string_equal(d->tokenizer, "tiktoken");
    assert_true(d->val_frac == 0.1);
    assert_int_equal(d->eval_iters, 50);
    assert_int_equal(d->save_every, 100);
    assert_string_equal(m->notes, "");
    const cb_run_cfg *r = &m->groups[0].runs[0];
    assert_int_equal(r->seed, 1337);
    assert_string_equal(r->exp, "");
    assert_null(r->expected);
    assert_int_equal(r->verify.type, CB_VERIFY_NONE);
    const cb_train_cfg *t = &r->train;
    assert_string_equal(t->device, "cpu");
    assert_int_equal(t->dtype, CB_TDTYPE_FLOAT32);
    assert_int_equal(t->auto_batch_ref_block_size, 512);
    assert_int_equal(t->auto_batch_min, 1);
    assert_null(t->teacher_ckpt);
    assert_int_equal(t->convergence_patience, 50);
    assert_int_equal(t->convergence_max_steps, 5000);
    assert_true(t->cache_teacher_outputs);
    assert_int_equal(t->amp_dtype, CB_TDTYPE_FLOAT16);
    assert_int_equal(t->gradient_accumulation_steps, 1);
    assert_int_equal(t->compile_model, CB_CFG_COMPILE_OFF);
    assert_string_equal(t->compile_mode, "reduce-overhead");
    assert_int_equal(t->scheduler, CB_CFG_SCHED_NONE);
    assert_true(t->min_lr_ratio == 0.0);
    const cb_bench_cfg *lat = &m->groups[0].benchmarks[0];
    assert_int_equal(lat->type, CB_BENCH_LATENCY);
    assert_int_equal(lat->prompt_lengths.n, 4);
    assert_int_equal(lat->prompt_lengths.v[3], 2048);
    assert_int_equal(lat->generation_lengths.v[2], 512);
    assert_int_equal(lat->batch_sizes.v[2], 8);
    assert_int_equal(lat->warmup_runs, 3);
    assert_int_equal(lat->timed_runs, 10);
    assert_true(lat->use_cache);
    assert_int_equal(lat->models.n, 2);
    assert_string_equal(lat->models.v[1], "student");
    assert_int_equal(lat->repeats, 1);
    const cb_bench_cfg *mem = &m->groups[0].benchmarks[1];
    assert_int_equal(mem->sequence_lengths.v[3], 4096);
    assert_int_equal(mem->n_kinds, 3);
    assert_int_equal(mem->kinds[1], CB_KV_Q8_0);
    assert_int_equal(m->groups[0].benchmarks[2].num_fewshot, 0);
    assert_string_equal(m->groups[0].description, "");
    cb_manifest_free(m);
}

/* ---- cross-field rules -------------------------------------------------------------------------
 */

static void test_attention_rules(void **state) {
    (void)state;
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 8, n_kv_heads: 3}]}",
            NULL),
        "t.yml:4:93: model.topology.layers[0].n_kv_heads: n_heads=8 must be divisible by "
        "n_kv_heads=3",
        NULL);
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, n_kv_heads: 8}]}",
            NULL),
        "n_kv_heads=8 cannot exceed n_heads=4", NULL);
    expect_err(with_topology(
                   "{type: stacked, layers: [{type: attention, d_model: 60, n_heads: 8}]}", NULL),
               "model.topology.layers[0].n_heads: attn_dim=60 (d_model, as attn_dim is unset) "
               "must be divisible by n_heads=8",
               NULL);
    expect_err(with_topology(
                   "{type: stacked, layers: [{type: attention, d_model: 36, n_heads: 4}]}", NULL),
               "RoPE needs an even head size, got head_dim = attn_dim / n_heads = 36 / 4 = 9",
               NULL);
    /* the same without RoPE is fine */
    cb_manifest *m = load_ok(with_topology("{type: stacked, layers: [{type: attention, d_model: "
                                           "36, n_heads: 4, rope_enabled: false}]}",
                                           NULL));
    assert_int_equal(m->model.topology.layers[0].attention.head_dim, 9);
    cb_manifest_free(m);
    expect_err(with_topology("{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, "
                             "mode: decoupled, geo_dim: 32}]}",
                             NULL),
               "model.topology.layers[0].sem_dim: mode: decoupled needs both sem_dim and geo_dim",
               NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, "
                             "mode: decoupled, sem_dim: 30, geo_dim: 32}]}",
                             NULL),
               "model.topology.layers[0].sem_dim: sem_dim=30 must be divisible by n_heads=4", NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, "
                             "mode: decoupled, sem_dim: 32, geo_dim: 12}]}",
                             NULL),
               "model.topology.layers[0].geo_dim: RoPE needs an even geometric head size, got "
               "geo_dim / n_heads = 12 / 4 = 3",
               NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, "
                             "mode: decoupled, sem_dim: 32, geo_dim: 32, v_dim: 42}]}",
                             NULL),
               "v_dim=42 must be divisible by n_heads=4", NULL);
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, sem_dim: 32}]}",
            NULL),
        "model.topology.layers[0].sem_dim: sem_dim only applies to mode: decoupled", NULL);
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, mem_block: 8}]}",
            NULL),
        "mem_block needs local_window", NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, "
                             "rope_enabled: false, rope_dim: 8}]}",
                             NULL),
               "rope_dim needs rope_enabled: true", NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, "
                             "rope_scaling: {type: llama3, factor: 8, low_freq_factor: 4, "
                             "high_freq_factor: 1, original_max_position_embeddings: 64}}]}",
                             NULL),
               "rope_scaling.high_freq_factor: high_freq_factor must be greater than "
               "low_freq_factor",
               NULL);
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, mode: grouped}]}",
            NULL),
        "model.topology.layers[0].mode: invalid value 'grouped'; allowed: standard, gqa, "
        "decoupled",
        NULL);
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, dropout_p: 1.5}]}",
            NULL),
        "dropout_p: must be a probability in [0, 1], got 1.5", NULL);
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, rope_base: -1}]}",
            NULL),
        "rope_base: must be positive, got -1", NULL);
    expect_err(
        with_topology(
            "{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 4, head_dim: 16}]}",
            NULL),
        "head_dim is derived as attn_dim / n_heads", NULL);
    /* decoupled with KV sharing: derived widths */
    m = load_ok(
        with_topology("{type: stacked, layers: [{type: attention, d_model: 64, n_heads: 8, "
                      "n_kv_heads: 2, mode: decoupled, sem_dim: 16, geo_dim: 32, v_dim: 48}]}",
                      NULL));
    const cb_cfg_attention *a = &m->model.topology.layers[0].attention;
    assert_int_equal(a->sem_head_dim, 2);
    assert_int_equal(a->geo_head_dim, 4);
    assert_int_equal(a->v_head_dim, 6);
    assert_int_equal(a->k_sem_width, 4);
    assert_int_equal(a->k_geo_width, 8);
    assert_int_equal(a->k_width, 12);
    assert_int_equal(a->v_width, 12);
    /* q_sem 16x64 + k_sem 4x64 + q_geo 32x64 + k_geo 8x64 + v 12x64 + out 64x48 */
    assert_int_equal(m->model.topology.layers[0].n_params, (16 + 4 + 32 + 8 + 12) * 64 + 64 * 48);
    cb_manifest_free(m);
}

static void test_width_flow(void **state) {
    (void)state;
    /* the original's gap: a sub-topology's input width is checked too */
    expect_err(with_topology("{type: stacked, layers: [{type: linear, d_in: 4, d_out: 8}, {type: "
                             "residual, layers: [{type: layer_norm, d_model: 16}]}]}",
                             NULL),
               "t.yml:4:127: model.topology.layers[1].layers[0].d_model: expected d_model=8 (the "
               "width of the stream here), got 16",
               NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: linear, d_in: 4, d_out: 8}, {type: "
                             "linear, d_in: 9, d_out: 8}]}",
                             NULL),
               "model.topology.layers[1].d_in: expected d_in=8", NULL);
    /* residual must give back its input width; an inner bottleneck is fine */
    expect_err(with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 8}, {type: "
                             "residual, layers: [{type: linear, d_in: 8, d_out: 16}]}]}",
                             NULL),
               "model.topology.layers[1]: a ResidualTopology must give back its input shape (x + "
               "f(x)): input (B, T, 8), output (B, T, 16)",
               NULL);
    cb_manifest *m = load_ok(with_topology(
        "{type: stacked, layers: [{type: residual, layers: [{type: linear, d_in: 8, d_out: 32}, "
        "{type: linear, d_in: 32, d_out: 8, bias: false}]}]}",
        NULL));
    assert_int_equal(m->model.topology.d_in, 8);
    assert_int_equal(m->model.topology.d_out, 8);
    assert_int_equal(m->model.n_params, 8 * 32 + 32 + 32 * 8);
    cb_manifest_free(m);
    /* Branching concatenates on the feature dim */
    m = load_ok(with_topology(
        "{type: stacked, layers: [{type: branching, layers: [{type: linear, d_in: 8, d_out: 3}, "
        "{type: linear, d_in: 8, d_out: 5}, {type: dropout}]}, {type: layer_norm, d_model: 16}]}",
        "  embedder: {type: none}\n"));
    const cb_cfg_node *br = &m->model.topology.layers[0];
    assert_int_equal(br->kind, CB_CFG_BRANCHING);
    assert_int_equal(br->d_in, 8);
    assert_int_equal(br->d_out, 16); /* 3 + 5 + 8 */
    assert_int_equal(br->n_lead, 0);
    cb_manifest_free(m);
    /* Parallel stacks on a new leading dim */
    m = load_ok(with_topology(
        "{type: stacked, layers: [{type: rms_norm, d_model: 8}, {type: parallel, layers: [{type: "
        "linear, d_in: 8, d_out: 4}, {type: linear, d_in: 8, d_out: 4}, {type: linear, d_in: 8, "
        "d_out: 4}]}, {type: linear, d_in: 4, d_out: 2}]}",
        NULL));
    const cb_cfg_node *par = &m->model.topology.layers[1];
    assert_int_equal(par->d_out, 4);
    assert_int_equal(par->n_lead, 1);
    assert_int_equal(par->lead[0], 3);
    assert_int_equal(m->model.topology.layers[2].n_lead, 1); /* (3, B, T, 2) */
    cb_manifest_free(m);
    expect_err(with_topology("{type: stacked, layers: [{type: parallel, layers: [{type: linear, "
                             "d_in: 8, d_out: 4}, {type: linear, d_in: 8, d_out: 5}]}]}",
                             NULL),
               "model.topology.layers[0].layers[1]: ParallelTopology stacks its branches on a new "
               "leading dim, so they must produce the same shape: layers[0] gives (B, T, 4), this "
               "one (B, T, 5)",
               NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: parallel, layers: [{type: rms_norm, "
                             "d_model: 8}]}, {type: attention, d_model: 8, n_heads: 2}]}",
                             NULL),
               "an AttentionLayer needs a (B, T, D) input, but a ParallelTopology before it made "
               "it (1, B, T, 8)",
               NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: parallel, layers: [{type: parallel, "
                             "layers: [{type: parallel, layers: [{type: dropout}]}]}]}]}",
                             NULL),
               "rank-5", NULL);
    expect_err(with_topology(
                   "{type: stacked, layers: [{type: branching, layers: [{type: dropout}]}]}", NULL),
               "each branch's output width must be known", NULL);
    expect_err(with_topology("{type: stacked, layers: []}", NULL),
               "model.topology.layers: StackedTopology needs at least one layer", NULL);
    expect_err(with_topology("{type: rms_norm, d_model: 8}", NULL),
               "model.topology must be a topology", NULL);
    /* repeated blocks that change width: the error names the repeated copy */
    expect_err(with_topology(
                   "{type: nested, repeat: 2, layers: [{type: linear, d_in: 8, d_out: 4}]}", NULL),
               "expected d_in=4 (the width of the stream here), got 8 (in the repeated copy "
               "topology.layers.1)",
               NULL);
}

static void test_embedder_and_head(void **state) {
    (void)state;
    const char *emb = "  embedder: {type: token, vocab_size: 100, d_model: 16}\n";
    char extra[256];
    /* tied (default) + explicit vocab head */
    expect_err(with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 16}, {type: "
                             "linear, d_in: 16, d_out: 100}]}",
                             emb),
               "t.yml:3:3: model.tied_embeddings: tied_embeddings is true (the default) but the "
               "topology already ends in a vocab-sized head (width 100)",
               NULL);
    snprintf(extra, sizeof extra, "%s  tied_embeddings: true\n", emb);
    expect_err(
        with_topology("{type: stacked, layers: [{type: linear, d_in: 16, d_out: 100}]}", extra),
        "t.yml:5:20: model.tied_embeddings: tied_embeddings is true but", NULL);
    /* untied without a head */
    snprintf(extra, sizeof extra, "%s  tied_embeddings: false\n", emb);
    expect_err(with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 16}]}", extra),
               "model.topology: tied_embeddings is false, so the topology must end in a head of "
               "width vocab_size=100 (a LinearLayer d_in=16, d_out=100); it ends at width 16",
               NULL);
    /* the first layer must take the embedder's width */
    expect_err(with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 32}]}", emb),
               "model.topology.layers[0].d_model: expected d_model=16", NULL);
    /* tied fine: logits come from the embedding */
    cb_manifest *m =
        load_ok(with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 16}]}", emb));
    assert_int_equal(m->model.d_out, 100);
    assert_int_equal(m->model.n_params, 100 * 16 + 16);
    cb_manifest_free(m);
    expect_err(with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 16}]}",
                             "  embedder: {type: none, vocab_size: 10}\n"),
               "model.embedder.vocab_size: vocab_size only applies to type: token", NULL);
    expect_err(with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 16}]}",
                             "  embedder: {type: token, d_model: 16}\n"),
               "model.embedder.vocab_size: required key 'vocab_size' is missing", NULL);
}

static void test_absurd_sizes(void **state) {
    (void)state;
    expect_err(
        with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 20000000}]}", NULL),
        "d_model: 20000000 is an absurd size (the limit is 2^24 = 16777216)", NULL);
    expect_err(
        with_topology("{type: stacked, layers: [{type: rms_norm, d_model: 99999999999999999999}]}",
                      NULL),
        "integer 99999999999999999999 is out of range", NULL);
    /* each dimension is allowed, the product is not: 24 x 16M x 16M linear */
    expect_err(
        with_topology(
            "{type: nested, repeat: 24, layers: [{type: linear, d_in: 16000000, d_out: 16000000}]}",
            NULL),
        "more than the 10^12 allowed", NULL);
}

static void test_runs_and_verify(void **state) {
    (void)state;
    const char *head =
        "version: 1\n"
        "model: {type: transformer, topology: {type: stacked, layers: [{type: dropout}]}}\n"
        "groups:\n"
        "  - name: g\n"
        "    runs:\n";
    char buf[4096];
#define RUN(body) (snprintf(buf, sizeof buf, "%s%s", head, body), buf)
    expect_err(RUN("      - {id: a, mode: train, steps: 1}\n"),
               "t.yml:6:9: groups[0].runs[0].train: a run with mode: train needs a train block",
               NULL);
    expect_err(RUN("      - {id: a, mode: train, steps: 1, train: {phase: blockwise, batch_size: "
                   "1, block_size: 8, lr: 1}}\n"),
               "groups[0].runs[0].train.phase: phase: blockwise distils from a teacher", NULL);
    expect_err(
        RUN("      - {id: a, mode: sample, steps: 1, verify: {type: compare, batches: 2}}\n"),
        "groups[0].runs[0].verify: a compare verify needs at least one of: attention, logits",
        NULL);
    expect_err(
        RUN("      - {id: a, mode: sample, steps: 1, verify: {type: fidelity, batches: 2}}\n"),
        "a fidelity verify needs at least one of: max_delta_nll, max_ppl_ratio", NULL);
    expect_err(RUN("      - {id: a, mode: sample, steps: 1, verify: {type: eval, tokenizer: {type: "
                   "tiktoken, encoding: cl100k_base}, max_new_tokens: 4, cases: [{id: c, prompt: "
                   "p, kind: choice_logprob, choices: [a, b], answer: z}], thresholds: "
                   "{min_student_accuracy: 0.5, max_accuracy_drop: 0.1}}}\n"),
               "groups[0].runs[0].verify.cases[0].answer: the answer 'z' is not one of the choices",
               NULL);
    expect_err(RUN("      - {id: a, mode: sample, steps: 1, verify: {type: eval, tokenizer: {type: "
                   "tiktoken, encoding: cl100k_base}, max_new_tokens: 4, cases: [{id: c, prompt: "
                   "p, kind: int_greedy, answer: \"3\"}], thresholds: {min_student_accuracy: 0.5, "
                   "max_accuracy_drop: 0.1}}}\n"),
               "int_greedy needs an integer answer", NULL);
    expect_err(RUN("      - {id: a, mode: sample, steps: 1, verify: {type: kvcache, n_layers: 2, "
                   "batch_size: 1, max_seq_len: 8, teacher: {k: {kind: q8}}, student: {}}}\n"),
               "groups[0].runs[0].verify.teacher.k.kind: invalid value 'q8' (did you mean 'q8_0'?)",
               NULL);
    expect_err(RUN("      - {id: a, mode: sample, steps: 1, verify: {type: kvcache, n_layers: 2, "
                   "batch_size: 1, max_seq_len: 8, teacher: {}, student: {k: {kind: fp16}}}}\n"),
               "verify.student.k: unknown key 'k' in a DecoupledLayerKVCache policy", NULL);
    expect_err(
        RUN("      - {id: a, mode: sample, steps: 1}\n      - {id: a, mode: chat, steps: 1}\n"),
        "groups[0].runs[1].id: duplicate run id 'a'", NULL);
    expect_err(RUN("      - {id: a, mode: sample, steps: 1, train: {phase: global, batch_size: 1, "
                   "block_size: 8, lr: 1}}\n"),
               "a train block only applies to mode: train", NULL);
    expect_err(RUN("      - {id: a, mode: train, steps: 1, train: {phase: global, batch_size: 1, "
                   "block_size: 8, lr: 1, device: mps}}\n"),
               "train.device: unsupported device 'mps' (allowed: cpu, cuda, cuda:N, auto)", NULL);
    expect_err(RUN("      - {id: a, mode: train, steps: 1, train: {phase: global, batch_size: 1, "
                   "block_size: 8, lr: 1, convergence_target: 0.1}}\n"),
               "convergence_target only applies to phase: blockwise", NULL);
    expect_err(RUN("      - {id: a, mode: sample, steps: 0}\n"),
               "groups[0].runs[0].steps: must be a positive integer, got 0", NULL);
    /* a full kvcache verify and a typed eval verify load */
    cb_manifest *m = load_ok(RUN("      - id: a\n"
                                 "        mode: sample\n"
                                 "        steps: 1\n"
                                 "        verify:\n"
                                 "          type: kvcache\n"
                                 "          n_layers: 16\n"
                                 "          batch_size: 1\n"
                                 "          max_seq_len: 2048\n"
                                 "          teacher: {type: LayerKVCache, k: {kind: fp16}, v: "
                                 "{kind: q8_0, residual_len: 16}}\n"
                                 "          student: {type: DecoupledLayerKVCache, k_sem: {kind: "
                                 "q4_0}, k_geo: {kind: q8_0}, v: {kind: nf4}}\n"
                                 "          min_reduction_ratio: 1.5\n"));
    const cb_verify_cfg *v = &m->groups[0].runs[0].verify;
    assert_int_equal(v->type, CB_VERIFY_KVCACHE);
    assert_false(v->teacher.decoupled);
    assert_int_equal(v->teacher.v.kind, CB_KV_Q8_0);
    assert_int_equal(v->teacher.v.residual_len, 16);
    assert_int_equal(v->teacher.k.qblock, 32);
    assert_true(v->student.decoupled);
    assert_int_equal(v->student.k_sem.kind, CB_KV_Q4_0);
    assert_int_equal(v->student.v.kind, CB_KV_NF4);
    assert_true(v->min_reduction_ratio == 1.5);
    cb_manifest_free(m);
#undef RUN
    /* groups */
    expect_err("version: 1\nmodel: {type: transformer, topology: {type: stacked, layers: [{type: "
               "dropout}]}}\n"
               "groups:\n  - {name: g, runs: []}\n  - {name: g, runs: []}\n",
               "t.yml:5:12: groups[1].name: duplicate group name 'g'", NULL);
    expect_err("version: 2\nmodel: {type: transformer, topology: {type: stacked, layers: [{type: "
               "dropout}]}}\n",
               "t.yml:1:10: version: unsupported manifest version 2", NULL);
    expect_err("version: 1\n", "t.yml:1:1: model: required key 'model' is missing in the manifest",
               NULL);
    expect_err("version: 1\nmodel: {type: transformer, topology: {type: stacked, layers: [{type: "
               "dropout}]}}\nnotes: 5\n",
               "t.yml:3:8: notes: expected a string, got the integer 5 (quote it)", NULL);
    expect_err("version: 1\nmodell: {}\n",
               "t.yml:2:1: modell: unknown key 'modell' in the manifest (did you mean 'model'?)",
               NULL);
}

/* ---- plan: parameters and KV bytes -------------------------------------------------------------
 */

static void test_plan_tiny(void **state) {
    (void)state;
    cb_manifest *m;
    cb_diags errs = {0};
    assert_int_equal(cb_manifest_load_ex(tu_path("presets/tiny.yml"), NULL, &m, &errs), CB_OK);
    /* by hand: d 256, H 8, Hkv 2 (head 32), d_ff 704, V 4096, untied, no biases */
    const int64_t d = 256, hd = 32, hkv = 2, ff = 704, V = 4096;
    const int64_t attn = d * d + 2 * (hkv * hd) * d + d * d; /* q, k, v, out */
    const int64_t block = d + attn + d + 3 * d * ff;         /* norm, attn, norm, swiglu */
    const int64_t total = V * d + 4 * block + d + V * d;     /* embed, blocks, norm, head */
    assert_int_equal(attn, 163840);
    assert_int_equal(block, 705024);
    assert_int_equal(total, 4917504);
    assert_int_equal(m->model.n_params, total);
    assert_int_equal(m->model.n_attention, 4);
    const cb_cfg_node *blocks = &m->model.topology.layers[0];
    assert_int_equal(blocks->n_layers, 8);
    assert_int_equal(blocks->layers[0].layers[1].n_params, attn);
    assert_int_equal(blocks->layers[1].layers[1].n_params, 3 * d * ff);
    assert_string_equal(blocks->layers[7].layers[1].path, "topology.layers.0.layers.7.layers.1");
    assert_int_equal(m->model.topology.layers[2].n_params, V * d);
    /* KV per token: 4 layers x (Hkv*hd) keys and values */
    cb_plan_kv k = cb_plan_model_kv(&m->model, CB_KV_FP16);
    assert_int_equal(k.n_layers, 4);
    assert_int_equal(k.k_elems, 4 * 64);
    assert_int_equal(k.k_bytes, 4 * 64 * 2);
    assert_int_equal(k.v_bytes, 4 * 64 * 2);
    k = cb_plan_model_kv(&m->model, CB_KV_Q8_0);
    assert_int_equal(k.k_bytes, 4 * 2 * 34); /* 64 values = 2 blocks of 34 bytes */
    k = cb_plan_model_kv(&m->model, CB_KV_NF4);
    assert_int_equal(k.v_bytes, 4 * 2 * 18);
    /* the printed plan */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cb_plan_opts po = {.batch = 8, .seq = 256};
    cb_plan_print(f, m, &po);
    fclose(f);
    assert_non_null(
        strstr(text, "total parameters: 4,917,504 (embedder 1,048,576, topology 3,868,928)"));
    assert_non_null(strstr(text, "topology.layers.0.layers.6.layers.1"));
    assert_non_null(strstr(text, "(8, 256, 4096)"));
    assert_non_null(strstr(text, "  fp16              512            512          1,024"));
    free(text);
    cb_manifest_free(m);
    cb_diags_free(&errs);
}

/* The spec-core §6.12 worked example (Llama 3.2 1B, 16 layers), with honest DBA counting. */
static void test_kv_bytes_llama(void **state) {
    (void)state;
    char buf[4096];
    const char *fmt =
        "version: 1\n"
        "model:\n"
        "  type: transformer\n"
        "  embedder: {type: token, vocab_size: 128256, d_model: 2048}\n"
        "  tied_embeddings: false\n"
        "  topology:\n"
        "    type: stacked\n"
        "    layers:\n"
        "      - type: nested\n"
        "        repeat: 16\n"
        "        layers:\n"
        "          - {type: residual, layers: [{type: rms_norm, d_model: 2048}, %s]}\n"
        "          - {type: residual, layers: [{type: rms_norm, d_model: 2048}, {type: swiglu, "
        "d_model: 2048, d_ff: 8192, bias: false}]}\n"
        "      - {type: rms_norm, d_model: 2048}\n"
        "      - {type: linear, d_in: 2048, d_out: 128256, bias: false}\n";
    snprintf(buf, sizeof buf, fmt,
             "{type: attention, d_model: 2048, n_heads: 32, n_kv_heads: 8, rope_base: 500000.0}");
    cb_manifest *t = load_ok(buf);
    /* teacher: 512 + 512 elements per layer -> 2048 B/layer -> 32 KiB per token in fp16 */
    cb_plan_kv k = cb_plan_model_kv(&t->model, CB_KV_FP16);
    assert_int_equal(k.k_elems, 16 * 512);
    assert_int_equal(k.k_bytes + k.v_bytes, 32768);
    k = cb_plan_model_kv(&t->model, CB_KV_Q8_0);
    assert_int_equal(k.k_bytes + k.v_bytes, 16 * 2 * 16 * 34); /* 512 values = 16 blocks */
    k = cb_plan_model_kv(&t->model, CB_KV_FP32);
    assert_int_equal(k.k_bytes + k.v_bytes, 65536);
    /* Llama 3.2 1B parameter count (untied): 1,498,482,688 */
    assert_int_equal(t->model.n_params, 1498482688);
    cb_manifest_free(t);
    /* DBA student as in the presets: sem 128, geo 256, Hkv 8 shared, v_dim = 2048 (teacher's) */
    snprintf(buf, sizeof buf, fmt,
             "{type: attention, d_model: 2048, n_heads: 32, n_kv_heads: 8, mode: decoupled, "
             "sem_dim: 128, geo_dim: 256, decoupled_gate: true}");
    cb_manifest *s = load_ok(buf);
    /* keys (128 + 256) * 8/32 = 96, values 2048 * 8/32 = 512 elements per layer */
    k = cb_plan_model_kv(&s->model, CB_KV_FP16);
    assert_int_equal(k.k_elems, 16 * 96);
    assert_int_equal(k.v_elems, 16 * 512);
    assert_int_equal(k.k_bytes, 16 * 96 * 2);
    assert_int_equal(k.k_bytes + k.v_bytes, 19456); /* 1216 B/layer: 1.68x smaller than 32 KiB */
    /* q8_0: k_sem 32 values -> 1 block, k_geo 64 -> 2 blocks, v 512 -> 16 blocks */
    k = cb_plan_model_kv(&s->model, CB_KV_Q8_0);
    assert_int_equal(k.k_bytes, 16 * (34 + 68));
    assert_int_equal(k.v_bytes, 16 * 544);
    k = cb_plan_model_kv(&s->model, CB_KV_Q4_0);
    assert_int_equal(k.k_bytes + k.v_bytes, 16 * (18 + 36 + 288));
    /* the original's count (no KV sharing, v = d_model): 2432 el/layer -> 76 KiB; ours differs
     * because keys are shared by H/Hkv = 4 query heads */
    assert_true(k.k_elems * 4 == 16 * (128 + 256));
    cb_manifest_free(s);
    /* a width that is not a multiple of 32 pads its last block */
    snprintf(buf, sizeof buf, fmt,
             "{type: attention, d_model: 2048, n_heads: 32, n_kv_heads: 8, mode: decoupled, "
             "sem_dim: 64, geo_dim: 64, v_dim: 320}");
    s = load_ok(buf);
    k = cb_plan_model_kv(&s->model, CB_KV_Q8_0);
    /* k_sem 16 values, k_geo 16 values: one padded block each; v 80 values: 3 blocks */
    assert_int_equal(k.k_bytes, 16 * (34 + 34));
    assert_int_equal(k.v_bytes, 16 * 3 * 34);
    cb_manifest_free(s);
}

/* ---- presets, JSON, eval suites, documentation -------------------------------------------------
 */

static void test_presets_load(void **state) {
    (void)state;
    const char *presets[] = {
        "dba",  "llama_block", "llama32_1b_dba", "llama32_1b_dba_compare", "llama32_1b_dba_eval",
        "tiny", "tiny_llama3"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "presets/%s.yml", presets[i]);
        cb_manifest *m = NULL;
        cb_diags errs = {0};
        if (cb_manifest_load_ex(tu_path(rel), NULL, &m, &errs) != CB_OK)
            fail_msg("%s: %s", rel, errs.n ? errs.msg[0] : cb_last_error());
        assert_string_equal(m->name, presets[i]);
        cb_manifest_free(m);
        cb_diags_free(&errs);
    }
    /* the fixture's shape */
    cb_manifest *m;
    assert_int_equal(cb_manifest_load(tu_path("presets/tiny_llama3.yml"), &m), CB_OK);
    const cb_cfg_attention *a = &m->model.topology.layers[0].layers[0].layers[1].attention;
    assert_int_equal(a->head_dim, 16);
    assert_int_equal(a->kv_heads, 2);
    assert_true(a->rope_base == 500000.0);
    assert_true(a->rope_scaling.enabled);
    assert_true(a->rope_scaling.factor == 32.0);
    assert_int_equal(a->rope_scaling.original_max_position_embeddings, 64);
    assert_false(m->model.tied_embeddings);
    assert_int_equal(m->model.n_attention, 2);
    /* HF LlamaForCausalLM with this config: 384*64*2 + 2*(4*64 + 2*... ) computed by hand */
    int64_t attn = 64 * 64 + 2 * 32 * 64 + 64 * 64, mlp = 3 * 64 * 176;
    assert_int_equal(m->model.n_params, 384 * 64 * 2 + 2 * (64 + attn + 64 + mlp) + 64);
    cb_manifest_free(m);
    /* the compare preset's eval suites are loaded and typed */
    assert_int_equal(cb_manifest_load(tu_path("presets/llama32_1b_dba_compare.yml"), &m), CB_OK);
    const cb_bench_cfg *b = &m->groups[0].benchmarks[1];
    assert_int_equal(b->type, CB_BENCH_SUITE);
    assert_non_null(b->suite);
    assert_string_equal(b->suite->id, "adversarial");
    assert_int_equal(b->suite->n_cases, 4);
    assert_int_equal(b->suite->cases[0].check, CB_CHECK_LOOP_DETECTION);
    assert_int_equal(b->suite->cases[0].severity, CB_SEV_HIGH);
    assert_true(b->suite->cases[0].weight == 2.0);
    assert_int_equal(b->suite->cases[3].check, CB_CHECK_REGEX);
    cb_manifest_free(m);
}

static void test_eval_suite_file(void **state) {
    (void)state;
    cb_eval_suite *s;
    cb_diags errs = {0};
    assert_int_equal(cb_eval_suite_load(tu_path("presets/benchmarks/riddles.yml"), &s, &errs),
                     CB_OK);
    assert_string_equal(s->id, "riddles");
    assert_int_equal(s->n_cases, 2);
    assert_string_equal(s->cases[1].id, "case1");
    assert_string_equal(s->cases[0].expected, "piano");
    assert_int_equal(s->cases[0].check, CB_CHECK_WHITELIST);
    assert_int_equal(s->cases[0].patterns.n, 2);
    assert_int_equal(s->aggregation, CB_AGG_WEIGHTED_AVERAGE);
    assert_int_equal(s->max_output_tokens, 2048);
    cb_eval_suite_free(s);
    /* a bad regex is found at load time */
    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/bad_suite.yml", dir);
    const char *y = "benchmark:\n  id: x\n  data:\n    - prompt: p\n      validation: {type: "
                    "regex, pattern: \"a(b\"}\n";
    assert_int_equal(tu_write_file(path, y, strlen(y)), 0);
    assert_int_equal(cb_eval_suite_load(path, &s, &errs), CB_ERR_FORMAT);
    assert_non_null(strstr(
        errs.msg[0], ":5:42: benchmark.data[0].validation.pattern: invalid regular expression"));
    cb_diags_free(&errs);
    tu_rmtree(dir);
}

static void test_json_manifest(void **state) {
    (void)state;
    const char *j =
        "{\"version\": 1, \"name\": \"j\", \"vars\": {\"d\": 8},\n"
        " \"model\": {\"type\": \"transformer\", \"topology\": {\"type\": \"stacked\",\n"
        "   \"layers\": [{\"type\": \"rms_norm\", \"d_model\": \"${d}\"},\n"
        "              {\"type\": \"linear\", \"d_in\": 8, \"d_out\": 4.0}]}}}\n";
    int n = expect_err_n("m.json", j,
                         "m.json:4:54: model.topology.layers[1].d_out: expected a "
                         "positive integer (no fraction or exponent), got the float 4.0",
                         NULL);
    assert_int_equal(n, 1);
    cb_diags errs = {0};
    const char *ok = "{\"version\": 1, \"model\": {\"type\": \"transformer\", \"topology\": "
                     "{\"type\": \"stacked\", \"layers\": [{\"type\": \"dropout\", \"p\": 0.5}]}}}";
    cb_manifest *m = load("ok.json", ok, &errs);
    assert_non_null(m);
    assert_true(m->model.topology.layers[0].dropout.p == 0.5);
    assert_string_equal(m->name, "ok");
    cb_manifest_free(m);
}

/* The plan's parameter counts are what the model builder allocates (src/model/build.c). */
static void test_plan_matches_built_model(void **state) {
    (void)state;
    const char *every =
        "version: 1\n"
        "model:\n"
        "  type: transformer\n"
        "  embedder: {type: token, vocab_size: 50, d_model: 16}\n"
        "  topology:\n"
        "    type: stacked\n"
        "    layers:\n"
        "      - {type: residual, layers: [{type: layer_norm, d_model: 16}, {type: attention, "
        "d_model: 16, n_heads: 4, n_kv_heads: 2, mode: decoupled, sem_dim: 8, geo_dim: 16, v_dim: "
        "12, bias: true}]}\n"
        "      - {type: residual, layers: [{type: rms_norm, d_model: 16, elementwise_affine: "
        "false}, {type: attention, d_model: 16, n_heads: 4, attn_dim: 24, bias: true}]}\n"
        "      - {type: sequential, layers: [{type: swiglu, d_model: 16, d_ff: 8}, {type: dropout, "
        "p: 0.1}]}\n"
        "      - {type: branching, layers: [{type: linear, d_in: 16, d_out: 6}, {type: linear, "
        "d_in: 16, d_out: 10, bias: false}]}\n"
        "      - {type: cyclic, repeat: 2, layers: [{type: linear, d_in: 16, d_out: 16}]}\n"
        "      - {type: recurrent, layers: [{type: rms_norm, d_model: 16}]}\n"
        "      - {type: nested, layers: [{type: rms_norm, d_model: 16}]}\n";
    const char *presets[] = {"presets/tiny_llama3.yml", "presets/llama_block.yml",
                             "presets/tiny.yml"};
    for (int i = 0; i < 4; i++) {
        cb_manifest *m;
        if (i < 3)
            assert_int_equal(cb_manifest_load(tu_path(presets[i]), &m), CB_OK);
        else
            m = load_ok(every);
        cb_model *md = NULL;
        if (cb_model_from_manifest(&md, &m->model, CB_CPU, 1, 32) != CB_OK)
            fail_msg("%s: %s", i < 3 ? presets[i] : "every kind", cb_last_error());
        assert_int_equal(cb_model_param_count(md), m->model.n_params);
        cb_model_free(md);
        cb_manifest_free(m);
    }
}

static void test_docs_cover_schema(void **state) {
    (void)state;
    char *doc = NULL;
    size_t len;
    assert_int_equal(cb_read_file(tu_path("docs/manifest.md"), 1 << 22, &doc, &len), CB_OK);
    const char **keys;
    int n = cb_manifest_schema_keys(&keys);
    assert_true(n > 150);
    int missing = 0;
    for (int i = 0; i < n; i++) {
        const char *dot = strrchr(keys[i], '.');
        char pat[96];
        snprintf(pat, sizeof pat, "`%s`", dot + 1);
        if (!strstr(doc, pat)) {
            fprintf(stderr, "docs/manifest.md does not document %s\n", keys[i]);
            missing++;
        }
    }
    free(doc);
    assert_int_equal(missing, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_resolution),
        cmocka_unit_test(test_format_float),
        cmocka_unit_test(test_positions_yaml),
        cmocka_unit_test(test_positions_json),
        cmocka_unit_test(test_yaml_structure_errors),
        cmocka_unit_test(test_anchors_and_merge),
        cmocka_unit_test(test_vars),
        cmocka_unit_test(test_var_types_in_manifest),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_repeat_expansion),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_attention_rules),
        cmocka_unit_test(test_width_flow),
        cmocka_unit_test(test_embedder_and_head),
        cmocka_unit_test(test_absurd_sizes),
        cmocka_unit_test(test_runs_and_verify),
        cmocka_unit_test(test_plan_tiny),
        cmocka_unit_test(test_kv_bytes_llama),
        cmocka_unit_test(test_presets_load),
        cmocka_unit_test(test_eval_suite_file),
        cmocka_unit_test(test_json_manifest),
        cmocka_unit_test(test_plan_matches_built_model),
        cmocka_unit_test(test_docs_cover_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
