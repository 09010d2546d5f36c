/* CRC-32C (Castagnoli): the checksum of TFRecord framing. Reflected polynomial 0x82F63B78,
 * initial value and final xor 0xFFFFFFFF; bitwise (event files are small, and there is no
 * table to initialise). Check values: crc32c("123456789") = 0xE3069283 (the CRC catalogue's
 * CRC-32/ISCSI entry); 32 zero bytes -> 0x8A9136AA (RFC 3720, appendix B.4). */
#include <stdint.h>

#include "caramba/instrument.h"

uint32_t cb_crc32c(const void *data, size_t n) {
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

uint32_t cb_tfrecord_masked_crc(const void *data, size_t n) {
    uint32_t c = cb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}
