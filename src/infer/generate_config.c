/* GenerateConfig defaults (spec-infer §10.2) and validation (the original had none). */
#include <math.h>
#include <string.h>

#include "caramba/generate.h"

void cb_generate_config_default(cb_generate_config *c) {
    *c = (cb_generate_config){
        .max_new_tokens = 64,
        .temperature = 1.0f,
        .top_k = 0,
        .top_p = 0.0f,
        .eos_token_id = -1,
        .pad_token_id = -1,
        .max_seq_len = 2048,
        .seed = 0,
        .cache_kind = NULL,
        .cache_qblock = 32,
        .cache_residual_len = 0,
        .cache_fp16_prefix_layers = 0,
        .cache_budget_mb = -1,
        .cache_auto_benchmark = false,
        .cache_auto_bench_steps = 8,
        .cache_auto_bench_prompt_len = 64,
        .cache_quality_max_delta_nll = -1,
        .cache_quality_max_ppl_ratio = -1,
        .cache_quality_max_mean_kl = -1,
        .cache_quality_prompt_len = 64,
        .cache_quality_decode_steps = 4,
        .cache_plan_path = NULL,
        .cache_plan_probe = false,
        .cache_plan_probe_interval_sec = 3600,
        .cache_auto_candidates = NULL,
        .cache_plan_model_id = NULL,
        .use_diffusion = false,
        .diffusion_guidance_scale = -1,
        .decode_plan = NULL,
        .decode_q_chunk = 0,
        .decode_local_window = 0,
        .decode_bucket_short = 512,
        .decode_bucket_mid = 2048,
        .decode_q_chunk_mid = 128,
        .decode_q_chunk_long = 64,
        .decode_local_window_long = 0,
        .prefill_chunk = 0,
    };
}

int32_t cb_generate_pad_id(const cb_generate_config *c) {
    if (c->pad_token_id >= 0) return (int32_t)c->pad_token_id;
    if (c->eos_token_id >= 0) return (int32_t)c->eos_token_id;
    return 0;
}

#define BAD(...) return cb_fail(CB_ERR_ARG, __VA_ARGS__)

cb_status cb_generate_config_validate(const cb_generate_config *c) {
    if (c->max_new_tokens < 0)
        BAD("generate: max_new_tokens must be >= 0, got %lld", (long long)c->max_new_tokens);
    if (!isfinite(c->temperature)) BAD("generate: temperature must be finite");
    if (c->top_k < 0) BAD("generate: top_k must be >= 0 (0 = off), got %d", c->top_k);
    if (!(c->top_p >= 0 && c->top_p <= 1))
        BAD("generate: top_p must be in [0, 1] (0 or 1 = off), got %g", (double)c->top_p);
    if (c->eos_token_id < -1 || c->eos_token_id > INT32_MAX)
        BAD("generate: eos_token_id %lld out of range", (long long)c->eos_token_id);
    if (c->pad_token_id < -1 || c->pad_token_id > INT32_MAX)
        BAD("generate: pad_token_id %lld out of range", (long long)c->pad_token_id);
    if (c->max_seq_len < 1)
        BAD("generate: max_seq_len must be >= 1, got %lld", (long long)c->max_seq_len);
    if (c->cache_qblock > 0 && c->cache_qblock != 32)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "generate: cache_qblock %d: the cache formats use blocks of 32 values",
                       c->cache_qblock);
    if (c->cache_residual_len < 0) BAD("generate: cache_residual_len must be >= 0");
    if (c->cache_fp16_prefix_layers < 0) BAD("generate: cache_fp16_prefix_layers must be >= 0");
    if (c->cache_quality_prompt_len < 1) BAD("generate: cache_quality_prompt_len must be >= 1");
    if (c->cache_auto_bench_prompt_len < 1)
        BAD("generate: cache_auto_bench_prompt_len must be >= 1");
    if (!isfinite(c->cache_plan_probe_interval_sec))
        BAD("generate: cache_plan_probe_interval_sec must be finite");
    if (c->decode_q_chunk < 0 || c->decode_local_window < 0 || c->decode_q_chunk_mid < 0 ||
        c->decode_q_chunk_long < 0 || c->decode_local_window_long < 0)
        BAD("generate: decode q_chunk / local_window values must be >= 0 (0 = none)");
    if (c->prefill_chunk < 0) BAD("generate: prefill_chunk must be >= 0");
    cb_decode_plan_mode mode;
    CB_TRY(cb_decode_plan_mode_parse(c->decode_plan, &mode));
    if (c->cache_kind) {
        cb_kv_policy p;
        CB_TRY(cb_kv_policy_parse(c->cache_kind, &p));
    }
    if (c->use_diffusion)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "generate: use_diffusion: this model has no diffusion head");
    return CB_OK;
}
