#!/usr/bin/env bash
# caramba generate end to end: the tiny_llama3 fixture's greedy ids (Hugging Face reference,
# tests/data/tiny_llama3/ref_greedy_ids.npy: the first 8 ids of row 0 of ref_input_ids.npy as
# prompt, 16 greedy tokens) reproduced byte for byte, also through speculative decoding; bad
# flags exit 1 with an error message. Usage: cli_generate.sh /path/to/caramba
set -u
BIN=${1:?usage: cli_generate.sh CARAMBA_BIN}
SRC=${CARAMBA_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
FIX=$SRC/tests/data/tiny_llama3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

. "$(dirname "$0")/npy_lib.sh" # write_npy

# prompt: the first 8 int32 ids of row 0 (data starts after the 128-byte header)
tail -c +129 "$FIX/ref_input_ids.npy" | head -c 32 > "$TMP/p8.raw"
write_npy "$TMP/prompt.npy" "(1, 8)" < "$TMP/p8.raw"
write_npy "$TMP/prompt1d.npy" "(8,)" < "$TMP/p8.raw"

# 1. greedy ids, byte-exact (header included)
if ! "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 --out "$TMP/out.npy" 2> "$TMP/err"; then
    fail "generate exited with $?: $(cat "$TMP/err")"
elif ! cmp -s "$TMP/out.npy" "$FIX/ref_greedy_ids.npy"; then
    fail "greedy ids differ from ref_greedy_ids.npy"
fi
grep -q "tokens/s" "$TMP/err" || fail "no tokens/s on stderr: $(cat "$TMP/err")"

# 2. the same through speculative decoding (draft = target) and with a per-tensor fp32 policy
"$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 --out "$TMP/spec.npy" \
    --draft "$FIX" --spec-k 3 --spec-adaptive 2> "$TMP/err" || fail "speculative: $(cat "$TMP/err")"
cmp -s "$TMP/spec.npy" "$FIX/ref_greedy_ids.npy" || fail "speculative greedy ids differ"
grep -q "acceptance 1.000" "$TMP/err" || fail "draft = target should accept everything: $(cat "$TMP/err")"
"$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 --out "$TMP/kv.npy" \
    --cache-kind k:fp32,v:fp32 --quiet 2> "$TMP/err" || fail "per-tensor kind: $(cat "$TMP/err")"
cmp -s "$TMP/kv.npy" "$FIX/ref_greedy_ids.npy" || fail "k:fp32,v:fp32 ids differ"
[ -s "$TMP/err" ] && fail "--quiet still printed: $(cat "$TMP/err")"

# 3. a 1-D prompt gives a 1-D output with the same ids
"$BIN" generate --model "$FIX" --ids "$TMP/prompt1d.npy" --max-new-tokens 16 --out "$TMP/out1d.npy" 2> /dev/null ||
    fail "1-D prompt"
cmp -s <(tail -c 96 "$TMP/out1d.npy") <(tail -c 96 "$FIX/ref_greedy_ids.npy") || fail "1-D prompt ids differ"
head -c 128 "$TMP/out1d.npy" | grep -q "'shape': (24,)" || fail "1-D output shape"

# 4. sampling is seeded: same seed, same ids; quantized caches and auto run
for kind in q8_0 q4_0 nf4 fp16 auto; do
    "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 12 --out "$TMP/s1.npy" \
        --temperature 0.9 --top-k 40 --top-p 0.95 --seed 7 --cache-kind $kind --quiet || fail "sampling with $kind"
    "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 12 --out "$TMP/s2.npy" \
        --temperature 0.9 --top-k 40 --top-p 0.95 --seed 7 --cache-kind $kind --quiet || fail "sampling with $kind"
    cmp -s "$TMP/s1.npy" "$TMP/s2.npy" || fail "seeded sampling with $kind is not reproducible"
done
"$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 8 --out "$TMP/a.npy" --cache-kind auto \
    --cache-budget-mb 0 --cache-plan "$TMP/plans/p.json" 2> "$TMP/err" || fail "auto with a plan: $(cat "$TMP/err")"
grep -q '"cache_kind":"q4_0"' "$TMP/plans/p.json" 2> /dev/null || fail "auto decision not persisted"
grep -q "cache q4_0" "$TMP/err" || fail "auto under a zero budget should pick q4_0: $(cat "$TMP/err")"

# 5. tokenizer: --prompt streams text to stdout, --out keeps prompt + new ids
"$BIN" generate --model "$FIX" --tokenizer bytes --prompt "Hi" --max-new-tokens 5 --out "$TMP/t.npy" \
    > "$TMP/stream" 2> "$TMP/err" || fail "tokenizer stream: $(cat "$TMP/err")"
[ -s "$TMP/stream" ] || fail "nothing streamed to stdout"
head -c 128 "$TMP/t.npy" | grep -q "'shape': (7,)" || fail "prompt + 5 ids expected in --out"
[ "$(tail -c 28 "$TMP/t.npy" | head -c 8 | od -An -tu4 | tr -s ' ')" = " 72 105" ] || fail "prompt ids are not the bytes of 'Hi'"

# 6. bad input: exit 1 and an error message
expect_error() {
    local what=$1
    shift
    "$BIN" generate "$@" > "$TMP/o" 2> "$TMP/e"
    local rc=$?
    [ $rc -eq 1 ] || fail "$what: exit $rc, expected 1"
    grep -q "^error: " "$TMP/e" || fail "$what: no 'error:' message ($(cat "$TMP/e"))"
}
expect_error "unknown flag" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --bogus
expect_error "no model" --ids "$TMP/prompt.npy" --out "$TMP/x.npy"
expect_error "no ids" --model "$FIX" --out "$TMP/x.npy"
expect_error "no out" --model "$FIX" --ids "$TMP/prompt.npy"
expect_error "bad top-p" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --top-p 1.5
expect_error "bad temperature" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --temperature abc
expect_error "negative max-new-tokens" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --max-new-tokens -1
expect_error "bad cache kind" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --cache-kind q5_1
expect_error "bad per-tensor kind" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --cache-kind k:q8_0,x:q4_0
expect_error "bad decode plan" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --decode-plan sometimes
expect_error "spec without draft" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --spec-k 2
expect_error "prompt without tokenizer" --model "$FIX" --prompt "hi" --out "$TMP/x.npy"
expect_error "context too small" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --max-seq-len 9
expect_error "missing model" --model "$TMP/nope" --ids "$TMP/prompt.npy" --out "$TMP/x.npy"
expect_error "missing draft" --model "$FIX" --ids "$TMP/prompt.npy" --out "$TMP/x.npy" --draft "$TMP/nope"
printf '\xe7\x03\x00\x00' | write_npy "$TMP/bad.npy" "(1,)"
expect_error "id outside the vocabulary" --model "$FIX" --ids "$TMP/bad.npy" --out "$TMP/x.npy"
echo "not an npy" > "$TMP/junk.npy"
expect_error "malformed ids file" --model "$FIX" --ids "$TMP/junk.npy" --out "$TMP/x.npy"
[ -e "$TMP/x.npy" ] && fail "an output file was written on error"

# 7. --help documents the flags and exits 0
"$BIN" generate --help > "$TMP/h" || fail "--help exit status"
for f in --max-new-tokens --temperature --top-k --top-p --seed --cache-kind --draft --spec-k --device --tokenizer --prompt; do
    grep -q -- "$f" "$TMP/h" || fail "--help does not mention $f"
done

if [ $fails -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "cli_generate: all checks passed"
