/* RuntimePlan: the device-dependent decisions of a training run (resolved device, weight dtype,
 * batch size under auto_batch_size, thread count, AMP and compile switches), keyed by a hash of
 * the device, the caramba version, the lowered model config and the run's train config, saved as
 * JSON under <out>/plans/<key>.json and reused verbatim while the key matches (spec-train §6).
 *
 * Key: the first 16 hex digits of FNV-1a-64 over the canonical JSON of the payload
 *   {"device": ..., "host": {"cores": N}, "model": <lowered model>, "train": <train config>,
 *    "version": "caramba 0.1.0"}
 * Canonical JSON: object keys sorted (bytewise) at every level, no whitespace, integers in
 * decimal, other numbers in the shortest form that reads back exactly, strings escaped as JSON
 * requires (UTF-8 kept). The train config leaves out keys that do not change decisions (teacher_ckpt,
 * init_from, resume). docs/training.md has the decision rules. */
#ifndef CARAMBA_RUNTIME_PLAN_H
#define CARAMBA_RUNTIME_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "caramba/manifest.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_runtime_plan {
    char key[17];
    char device[24];       /* resolved: "cpu", "cuda", "cuda:N" */
    char version[32];      /* "caramba 0.1.0" */
    char dtype[16];        /* resolved weight dtype: float32 | bfloat16 | float16 */
    int64_t batch_size;    /* train.batch_size, scaled when auto_batch_size */
    int threads;           /* CPU threads (OpenMP team and OpenBLAS) */
    bool use_amp;
    char amp_dtype[16];    /* resolved autocast dtype */
    char compute_dtype[16]; /* what the run computes in: float32 on the CPU; on cuda amp_dtype
                               when use_amp, else dtype (16-bit: AMP with f32 master weights) */
    bool compile;
    char compile_mode[48];
    bool reused;           /* read from an existing plan file with the same key */
    char path[1024];       /* the plan file, "" when not saved */
} cb_runtime_plan;

/* The decisions for a run, without touching files. */
cb_status cb_runtime_plan_decide(const cb_model_cfg *model, const cb_train_cfg *train,
                                 cb_runtime_plan *out);
/* Loads <plans_dir>/<key>.json when it exists and matches, else decides and saves it (a write
 * failure is only a warning on stderr: the plan still applies). */
cb_status cb_runtime_plan_get(const char *plans_dir, const cb_model_cfg *model,
                              const cb_train_cfg *train, cb_runtime_plan *out);

/* Canonical JSON of the payload (heap string), and the key of a payload. */
char *cb_runtime_payload(const cb_model_cfg *model, const cb_train_cfg *train, const char *device);
void cb_runtime_key(const char *payload, char key[17]);
uint64_t cb_fnv1a64(const void *data, size_t n);

/* Threads from the environment: CARAMBA_THREADS, else OMP_NUM_THREADS, else 0 (unset). */
int cb_runtime_env_threads(void);

#ifdef __cplusplus
}
#endif
#endif
