# Shell helpers shared by the CLI tests (sourced, not run).

# write_npy FILE SHAPE_TEXT < raw little-endian int32 data: a version-1 .npy file of '<i4'.
write_npy() {
    local hdr="{'descr': '<i4', 'fortran_order': False, 'shape': $2, }"
    local total=$((10 + ${#hdr} + 1)) padded hl
    padded=$(((total + 63) / 64 * 64))
    hl=$((padded - 10))
    {
        printf '\x93NUMPY\x01\x00'
        printf "\\x$(printf %02x $((hl & 255)))\\x$(printf %02x $((hl >> 8)))"
        printf '%s' "$hdr"
        printf "%$((padded - total))s" ''
        printf '\n'
        cat
    } > "$1"
}
