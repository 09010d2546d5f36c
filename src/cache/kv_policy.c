/* Per-tensor cache-kind policies: "q8_0", "k:q8_0,v:q4_0", "k_sem:q4_0,k_geo:q8_0,v:q4_0". */
#include "caramba/kv_cache.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *slot_names[4] = {"k", "v", "k_sem", "k_geo"};

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i])) i++;
    memmove(s, s + i, n - i + 1);
}

cb_status cb_kv_policy_parse(const char *text, cb_kv_policy *out) {
    cb_kv_policy p = {.is_auto = false, .all = -1, .slot = {-1, -1, -1, -1}};
    if (!text) return cb_fail(CB_ERR_ARG, "cache kind: empty");
    char buf[256];
    if (strlen(text) >= sizeof buf) return cb_fail(CB_ERR_ARG, "cache kind: text too long");
    snprintf(buf, sizeof buf, "%s", text);
    trim(buf);
    if (!buf[0]) return cb_fail(CB_ERR_ARG, "cache kind: empty");
    if (strcasecmp(buf, "auto") == 0) {
        p.is_auto = true;
        *out = p;
        return CB_OK;
    }
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        trim(item);
        char *colon = strchr(item, ':');
        cb_kv_kind kind;
        if (!colon) {
            if (cb_kv_kind_parse(item, &kind) != CB_OK)
                return cb_fail_context(CB_ERR_ARG, "cache kind '%s'", text);
            if (p.all >= 0)
                return cb_fail(CB_ERR_ARG, "cache kind '%s': more than one bare kind", text);
            p.all = (int)kind;
            continue;
        }
        *colon = 0;
        char *name = item, *val = colon + 1;
        trim(name);
        trim(val);
        int slot = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(name, slot_names[i]) == 0) slot = i;
        if (slot < 0)
            return cb_fail(CB_ERR_ARG,
                           "cache kind '%s': unknown tensor '%s' (expected k, v, k_sem or k_geo)",
                           text, name);
        if (cb_kv_kind_parse(val, &kind) != CB_OK)
            return cb_fail_context(CB_ERR_ARG, "cache kind '%s', tensor %s", text, name);
        if (p.slot[slot] >= 0)
            return cb_fail(CB_ERR_ARG, "cache kind '%s': tensor %s named twice", text, name);
        p.slot[slot] = (int)kind;
    }
    *out = p;
    return CB_OK;
}

cb_kv_kind cb_kv_policy_kind(const cb_kv_policy *p, cb_kv_slot slot, cb_kv_kind fallback) {
    if ((unsigned)slot < 4 && p->slot[slot] >= 0) return (cb_kv_kind)p->slot[slot];
    if ((slot == CB_KV_SLOT_K_SEM || slot == CB_KV_SLOT_K_GEO) && p->slot[CB_KV_SLOT_K] >= 0)
        return (cb_kv_kind)p->slot[CB_KV_SLOT_K];
    if (p->all >= 0) return (cb_kv_kind)p->all;
    return fallback;
}

char *cb_kv_policy_str(const cb_kv_policy *p, char *buf, size_t n) {
    size_t off = 0;
    if (n) buf[0] = 0;
    if (p->is_auto) {
        snprintf(buf, n, "auto");
        return buf;
    }
    if (p->all >= 0) off += (size_t)snprintf(buf, n, "%s", cb_kv_kind_name((cb_kv_kind)p->all));
    for (int i = 0; i < 4 && off < n; i++)
        if (p->slot[i] >= 0)
            off += (size_t)snprintf(buf + off, n - off, "%s%s:%s", off ? "," : "", slot_names[i],
                                    cb_kv_kind_name((cb_kv_kind)p->slot[i]));
    return buf;
}
