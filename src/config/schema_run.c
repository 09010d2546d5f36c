/* defaults, groups, runs, train config, verify blocks (compare, fidelity, eval, kvcache) and
 * KV-cache policies. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"

/* ---- defaults ------------------------------------------------------------------------------ */

#define DFOFF(m) offsetof(cb_defaults_cfg, m)
static const cb_sfield DEFAULTS_FIELDS[] = {
    {"tokenizer", SF_STR, 0, DFOFF(tokenizer), NULL, 0, NULL},
    {"val_frac", SF_FLOAT, SF_PROB, DFOFF(val_frac), NULL, 0, NULL},
    {"instrument", SF_STR, 0, DFOFF(instrument), NULL, 0, NULL},
    {"wandb", SF_BOOL, 0, DFOFF(wandb), NULL, 0, NULL},
    {"wandb_project", SF_STR, 0, DFOFF(wandb_project), NULL, 0, NULL},
    {"wandb_entity", SF_STR, 0, DFOFF(wandb_entity), NULL, 0, NULL},
    {"wandb_mode", SF_STR, 0, DFOFF(wandb_mode), NULL, 0, NULL},
    {"eval_iters", SF_INT, SF_POS, DFOFF(eval_iters), NULL, 0, NULL},
    {"save_every", SF_INT, SF_NONNEG, DFOFF(save_every), NULL, 0, NULL},
};

void cb_defaults_init(cb_defaults_cfg *d) {
    memset(d, 0, sizeof *d);
    d->tokenizer = "tiktoken";
    d->val_frac = 0.1;
    d->instrument = "rich";
    d->wandb = false;
    d->wandb_project = "";
    d->wandb_entity = "";
    d->wandb_mode = "online";
    d->eval_iters = 50;
    d->save_every = 100;
}

int cb_read_defaults(cb_sctx *c, const cb_doc_node *v, const char *path, cb_defaults_cfg *out) {
    return cb_sc_object(c, v, path, "defaults", DEFAULTS_FIELDS, SF_COUNT(DEFAULTS_FIELDS), out);
}

/* ---- train --------------------------------------------------------------------------------- */

static const char *const PHASES[] = {"standard", "blockwise", "global"};
static const char *const TDTYPES[] = {"float32", "float16", "bfloat16", "auto"};
static const char *const SCHEDULERS[] = {"none", "linear", "cosine", "constant"};

static int read_device(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    const char *s;
    if (cb_sc_str(c, v, path, &s)) return 1;
    int ok = strcmp(s, "cpu") == 0 || strcmp(s, "cuda") == 0 || strcmp(s, "auto") == 0;
    if (!ok && strncmp(s, "cuda:", 5) == 0 && s[5]) {
        ok = 1;
        for (const char *p = s + 5; *p; p++)
            if (*p < '0' || *p > '9' || p - s > 8) ok = 0;
    }
    if (!ok) {
        cb_sc_err(c, v, path, "unsupported device '%.40s' (allowed: cpu, cuda, cuda:N, auto)", s);
        return 1;
    }
    *(const char **)dst = s;
    return 0;
}

static int read_compile_model(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_compile *m = dst;
    if (v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_BOOL) {
        *m = v->b ? CB_CFG_COMPILE_ON : CB_CFG_COMPILE_OFF;
        return 0;
    }
    static const char *const names[] = {"false", "true", "auto"};
    int i;
    if (cb_sc_enum(c, v, path, names, 3, &i)) return 1;
    *m = (cb_cfg_compile)i;
    return 0;
}

static int read_amp_dtype(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    static const char *const names[] = {"float16", "bfloat16", "auto"};
    int i;
    if (cb_sc_enum(c, v, path, names, 3, &i)) return 1;
    *(cb_train_dtype *)dst = i == 0   ? CB_TDTYPE_FLOAT16
                             : i == 1 ? CB_TDTYPE_BFLOAT16
                                      : CB_TDTYPE_AUTO;
    return 0;
}

static int read_scheduler(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    if (v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_STR &&
        (strcmp(v->text, "off") == 0 || strcmp(v->text, "disabled") == 0)) {
        *(cb_cfg_sched *)dst = CB_CFG_SCHED_NONE;
        return 0;
    }
    int i;
    if (cb_sc_enum(c, v, path, SCHEDULERS, 4, &i)) return 1;
    *(cb_cfg_sched *)dst = (cb_cfg_sched)i;
    return 0;
}

#define TOFF(m) offsetof(cb_train_cfg, m)
static const cb_sfield TRAIN_FIELDS[] = {
    {"phase", SF_ENUM, SF_REQ, TOFF(phase), PHASES, 3, NULL},
    {"batch_size", SF_INT, SF_REQ | SF_POS | SF_DIM, TOFF(batch_size), NULL, 0, NULL},
    {"block_size", SF_INT, SF_REQ | SF_POS | SF_DIM, TOFF(block_size), NULL, 0, NULL},
    {"lr", SF_FLOAT, SF_REQ | SF_POS, TOFF(lr), NULL, 0, NULL},
    {"device", SF_FN, 0, TOFF(device), NULL, 0, read_device},
    {"dtype", SF_ENUM, 0, TOFF(dtype), TDTYPES, 4, NULL},
    {"auto_batch_size", SF_BOOL, 0, TOFF(auto_batch_size), NULL, 0, NULL},
    {"auto_batch_ref_block_size", SF_INT, SF_POS | SF_DIM, TOFF(auto_batch_ref_block_size), NULL, 0,
     NULL},
    {"auto_batch_min", SF_INT, SF_POS, TOFF(auto_batch_min), NULL, 0, NULL},
    {"teacher_ckpt", SF_STR, SF_NULLOK, TOFF(teacher_ckpt), NULL, 0, NULL},
    {"teacher_rope_base", SF_FLOAT, SF_POS | SF_NULLOK, TOFF(teacher_rope_base), NULL, 0, NULL},
    {"teacher_rope_dim", SF_INT, SF_POS | SF_DIM | SF_NULLOK, TOFF(teacher_rope_dim), NULL, 0,
     NULL},
    {"convergence_target", SF_FLOAT, SF_POS | SF_NULLOK, TOFF(convergence_target), NULL, 0, NULL},
    {"convergence_patience", SF_INT, SF_POS, TOFF(convergence_patience), NULL, 0, NULL},
    {"convergence_max_steps", SF_INT, SF_POS, TOFF(convergence_max_steps), NULL, 0, NULL},
    {"cache_teacher_outputs", SF_BOOL, 0, TOFF(cache_teacher_outputs), NULL, 0, NULL},
    {"use_amp", SF_BOOL, 0, TOFF(use_amp), NULL, 0, NULL},
    {"amp_dtype", SF_FN, 0, TOFF(amp_dtype), NULL, 0, read_amp_dtype},
    {"gradient_accumulation_steps", SF_INT, SF_POS, TOFF(gradient_accumulation_steps), NULL, 0,
     NULL},
    {"num_workers", SF_INT, SF_NONNEG, TOFF(num_workers), NULL, 0, NULL},
    {"pin_memory", SF_BOOL, 0, TOFF(pin_memory), NULL, 0, NULL},
    {"compile_model", SF_FN, 0, TOFF(compile_model), NULL, 0, read_compile_model},
    {"compile_mode", SF_STR, 0, TOFF(compile_mode), NULL, 0, NULL},
    {"activation_checkpointing", SF_BOOL, 0, TOFF(activation_checkpointing), NULL, 0, NULL},
    {"activation_checkpoint_threshold_mb", SF_FLOAT, SF_NONNEG,
     TOFF(activation_checkpoint_threshold_mb), NULL, 0, NULL},
    {"scheduler", SF_FN, 0, TOFF(scheduler), NULL, 0, read_scheduler},
    {"warmup_steps", SF_INT, SF_NONNEG, TOFF(warmup_steps), NULL, 0, NULL},
    {"min_lr_ratio", SF_FLOAT, SF_PROB, TOFF(min_lr_ratio), NULL, 0, NULL},
    {"weight_decay", SF_FLOAT, SF_NONNEG, TOFF(weight_decay), NULL, 0, NULL},
    {"beta1", SF_FLOAT, SF_PROB, TOFF(beta1), NULL, 0, NULL},
    {"beta2", SF_FLOAT, SF_PROB, TOFF(beta2), NULL, 0, NULL},
    {"adam_eps", SF_FLOAT, SF_POS, TOFF(adam_eps), NULL, 0, NULL},
    {"decay_all", SF_BOOL, 0, TOFF(decay_all), NULL, 0, NULL},
    {"grad_clip", SF_FLOAT, SF_NONNEG, TOFF(grad_clip), NULL, 0, NULL},
    {"eval_every", SF_INT, SF_NONNEG, TOFF(eval_every), NULL, 0, NULL},
    {"eval_batches", SF_INT, SF_POS, TOFF(eval_batches), NULL, 0, NULL},
    {"init_from", SF_STR, SF_NULLOK, TOFF(init_from), NULL, 0, NULL},
    {"resume", SF_STR, SF_NULLOK, TOFF(resume), NULL, 0, NULL},
};

static int read_train(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_train_cfg *t = dst;
    memset(t, 0, sizeof *t);
    t->src = cb_sc_src(c, v, path);
    t->device = "cpu";
    t->dtype = CB_TDTYPE_FLOAT32;
    t->auto_batch_ref_block_size = 512;
    t->auto_batch_min = 1;
    t->convergence_patience = 50;
    t->convergence_max_steps = 5000;
    t->cache_teacher_outputs = true;
    t->amp_dtype = CB_TDTYPE_FLOAT16;
    t->gradient_accumulation_steps = 1;
    t->compile_model = CB_CFG_COMPILE_OFF;
    t->compile_mode = "reduce-overhead";
    t->scheduler = CB_CFG_SCHED_NONE;
    t->weight_decay = 0.01;
    t->beta1 = 0.9;
    t->beta2 = 0.999;
    t->adam_eps = 1e-8;
    t->eval_every = -1;
    t->eval_batches = 20;
    int bad = cb_sc_object(c, v, path, "a train config", TRAIN_FIELDS, SF_COUNT(TRAIN_FIELDS), t);
    if (bad) return bad;
    if (t->beta1 >= 1 || t->beta2 >= 1) {
        cb_sc_err_key(c, &t->src, t->beta1 >= 1 ? "beta1" : "beta2",
                      "AdamW betas must be below 1 (got %g)", t->beta1 >= 1 ? t->beta1 : t->beta2);
        bad++;
    }
    if (t->convergence_target > 0 && t->phase != CB_PHASE_BLOCKWISE) {
        cb_sc_err_key(c, &t->src, "convergence_target",
                      "convergence_target only applies to phase: blockwise");
        bad++;
    }
    return bad;
}

/* ---- KV-cache policies --------------------------------------------------------------------- */

static const char *const KV_KINDS[] = {"fp32", "fp16", "q8_0", "q4_0", "nf4"};
static const cb_kv_kind KV_DTYPES[] = {CB_KV_FP32, CB_KV_FP16, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};

static int read_kv_kind(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    int i;
    if (cb_sc_enum(c, v, path, KV_KINDS, 5, &i)) return 1;
    *(cb_kv_kind *)dst = KV_DTYPES[i];
    return 0;
}

#define KTOFF(m) offsetof(cb_cfg_kv_tensor, m)
static const cb_sfield KV_TENSOR_FIELDS[] = {
    {"kind", SF_FN, 0, KTOFF(kind), NULL, 0, read_kv_kind},
    {"qblock", SF_INT, SF_POS, KTOFF(qblock), NULL, 0, NULL},
    {"residual_len", SF_INT, SF_NONNEG | SF_DIM, KTOFF(residual_len), NULL, 0, NULL},
};

static int read_kv_tensor(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_kv_tensor *t = dst;
    int bad = cb_sc_object(c, v, path, "a cached tensor config", KV_TENSOR_FIELDS,
                           SF_COUNT(KV_TENSOR_FIELDS), t);
    if (!bad && t->qblock != 32) {
        cb_cfg_src s = cb_sc_src(c, v, path);
        cb_sc_err_key(
            c, &s, "qblock",
            "qblock must be 32 (caramba's q8_0/q4_0/nf4 formats use blocks of 32), got %lld",
            (long long)t->qblock);
        bad = 1;
    }
    return bad;
}

static const char *const POLICY_TYPES[] = {"LayerKVCache", "DecoupledLayerKVCache"};
#define KPOFF(m) offsetof(cb_cfg_kv_policy, m)
static const cb_sfield KV_STD_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"k", SF_FN, 0, KPOFF(k), NULL, 0, read_kv_tensor},
    {"v", SF_FN, 0, KPOFF(v), NULL, 0, read_kv_tensor},
};
static const cb_sfield KV_DEC_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"k_sem", SF_FN, 0, KPOFF(k_sem), NULL, 0, read_kv_tensor},
    {"k_geo", SF_FN, 0, KPOFF(k_geo), NULL, 0, read_kv_tensor},
    {"v", SF_FN, 0, KPOFF(v), NULL, 0, read_kv_tensor},
};

static void kv_tensor_default(cb_cfg_kv_tensor *t) {
    t->kind = CB_KV_FP16;
    t->qblock = 32;
    t->residual_len = 0;
}

static int read_policy(cb_sctx *c, const cb_doc_node *v, const char *path, cb_cfg_kv_policy *p,
                       int default_decoupled) {
    memset(p, 0, sizeof *p);
    kv_tensor_default(&p->k);
    kv_tensor_default(&p->v);
    kv_tensor_default(&p->k_sem);
    kv_tensor_default(&p->k_geo);
    p->decoupled = default_decoupled;
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (a KV-cache policy), got %s",
                  cb_sc_describe(c, v));
        return 1;
    }
    const cb_doc_node *t = cb_doc_get(v, "type");
    if (t && !cb_sc_is_null(t)) {
        int i;
        if (cb_sc_enum(c, t, cb_path_key(c->pool, path, "type"), POLICY_TYPES, 2, &i)) return 1;
        p->decoupled = i == 1;
    }
    if (p->decoupled)
        return cb_sc_object(c, v, path, "a DecoupledLayerKVCache policy", KV_DEC_FIELDS,
                            SF_COUNT(KV_DEC_FIELDS), p);
    return cb_sc_object(c, v, path, "a LayerKVCache policy", KV_STD_FIELDS, SF_COUNT(KV_STD_FIELDS),
                        p);
}

static int read_teacher_policy(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return read_policy(c, v, path, dst, 0);
}
static int read_student_policy(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return read_policy(c, v, path, dst, 1);
}

/* ---- verify -------------------------------------------------------------------------------- */

#define L1OFF(m) offsetof(cb_l1_thresholds, m)
static const cb_sfield L1_FIELDS[] = {
    {"max_mean_l1", SF_FLOAT, SF_REQ | SF_POS, L1OFF(max_mean_l1), NULL, 0, NULL},
    {"max_max_l1", SF_FLOAT, SF_REQ | SF_POS, L1OFF(max_max_l1), NULL, 0, NULL},
};

static int read_l1(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_l1_thresholds *t = dst;
    int bad = cb_sc_object(c, v, path, "L1 thresholds", L1_FIELDS, SF_COUNT(L1_FIELDS), t);
    t->set = !bad;
    return bad;
}

static const char *const SPLITS[] = {"auto", "train", "val"};
static const char *const CASE_KINDS[] = {"choice_logprob", "int_greedy"};
static const char *const TOKENIZERS[] = {"tiktoken", "llama"};

static int read_max_delta_nll(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_verify_cfg *vf = (cb_verify_cfg *)((char *)dst - offsetof(cb_verify_cfg, max_delta_nll));
    if (cb_sc_float(c, v, path, SF_NONNEG, &vf->max_delta_nll)) return 1;
    vf->has_max_delta_nll = true;
    return 0;
}

static const cb_sfield TIKTOKEN_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"encoding", SF_STR, SF_REQ, offsetof(cb_verify_cfg, encoding), NULL, 0, NULL},
};
static const cb_sfield LLAMA_TOK_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"model_id", SF_STR, 0, offsetof(cb_verify_cfg, model_id), NULL, 0, NULL},
};

static int read_tokenizer(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_verify_cfg *vf = (cb_verify_cfg *)((char *)dst - offsetof(cb_verify_cfg, tokenizer));
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (a tokenizer), got %s", cb_sc_describe(c, v));
        return 1;
    }
    const cb_doc_node *t = cb_doc_get(v, "type");
    if (!t) {
        cb_sc_err(c, v, cb_path_key(c->pool, path, "type"),
                  "required key 'type' is missing in the tokenizer (tiktoken or llama)");
        return 1;
    }
    int i;
    if (cb_sc_enum(c, t, cb_path_key(c->pool, path, "type"), TOKENIZERS, 2, &i)) return 1;
    vf->tokenizer = (cb_eval_tokenizer)i;
    if (i == 0)
        return cb_sc_object(c, v, path, "a tiktoken tokenizer", TIKTOKEN_FIELDS,
                            SF_COUNT(TIKTOKEN_FIELDS), vf);
    return cb_sc_object(c, v, path, "a llama tokenizer", LLAMA_TOK_FIELDS,
                        SF_COUNT(LLAMA_TOK_FIELDS), vf);
}

static int read_answer(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_eval_case *e = (cb_eval_case *)((char *)dst - offsetof(cb_eval_case, answer_str));
    if (v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_INT) {
        int64_t x;
        if (cb_sc_int(c, v, path, 0, &x)) return 1;
        e->answer_is_int = true;
        e->answer_int = x;
        return 0;
    }
    if (v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_STR) {
        e->answer_str = v->text;
        return 0;
    }
    cb_sc_err(c, v, path, "expected a string or an integer, got %s", cb_sc_describe(c, v));
    return 1;
}

static int read_choices(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_eval_case *e = (cb_eval_case *)((char *)dst - offsetof(cb_eval_case, choices));
    cb_cfg_strs l;
    if (cb_sc_str_list(c, v, path, &l)) return 1;
    e->choices = l.v;
    e->n_choices = l.n;
    return 0;
}

#define ECOFF(m) offsetof(cb_eval_case, m)
static const cb_sfield CASE_FIELDS[] = {
    {"id", SF_STR, SF_REQ, ECOFF(id), NULL, 0, NULL},
    {"prompt", SF_STR, SF_REQ, ECOFF(prompt), NULL, 0, NULL},
    {"kind", SF_ENUM, SF_REQ, ECOFF(kind), CASE_KINDS, 2, NULL},
    {"choices", SF_FN, SF_NULLOK, ECOFF(choices), NULL, 0, read_choices},
    {"answer", SF_FN, SF_NULLOK, ECOFF(answer_str), NULL, 0, read_answer},
};

static int read_case(cb_sctx *c, const cb_doc_node *v, const char *path, cb_eval_case *e) {
    memset(e, 0, sizeof *e);
    e->src = cb_sc_src(c, v, path);
    int bad = cb_sc_object(c, v, path, "an eval case", CASE_FIELDS, SF_COUNT(CASE_FIELDS), e);
    if (bad) return bad;
    const cb_cfg_src *s = &e->src;
    if (!e->id[0]) return cb_sc_err_key(c, s, "id", "case id must be non-empty"), 1;
    if (!e->prompt[0]) return cb_sc_err_key(c, s, "prompt", "case prompt must be non-empty"), 1;
    if (e->kind == CB_CASE_CHOICE_LOGPROB) {
        if (e->n_choices == 0)
            return cb_sc_err_key(c, s, "choices",
                                 "choice_logprob needs a non-empty list of choices"),
                   1;
        if (e->answer_is_int || !e->answer_str || !e->answer_str[0])
            return cb_sc_err_key(c, s, "answer", "choice_logprob needs a string answer"), 1;
        for (int i = 0; i < e->n_choices; i++)
            if (strcmp(e->choices[i], e->answer_str) == 0) return 0;
        cb_sc_err_key(c, s, "answer", "the answer '%.60s' is not one of the choices",
                      e->answer_str);
        return 1;
    }
    if (!e->answer_is_int)
        return cb_sc_err_key(c, s, "answer", "int_greedy needs an integer answer (unquoted)"), 1;
    if (cb_sc_given(s, "choices"))
        return cb_sc_err_key(c, s, "choices", "choices only apply to kind: choice_logprob"), 1;
    return 0;
}

static int read_cases(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_verify_cfg *vf = (cb_verify_cfg *)((char *)dst - offsetof(cb_verify_cfg, cases));
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of eval cases, got %s", cb_sc_describe(c, v));
        return 1;
    }
    if (v->n == 0) {
        cb_sc_err(c, v, path, "an eval verify needs at least one case");
        return 1;
    }
    cb_eval_case *a = cb_pool_alloc(c->pool, v->n * sizeof *a);
    if (!a) return cb_sc_err(c, v, path, "out of memory"), 1;
    int bad = 0;
    for (size_t i = 0; i < v->n; i++)
        bad += read_case(c, v->items[i], cb_path_idx(c->pool, path, i), &a[i]);
    for (size_t i = 0; i < v->n && !bad; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(a[i].id, a[j].id) == 0) {
                cb_sc_err_key(c, &a[i].src, "id", "duplicate case id '%.60s'", a[i].id);
                bad++;
                break;
            }
    vf->cases = a;
    vf->n_cases = (int)v->n;
    return bad;
}

#define EVTOFF(m) offsetof(cb_verify_cfg, m)
static const cb_sfield THRESH_FIELDS[] = {
    {"min_student_accuracy", SF_FLOAT, SF_REQ | SF_PROB, EVTOFF(min_student_accuracy), NULL, 0,
     NULL},
    {"max_accuracy_drop", SF_FLOAT, SF_REQ | SF_PROB, EVTOFF(max_accuracy_drop), NULL, 0, NULL},
};
static int read_thresholds(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_verify_cfg *vf =
        (cb_verify_cfg *)((char *)dst - offsetof(cb_verify_cfg, min_student_accuracy));
    return cb_sc_object(c, v, path, "eval thresholds", THRESH_FIELDS, SF_COUNT(THRESH_FIELDS), vf);
}

#define VOFF(m) offsetof(cb_verify_cfg, m)
static const cb_sfield COMPARE_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"batches", SF_INT, SF_REQ | SF_POS, VOFF(batches), NULL, 0, NULL},
    {"attention", SF_FN, SF_NULLOK, VOFF(attention), NULL, 0, read_l1},
    {"logits", SF_FN, SF_NULLOK, VOFF(logits), NULL, 0, read_l1},
    {"fail_fast", SF_BOOL, 0, VOFF(fail_fast), NULL, 0, NULL},
};
static const cb_sfield FIDELITY_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"batches", SF_INT, SF_REQ | SF_POS, VOFF(batches), NULL, 0, NULL},
    {"block_size", SF_INT, SF_POS | SF_DIM | SF_NULLOK, VOFF(block_size), NULL, 0, NULL},
    {"batch_size", SF_INT, SF_POS | SF_DIM | SF_NULLOK, VOFF(batch_size), NULL, 0, NULL},
    {"split", SF_ENUM, 0, VOFF(split), SPLITS, 3, NULL},
    {"max_delta_nll", SF_FN, SF_NULLOK, VOFF(max_delta_nll), NULL, 0, read_max_delta_nll},
    {"max_ppl_ratio", SF_FLOAT, SF_POS | SF_NULLOK, VOFF(max_ppl_ratio), NULL, 0, NULL},
    {"fail_fast", SF_BOOL, 0, VOFF(fail_fast), NULL, 0, NULL},
};
static const cb_sfield EVAL_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"tokenizer", SF_FN, SF_REQ, VOFF(tokenizer), NULL, 0, read_tokenizer},
    {"max_new_tokens", SF_INT, SF_REQ | SF_POS | SF_DIM, VOFF(max_new_tokens), NULL, 0, NULL},
    {"context_window", SF_INT, SF_POS | SF_DIM | SF_NULLOK, VOFF(context_window), NULL, 0, NULL},
    {"cases", SF_FN, SF_REQ, VOFF(cases), NULL, 0, read_cases},
    {"thresholds", SF_FN, SF_REQ, VOFF(min_student_accuracy), NULL, 0, read_thresholds},
};
static const cb_sfield KVCACHE_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"n_layers", SF_INT, SF_REQ | SF_POS | SF_DIM, VOFF(n_layers), NULL, 0, NULL},
    {"batch_size", SF_INT, SF_REQ | SF_POS | SF_DIM, VOFF(batch_size), NULL, 0, NULL},
    {"max_seq_len", SF_INT, SF_REQ | SF_POS | SF_DIM, VOFF(max_seq_len), NULL, 0, NULL},
    {"teacher", SF_FN, SF_REQ, VOFF(teacher), NULL, 0, read_teacher_policy},
    {"student", SF_FN, SF_REQ, VOFF(student), NULL, 0, read_student_policy},
    {"min_reduction_ratio", SF_FLOAT, SF_POS | SF_NULLOK, VOFF(min_reduction_ratio), NULL, 0, NULL},
};

static const char *const VERIFY_TYPES[] = {"compare", "fidelity", "eval", "kvcache"};

static int read_verify(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_verify_cfg *vf = dst;
    memset(vf, 0, sizeof *vf);
    vf->src = cb_sc_src(c, v, path);
    vf->model_id = "meta-llama/Llama-3.2-1B";
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (a verify block), got %s", cb_sc_describe(c, v));
        return 1;
    }
    const cb_doc_node *t = cb_doc_get(v, "type");
    if (!t) {
        cb_sc_err(c, v, cb_path_key(c->pool, path, "type"),
                  "required key 'type' is missing in verify (compare, fidelity, eval, kvcache)");
        return 1;
    }
    int i;
    if (cb_sc_enum(c, t, cb_path_key(c->pool, path, "type"), VERIFY_TYPES, 4, &i)) return 1;
    vf->type = (cb_verify_type)(i + 1);
    int bad = 0;
    switch (vf->type) {
    case CB_VERIFY_COMPARE:
        bad = cb_sc_object(c, v, path, "a compare verify", COMPARE_FIELDS, SF_COUNT(COMPARE_FIELDS),
                           vf);
        if (!bad && !vf->attention.set && !vf->logits.set) {
            cb_sc_err(c, v, path, "a compare verify needs at least one of: attention, logits");
            bad = 1;
        }
        break;
    case CB_VERIFY_FIDELITY:
        bad = cb_sc_object(c, v, path, "a fidelity verify", FIDELITY_FIELDS,
                           SF_COUNT(FIDELITY_FIELDS), vf);
        if (!bad && !vf->has_max_delta_nll && vf->max_ppl_ratio <= 0) {
            cb_sc_err(c, v, path,
                      "a fidelity verify needs at least one of: max_delta_nll, max_ppl_ratio");
            bad = 1;
        }
        break;
    case CB_VERIFY_EVAL:
        bad = cb_sc_object(c, v, path, "an eval verify", EVAL_FIELDS, SF_COUNT(EVAL_FIELDS), vf);
        break;
    case CB_VERIFY_KVCACHE:
        bad = cb_sc_object(c, v, path, "a kvcache verify", KVCACHE_FIELDS, SF_COUNT(KVCACHE_FIELDS),
                           vf);
        break;
    default:
        break;
    }
    return bad;
}

/* ---- runs and groups ----------------------------------------------------------------------- */

static const char *const MODES[] = {"train", "sample", "chat"};

static int read_expected(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    if (v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (free-form expectations), got %s",
                  cb_sc_describe(c, v));
        return 1;
    }
    *(const cb_doc_node **)dst = v;
    return 0;
}

static int read_train_opt(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_run_cfg *r = (cb_run_cfg *)((char *)dst - offsetof(cb_run_cfg, train));
    r->has_train = true;
    return read_train(c, v, path, dst);
}

#define ROFF(m) offsetof(cb_run_cfg, m)
static const cb_sfield RUN_FIELDS[] = {
    {"id", SF_STR, SF_REQ, ROFF(id), NULL, 0, NULL},
    {"mode", SF_ENUM, SF_REQ, ROFF(mode), MODES, 3, NULL},
    {"exp", SF_STR, 0, ROFF(exp), NULL, 0, NULL},
    {"seed", SF_INT, 0, ROFF(seed), NULL, 0, NULL},
    {"steps", SF_INT, SF_REQ | SF_POS, ROFF(steps), NULL, 0, NULL},
    {"expected", SF_FN, SF_NULLOK, ROFF(expected), NULL, 0, read_expected},
    {"verify", SF_FN, SF_NULLOK, ROFF(verify), NULL, 0, read_verify},
    {"train", SF_FN, SF_NULLOK, ROFF(train), NULL, 0, read_train_opt},
};

static int read_run(cb_sctx *c, const cb_doc_node *v, const char *path, cb_run_cfg *r) {
    memset(r, 0, sizeof *r);
    r->src = cb_sc_src(c, v, path);
    r->exp = "";
    r->seed = 1337;
    int bad = cb_sc_object(c, v, path, "a run", RUN_FIELDS, SF_COUNT(RUN_FIELDS), r);
    if (bad) return bad;
    if (!r->id[0]) return cb_sc_err_key(c, &r->src, "id", "run id must be non-empty"), 1;
    if (r->mode == CB_RUN_TRAIN && !r->has_train) {
        cb_sc_err(c, v, cb_path_key(c->pool, path, "train"),
                  "a run with mode: train needs a train block");
        return 1;
    }
    if (r->mode != CB_RUN_TRAIN && r->has_train) {
        cb_sc_err_key(c, &r->src, "train",
                      "a train block only applies to mode: train (this run is %s)", MODES[r->mode]);
        return 1;
    }
    return 0;
}

static int read_runs(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_group_cfg *g = (cb_group_cfg *)((char *)dst - offsetof(cb_group_cfg, runs));
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of runs, got %s", cb_sc_describe(c, v));
        return 1;
    }
    cb_run_cfg *a = cb_pool_alloc(c->pool, (v->n ? v->n : 1) * sizeof *a);
    if (!a) return cb_sc_err(c, v, path, "out of memory"), 1;
    int bad = 0;
    for (size_t i = 0; i < v->n; i++)
        bad += read_run(c, v->items[i], cb_path_idx(c->pool, path, i), &a[i]);
    g->runs = a;
    g->n_runs = (int)v->n;
    if (bad) return bad;
    int have_teacher = 0;
    for (int i = 0; i < g->n_runs; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(a[i].id, a[j].id) == 0) {
                cb_sc_err_key(c, &a[i].src, "id", "duplicate run id '%.60s' in this group",
                              a[i].id);
                return 1;
            }
        if (!a[i].has_train) continue;
        const char *from = a[i].train.init_from;
        for (int j = i; from && j < g->n_runs; j++)
            if (strcmp(from, a[j].id) == 0) {
                cb_sc_err_key(c, &a[i].train.src, "init_from",
                              "init_from names run '%.60s', which %s: a run starts from the "
                              "checkpoint of an EARLIER run of its group",
                              from, j == i ? "is this run" : "runs later");
                return 1;
            }
        if (a[i].train.phase == CB_PHASE_GLOBAL && !from && !a[i].train.teacher_ckpt &&
            !a[i].train.resume) {
            int earlier = 0;
            for (int j = 0; j < i; j++) earlier |= a[j].has_train;
            if (!earlier) {
                cb_sc_err_key(c, &a[i].train.src, "phase",
                              "phase: global fine-tunes existing weights: set train.init_from (an "
                              "earlier run's id or a checkpoint path) or put a training run "
                              "before it");
                return 1;
            }
        }
        if (a[i].train.teacher_ckpt) have_teacher = 1;
        if (a[i].train.phase == CB_PHASE_BLOCKWISE && !have_teacher) {
            cb_sc_err_key(
                c, &a[i].train.src, "phase",
                "phase: blockwise distils from a teacher: set train.teacher_ckpt here or in "
                "an earlier run of the group");
            return 1;
        }
    }
    return 0;
}

static int read_benchmarks(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_group_cfg *g = (cb_group_cfg *)((char *)dst - offsetof(cb_group_cfg, benchmarks));
    return cb_read_bench_list(c, v, path, &g->benchmarks, &g->n_benchmarks);
}

#define GOFF(m) offsetof(cb_group_cfg, m)
static const cb_sfield GROUP_FIELDS[] = {
    {"name", SF_STR, SF_REQ, GOFF(name), NULL, 0, NULL},
    {"description", SF_STR, 0, GOFF(description), NULL, 0, NULL},
    {"data", SF_STR, 0, GOFF(data), NULL, 0, NULL},
    {"runs", SF_FN, SF_REQ, GOFF(runs), NULL, 0, read_runs},
    {"benchmarks", SF_FN, SF_NULLOK, GOFF(benchmarks), NULL, 0, read_benchmarks},
};

int cb_read_groups(cb_sctx *c, const cb_doc_node *v, const char *path, cb_group_cfg **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of groups, got %s", cb_sc_describe(c, v));
        return 1;
    }
    cb_group_cfg *a = cb_pool_alloc(c->pool, (v->n ? v->n : 1) * sizeof *a);
    if (!a) return cb_sc_err(c, v, path, "out of memory"), 1;
    int bad = 0;
    for (size_t i = 0; i < v->n; i++) {
        cb_group_cfg *g = &a[i];
        const char *gp = cb_path_idx(c->pool, path, i);
        g->src = cb_sc_src(c, v->items[i], gp);
        g->description = "";
        g->data = "";
        bad += cb_sc_object(c, v->items[i], gp, "a group", GROUP_FIELDS, SF_COUNT(GROUP_FIELDS), g);
        if (!bad && !g->name[0])
            bad += (cb_sc_err_key(c, &g->src, "name", "group name must be non-empty"), 1);
        for (size_t j = 0; j < i && !bad; j++)
            if (a[j].name && g->name && strcmp(a[j].name, g->name) == 0) {
                cb_sc_err_key(c, &g->src, "name", "duplicate group name '%.60s'", g->name);
                bad++;
            }
    }
    *out = a;
    *n = (int)v->n;
    return bad;
}

void cb_schema_register_run(void);
void cb_schema_register_run(void) {
    cb_sc_register("defaults", DEFAULTS_FIELDS, SF_COUNT(DEFAULTS_FIELDS));
    cb_sc_register("groups", GROUP_FIELDS, SF_COUNT(GROUP_FIELDS));
    cb_sc_register("groups.runs", RUN_FIELDS, SF_COUNT(RUN_FIELDS));
    cb_sc_register("groups.runs.train", TRAIN_FIELDS, SF_COUNT(TRAIN_FIELDS));
    cb_sc_register("verify.compare", COMPARE_FIELDS, SF_COUNT(COMPARE_FIELDS));
    cb_sc_register("verify.compare.attention", L1_FIELDS, SF_COUNT(L1_FIELDS));
    cb_sc_register("verify.fidelity", FIDELITY_FIELDS, SF_COUNT(FIDELITY_FIELDS));
    cb_sc_register("verify.eval", EVAL_FIELDS, SF_COUNT(EVAL_FIELDS));
    cb_sc_register("verify.eval.tokenizer.tiktoken", TIKTOKEN_FIELDS, SF_COUNT(TIKTOKEN_FIELDS));
    cb_sc_register("verify.eval.tokenizer.llama", LLAMA_TOK_FIELDS, SF_COUNT(LLAMA_TOK_FIELDS));
    cb_sc_register("verify.eval.cases", CASE_FIELDS, SF_COUNT(CASE_FIELDS));
    cb_sc_register("verify.eval.thresholds", THRESH_FIELDS, SF_COUNT(THRESH_FIELDS));
    cb_sc_register("verify.kvcache", KVCACHE_FIELDS, SF_COUNT(KVCACHE_FIELDS));
    cb_sc_register("verify.kvcache.LayerKVCache", KV_STD_FIELDS, SF_COUNT(KV_STD_FIELDS));
    cb_sc_register("verify.kvcache.DecoupledLayerKVCache", KV_DEC_FIELDS, SF_COUNT(KV_DEC_FIELDS));
    cb_sc_register("verify.kvcache.tensor", KV_TENSOR_FIELDS, SF_COUNT(KV_TENSOR_FIELDS));
}
