/* Seeded pseudo-random numbers (xoshiro256**, seeded through splitmix64). The whole state is a
 * plain struct so trainers can save and restore it for bit-exact resume. */
#ifndef CARAMBA_RNG_H
#define CARAMBA_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_rng {
    uint64_t s[4];
} cb_rng;

void cb_rng_seed(cb_rng *r, uint64_t seed);
uint64_t cb_rng_next(cb_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float cb_rng_uniform(cb_rng *r);
/* Uniform integer in [0, n) without modulo bias. */
uint64_t cb_rng_below(cb_rng *r, uint64_t n);
/* Standard normal (Box-Muller, one value per call; deterministic). */
float cb_rng_normal(cb_rng *r);

#ifdef __cplusplus
}
#endif
#endif
