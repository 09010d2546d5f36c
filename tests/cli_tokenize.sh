#!/usr/bin/env bash
# caramba tokenize end to end: the reference encodings (js-tiktoken / llama3-tokenizer-js, see
# tests/data/tokenizers/PROVENANCE.md) through --jsonl, flags, and error exits.
set -euo pipefail
BIN="$1"
ROOT="${CARAMBA_SOURCE_DIR:-.}"
D="$ROOT/tests/data/tokenizers"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# reference ids of one encoding, one line per text, as "1,2,3"
ref_ids() { sed -E "s/.*\"$1\":\[([^]]*)\].*/\1/; s/ //g" "$D/reference_encodings.jsonl"; }
our_ids() { sed -E 's/^\{"ids": \[(.*)\]\}$/\1/; s/ //g'; }

"$BIN" tokenize --tokenizer "$D/cl100k_base.tiktoken" --jsonl "$D/reference_encodings.jsonl" \
  | our_ids > "$T/cl100k.txt"
ref_ids cl100k_base > "$T/cl100k.ref"
cmp -s "$T/cl100k.txt" "$T/cl100k.ref" || fail "cl100k_base ids differ from the reference"
[ "$(wc -l < "$T/cl100k.txt")" -eq "$(wc -l < "$D/reference_encodings.jsonl")" ] || fail "line count"

"$BIN" tokenize --tokenizer "$D/llama3_tokenizer.json" --jsonl - < "$D/reference_encodings.jsonl" \
  | our_ids > "$T/llama3.txt"
ref_ids llama3 > "$T/llama3.ref"
cmp -s "$T/llama3.txt" "$T/llama3.ref" || fail "llama3 ids differ from the reference"

# --text-file prints one line; --bos/--eos; specials only with --allow-special
printf 'Hello world' > "$T/a.txt"
out=$("$BIN" tokenize --tokenizer "$D/llama3_tokenizer.json" --text-file "$T/a.txt" --bos --eos)
[ "$out" = '{"ids": [128000, 9906, 1917, 128001]}' ] || fail "text-file/bos/eos: $out"
printf 'a<|endoftext|>' > "$T/s.txt"
out=$("$BIN" tokenize --tokenizer bytes --text-file "$T/s.txt" --allow-special)
[ "$out" = '{"ids": [97, 256]}' ] || fail "bytes/allow-special: $out"
out=$("$BIN" tokenize --tokenizer bytes --text-file "$T/s.txt")
[ "$(echo "$out" | tr -cd ',' | wc -c)" -eq 13 ] || fail "specials must be plain text by default"
out=$(printf 'hi\n' | "$BIN" tokenize --tokenizer bytes --text-file -)
[ "$out" = '{"ids": [104, 105, 10]}' ] || fail "text-file from stdin: $out"
printf '' > "$T/empty.txt"
out=$("$BIN" tokenize --tokenizer bytes --text-file "$T/empty.txt")
[ "$out" = '{"ids": []}' ] || fail "empty file: $out"
out=$(printf '{"text": "hi"}\n\n{"text": "yo"}\n' | "$BIN" tokenize --tokenizer bytes --jsonl -)
[ "$out" = $'{"ids": [104, 105]}\n{"ids": [121, 111]}' ] || fail "blank lines: $out"
out=$(printf '{"text": "a\\u0000b\\ud83d\\ude00"}\n' | "$BIN" tokenize --tokenizer bytes --jsonl -)
[ "$out" = '{"ids": [97, 0, 98, 240, 159, 152, 128]}' ] || fail "json escapes: $out"
out=$("$BIN" tokenize --tokenizer "$D/cl100k_base.tiktoken" --encoding cl100k_base --text-file "$T/a.txt")
[ "$out" = '{"ids": [9906, 1917]}' ] || fail "--encoding: $out"

# errors: exit 1 with "error: ..." on stderr
expect_error() {
  local want="$1"; shift
  if "$BIN" "$@" > "$T/out" 2> "$T/err"; then fail "should fail: $*"; fi
  grep -q "^error: .*$want" "$T/err" || fail "message for '$*': $(cat "$T/err")"
}
expect_error "no such file" tokenize --tokenizer "$T/missing.json" --text-file "$T/a.txt"
expect_error "exactly one of" tokenize --tokenizer bytes
expect_error "exactly one of" tokenize --tokenizer bytes --text-file "$T/a.txt" --jsonl "$T/a.txt"
expect_error "a.txt:1: expected a JSON object" tokenize --tokenizer bytes --jsonl "$T/a.txt"
expect_error "unknown encoding" tokenize --tokenizer "$D/cl100k_base.tiktoken" --encoding nope --text-file "$T/a.txt"
expect_error "no beginning-of-text" tokenize --tokenizer "$D/cl100k_base.tiktoken" --text-file "$T/a.txt" --bos
expect_error "cannot open" tokenize --tokenizer bytes --jsonl "$T/nothing.jsonl"
expect_error "unknown option" tokenize --tokenizer bytes --frobnicate
head -c 5000 "$D/llama3_tokenizer.json" > "$T/cut.json"
expect_error "not valid JSON" tokenize --tokenizer "$T/cut.json" --text-file "$T/a.txt"
echo "cli_tokenize: ok"
