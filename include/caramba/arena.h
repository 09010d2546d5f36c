/* Bump allocator for per-step activations.
 *
 * Allocation is a pointer bump; cb_arena_reset() frees everything at once. When a step needs more
 * than the current block, a new block is chained; at the next reset the blocks are merged into
 * one of the total size, so from the second step on the hot loop never calls the allocator. */
#ifndef CARAMBA_ARENA_H
#define CARAMBA_ARENA_H

#include <stddef.h>

#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_arena_block cb_arena_block;

typedef struct cb_arena {
    cb_device device;
    cb_arena_block *head; /* current block (newest) */
    size_t used_total;    /* bytes handed out since the last reset */
    size_t peak;          /* largest used_total ever seen */
    size_t capacity;      /* bytes held in all blocks */
} cb_arena;

void cb_arena_init(cb_arena *a, cb_device dev);
/* Returns memory aligned to 64 bytes, or NULL with a message (never aborts). */
void *cb_arena_alloc(cb_arena *a, size_t bytes);
void *cb_arena_calloc(cb_arena *a, size_t bytes);
void cb_arena_reset(cb_arena *a);
/* Number of blocks currently held (1 after a reset once the arena has settled). */
int cb_arena_blocks(const cb_arena *a);
void cb_arena_free(cb_arena *a);

#ifdef __cplusplus
}
#endif
#endif
