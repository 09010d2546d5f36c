/* Learning-rate schedules: a multiplier of the base rate for update t = 0, 1, ..., total-1.
 *
 *   W = max(0, warmup), T = max(0, total), r = clamp(min_ratio, 0, 1)
 *   none:          1 for every t (no warmup, no floor: the rate the manifest names)
 *   t < W:         (t + 1) / W                      (warmup reaches the base rate at t = W - 1)
 *   D = max(1, T - W),  f = min(D, t - W) / D       (decay progress, 0 at t = W)
 *   constant:      1
 *   linear:        r + (1 - r) (1 - f)
 *   cosine:        r + (1 - r) (1 + cos(pi f)) / 2
 * The same formula as the reference scheduler (spec-train §4.10) with one difference: update t
 * uses factor(t) and the logged lr is the one that update used (not the next one). */
#include <math.h>

#include "caramba/trainer.h"

double cb_schedule_factor(const cb_schedule *s, int64_t t) {
    if (s->kind == CB_CFG_SCHED_NONE) return 1.0;
    int64_t W = s->warmup > 0 ? s->warmup : 0, T = s->total > 0 ? s->total : 0;
    double r = s->min_ratio < 0 ? 0 : s->min_ratio > 1 ? 1 : s->min_ratio;
    if (t < 0) t = 0;
    if (W > 0 && t < W) return (double)(t + 1) / (double)W;
    int64_t D = T - W > 1 ? T - W : 1;
    int64_t done = t - W < D ? t - W : D;
    double f = (double)done / (double)D;
    switch (s->kind) {
    case CB_CFG_SCHED_LINEAR: return r + (1 - r) * (1 - f);
    case CB_CFG_SCHED_COSINE: return r + (1 - r) * 0.5 * (1 + cos(M_PI * f));
    default: return 1.0;
    }
}

double cb_schedule_lr(const cb_schedule *s, int64_t t) { return s->base_lr * cb_schedule_factor(s, t); }

const char *cb_schedule_name(cb_cfg_sched kind) {
    switch (kind) {
    case CB_CFG_SCHED_LINEAR: return "linear";
    case CB_CFG_SCHED_COSINE: return "cosine";
    case CB_CFG_SCHED_CONSTANT: return "constant";
    default: return "none";
    }
}
