/* Bump allocator for document nodes, manifest structs and their strings: everything a manifest
 * owns is freed at once, and a hard byte limit keeps hostile input from exhausting memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"

struct cb_pool_block {
    cb_pool_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

enum { CB_POOL_BLOCK = 64 * 1024 };

void cb_pool_init(cb_pool *p) {
    p->head = NULL;
    p->total = 0;
}

void cb_pool_free(cb_pool *p) {
    cb_pool_block *b = p->head;
    while (b) {
        cb_pool_block *next = b->next;
        free(b);
        b = next;
    }
    p->head = NULL;
    p->total = 0;
}

void *cb_pool_alloc(cb_pool *p, size_t n) {
    if (n > CB_POOL_MAX_BYTES) return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    if (need == 0) need = 16;
    cb_pool_block *b = p->head;
    if (!b || b->size - b->used < need) {
        size_t size = need > CB_POOL_BLOCK ? need : CB_POOL_BLOCK;
        if (p->total + size > CB_POOL_MAX_BYTES) return NULL;
        b = malloc(sizeof *b + size);
        if (!b) return NULL;
        b->size = size;
        b->used = 0;
        /* big one-off blocks go behind the head so the head keeps its free space */
        if (p->head && size > CB_POOL_BLOCK) {
            b->next = p->head->next;
            p->head->next = b;
        } else {
            b->next = p->head;
            p->head = b;
        }
        p->total += size;
    }
    void *r = b->data + b->used;
    b->used += need;
    memset(r, 0, n);
    return r;
}

char *cb_pool_strndup(cb_pool *p, const char *s, size_t n) {
    char *r = cb_pool_alloc(p, n + 1);
    if (!r) return NULL;
    if (n) memcpy(r, s, n);
    r[n] = 0;
    return r;
}

char *cb_pool_strdup(cb_pool *p, const char *s) {
    return cb_pool_strndup(p, s, strlen(s));
}

char *cb_pool_vprintf(cb_pool *p, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return NULL;
    char *r = cb_pool_alloc(p, (size_t)n + 1);
    if (!r) return NULL;
    vsnprintf(r, (size_t)n + 1, fmt, ap);
    return r;
}

char *cb_pool_printf(cb_pool *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *r = cb_pool_vprintf(p, fmt, ap);
    va_end(ap);
    return r;
}
