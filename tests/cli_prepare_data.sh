#!/usr/bin/env bash
# caramba prepare-data end to end: the Brown sample with the bytes and cl100k_base tokenizers,
# the meta.json, the progress line, and error exits.
set -euo pipefail
BIN="$1"
ROOT="${CARAMBA_SOURCE_DIR:-.}"
D="$ROOT/tests/data/tokenizers"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# bytes tokenizer, one document per line: tokens = bytes - newlines - blank lines + separators
"$BIN" prepare-data --tokenizer bytes --input "$D/brown_sample.txt" --docs blank-line \
  --output "$T/brown.npy" > "$T/out" 2> "$T/err"
grep -q '^prepare-data \[#*\] 100%.*MB/s.*40 docs' "$T/err" || fail "progress line: $(cat "$T/err")"
grep -q "wrote $T/brown.npy" "$T/out" || fail "summary: $(cat "$T/out")"
[ -f "$T/brown.meta.json" ] || fail "no meta.json"
grep -q '"documents":[[:space:]]*40,' "$T/brown.meta.json" || fail "documents"
grep -q '"separator_id":[[:space:]]*256,' "$T/brown.meta.json" || fail "separator"
grep -q '"dtype":[[:space:]]*"uint16"' "$T/brown.meta.json" || fail "dtype"
grep -q '"vocab_size":[[:space:]]*258,' "$T/brown.meta.json" || fail "vocab_size"
# 40 documents joined by "\n\n" plus a final "\n": each "\n\n" becomes one separator token
bytes=$(wc -c < "$D/brown_sample.txt")
want=$(( 128 + (bytes - 1 - 39 * 2) * 2 + 39 * 2 ))
[ "$(wc -c < "$T/brown.npy")" -eq "$want" ] || fail "npy size $(wc -c < "$T/brown.npy") != $want"
grep -q "\"tokens\":[[:space:]]*$(( (want - 128) / 2 ))," "$T/brown.meta.json" || fail "tokens"

# cl100k_base: u32 (100277 ids), a directory input with *.txt files in name order
mkdir -p "$T/dir"
printf 'second' > "$T/dir/b.txt"
printf 'first' > "$T/dir/a.txt"
printf 'ignored' > "$T/dir/c.md"
"$BIN" prepare-data --tokenizer "$D/cl100k_base.tiktoken" --input "$T/dir" --output "$T/d.npy" \
  > /dev/null 2>&1
grep -q '"dtype":[[:space:]]*"uint32"' "$T/d.meta.json" || fail "cl100k dtype"
grep -q '"documents":[[:space:]]*2,' "$T/d.meta.json" || fail "dir documents"
grep -q '"separator_id":[[:space:]]*100257,' "$T/d.meta.json" || fail "cl100k separator"
# first, <|endoftext|>, second  ->  [3983, 100257, 5686] as little-endian u32 after the header
[ "$(od -An -tu4 -j128 "$T/d.npy" | tr -s ' ' | sed 's/^ //;s/ $//')" = "3983 100257 5686" ] \
  || fail "cl100k ids: $(od -An -tu4 -j128 "$T/d.npy")"

expect_error() {
  local want="$1"; shift
  if "$BIN" "$@" > "$T/o" 2> "$T/e"; then fail "should fail: $*"; fi
  grep -q "^error: .*$want" "$T/e" || fail "message for '$*': $(cat "$T/e")"
}
expect_error "no such file" prepare-data --tokenizer bytes --input "$T/none.txt" --output "$T/x.npy"
expect_error "--input is required" prepare-data --tokenizer bytes --output "$T/x.npy"
expect_error "--output is required" prepare-data --tokenizer bytes --input "$T/dir"
expect_error "--docs must be" prepare-data --tokenizer bytes --input "$T/dir" --output "$T/x.npy" --docs para
expect_error "no such file" prepare-data --tokenizer "$T/nope.json" --input "$T/dir" --output "$T/x.npy"
[ ! -e "$T/x.npy" ] || fail "a failed run left an output"
echo "cli_prepare_data: ok"
