#!/usr/bin/env bash
# caramba generate --device cuda (issue 6): batch-1 greedy decoding through the GPU decoder. A
# byte-level Llama with head size 32 (the decoder's smallest; the HF fixtures have 12-16) is
# trained for 40 steps on the CPU, its checkpoint directory (HF names + config.json) is the model.
# With fp16, q8_0, q4_0 and nf4 caches: the output keeps the prompt and holds 16 new in-vocabulary ids,
# and (fp16, q8_0) every chosen id is within 0.05 of the best logit of the CPU's f32 forward over
# the generated sequence (the decoder runs bf16 weights: only near ties may flip); the agreement
# with the CPU's own greedy ids is printed.
# Configurations the decoder cannot run (sampling, batches, a draft model, an eos id) exit 1 with
# the reason. Skips (exit 0, reason printed) when no GPU is usable.
# Usage: cli_generate_cuda.sh /path/to/caramba
set -u
BIN=${1:?usage: cli_generate_cuda.sh CARAMBA_BIN}
SRC=${CARAMBA_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

. "$(dirname "$0")/npy_lib.sh" # write_npy
# prompt "The jury" as byte ids (the bytes tokenizer maps byte b to id b)
printf 'The jury' | od -An -v -t u1 | tr -s ' ' '\n' | grep -v '^$' |
    while read -r b; do printf "\\x$(printf %02x "$b")\\x00\\x00\\x00"; done > "$TMP/p8.raw"
[ "$(wc -c < "$TMP/p8.raw")" -eq 32 ] || fail "prompt bytes"
write_npy "$TMP/prompt.npy" "(1, 8)" < "$TMP/p8.raw"
cat "$TMP/p8.raw" "$TMP/p8.raw" | write_npy "$TMP/prompt2.npy" "(2, 8)"

"$BIN" prepare-data --tokenizer bytes --input "$SRC/tests/data/tokenizers/brown_sample.txt" \
    --docs blank-line --output "$TMP/d.npy" > /dev/null 2>&1 || fail "prepare-data"
cat > "$TMP/m.yml" <<YML
version: 1
name: gencuda
defaults: {val_frac: 0.05, eval_iters: 2, save_every: 0}
model:
  type: TransformerModel
  embedder: {type: token, vocab_size: 264, d_model: 64}
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 2
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 64}
              - {type: AttentionLayer, d_model: 64, n_heads: 2, n_kv_heads: 1, mode: gqa, bias: false}
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 64}
              - {type: SwiGLULayer, d_model: 64, d_ff: 128, bias: false}
      - {type: RMSNormLayer, d_model: 64}
groups:
  - name: g
    data: $TMP/d.npy
    runs:
      - id: a
        mode: train
        steps: 40
        train: {phase: standard, batch_size: 4, block_size: 128, lr: 0.003, device: cpu, dtype: float32}
YML
"$BIN" run "$TMP/m.yml" --out "$TMP/R" --no-progress > "$TMP/run.log" 2>&1 || fail "training: $(cat "$TMP/run.log")"
FIX=$TMP/R/a/final
[ -f "$FIX/config.json" ] || fail "no checkpoint config.json"
"$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 --cache-kind fp16 \
    --out "$TMP/cpu.npy" 2> "$TMP/err" || fail "cpu generate: $(cat "$TMP/err")"

if ! "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 --device cuda \
    --cache-kind fp16 --out "$TMP/fp16.npy" 2> "$TMP/err"; then
    if grep -qi "no CUDA\|CUDA device\|no usable CUDA\|no CUDA backend" "$TMP/err"; then
        echo "SKIP: no usable GPU: $(cat "$TMP/err")"
        exit 0
    fi
    fail "generate --device cuda: $(cat "$TMP/err")"
fi
grep -q "on cuda" "$TMP/err" || fail "no tokens/s line: $(cat "$TMP/err")"
vocab=264
ids() { od -An -v -t d4 -j 128 "$1" | tr -s ' ' '\n' | grep -v '^$'; }
ref=$(ids "$TMP/cpu.npy")
for kind in fp16 q8_0 q4_0 nf4; do
    [ "$kind" = fp16 ] || "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 16 \
        --device cuda --cache-kind $kind --out "$TMP/$kind.npy" 2> "$TMP/err" || fail "$kind: $(cat "$TMP/err")"
    got=$(ids "$TMP/$kind.npy")
    [ "$(echo "$got" | wc -l)" -eq 24 ] || fail "$kind: $(echo "$got" | wc -l) ids, expected 8 + 16"
    [ "$(echo "$got" | head -8)" = "$(echo "$ref" | head -8)" ] || fail "$kind: the prompt was not kept"
    echo "$got" | awk -v V="$vocab" '$1 < 0 || $1 >= V { bad = 1 } END { exit bad }' || fail "$kind: id out of vocabulary"
    same=$(paste <(echo "$got" | tail -16) <(echo "$ref" | tail -16) | awk '$1 != $2 { exit } { n++ } END { print n + 0 }')
    # every id the decoder chose is the argmax, up to a near tie, of the CPU's f32 forward over
    # the generated sequence (bf16 weights and cache rounding may flip near ties, nothing more)
    "$BIN" logits --model "$FIX" --ids "$TMP/$kind.npy" --out "$TMP/$kind.l.npy" 2> "$TMP/err" ||
        fail "$kind: cpu logits: $(cat "$TMP/err")"
    hl=$(od -An -v -t u2 -j 8 -N 2 "$TMP/$kind.l.npy" | tr -d ' ')
    worst=$(od -An -v -t f4 -j $((10 + hl)) "$TMP/$kind.l.npy" | tr -s ' ' '\n' | grep -v '^$' |
        awk -v V=$vocab -v ids="$(echo $got)" 'BEGIN { n = split(ids, t, " ") }
            { r = int((NR - 1) / V); c = (NR - 1) % V; if (c == 0) m[r] = $1; if ($1 > m[r]) m[r] = $1
              if (r + 2 <= n && c == t[r + 2]) ch[r] = $1 }
            END { w = 0; for (r = 7; r < n - 1; r++) if (m[r] - ch[r] > w) w = m[r] - ch[r]; print w }')
    echo "$kind cache: first $same of 16 new ids equal the CPU's greedy ids; worst gap between a" \
        "chosen id's CPU logit and the CPU maximum: $worst"
    [ "$kind" = q4_0 ] || [ "$kind" = nf4 ] || awk -v w="$worst" 'BEGIN { exit !(w <= 0.05) }' ||
        fail "$kind: the decoder chose an id $worst below the CPU's best logit"
done
# what the decoder cannot do is refused, not run differently
for extra in "--temperature 0.8" "--draft $FIX" "--eos-id 10"; do
    if "$BIN" generate --model "$FIX" --ids "$TMP/prompt.npy" --max-new-tokens 4 --device cuda $extra \
        --out "$TMP/x.npy" 2> "$TMP/err"; then fail "$extra on cuda ran"; fi
    grep -q "device cuda runs batch-1 greedy" "$TMP/err" || fail "$extra: $(cat "$TMP/err")"
done
"$BIN" generate --model "$FIX" --ids "$TMP/prompt2.npy" --max-new-tokens 4 --device cuda \
    --out "$TMP/x.npy" 2> "$TMP/err" && fail "a batch of 2 on cuda ran"
grep -q "batch-1" "$TMP/err" || fail "batch of 2: $(cat "$TMP/err")"
echo "ok"
