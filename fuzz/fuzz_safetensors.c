/* libFuzzer target: cb_safetensors_parse on arbitrary bytes.
 *
 * A successful parse must describe bytes inside the input: every entry's data is read in full
 * (ASan flags anything outside the buffer), looked up by name, and float entries are converted
 * to f32 as cb_checkpoint_load would. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/safetensors.h"
#include "caramba/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cb_safetensors *st = NULL;
    if (cb_safetensors_parse(&st, data, size, "fuzz.safetensors") != CB_OK) {
        if (st) __builtin_trap(); /* failure leaves no result */
        return 0;
    }
    volatile unsigned acc = 0;
    size_t total = 0;
    for (int i = 0; i < st->n_entries; i++) {
        const cb_st_entry *e = &st->entries[i];
        const uint8_t *p = e->data;
        if (e->nbytes && (p < data + 8 || p + e->nbytes > data + size)) __builtin_trap();
        for (size_t j = 0; j < e->nbytes; j++) acc += p[j];
        total += e->nbytes;
        if (cb_safetensors_find(st, e->name) != e) __builtin_trap();
        if (cb_dtype_is_float(e->dtype) && e->nbytes && e->nbytes <= (1u << 16)) {
            void *aligned = malloc(e->nbytes);
            cb_tensor src, *dst = NULL;
            if (aligned &&
                cb_tensor_init(&src, e->dtype, CB_CPU, e->ndim, e->shape, aligned) == CB_OK &&
                cb_tensor_new(&dst, CB_F32, CB_CPU, e->ndim, e->shape) == CB_OK) {
                memcpy(aligned, e->data, e->nbytes);
                if (cb_tensor_copy(dst, &src) != CB_OK) __builtin_trap();
            }
            cb_tensor_free(dst);
            free(aligned);
        }
    }
    if (total > size) __builtin_trap();
    (void)acc;
    char buf[64];
    cb_safetensors_metadata_get(st, "format", buf, sizeof buf);
    cb_safetensors_close(st);
    return 0;
}
