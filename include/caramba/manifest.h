/* The typed manifest: what `caramba compile` produces and every later stage consumes.
 *
 *   cb_manifest_load(path) = parse (YAML/JSON -> node tree, caramba/node.h)
 *                          -> lower vars (${name}) and type aliases
 *                          -> read the typed schema strictly (unknown keys, types, enums, ranges,
 *                             required fields; per-layer cross-field rules)
 *                          -> expand every `repeat` (nested too)
 *                          -> validate the width flow, sizes and run/group rules
 * Nothing is allocated for tensors; nothing is written. Every error reads
 * `FILE:LINE:COL: key.path: message`.
 *
 * Walking the model (the builder's view). model.topology is the LOWERED tree: repeats are
 * expanded, every `repeat` is 1, each copy is an independent node with its own `path`:
 *
 *     static void build(const cb_cfg_node *m) {
 *         if (cb_cfg_is_topology(m->kind))
 *             for (int i = 0; i < m->n_layers; i++) build(&m->layers[i]);
 *         else switch (m->kind) {
 *             case CB_CFG_ATTENTION: use m->attention (all derived sizes filled); break;
 *             ...
 *         }
 *     }
 *     build(&manifest->model.topology);
 *
 * m->path is the Hugging Face-like parameter prefix ("topology.layers.0.layers.3.layers.1");
 * a layer's parameters are `<path>.<name>` with the names of spec-core §6 / §7 (e.g.
 * "<path>.q_proj.weight", "<path>.weight" for RMSNorm, "<path>.linear.weight" for Linear,
 * "embedder.token_embedding.weight"). m->d_in / m->d_out are the feature widths entering and
 * leaving the node and m->n_params its parameter count, all checked by validation.
 * m->src says where the node was written (file:line:col and the source key path, which names the
 * un-expanded position, e.g. model.topology.layers[0].layers[1]). */
#ifndef CARAMBA_MANIFEST_H
#define CARAMBA_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/dtype.h"
#include "caramba/kv_cache.h"
#include "caramba/node.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest accepted dimension (d_model, d_ff, vocab_size, ...) and total parameter count. */
#define CB_MANIFEST_MAX_DIM ((int64_t)1 << 24)
#define CB_MANIFEST_MAX_PARAMS ((int64_t)1000000000000LL)
/* Largest number of modules after `repeat` expansion. */
#define CB_MANIFEST_MAX_MODULES 100000

/* Where a typed value came from. */
typedef struct cb_cfg_src {
    const char *file;
    int line, col;
    const char *path;        /* source key path, e.g. "model.topology.layers[0]" */
    const cb_doc_node *node; /* the mapping it was read from (lives as long as the manifest) */
} cb_cfg_src;

/* ---- model ---------------------------------------------------------------------------------- */

typedef enum cb_cfg_kind {
    CB_CFG_STACKED = 0, /* chain */
    CB_CFG_SEQUENTIAL,  /* chain */
    CB_CFG_RESIDUAL,    /* x + chain(x): one skip around all children */
    CB_CFG_NESTED,      /* chain (the usual "repeat this block N times" container) */
    CB_CFG_PARALLEL,    /* every child gets x; outputs stacked on a NEW LEADING dim: (N, ..., D) */
    CB_CFG_BRANCHING,   /* every child gets x; outputs concatenated on the FEATURE dim: sum(D_i) */
    CB_CFG_CYCLIC,      /* chain */
    CB_CFG_RECURRENT,   /* chain; collects the attention children's states */
    CB_CFG_LINEAR,
    CB_CFG_LAYER_NORM,
    CB_CFG_RMS_NORM,
    CB_CFG_DROPOUT,
    CB_CFG_SWIGLU,
    CB_CFG_ATTENTION,
    CB_CFG_KIND_COUNT
} cb_cfg_kind;

static inline bool cb_cfg_is_topology(cb_cfg_kind k) {
    return k <= CB_CFG_RECURRENT;
}
/* "StackedTopology", ..., "AttentionLayer". */
const char *cb_cfg_kind_name(cb_cfg_kind k);

typedef struct cb_cfg_linear {
    int64_t d_in, d_out;
    bool bias; /* default true */
} cb_cfg_linear;

typedef struct cb_cfg_layer_norm {
    int64_t d_model;
    double eps; /* default 1e-5; always affine (weight + bias) */
} cb_cfg_layer_norm;

typedef struct cb_cfg_rms_norm {
    int64_t d_model;
    double eps;              /* default 1e-5 */
    bool elementwise_affine; /* default true */
} cb_cfg_rms_norm;

typedef struct cb_cfg_dropout {
    double p; /* default 0 */
} cb_cfg_dropout;

typedef struct cb_cfg_swiglu {
    int64_t d_model, d_ff;
    bool bias; /* default true */
} cb_cfg_swiglu;

typedef enum cb_cfg_attn_mode {
    CB_CFG_ATTN_STANDARD = 0,
    CB_CFG_ATTN_GQA,
    CB_CFG_ATTN_DECOUPLED
} cb_cfg_attn_mode;
typedef enum cb_cfg_mem_summarize {
    CB_CFG_MEM_MEAN = 0,
    CB_CFG_MEM_LINEAR,
    CB_CFG_MEM_CONV
} cb_cfg_mem_summarize;

/* Llama 3 frequency scaling (HF rope_type "llama3"). */
typedef struct cb_cfg_rope_scaling {
    bool enabled;
    double factor, low_freq_factor, high_freq_factor;
    int64_t original_max_position_embeddings;
} cb_cfg_rope_scaling;

typedef struct cb_cfg_attention {
    int64_t d_model;
    int64_t n_heads;    /* H */
    int64_t n_kv_heads; /* Hkv, resolved (defaults to H); applies to decoupled too (DESIGN §6) */
    cb_cfg_attn_mode mode; /* gqa behaves exactly like standard */
    int64_t attn_dim;      /* resolved: total query width (default d_model) */
    /* decoupled (DBA): query-side totals over H heads; 0 in standard mode */
    int64_t sem_dim, geo_dim;
    int64_t v_dim; /* resolved value width over H heads: v_dim, else attn_dim. Standard: attn_dim */
    bool rope_enabled; /* default true */
    double rope_base;  /* default 10000 */
    int64_t rope_dim;  /* head size the frequency table is computed for; 0 = the rotated width */
    cb_cfg_rope_scaling rope_scaling;
    bool decoupled_gate, decoupled_gate_dynamic;                        /* default false */
    bool is_causal;                                                     /* default true */
    double dropout_p;                                                   /* default 0 */
    bool bias;                                                          /* default false */
    bool learned_temp;                                                  /* default false */
    int64_t q_chunk, local_window, mem_block, mem_activation_threshold; /* 0 = unset */
    cb_cfg_mem_summarize mem_summarize;                                 /* default mean */
    /* derived (filled by validation) */
    int64_t head_dim;     /* attn_dim / H (standard); the rotated width there */
    int64_t kv_heads;     /* == n_kv_heads */
    int64_t sem_head_dim; /* sem_dim / H (decoupled) */
    int64_t geo_head_dim; /* geo_dim / H (decoupled); the rotated width there */
    int64_t v_head_dim;   /* v_dim / H */
    /* per token cached elements of one layer: keys (standard: Hkv*hd; decoupled:
     * (sem_dim + geo_dim) * Hkv / H, split as k_sem_width + k_geo_width) and values */
    int64_t k_width, k_sem_width, k_geo_width, v_width;
} cb_cfg_attention;

typedef struct cb_cfg_node cb_cfg_node;
struct cb_cfg_node {
    cb_cfg_kind kind;
    cb_cfg_src src;
    const char *path; /* lowered parameter prefix: "topology", "topology.layers.0", ... */
    int rep;          /* which repetition of its source node this copy is (0-based) */
    /* topologies */
    int64_t repeat; /* 1 after lowering */
    int n_layers;
    cb_cfg_node *layers;
    /* layers */
    union {
        cb_cfg_linear linear;
        cb_cfg_layer_norm layer_norm;
        cb_cfg_rms_norm rms_norm;
        cb_cfg_dropout dropout;
        cb_cfg_swiglu swiglu;
        cb_cfg_attention attention;
    };
    /* filled by validation */
    int64_t d_in, d_out; /* feature width in / out (0 = not fixed, e.g. a lone dropout) */
    int n_lead;          /* leading dims added by Parallel nodes, outermost first */
    int64_t lead[2];
    int64_t n_params;
};

typedef enum cb_model_type {
    CB_MODEL_TRANSFORMER = 0,
    CB_MODEL_GPT,
    CB_MODEL_VIT,
    CB_MODEL_MLP
} cb_model_type;

typedef enum cb_embedder_type { CB_EMBED_NONE = 0, CB_EMBED_TOKEN } cb_embedder_type;

typedef struct cb_embedder_cfg {
    cb_embedder_type type; /* default none: the input is already (B, T, D) */
    int64_t vocab_size, d_model;
    cb_cfg_src src;
} cb_embedder_cfg;

typedef enum cb_diffusion_scheduler {
    CB_DIFF_DDPM = 0,
    CB_DIFF_DDIM,
    CB_DIFF_DPM
} cb_diffusion_scheduler;

/* Accepted so manifests of the original load; enabling it is an error (not implemented). */
typedef struct cb_diffusion_cfg {
    bool enabled;
    int64_t num_train_timesteps, num_infer_steps, time_embed_dim, mlp_mult;
    double cfg_dropout_p, cfg_guidance_scale, loss_weight;
    cb_diffusion_scheduler scheduler;
} cb_diffusion_cfg;

typedef struct cb_model_cfg {
    cb_model_type type; /* a label */
    cb_embedder_cfg embedder;
    cb_cfg_node topology;              /* lowered */
    bool tied_embeddings;              /* default true: logits = features . E^T */
    int64_t target_params, block_size; /* 0 = unset; used by auto-fit only */
    cb_diffusion_cfg diffusion_head;
    /* filled by validation */
    int64_t n_params; /* embedder + topology */
    int64_t d_out;    /* width of the model output (vocab_size for language models) */
    int n_attention;  /* attention layers after lowering */
    cb_cfg_src src;
} cb_model_cfg;

/* ---- defaults, runs, train, verify ------------------------------------------------------------
 */

typedef struct cb_defaults_cfg {
    const char *tokenizer;  /* "tiktoken" */
    double val_frac;        /* 0.1 */
    const char *instrument; /* "rich" */
    bool wandb;             /* false (accepted for compatibility; there is no W&B client) */
    const char *wandb_project, *wandb_entity, *wandb_mode; /* "", "", "online" */
    int64_t eval_iters;                                    /* 50 */
    int64_t save_every;                                    /* 100; 0 = no periodic checkpoints */
} cb_defaults_cfg;

typedef enum cb_run_mode { CB_RUN_TRAIN = 0, CB_RUN_SAMPLE, CB_RUN_CHAT } cb_run_mode;
typedef enum cb_train_phase {
    CB_PHASE_STANDARD = 0,
    CB_PHASE_BLOCKWISE,
    CB_PHASE_GLOBAL
} cb_train_phase;
typedef enum cb_train_dtype {
    CB_TDTYPE_FLOAT32 = 0,
    CB_TDTYPE_FLOAT16,
    CB_TDTYPE_BFLOAT16,
    CB_TDTYPE_AUTO
} cb_train_dtype;
typedef enum cb_cfg_compile {
    CB_CFG_COMPILE_OFF = 0,
    CB_CFG_COMPILE_ON,
    CB_CFG_COMPILE_AUTO
} cb_cfg_compile;
typedef enum cb_cfg_sched {
    CB_CFG_SCHED_NONE = 0,
    CB_CFG_SCHED_LINEAR,
    CB_CFG_SCHED_COSINE,
    CB_CFG_SCHED_CONSTANT
} cb_cfg_sched;

typedef struct cb_train_cfg {
    cb_train_phase phase;                /* required */
    int64_t batch_size, block_size;      /* required */
    double lr;                           /* required */
    const char *device;                  /* "cpu" | "cuda" | "cuda:N" | "auto"; default "cpu" */
    cb_train_dtype dtype;                /* float32 */
    bool auto_batch_size;                /* false */
    int64_t auto_batch_ref_block_size;   /* 512 */
    int64_t auto_batch_min;              /* 1 */
    const char *teacher_ckpt;            /* NULL; path or hf://org/name[/file] */
    double teacher_rope_base;            /* 0 = unset */
    int64_t teacher_rope_dim;            /* 0 = unset */
    double convergence_target;           /* 0 = unset (fixed steps) */
    int64_t convergence_patience;        /* 50 */
    int64_t convergence_max_steps;       /* 5000 */
    bool cache_teacher_outputs;          /* true */
    bool use_amp;                        /* false */
    cb_train_dtype amp_dtype;            /* float16 (float32 not allowed) */
    int64_t gradient_accumulation_steps; /* 1 */
    int64_t num_workers;                 /* 0 */
    bool pin_memory;                     /* false */
    cb_cfg_compile compile_model;        /* off */
    const char *compile_mode;            /* "reduce-overhead" */
    bool activation_checkpointing;       /* false */
    double activation_checkpoint_threshold_mb; /* 0 */
    cb_cfg_sched scheduler;                    /* none */
    int64_t warmup_steps;                      /* 0 */
    double min_lr_ratio;                       /* 0 */
    /* optimizer, clipping, evaluation and checkpoints (docs/training.md) */
    double weight_decay;   /* 0.01 (decoupled, AdamW) */
    double beta1, beta2;   /* 0.9, 0.999 */
    double adam_eps;       /* 1e-8 */
    bool decay_all;        /* false: norms, biases, embeddings get no weight decay */
    double grad_clip;      /* 0 = off; else the largest global gradient L2 norm */
    int64_t eval_every;    /* -1 = defaults.eval_iters; 0 = never */
    int64_t eval_batches;  /* 20: validation batches per evaluation */
    const char *init_from; /* NULL; an earlier run's id in this group, or a checkpoint */
    const char *resume;    /* NULL; a checkpoint of this run to continue from */
    cb_cfg_src src;
} cb_train_cfg;

typedef enum cb_verify_type {
    CB_VERIFY_NONE = 0,
    CB_VERIFY_COMPARE,
    CB_VERIFY_FIDELITY,
    CB_VERIFY_EVAL,
    CB_VERIFY_KVCACHE
} cb_verify_type;

typedef struct cb_l1_thresholds {
    bool set;
    double max_mean_l1, max_max_l1;
} cb_l1_thresholds;

typedef enum cb_cfg_split {
    CB_CFG_SPLIT_AUTO = 0,
    CB_CFG_SPLIT_TRAIN,
    CB_CFG_SPLIT_VAL
} cb_cfg_split;
typedef enum cb_eval_tokenizer { CB_EVAL_TOK_TIKTOKEN = 0, CB_EVAL_TOK_LLAMA } cb_eval_tokenizer;
typedef enum cb_case_kind { CB_CASE_CHOICE_LOGPROB = 0, CB_CASE_INT_GREEDY } cb_case_kind;

typedef struct cb_eval_case {
    const char *id, *prompt;
    cb_case_kind kind;
    int n_choices;
    const char **choices;
    bool answer_is_int;
    const char *answer_str; /* choice_logprob */
    int64_t answer_int;     /* int_greedy */
    cb_cfg_src src;
} cb_eval_case;

/* One cached tensor's storage (kinds from caramba/kv_cache.h). */
typedef struct cb_cfg_kv_tensor {
    cb_kv_kind kind;      /* fp16 */
    int64_t qblock;       /* 32 (the only block size of caramba's quantized formats) */
    int64_t residual_len; /* 0: fp16 window of recent tokens kept beside quantized storage */
} cb_cfg_kv_tensor;

typedef struct cb_cfg_kv_policy {
    bool decoupled;        /* type DecoupledLayerKVCache (k_sem, k_geo, v) vs LayerKVCache (k, v) */
    cb_cfg_kv_tensor k, v; /* standard */
    cb_cfg_kv_tensor k_sem, k_geo; /* decoupled (v shared) */
} cb_cfg_kv_policy;

typedef struct cb_verify_cfg {
    cb_verify_type type;
    /* compare / fidelity */
    int64_t batches;
    cb_l1_thresholds attention, logits; /* compare */
    bool fail_fast;                     /* false */
    int64_t block_size, batch_size;     /* fidelity: 0 = the run's */
    cb_cfg_split split;                 /* fidelity: auto */
    bool has_max_delta_nll;
    double max_delta_nll, max_ppl_ratio; /* fidelity: max_ppl_ratio 0 = unset */
    /* eval */
    cb_eval_tokenizer tokenizer;
    const char *encoding;                   /* tiktoken */
    const char *model_id;                   /* llama: "meta-llama/Llama-3.2-1B" */
    int64_t max_new_tokens, context_window; /* context_window 0 = unset */
    int n_cases;
    cb_eval_case *cases;
    double min_student_accuracy, max_accuracy_drop;
    /* kvcache */
    int64_t n_layers, max_seq_len; /* batch_size shared above */
    cb_cfg_kv_policy teacher, student;
    double min_reduction_ratio; /* 0 = unset */
    cb_cfg_src src;
} cb_verify_cfg;

typedef struct cb_run_cfg {
    const char *id;
    cb_run_mode mode;
    const char *exp; /* free-form label, default "" */
    int64_t seed;    /* default 1337 */
    int64_t steps;
    const cb_doc_node *expected; /* free-form mapping (may be NULL) */
    bool has_train;
    cb_train_cfg train;
    cb_verify_cfg verify; /* type NONE when absent */
    cb_cfg_src src;
} cb_run_cfg;

/* ---- benchmarks -------------------------------------------------------------------------------
 */

typedef enum cb_bench_type {
    CB_BENCH_PERPLEXITY = 0,
    CB_BENCH_LATENCY,
    CB_BENCH_MEMORY,
    CB_BENCH_ACCURACY,
    CB_BENCH_GENERATION,
    CB_BENCH_SUITE
} cb_bench_type;

typedef struct cb_cfg_ints {
    int n;
    int64_t *v;
} cb_cfg_ints;

typedef struct cb_cfg_strs {
    int n;
    const char **v;
} cb_cfg_strs;

/* Eval-suite files (presets/benchmarks/NAME.yml): a top-level `benchmark:` mapping. */
typedef enum cb_suite_aggregation {
    CB_AGG_ALL_PASS = 0,
    CB_AGG_ANY_PASS,
    CB_AGG_WEIGHTED_AVERAGE,
    CB_AGG_MIN_SCORE
} cb_suite_aggregation;
typedef enum cb_severity {
    CB_SEV_LOW = 0,
    CB_SEV_MEDIUM,
    CB_SEV_HIGH,
    CB_SEV_CRITICAL
} cb_severity;
typedef enum cb_check_type {
    CB_CHECK_NONE = 0,
    CB_CHECK_LOOP_DETECTION,
    CB_CHECK_MAX_TOKENS,
    CB_CHECK_BLACKLIST,
    CB_CHECK_WHITELIST,
    CB_CHECK_REGEX
} cb_check_type;
typedef enum cb_pass_type { CB_PASS_BOOLEAN = 0, CB_PASS_PARTIAL_SCORE } cb_pass_type;

typedef struct cb_suite_case {
    const char *id, *prompt, *expected, *description; /* expected/description may be NULL */
    cb_severity severity;                             /* medium */
    cb_cfg_strs tags;
    double weight;                   /* 1.0 */
    cb_check_type check;             /* validation.type; NONE when absent */
    int64_t max_consecutive_repeats; /* loop_detection: 3 */
    int64_t limit;                   /* max_tokens */
    cb_cfg_strs patterns;            /* blacklist / whitelist / loop_detection blacklist_patterns */
    const char *pattern, *flags;     /* regex (PCRE2 syntax, checked at load), flags of "imsx" */
    cb_pass_type pass_type;          /* boolean */
    const char *condition;           /* boolean: free text, may be NULL */
    int64_t min_matches;             /* partial_score: 1 */
    cb_cfg_src src;
} cb_suite_case;

typedef struct cb_eval_suite {
    const char *file; /* resolved path of the suite file */
    const char *id, *description;
    cb_suite_aggregation aggregation; /* all_pass */
    double pass_threshold;            /* 0.8 */
    int64_t max_output_tokens;        /* 2048 */
    double max_repetition_ratio;      /* 0.5 */
    int n_cases;
    cb_suite_case *cases;
} cb_eval_suite;

typedef struct cb_bench_cfg {
    const char *id;
    cb_bench_type type;
    cb_cfg_strs models; /* each "teacher" or "student"; default both */
    int64_t repeats;    /* 1 */
    /* perplexity */
    const char *dataset;
    int64_t block_size, batch_size, num_batches, stride; /* 2048, 1, 0 = all, 0 = block_size */
    /* latency */
    cb_cfg_ints prompt_lengths, generation_lengths, batch_sizes; /* batch_sizes: memory too */
    int64_t warmup_runs, timed_runs;                             /* 3, 10 */
    bool use_cache;                                              /* true */
    /* memory */
    cb_cfg_ints sequence_lengths;
    bool measure_peak, measure_kvcache; /* true, true */
    int n_kinds;
    cb_kv_kind kinds[8]; /* quantization_modes: cache kinds */
    /* accuracy */
    cb_cfg_strs tasks;
    int64_t num_fewshot, limit; /* 0, 0 = unset */
    /* generation */
    const char *prompts_file;
    int64_t max_new_tokens;                        /* 256 */
    double temperature, top_p, repetition_penalty; /* 1, 1, 1 */
    /* suite */
    const char *suite_path; /* as written (relative to the manifest's directory) */
    cb_eval_suite *suite;   /* loaded and validated */
    cb_cfg_src src;
} cb_bench_cfg;

typedef struct cb_group_cfg {
    const char *name, *description, *data;
    int n_runs;
    cb_run_cfg *runs;
    int n_benchmarks;
    cb_bench_cfg *benchmarks;
    cb_cfg_src src;
} cb_group_cfg;

/* ---- the manifest -----------------------------------------------------------------------------
 */

typedef struct cb_manifest {
    const char *file;  /* path as given */
    int64_t version;   /* 1 */
    const char *name;  /* `name`, or the file's stem when absent */
    const char *notes; /* "" */
    cb_defaults_cfg defaults;
    cb_model_cfg model;
    int n_groups;
    cb_group_cfg *groups;
    void *priv; /* owns all memory */
} cb_manifest;

typedef struct cb_manifest_opts {
    bool no_includes; /* refuse to read files the manifest names (eval suites); for fuzzing */
} cb_manifest_opts;

/* Parse + lower + validate. On failure *out is NULL, the status is CB_ERR_FORMAT (CB_ERR_IO when
 * the file cannot be read) and cb_last_error() holds the first error. */
cb_status cb_manifest_load(const char *path, cb_manifest **out);
/* Same, collecting up to CB_DIAGS_MAX errors into errs (caller frees with cb_diags_free). */
cb_status cb_manifest_load_ex(const char *path, const cb_manifest_opts *opts, cb_manifest **out,
                              cb_diags *errs);
/* From memory; `name` is used in messages, its suffix picks YAML or JSON and its directory
 * anchors relative paths. */
cb_status cb_manifest_parse(const char *name, const char *buf, size_t len,
                            const cb_manifest_opts *opts, cb_manifest **out, cb_diags *errs);
void cb_manifest_free(cb_manifest *m);

/* Lookups. */
const cb_group_cfg *cb_manifest_group(const cb_manifest *m, const char *name);
/* Calls fn on every module of the lowered tree in pre-order (execution order for chains). */
void cb_cfg_walk(const cb_cfg_node *root, void (*fn)(const cb_cfg_node *m, void *ud), void *ud);

/* An eval-suite file on its own. */
cb_status cb_eval_suite_load(const char *path, cb_eval_suite **out, cb_diags *errs);
void cb_eval_suite_free(cb_eval_suite *s);

/* Every key the schema knows, as "section.key" (e.g. "model.topology.AttentionLayer.n_heads",
 * "groups.runs.train.lr"), for documentation checks. Returns the count; names[i] are static. */
int cb_manifest_schema_keys(const char ***names);

#ifdef __cplusplus
}
#endif
#endif
