/* Hugging Face config.json for Llama-family models.
 *
 * Sizes are required (a missing hidden_size is a mistake, not a 4096); everything else defaults
 * as transformers' LlamaConfig does. Rope settings come from `rope_parameters` (newer files) or
 * from `rope_theta` + `rope_scaling` (legacy hub layout); within either object a `rope_theta`
 * key wins over the top-level one, as transformers' standardisation does. */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/hf.h"

#define CFG_MAX_BYTES ((size_t)16 << 20)

static const char *jtype(const cJSON *v) {
    if (!v) return "nothing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* The member, or NULL when absent or JSON null (transformers treats both as "use the default"). */
static const cJSON *member(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static void keypath(char *buf, size_t n, const char *prefix, const char *key) {
    if (prefix && prefix[0])
        snprintf(buf, n, "%s.%s", prefix, key);
    else
        snprintf(buf, n, "%s", key);
}

static cb_status get_int(const char *file, const cJSON *obj, const char *prefix, const char *key,
                         int required, int64_t dflt, int64_t lo, int64_t hi, int64_t *out) {
    char kp[128];
    keypath(kp, sizeof kp, prefix, key);
    const cJSON *v = member(obj, key);
    if (!v) {
        if (required) return cb_fail(CB_ERR_FORMAT, "%s: key '%s': missing", file, kp);
        *out = dflt;
        return CB_OK;
    }
    if (!cJSON_IsNumber(v))
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': expected an integer, got %s", file, kp,
                       jtype(v));
    double d = v->valuedouble;
    if (!isfinite(d) || floor(d) != d || d < (double)lo || d > (double)hi)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: key '%s': expected an integer in [%lld, %lld], got %.17g", file, kp,
                       (long long)lo, (long long)hi, d);
    *out = (int64_t)d;
    return CB_OK;
}

static cb_status get_int32(const char *file, const cJSON *obj, const char *prefix, const char *key,
                           int required, int64_t dflt, int64_t lo, int64_t hi, int *out) {
    int64_t v;
    CB_TRY(get_int(file, obj, prefix, key, required, dflt, lo, hi, &v));
    *out = (int)v;
    return CB_OK;
}

/* A finite number; positive when asked. */
static cb_status get_num(const char *file, const cJSON *obj, const char *prefix, const char *key,
                         int required, double dflt, int positive, double *out) {
    char kp[128];
    keypath(kp, sizeof kp, prefix, key);
    const cJSON *v = member(obj, key);
    if (!v) {
        if (required) return cb_fail(CB_ERR_FORMAT, "%s: key '%s': missing", file, kp);
        *out = dflt;
        return CB_OK;
    }
    if (!cJSON_IsNumber(v))
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': expected a number, got %s", file, kp,
                       jtype(v));
    double d = v->valuedouble;
    if (!isfinite(d) || (positive && !(d > 0)))
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': expected a %snumber, got %.17g", file, kp,
                       positive ? "positive " : "", d);
    *out = d;
    return CB_OK;
}

static cb_status get_bool(const char *file, const cJSON *obj, const char *key, bool dflt,
                          bool *out) {
    const cJSON *v = member(obj, key);
    if (!v) {
        *out = dflt;
        return CB_OK;
    }
    if (!cJSON_IsBool(v))
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': expected true or false, got %s", file, key,
                       jtype(v));
    *out = cJSON_IsTrue(v);
    return CB_OK;
}

/* Copies a string value into buf (n bytes); absent leaves dflt. */
static cb_status get_str(const char *file, const cJSON *obj, const char *prefix, const char *key,
                         const char *dflt, char *buf, size_t n) {
    char kp[128];
    keypath(kp, sizeof kp, prefix, key);
    const cJSON *v = member(obj, key);
    if (!v) {
        snprintf(buf, n, "%s", dflt);
        return CB_OK;
    }
    if (!cJSON_IsString(v))
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': expected a string, got %s", file, kp,
                       jtype(v));
    if (strlen(v->valuestring) >= n)
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': value '%.40s...' is too long", file, kp,
                       v->valuestring);
    memcpy(buf, v->valuestring, strlen(v->valuestring) + 1);
    return CB_OK;
}

static cb_status parse_eos(const char *file, const cJSON *root, cb_llama_config *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    cfg->n_eos_token_ids = 0;
    cfg->eos_token_id = -1;
    if (!v) { /* LlamaConfig's default */
        cfg->eos_token_id = cfg->eos_token_ids[0] = 2;
        cfg->n_eos_token_ids = 1;
        return CB_OK;
    }
    if (cJSON_IsNull(v)) return CB_OK;
    if (cJSON_IsNumber(v)) {
        int64_t id;
        CB_TRY(get_int(file, root, NULL, "eos_token_id", 1, 0, 0, INT32_MAX, &id));
        cfg->eos_token_id = cfg->eos_token_ids[0] = id;
        cfg->n_eos_token_ids = 1;
        return CB_OK;
    }
    if (!cJSON_IsArray(v))
        return cb_fail(CB_ERR_FORMAT,
                       "%s: key 'eos_token_id': expected an integer or a list of integers, got %s",
                       file, jtype(v));
    int n = cJSON_GetArraySize(v);
    if (n > CB_LLAMA_MAX_EOS)
        return cb_fail(CB_ERR_FORMAT, "%s: key 'eos_token_id': %d ids, at most %d are supported",
                       file, n, CB_LLAMA_MAX_EOS);
    const cJSON *it;
    int k = 0;
    cJSON_ArrayForEach(it, v) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!cJSON_IsNumber(it) || floor(d) != d || d < 0 || d > INT32_MAX)
            return cb_fail(CB_ERR_FORMAT,
                           "%s: key 'eos_token_id[%d]': expected a token id (integer >= 0), got %s",
                           file, k, jtype(it));
        cfg->eos_token_ids[k++] = (int64_t)d;
    }
    cfg->n_eos_token_ids = k;
    if (k) cfg->eos_token_id = cfg->eos_token_ids[0];
    return CB_OK;
}

static cb_status parse_rope(const char *file, const cJSON *root, cb_llama_config *cfg) {
    const char *where = "rope_parameters";
    const cJSON *rp = member(root, "rope_parameters");
    if (!rp) {
        where = "rope_scaling";
        rp = member(root, "rope_scaling");
    }
    if (rp && !cJSON_IsObject(rp))
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': expected an object, got %s", file, where,
                       jtype(rp));
    char kp_buf[64];
    /* Newer hybrid models key rope_parameters by layer type; Llama layers are full attention. */
    if (rp && !member(rp, "rope_type") && !member(rp, "type") && !member(rp, "rope_theta")) {
        const cJSON *full = member(rp, "full_attention");
        if (cJSON_IsObject(full)) {
            snprintf(kp_buf, sizeof kp_buf, "%s.full_attention", where);
            where = kp_buf;
            rp = full;
        }
    }
    double theta;
    char theta_key[96] = "rope_theta";
    CB_TRY(get_num(file, root, NULL, "rope_theta", 0, 10000.0, 1, &theta));
    if (rp && member(rp, "rope_theta")) {
        CB_TRY(get_num(file, rp, where, "rope_theta", 1, 0, 1, &theta));
        keypath(theta_key, sizeof theta_key, where, "rope_theta");
    }
    if (theta > FLT_MAX)
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': %g does not fit in float32", file, theta_key,
                       theta);
    cfg->rope_theta = theta;
    cfg->rope.theta = (float)theta;
    cfg->rope.type = CB_ROPE_DEFAULT;
    cfg->rope.factor = 1.0f;
    cfg->rope.low_freq_factor = 1.0f;
    cfg->rope.high_freq_factor = 4.0f;
    cfg->rope.original_max_pos = 0;

    double prf = 1.0;
    CB_TRY(get_num(file, root, NULL, "partial_rotary_factor", 0, 1.0, 1, &prf));
    if (rp) CB_TRY(get_num(file, rp, where, "partial_rotary_factor", 0, prf, 1, &prf));
    if (prf > 1.0)
        return cb_fail(CB_ERR_FORMAT, "%s: key 'partial_rotary_factor': %g is more than 1", file,
                       prf);
    int rope_dim = (int)(cfg->head_dim * prf);
    if (rope_dim <= 0 || rope_dim % 2)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: key 'partial_rotary_factor': head_dim %d x %g gives rotary width %d, "
                       "which must be even and positive",
                       file, cfg->head_dim, prf, rope_dim);
    cfg->rope_dim = rope_dim;

    if (!rp) return CB_OK;
    const char *tkey = member(rp, "rope_type") ? "rope_type" : "type";
    char type[32];
    char kp[96];
    keypath(kp, sizeof kp, where, tkey);
    if (!member(rp, tkey))
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s.rope_type': missing", file, where);
    CB_TRY(get_str(file, rp, where, tkey, "", type, sizeof type));
    if (strcmp(type, "default") == 0) return CB_OK;
    if (strcmp(type, "llama3") != 0)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "%s: key '%s': unsupported rope_scaling type '%s' (caramba supports "
                       "'default' and 'llama3')",
                       file, kp, type);
    double factor, low, high;
    int64_t orig;
    CB_TRY(get_num(file, rp, where, "factor", 1, 0, 1, &factor));
    CB_TRY(get_num(file, rp, where, "low_freq_factor", 1, 0, 1, &low));
    CB_TRY(get_num(file, rp, where, "high_freq_factor", 1, 0, 1, &high));
    CB_TRY(get_int(file, rp, where, "original_max_position_embeddings", 1, 0, 1, INT32_MAX, &orig));
    if (factor > FLT_MAX || high > FLT_MAX)
        return cb_fail(CB_ERR_FORMAT, "%s: key '%s': factors do not fit in float32", file, where);
    if (!(high > low))
        return cb_fail(CB_ERR_FORMAT,
                       "%s: key '%s.high_freq_factor': %g must be greater than low_freq_factor %g",
                       file, where, high, low);
    cfg->rope.type = CB_ROPE_LLAMA3;
    cfg->rope.factor = (float)factor;
    cfg->rope.low_freq_factor = (float)low;
    cfg->rope.high_freq_factor = (float)high;
    cfg->rope.original_max_pos = (int)orig;
    return CB_OK;
}

static cb_status parse_root(const char *file, const cJSON *root, cb_llama_config *cfg) {
    if (!cJSON_IsObject(root))
        return cb_fail(CB_ERR_FORMAT, "%s: expected a JSON object, got %s", file, jtype(root));
    CB_TRY(get_str(file, root, NULL, "model_type", "", cfg->model_type, sizeof cfg->model_type));
    /* Sizes: caps keep every product a model computes from them inside int64. */
    CB_TRY(get_int(file, root, NULL, "vocab_size", 1, 0, 1, INT32_MAX, &cfg->vocab_size));
    CB_TRY(get_int(file, root, NULL, "hidden_size", 1, 0, 1, 1 << 20, &cfg->hidden_size));
    CB_TRY(
        get_int(file, root, NULL, "intermediate_size", 1, 0, 1, 1 << 24, &cfg->intermediate_size));
    CB_TRY(get_int32(file, root, NULL, "num_hidden_layers", 1, 0, 1, 1 << 16,
                     &cfg->num_hidden_layers));
    CB_TRY(get_int32(file, root, NULL, "num_attention_heads", 1, 0, 1, 1 << 16,
                     &cfg->num_attention_heads));
    CB_TRY(get_int32(file, root, NULL, "num_key_value_heads", 0, cfg->num_attention_heads, 1,
                     1 << 16, &cfg->num_key_value_heads));
    if (cfg->num_attention_heads % cfg->num_key_value_heads)
        return cb_fail(CB_ERR_FORMAT,
                       "%s: key 'num_key_value_heads': num_attention_heads (%d) is not a multiple "
                       "of num_key_value_heads (%d)",
                       file, cfg->num_attention_heads, cfg->num_key_value_heads);
    if (member(root, "head_dim")) {
        CB_TRY(get_int32(file, root, NULL, "head_dim", 1, 0, 1, 1 << 16, &cfg->head_dim));
    } else {
        if (cfg->hidden_size % cfg->num_attention_heads)
            return cb_fail(CB_ERR_FORMAT,
                           "%s: key 'num_attention_heads': hidden_size (%lld) is not a multiple of "
                           "num_attention_heads (%d) and there is no head_dim",
                           file, (long long)cfg->hidden_size, cfg->num_attention_heads);
        cfg->head_dim = (int)(cfg->hidden_size / cfg->num_attention_heads);
    }
    if (cfg->head_dim % 2)
        return cb_fail(CB_ERR_FORMAT, "%s: key 'head_dim': %d must be even for rotary embeddings",
                       file, cfg->head_dim);
    CB_TRY(get_int(file, root, NULL, "max_position_embeddings", 0, 2048, 1, (int64_t)1 << 40,
                   &cfg->max_position_embeddings));
    CB_TRY(get_num(file, root, NULL, "rms_norm_eps", 0, 1e-6, 1, &cfg->rms_norm_eps));
    if (cfg->rms_norm_eps >= 1.0)
        return cb_fail(CB_ERR_FORMAT, "%s: key 'rms_norm_eps': %g is not a small positive number",
                       file, cfg->rms_norm_eps);
    CB_TRY(
        get_str(file, root, NULL, "hidden_act", "silu", cfg->hidden_act, sizeof cfg->hidden_act));
    if (strcmp(cfg->hidden_act, "silu") != 0)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "%s: key 'hidden_act': '%s' is not supported (Llama uses 'silu')", file,
                       cfg->hidden_act);
    CB_TRY(get_bool(file, root, "tie_word_embeddings", false, &cfg->tie_word_embeddings));
    CB_TRY(get_bool(file, root, "attention_bias", false, &cfg->attention_bias));
    CB_TRY(get_bool(file, root, "mlp_bias", false, &cfg->mlp_bias));
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(root, "bos_token_id");
    if (cJSON_IsNull(bos))
        cfg->bos_token_id = -1;
    else
        CB_TRY(get_int(file, root, NULL, "bos_token_id", 0, 1, 0, INT32_MAX, &cfg->bos_token_id));
    CB_TRY(parse_eos(file, root, cfg));
    /* transformers 5 writes "dtype"; older files "torch_dtype" */
    const char *dkey = member(root, "dtype") ? "dtype" : "torch_dtype";
    CB_TRY(get_str(file, root, NULL, dkey, "", cfg->dtype, sizeof cfg->dtype));
    return parse_rope(file, root, cfg);
}

cb_status cb_llama_config_parse(const char *json, size_t len, const char *name,
                                cb_llama_config *cfg) {
    const char *file = name ? name : "config.json";
    if (!cfg || (!json && len)) return cb_fail(CB_ERR_ARG, "%s: NULL argument", file);
    memset(cfg, 0, sizeof *cfg);
    const char *end = NULL;
    cJSON *root = json ? cJSON_ParseWithLengthOpts(json, len, &end, 0) : NULL;
    if (!root) {
        size_t at = end && json ? (size_t)(end - json) : 0;
        return cb_fail(CB_ERR_FORMAT, "%s: not valid JSON (error at byte %zu)", file, at);
    }
    for (size_t i = (size_t)(end - json); i < len; i++) {
        char c = json[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            cJSON_Delete(root);
            return cb_fail(CB_ERR_FORMAT, "%s: trailing garbage after the JSON object at byte %zu",
                           file, i);
        }
    }
    cb_status s = parse_root(file, root, cfg);
    cJSON_Delete(root);
    if (s != CB_OK) memset(cfg, 0, sizeof *cfg);
    return s;
}

cb_status cb_llama_config_load(const char *path, cb_llama_config *cfg) {
    if (!path || !cfg) return cb_fail(CB_ERR_ARG, "cb_llama_config_load: NULL argument");
    char dir[4096], file[4200];
    if (strncmp(path, "hf://", 5) == 0) {
        CB_TRY(cb_hf_resolve(path, dir, sizeof dir));
        path = dir;
    }
    if (cb_is_dir(path)) {
        int k = snprintf(file, sizeof file, "%s/config.json", path);
        if (k < 0 || (size_t)k >= sizeof file)
            return cb_fail(CB_ERR_ARG, "%s: path too long", path);
        path = file;
    }
    char *text = NULL;
    size_t len = 0;
    CB_TRY(cb_read_file(path, CFG_MAX_BYTES, &text, &len));
    cb_status s = cb_llama_config_parse(text, len, path, cfg);
    free(text);
    return s;
}
