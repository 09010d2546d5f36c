/* Bump allocator with block chaining and merge-on-reset (see arena.h). */
#include "caramba/arena.h"

#include <stdlib.h>

#include "caramba/device.h"

struct cb_arena_block {
    cb_arena_block *prev;
    char *base;
    size_t size;
    size_t used;
};

enum { CB_ARENA_ALIGN = 64, CB_ARENA_MIN_BLOCK = 1 << 20 };

void cb_arena_init(cb_arena *a, cb_device dev) { *a = (cb_arena){.device = dev}; }

static cb_arena_block *block_new(cb_device dev, size_t size) {
    cb_arena_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->base = cb_device_alloc(dev, size);
    if (!b->base) {
        free(b);
        return NULL;
    }
    b->size = size;
    b->used = 0;
    b->prev = NULL;
    return b;
}

void *cb_arena_alloc(cb_arena *a, size_t bytes) {
    size_t need = (bytes + CB_ARENA_ALIGN - 1) & ~(size_t)(CB_ARENA_ALIGN - 1);
    if (need < bytes) {
        cb_fail(CB_ERR_NOMEM, "arena request of %zu bytes overflows", bytes);
        return NULL;
    }
    cb_arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t size = need > CB_ARENA_MIN_BLOCK ? need : CB_ARENA_MIN_BLOCK;
        if (a->capacity > size) size = a->capacity; /* grow geometrically */
        cb_arena_block *nb = block_new(a->device, size);
        if (!nb) {
            cb_fail(CB_ERR_NOMEM, "cannot allocate an activation block of %zu bytes", size);
            return NULL;
        }
        nb->prev = b;
        a->head = nb;
        a->capacity += size;
        b = nb;
    }
    void *p = b->base + b->used;
    b->used += need;
    a->used_total += need;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

void *cb_arena_calloc(cb_arena *a, size_t bytes) {
    void *p = cb_arena_alloc(a, bytes);
    if (p && cb_device_memset0(a->device, p, bytes) != CB_OK) return NULL;
    return p;
}

static void free_chain(cb_device dev, cb_arena_block *b) {
    while (b) {
        cb_arena_block *prev = b->prev;
        cb_device_free(dev, b->base);
        free(b);
        b = prev;
    }
}

void cb_arena_reset(cb_arena *a) {
    if (a->head && a->head->prev) { /* several blocks: merge into one big enough for the peak */
        size_t want = a->peak > a->capacity ? a->peak : a->capacity;
        free_chain(a->device, a->head);
        a->head = block_new(a->device, want);
        a->capacity = a->head ? want : 0;
    }
    if (a->head) a->head->used = 0;
    a->used_total = 0;
}

void cb_arena_free(cb_arena *a) {
    free_chain(a->device, a->head);
    *a = (cb_arena){.device = a->device};
}

int cb_arena_blocks(const cb_arena *a) {
    int n = 0;
    for (const cb_arena_block *b = a->head; b; b = b->prev) n++;
    return n;
}
