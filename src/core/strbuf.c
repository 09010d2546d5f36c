/* Growable byte buffer (see caramba/strbuf.h). */
#include "caramba/strbuf.h"

#include <stdlib.h>
#include <string.h>

void cb_strbuf_put(cb_strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void cb_strbuf_puts(cb_strbuf *b, const char *s) { cb_strbuf_put(b, s, strlen(s)); }

void cb_strbuf_free(cb_strbuf *b) {
    free(b->p);
    *b = (cb_strbuf){0};
}
