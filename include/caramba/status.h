/* Status codes and error messages.
 *
 * Every public function returns a cb_status (or a pointer that is NULL on failure) and leaves a
 * human-readable message describing what went wrong, with the file, key path or shapes involved.
 * The message lives in a thread-local buffer (like errno): it is the only mutable state shared
 * between calls besides logging and configuration. */
#ifndef CARAMBA_STATUS_H
#define CARAMBA_STATUS_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cb_status {
    CB_OK = 0,
    CB_ERR_ARG,         /* invalid argument (caller's mistake or bad user input) */
    CB_ERR_IO,          /* file could not be opened, read, written */
    CB_ERR_FORMAT,      /* malformed file contents */
    CB_ERR_SHAPE,       /* tensor shapes do not agree */
    CB_ERR_NOMEM,       /* allocation failed or size absurd */
    CB_ERR_UNSUPPORTED, /* valid, but not implemented for this dtype/device */
    CB_ERR_NOTFOUND,    /* missing tensor, key, file */
    CB_ERR_DEVICE,      /* CUDA / backend failure */
    CB_ERR_INTERNAL,
} cb_status;

/* Sets the thread's error message and returns st (so `return cb_fail(...)` reads naturally). */
cb_status cb_fail(cb_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
cb_status cb_vfail(cb_status st, const char *fmt, va_list ap);
/* Prepends context to the current message: "ctx: previous message". Returns st. */
cb_status cb_fail_context(cb_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *cb_last_error(void);
void cb_clear_error(void);
const char *cb_status_name(cb_status st);

/* Propagate a failing status from an expression. */
#define CB_TRY(expr)                                                                               \
    do {                                                                                           \
        cb_status cb_try_st_ = (expr);                                                             \
        if (cb_try_st_ != CB_OK) return cb_try_st_;                                                \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
