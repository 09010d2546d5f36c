#!/usr/bin/env bash
# caramba run on the GPU (issue 6): the same manifest trained with train.device cuda in float32
# gives the CPU's losses (1e-4 relative per step), and in bfloat16 (AMP: bf16 compute, f32 master
# weights) trains (the loss falls) with the compute dtype recorded in the RuntimePlan. Skips
# (exit 0, reason printed) when no GPU is usable.
set -uo pipefail
BIN="$1"
ROOT="${CARAMBA_SOURCE_DIR:-.}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$BIN" prepare-data --tokenizer bytes --input "$ROOT/tests/data/tokenizers/brown_sample.txt" \
  --docs blank-line --output "$T/d.npy" > /dev/null 2>&1 || fail "prepare-data"
manifest() { # $1 device, $2 dtype, $3 file
cat > "$3" <<EOF
version: 1
name: cudatrain
defaults: {val_frac: 0.05, eval_iters: 5, save_every: 0}
model:
  type: TransformerModel
  embedder: {type: token, vocab_size: 258, d_model: 256}
  tied_embeddings: true
  topology:
    type: StackedTopology
    layers:
      - type: NestedTopology
        repeat: 2
        layers:
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 256}
              - {type: AttentionLayer, d_model: 256, n_heads: 4, n_kv_heads: 2, mode: gqa, bias: false}
          - type: ResidualTopology
            layers:
              - {type: RMSNormLayer, d_model: 256}
              - {type: SwiGLULayer, d_model: 256, d_ff: 512, bias: false}
      - {type: RMSNormLayer, d_model: 256}
groups:
  - name: g
    data: $T/d.npy
    runs:
      - id: a
        mode: train
        steps: 20
        train: {phase: standard, batch_size: 8, block_size: 128, lr: 0.003, scheduler: cosine, warmup_steps: 2, eval_batches: 2, device: $1, dtype: $2, grad_clip: 1.0}
EOF
}
manifest cuda float32 "$T/gpu.yml"
if ! "$BIN" run "$T/gpu.yml" --out "$T/G" --no-progress > "$T/gout" 2> "$T/gerr"; then
  if grep -q "no CUDA\|CUDA device\|no usable CUDA\|no CUDA backend" "$T/gerr"; then
    echo "SKIP: no usable GPU: $(cat "$T/gerr")"
    exit 0
  fi
  fail "cuda float32 run: $(cat "$T/gout" "$T/gerr")"
fi
manifest cpu float32 "$T/cpu.yml"
"$BIN" run "$T/cpu.yml" --out "$T/C" --no-progress > "$T/cout" 2>&1 || fail "cpu run: $(cat "$T/cout")"
loss() { grep '"type": "metrics"' "$1" | grep "\"step\": $2," | tail -1 | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
for s in 1 5 10 20; do
  a="$(loss "$T/G/a/metrics.jsonl" $s)"; b="$(loss "$T/C/a/metrics.jsonl" $s)"
  awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * b) }' ||
    fail "step $s: cuda loss $a, cpu loss $b"
done
echo "cuda float32 = cpu: step 20 loss $(loss "$T/G/a/metrics.jsonl" 20) vs $(loss "$T/C/a/metrics.jsonl" 20)"
manifest cuda bfloat16 "$T/amp.yml"
"$BIN" run "$T/amp.yml" --out "$T/A" --no-progress > "$T/aout" 2>&1 || fail "cuda bfloat16 run: $(cat "$T/aout")"
grep -q "plan: cuda, bfloat16" "$T/aout" || fail "no plan line: $(cat "$T/aout")"
grep -q '"compute_dtype":"bfloat16"' "$T"/A/plans/*.json || fail "plan lacks compute_dtype: $(cat "$T"/A/plans/*.json)"
l1="$(loss "$T/A/a/metrics.jsonl" 1)"; l20="$(loss "$T/A/a/metrics.jsonl" 20)"; c20="$(loss "$T/C/a/metrics.jsonl" 20)"
awk -v a="$l1" -v b="$l20" -v c="$c20" 'BEGIN { d = b - c; if (d < 0) d = -d; exit !(b < a - 1.0 && d <= 0.05 * c) }' ||
  fail "bf16 run: loss $l1 -> $l20 (f32: $c20)"
echo "cuda bfloat16: loss $l1 -> $l20 (float32 $c20)"
echo "ok"
