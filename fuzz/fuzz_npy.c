/* libFuzzer target: cb_npy_parse on arbitrary bytes.
 *
 * A successful parse must describe bytes inside the input, exactly shape-product * itemsize of
 * them, ending at the end of the input; they are read in full (ASan flags anything outside) and
 * seen through the tensor view and, for integer dtypes, through the token-file reader. */
#include <stdint.h>
#include <string.h>

#include "caramba/data.h"
#include "caramba/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cb_npy *n = NULL;
    if (cb_npy_parse(&n, data, size, "fuzz.npy") != CB_OK) {
        if (n) __builtin_trap(); /* failure leaves no result */
        return 0;
    }
    const uint8_t *p = n->data;
    if (n->ndim < 0 || n->ndim > CB_MAX_DIMS) __builtin_trap();
    if (n->nbytes && (p < data + 10 || p + n->nbytes != data + size)) __builtin_trap();
    volatile unsigned acc = 0;
    for (size_t i = 0; i < n->nbytes; i++) acc += p[i];
    cb_tensor t = cb_npy_tensor(n);
    if (cb_tensor_nbytes(&t) != n->nbytes || t.data != n->data) __builtin_trap();
    if (n->dtype == CB_U8 || n->dtype == CB_U16 || n->dtype == CB_U32 || n->dtype == CB_I32 ||
        n->dtype == CB_I64) {
        cb_token_file f;
        memset(&f, 0, sizeof f);
        f.path = "fuzz.npy";
        f.dtype = n->dtype;
        f.data = n->data;
        f.n = (int64_t)(n->nbytes / cb_dtype_size(n->dtype));
        cb_tokens_validate(&f, 50000);
        int64_t tmp[16];
        if (f.n) cb_tokens_read_i64(&f, 0, f.n < 16 ? f.n : 16, tmp);
        cb_dataset d;
        if (cb_dataset_init(&d, &f, 0, f.n, 2, 1) == CB_OK) {
            int64_t x[2], y[2];
            if (cb_dataset_window(&d, d.n_windows - 1, x, y) != CB_OK) __builtin_trap();
        }
    }
    (void)acc;
    cb_npy_close(n);
    return 0;
}
