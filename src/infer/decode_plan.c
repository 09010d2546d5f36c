/* Decode plan (spec-infer §11): q_chunk / local_window overrides chosen by prefix length.
 *
 * Differences from the original (docs/generate.md): an unknown plan name is an error instead of
 * silently meaning "auto"; the long bucket's window defaults to none (decode_local_window_long
 * = 0), so "auto" never changes what the model computes unless a window is asked for; a prefill
 * is planned by the position of its last query instead of always getting the empty plan. */
#include <strings.h>

#include "caramba/generate.h"

cb_status cb_decode_plan_mode_parse(const char *text, cb_decode_plan_mode *out) {
    if (!text || strcasecmp(text, "auto") == 0)
        *out = CB_DECODE_PLAN_AUTO;
    else if (strcasecmp(text, "fixed") == 0)
        *out = CB_DECODE_PLAN_FIXED;
    else if (strcasecmp(text, "none") == 0 || strcasecmp(text, "off") == 0 ||
             strcasecmp(text, "disabled") == 0)
        *out = CB_DECODE_PLAN_NONE;
    else
        return cb_fail(CB_ERR_ARG, "decode_plan: '%s' is not one of auto, fixed, none", text);
    return CB_OK;
}

cb_decode_plan cb_decode_plan_for_pos(const cb_generate_config *c, cb_decode_plan_mode mode,
                                      int64_t p) {
    cb_decode_plan plan = {0, 0};
    switch (mode) {
    case CB_DECODE_PLAN_NONE:
        break;
    case CB_DECODE_PLAN_FIXED:
        plan.q_chunk = c->decode_q_chunk > 0 ? c->decode_q_chunk : 0;
        plan.local_window = c->decode_local_window > 0 ? c->decode_local_window : 0;
        break;
    case CB_DECODE_PLAN_AUTO:
        if (p < c->decode_bucket_short) break;
        if (p < c->decode_bucket_mid) {
            plan.q_chunk = c->decode_q_chunk_mid > 0 ? c->decode_q_chunk_mid : 0;
            break;
        }
        plan.q_chunk = c->decode_q_chunk_long > 0 ? c->decode_q_chunk_long : 0;
        plan.local_window = c->decode_local_window_long > 0 ? c->decode_local_window_long : 0;
        break;
    }
    return plan;
}
