/* libFuzzer target: cb_llama_config_parse on arbitrary bytes, then the RoPE frequencies of any
 * config it accepts. An accepted config must satisfy the invariants the model builder relies
 * on. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "caramba/hf.h"
#include "caramba/rope_freqs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cb_llama_config c;
    if (cb_llama_config_parse((const char *)data, size, "config.json", &c) != CB_OK) return 0;
    if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 ||
        c.num_hidden_layers <= 0 || c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 ||
        c.num_attention_heads % c.num_key_value_heads || c.head_dim <= 0 || c.head_dim % 2 ||
        c.rope_dim <= 0 || c.rope_dim % 2 || c.rope_dim > c.head_dim || !(c.rms_norm_eps > 0) ||
        !(c.rope.theta > 0) || c.n_eos_token_ids < 0 || c.n_eos_token_ids > CB_LLAMA_MAX_EOS)
        __builtin_trap();
    float *inv = malloc(sizeof(float) * (size_t)(c.rope_dim / 2));
    if (!inv) return 0;
    if (cb_rope_inv_freq(&c.rope, c.rope_dim, inv) != CB_OK) __builtin_trap();
    free(inv);
    return 0;
}
