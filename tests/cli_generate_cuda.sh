#!/usr/bin/env bash
# caramba generate --device cuda (issue 6): batch-1 greedy decoding through the GPU decoder on the
# tiny_llama3 fixture with fp16, q8_0 and q4_0 caches: the output keeps the prompt, holds 16 new
# in-vocabulary ids, and the agreement with the Hugging Face greedy ids (f32; the decoder runs
# bf16 weights, so late tokens may differ) is printed. Configurations the decoder cannot run
# (sampling, batches, a draft model) exit 1 with the reason. Skips (exit 0, reason printed) when
# no GPU is usable. Usage: cli_generate_cuda.sh /path/to/caramba
set -u
BIN=${1:?usage: cli_generate_cuda.sh CARAMBA_BIN}
SRC=${CARAMBA_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
FIX=$SRC/tests/data/tiny_llama3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# prompt: the first 8 int32 ids of row 0 of the fixture (its npy data starts after 128 bytes)
write_npy() { # FILE SHAPE_TEXT < raw little-endian int32
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
tail -c +129 "$FIX/ref_input_ids.npy" | head -c 32 > "$TMP/p8.raw"
write_npy "$TMP/prompt.npy" "(1, 8)" < "$TMP/p8.raw"
head -c 64 "$TMP/p8.raw" > "$TMP/p2.raw"; cat "$TMP/p8.raw" >> "$TMP/p2.raw"
write_npy "$TMP/prompt2.npy" "(2, 8)" < "$TMP/p2.raw"

if ! "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 --device cuda \
    --cache-kind fp16 --out "$TMP/fp16.npy" 2> "$TMP/err"; then
    if grep -qi "no CUDA\|CUDA device\|no usable CUDA\|no CUDA backend" "$TMP/err"; then
        echo "SKIP: no usable GPU: $(cat "$TMP/err")"
        exit 0
    fi
    fail "generate --device cuda: $(cat "$TMP/err")"
fi
grep -q "on cuda" "$TMP/err" || fail "no tokens/s line: $(cat "$TMP/err")"
vocab=$(grep -o '"vocab_size": *[0-9]*' "$FIX/config.json" | grep -o '[0-9]*$')
ids() { od -An -v -t d4 -j 128 "$1" | tr -s ' ' '\n' | grep -v '^$'; }
ref=$(ids "$FIX/ref_greedy_ids.npy")
for kind in fp16 q8_0 q4_0; do
    [ "$kind" = fp16 ] || "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 \
        --device cuda --cache-kind $kind --out "$TMP/$kind.npy" 2> "$TMP/err" || fail "$kind: $(cat "$TMP/err")"
    got=$(ids "$TMP/$kind.npy")
    [ "$(echo "$got" | wc -l)" -eq 24 ] || fail "$kind: $(echo "$got" | wc -l) ids, expected 8 + 16"
    [ "$(echo "$got" | head -8)" = "$(echo "$ref" | head -8)" ] || fail "$kind: the prompt was not kept"
    echo "$got" | awk -v V="$vocab" '$1 < 0 || $1 >= V { bad = 1 } END { exit bad }' || fail "$kind: id out of vocabulary"
    same=$(paste <(echo "$got" | tail -16) <(echo "$ref" | tail -16) | awk '$1 != $2 { exit } { n++ } END { print n + 0 }')
    echo "$kind cache: first $same of 16 new ids equal the Hugging Face greedy ids"
done
# what the decoder cannot do is refused, not run differently
for extra in "--temperature 0.8" "--draft $FIX" "--eos-id 1"; do
    if "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 4 --device cuda $extra \
        --out "$TMP/x.npy" 2> "$TMP/err"; then fail "$extra on cuda ran"; fi
    grep -q "device cuda runs batch-1 greedy" "$TMP/err" || fail "$extra: $(cat "$TMP/err")"
done
"$BIN" generate --model "$FIX" --ids "$TMP/prompt2.npy" --max-new-tokens 4 --device cuda \
    --out "$TMP/x.npy" 2> "$TMP/err" && fail "a batch of 2 on cuda ran"
grep -q "batch-1" "$TMP/err" || fail "batch of 2: $(cat "$TMP/err")"
echo "ok"
