/* Persisted cache decisions (spec-infer §12.5): canonical JSON, SHA-1 keys, the plan file.
 *
 * File: {"plans": {"<key>": {"cache_kind": str, "ts": float, "tps": float?, "source": str?,
 *        "payload": {...}}}, "version": 1} written as canonical JSON + "\n", atomically.
 * Key: first 16 hex digits of SHA-1 of the canonical payload. Unlike the original the payload
 * names the model (identity, shape and a weight fingerprint), the device, the dtype, the
 * candidates and fp16_prefix_layers, so two models or two devices never share a decision. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/strbuf.h"
#include "caramba/cache_policy.h"
#include "caramba/device.h"
#include "caramba/fileio.h"

/* ---- SHA-1 (FIPS 180-4 §6.1) ----------------------------------------------------------------- */

static uint32_t rol32(uint32_t x, int k) {
    return (x << k) | (x >> (32 - k));
}

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 80; t++) w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20)
            f = (b & c) | (~b & d), k = 0x5a827999u;
        else if (t < 40)
            f = b ^ c ^ d, k = 0x6ed9eba1u;
        else if (t < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdcu;
        else
            f = b ^ c ^ d, k = 0xca62c1d6u;
        uint32_t tmp = rol32(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void cb_sha1(const void *data, size_t n, uint8_t digest[20]) {
    uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};
    const uint8_t *p = data;
    size_t full = n / 64;
    for (size_t i = 0; i < full; i++) sha1_block(h, p + 64 * i);
    uint8_t tail[128] = {0};
    size_t r = n - 64 * full;
    memcpy(tail, p + 64 * full, r);
    tail[r] = 0x80;
    size_t tl = r + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tl == 128) sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static void hex16(const uint8_t d[20], char key[17]) {
    static const char *hx = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        key[2 * i] = hx[d[i] >> 4];
        key[2 * i + 1] = hx[d[i] & 15];
    }
    key[16] = 0;
}

/* ---- canonical JSON ------------------------------------------------------------------------ */

static void put_string(cb_strbuf *b, const char *s) {
    cb_strbuf_puts(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        switch (*c) {
        case '"':
            cb_strbuf_puts(b, "\\\"");
            break;
        case '\\':
            cb_strbuf_puts(b, "\\\\");
            break;
        case '\n':
            cb_strbuf_puts(b, "\\n");
            break;
        case '\r':
            cb_strbuf_puts(b, "\\r");
            break;
        case '\t':
            cb_strbuf_puts(b, "\\t");
            break;
        case '\b':
            cb_strbuf_puts(b, "\\b");
            break;
        case '\f':
            cb_strbuf_puts(b, "\\f");
            break;
        default:
            if (*c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *c);
                cb_strbuf_puts(b, esc);
            } else {
                cb_strbuf_put(b, (const char *)c, 1); /* non-ASCII bytes kept (ensure_ascii=False) */
            }
        }
    }
    cb_strbuf_puts(b, "\"");
}

static void put_number(cb_strbuf *b, double v) {
    char s[40];
    if (!isfinite(v))
        snprintf(s, sizeof s, "null"); /* JSON has no inf/nan */
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(s, sizeof s, "%lld", (long long)v);
    else {
        for (int p = 1; p <= 17; p++) { /* shortest text that reads back to the same double */
            snprintf(s, sizeof s, "%.*g", p, v);
            if (strtod(s, NULL) == v) break;
        }
    }
    cb_strbuf_puts(b, s);
}

static int cmp_key(const void *a, const void *b) {
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

static void put_value(cb_strbuf *b, const cJSON *v) {
    if (cJSON_IsNull(v) || cJSON_IsInvalid(v))
        cb_strbuf_puts(b, "null");
    else if (cJSON_IsTrue(v))
        cb_strbuf_puts(b, "true");
    else if (cJSON_IsFalse(v))
        cb_strbuf_puts(b, "false");
    else if (cJSON_IsNumber(v))
        put_number(b, v->valuedouble);
    else if (cJSON_IsString(v))
        put_string(b, v->valuestring ? v->valuestring : "");
    else if (cJSON_IsArray(v)) {
        cb_strbuf_puts(b, "[");
        int i = 0;
        for (const cJSON *c = v->child; c; c = c->next, i++) {
            if (i) cb_strbuf_puts(b, ",");
            put_value(b, c);
        }
        cb_strbuf_puts(b, "]");
    } else if (cJSON_IsObject(v)) {
        int n = cJSON_GetArraySize(v);
        cJSON **kids = n ? malloc(sizeof(cJSON *) * (size_t)n) : NULL;
        if (n && !kids) {
            b->oom = true;
            return;
        }
        int i = 0;
        for (cJSON *c = v->child; c; c = c->next) kids[i++] = c;
        qsort(kids, (size_t)n, sizeof *kids, cmp_key);
        cb_strbuf_puts(b, "{");
        for (i = 0; i < n; i++) {
            if (i) cb_strbuf_puts(b, ",");
            put_string(b, kids[i]->string);
            cb_strbuf_puts(b, ":");
            put_value(b, kids[i]);
        }
        cb_strbuf_puts(b, "}");
        free(kids);
    } else {
        cb_strbuf_puts(b, "null");
    }
}

static char *canonical(const cJSON *v) {
    cb_strbuf b = {0};
    put_value(&b, v);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

cb_status cb_json_canonicalize(const char *json, char **out) {
    *out = NULL;
    cJSON *v = cJSON_Parse(json);
    if (!v)
        return cb_fail(CB_ERR_FORMAT, "JSON: malformed text near '%.20s'",
                       cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    *out = canonical(v);
    cJSON_Delete(v);
    return *out ? CB_OK : cb_fail(CB_ERR_NOMEM, "JSON: canonical text");
}

cb_status cb_cache_plan_key_of_json(const char *json, char key[17]) {
    char *c;
    CB_TRY(cb_json_canonicalize(json, &c));
    uint8_t d[20];
    cb_sha1(c, strlen(c), d);
    free(c);
    hex16(d, key);
    return CB_OK;
}

/* ---- payload -------------------------------------------------------------------------------- */

static cJSON *num_or_null(double v) {
    return v >= 0 ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static void model_shape(const cb_model *m, char *s, size_t n) {
    size_t o = (size_t)snprintf(
        s, n, "vocab=%lld,d=%d,params=%lld,tied=%d,attn=", (long long)m->vocab_size, m->d_model,
        (long long)cb_model_param_count(m), m->tied ? 1 : 0);
    for (int i = 0; i < m->n_attn && o < n; i++) {
        const cb_attention_cfg *a = &m->attn[i]->attn;
        o += (size_t)snprintf(s + o, n - o, "%s%s:%d/%d:%d:%d:%d:%d", i ? ";" : "",
                              a->mode == CB_ATTN_DECOUPLED ? "dba" : "std", a->n_heads,
                              a->n_kv_heads, a->head_dim, a->sem_head_dim, a->geo_head_dim,
                              a->v_head_dim);
    }
}

/* SHA-1 over the first values of every parameter: two checkpoints of one shape differ here. */
static void weight_fingerprint(const cb_model *m, char out[17]) {
    if (m->device != CB_CPU || m->n_params == 0) {
        snprintf(out, 17, "none");
        return;
    }
    size_t cap = (size_t)m->n_params * 64 * sizeof(float), o = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) {
        snprintf(out, 17, "none");
        return;
    }
    for (int i = 0; i < m->n_params; i++) {
        const cb_tensor *t = m->params[i]->t;
        if (!t || !t->data) continue;
        size_t nb = cb_tensor_nbytes(t);
        size_t take = nb < 64 * sizeof(float) ? nb : 64 * sizeof(float);
        memcpy(buf + o, t->data, take);
        o += take;
    }
    uint8_t d[20];
    cb_sha1(buf, o, d);
    free(buf);
    hex16(d, out);
}

char *cb_cache_plan_payload(const cb_model *m, int64_t batch, const cb_generate_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char shape[1024], fp[17];
    model_shape(m, shape, sizeof shape);
    weight_fingerprint(m, fp);
    cJSON_AddStringToObject(o, "model",
                            cfg->cache_plan_model_id ? cfg->cache_plan_model_id : "caramba");
    cJSON_AddStringToObject(o, "model_shape", shape);
    cJSON_AddStringToObject(o, "weights", fp);
    cJSON_AddStringToObject(o, "device", cb_device_name(m->device));
    cb_dtype wdt = m->n_params ? m->params[0]->t->dtype : CB_F32;
    cJSON_AddStringToObject(o, "dtype", cb_dtype_name(wdt));
    cJSON *cands = cJSON_AddArrayToObject(o, "candidates");
    char buf[512];
    snprintf(buf, sizeof buf, "%s",
             cfg->cache_auto_candidates ? cfg->cache_auto_candidates : CB_CACHE_DEFAULT_CANDIDATES);
    char *save = NULL;
    for (char *t = strtok_r(buf, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        cb_kv_policy p;
        char canon[96];
        if (cb_kv_policy_parse(t, &p) == CB_OK)
            cJSON_AddItemToArray(cands,
                                 cJSON_CreateString(cb_kv_policy_str(&p, canon, sizeof canon)));
    }
    cJSON_AddNumberToObject(o, "batch_size", (double)batch);
    cJSON_AddNumberToObject(o, "max_seq_len", (double)cfg->max_seq_len);
    cJSON_AddNumberToObject(o, "qblock", 32);
    cJSON_AddNumberToObject(o, "residual_len", (double)cfg->cache_residual_len);
    cJSON_AddNumberToObject(o, "fp16_prefix_layers", cfg->cache_fp16_prefix_layers);
    cJSON_AddItemToObject(o, "budget_mb", num_or_null(cfg->cache_budget_mb));
    cJSON *q = cJSON_AddObjectToObject(o, "quality");
    cJSON_AddItemToObject(q, "max_delta_nll", num_or_null(cfg->cache_quality_max_delta_nll));
    cJSON_AddItemToObject(q, "max_ppl_ratio", num_or_null(cfg->cache_quality_max_ppl_ratio));
    cJSON_AddItemToObject(q, "max_mean_kl", num_or_null(cfg->cache_quality_max_mean_kl));
    cJSON_AddNumberToObject(q, "prompt_len", cfg->cache_quality_prompt_len);
    cJSON_AddNumberToObject(q, "decode_steps", cfg->cache_quality_decode_steps);
    cJSON_AddBoolToObject(o, "auto_benchmark", cfg->cache_auto_benchmark);
    cJSON_AddNumberToObject(o, "auto_bench_steps", cfg->cache_auto_bench_steps);
    cJSON_AddNumberToObject(o, "auto_bench_prompt_len", cfg->cache_auto_bench_prompt_len);
    char *s = canonical(o);
    cJSON_Delete(o);
    return s;
}

/* ---- plan file ------------------------------------------------------------------------------ */

cb_status cb_cache_plan_load(const char *path, const char *key, cb_cache_plan_entry *e,
                             bool *found) {
    *found = false;
    memset(e, 0, sizeof *e);
    char *text = NULL;
    size_t n;
    if (!path || !cb_file_exists(path) ||
        cb_read_file(path, (size_t)64 << 20, &text, &n) != CB_OK) {
        cb_clear_error();
        return CB_OK;
    }
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    const cJSON *plans = root ? cJSON_GetObjectItemCaseSensitive(root, "plans") : NULL;
    const cJSON *ent = cJSON_IsObject(plans) ? cJSON_GetObjectItemCaseSensitive(plans, key) : NULL;
    const cJSON *kind =
        cJSON_IsObject(ent) ? cJSON_GetObjectItemCaseSensitive(ent, "cache_kind") : NULL;
    cb_kv_policy p;
    if (cJSON_IsString(kind) && strlen(kind->valuestring) < sizeof e->cache_kind &&
        cb_kv_policy_parse(kind->valuestring, &p) == CB_OK && !p.is_auto) {
        cb_kv_policy_str(&p, e->cache_kind, sizeof e->cache_kind);
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(ent, "ts");
        const cJSON *tps = cJSON_GetObjectItemCaseSensitive(ent, "tps");
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(ent, "source");
        if (cJSON_IsNumber(ts) && isfinite(ts->valuedouble))
            e->has_ts = true, e->ts = ts->valuedouble;
        if (cJSON_IsNumber(tps) && isfinite(tps->valuedouble))
            e->has_tps = true, e->tps = tps->valuedouble;
        if (cJSON_IsString(src)) snprintf(e->source, sizeof e->source, "%s", src->valuestring);
        *found = true;
    }
    cb_clear_error();
    cJSON_Delete(root);
    return CB_OK;
}

cb_status cb_cache_plan_save(const char *path, const char *key, const cb_cache_plan_entry *e,
                             const char *payload) {
    if (!path || !*path) return cb_fail(CB_ERR_ARG, "cache plan: no path");
    cJSON *root = NULL;
    char *text = NULL;
    size_t n;
    if (cb_file_exists(path) && cb_read_file(path, (size_t)64 << 20, &text, &n) == CB_OK) {
        root = cJSON_ParseWithLength(text, n);
        free(text);
        if (root && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "plans"))) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    cb_clear_error();
    if (!root) {
        root = cJSON_CreateObject();
        if (!root || !cJSON_AddObjectToObject(root, "plans")) {
            cJSON_Delete(root);
            return cb_fail(CB_ERR_NOMEM, "cache plan");
        }
    }
    cJSON_DeleteItemFromObjectCaseSensitive(root, "version");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON *plans = cJSON_GetObjectItemCaseSensitive(root, "plans");
    cJSON *ent = cJSON_CreateObject();
    cJSON_AddStringToObject(ent, "cache_kind", e->cache_kind);
    if (e->has_ts) cJSON_AddNumberToObject(ent, "ts", e->ts);
    if (e->has_tps) cJSON_AddNumberToObject(ent, "tps", e->tps);
    if (e->source[0]) cJSON_AddStringToObject(ent, "source", e->source);
    if (payload) {
        cJSON *pl = cJSON_Parse(payload);
        if (pl) cJSON_AddItemToObject(ent, "payload", pl);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(plans, key);
    cJSON_AddItemToObject(plans, key, ent);
    char *out = canonical(root);
    cJSON_Delete(root);
    if (!out) return cb_fail(CB_ERR_NOMEM, "cache plan");
    size_t len = strlen(out);
    char *withnl = realloc(out, len + 2);
    if (!withnl) {
        free(out);
        return cb_fail(CB_ERR_NOMEM, "cache plan");
    }
    withnl[len] = '\n';
    withnl[len + 1] = 0;
    cb_status st = CB_OK;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        st = cb_mkdirs(dir);
    }
    if (st == CB_OK) st = cb_write_file_atomic(path, withnl, len + 1);
    free(withnl);
    return st == CB_OK ? CB_OK : cb_fail_context(st, "cache plan %s", path);
}

bool cb_cache_plan_stale(const cb_cache_plan_entry *e, double interval_sec, double now) {
    double interval = interval_sec > 0 ? interval_sec : 0;
    if (interval == 0 || !e->has_ts) return true;
    return now - e->ts >= interval;
}
