/* A growable NUL-terminated byte buffer. Allocation failure is sticky (oom) so callers append
 * freely and check once. */
#ifndef CARAMBA_STRBUF_H
#define CARAMBA_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_strbuf {
    char *p; /* NUL-terminated once anything was appended; NULL before */
    size_t n, cap;
    bool oom;
} cb_strbuf;

void cb_strbuf_put(cb_strbuf *b, const char *s, size_t n);
void cb_strbuf_puts(cb_strbuf *b, const char *s);
void cb_strbuf_free(cb_strbuf *b);

#ifdef __cplusplus
}
#endif
#endif
