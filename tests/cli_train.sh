#!/usr/bin/env bash
# caramba run / legacy flags end to end on a tiny byte-level model over the Brown sample:
# training writes checkpoints and metrics, --stop-after + --resume continues a run with the same
# losses, --dry-run only reports, the legacy `--manifest --mode train --data --seed` form trains,
# and bad input exits 1 with `error: ...` while earlier checkpoints stay byte-identical.
set -uo pipefail
BIN="$1"
ROOT="${CARAMBA_SOURCE_DIR:-.}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$BIN" prepare-data --tokenizer bytes --input "$ROOT/tests/data/tokenizers/brown_sample.txt" \
  --docs blank-line --output "$T/d.npy" > /dev/null 2>&1 || fail "prepare-data"
cat > "$T/m.yml" <<EOF
version: 1
name: clitrain
defaults: {val_frac: 0.05, eval_iters: 3, save_every: 3}
model:
  type: TransformerModel
  embedder: {type: token, vocab_size: 258, d_model: 32}
  tied_embeddings: true
  topology:
    type: StackedTopology
    layers:
      - type: ResidualTopology
        layers:
          - {type: RMSNormLayer, d_model: 32}
          - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2, mode: gqa, bias: false}
      - type: ResidualTopology
        layers:
          - {type: RMSNormLayer, d_model: 32}
          - {type: SwiGLULayer, d_model: 32, d_ff: 64, bias: false}
      - {type: RMSNormLayer, d_model: 32}
groups:
  - name: g
    data: $T/d.npy
    runs:
      - id: a
        mode: train
        steps: 6
        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01, scheduler: linear, eval_batches: 2}
EOF

# train: exit 0, entropy line, checkpoint + metrics
"$BIN" run "$T/m.yml" --out "$T/A" > "$T/out" 2> "$T/err" || fail "run: $(cat "$T/out" "$T/err")"
grep -q 'unigram entropy of the training tokens: [0-9.]* nats/token' "$T/out" || fail "no entropy line"
grep -q "✓ run 'a': steps 0..6" "$T/out" || fail "no run summary: $(cat "$T/out")"
grep -q "✓ Experiment complete" "$T/out" || fail "no completion line"
for f in model.safetensors optimizer.safetensors trainer.json; do
  [ -s "$T/A/a/final/$f" ] || fail "missing final/$f"
done
[ "$(cat "$T/A/a/latest")" = final ] || fail "latest is not final"
[ "$(grep -c '"type": "metrics"' "$T/A/a/metrics.jsonl")" -eq 6 ] || fail "metrics lines"
grep -q '"val_loss"' "$T/A/a/metrics.jsonl" || fail "no val_loss"
# progress goes to stderr as plain lines when it is not a terminal, with an ETA
grep -q '^a [0-9]*/6 .*loss.*tok/s.*ETA' "$T/err" || fail "no progress lines: $(cat "$T/err")"

# stop after 3, resume the run directory: the losses of steps 4..6 equal the straight run's
"$BIN" run "$T/m.yml" --out "$T/B" --stop-after 3 --no-progress > /dev/null 2>&1 || fail "stop-after"
[ "$(cat "$T/B/a/latest")" = step_00000003 ] || fail "latest after --stop-after: $(cat "$T/B/a/latest")"
"$BIN" run "$T/m.yml" --out "$T/B" --resume "$T/B/a" --no-progress > "$T/out" 2>&1 || fail "resume: $(cat "$T/out")"
grep -q "resuming from $T/B/a/step_00000003" "$T/out" || fail "no resume line: $(cat "$T/out")"
loss() { grep '"type": "metrics"' "$1" | grep "\"step\": $2," | tail -1 | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
for s in 4 5 6; do
  [ "$(loss "$T/A/a/metrics.jsonl" $s)" = "$(loss "$T/B/a/metrics.jsonl" $s)" ] || fail "step $s loss differs after resume"
done
cmp -s "$T/A/a/final/model.safetensors" "$T/B/a/final/model.safetensors" || fail "final weights differ after resume"

# Ctrl-C: the step finishes, a checkpoint is written, exit 130 with the resume command
sed 's/steps: 6/steps: 1000000/' "$T/m.yml" > "$T/long.yml"
"$BIN" run "$T/long.yml" --out "$T/I" --no-progress > "$T/iout" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  grep -q '"type": "metrics"' "$T/I/a/metrics.jsonl" 2>/dev/null && break
  sleep 0.1
done
kill -INT "$pid"
wait "$pid"
rc=$?
[ $rc -eq 130 ] || fail "interrupted run exit $rc: $(cat "$T/iout")"
grep -q "^error: interrupted at step [0-9]* of run 'a'; continue with: .*--resume $T/I/a/step_" "$T/iout" ||
  fail "interrupt message: $(cat "$T/iout")"
ck="$T/I/a/$(cat "$T/I/a/latest")"
[ -s "$ck/trainer.json" ] || fail "no checkpoint after Ctrl-C"

# dry run: report only
"$BIN" run "$T/m.yml" --dry-run --out "$T/C" > "$T/out" 2>&1 || fail "dry run"
grep -q "^group 'g'" "$T/out" && grep -q "dry run" "$T/out" || fail "dry run output: $(cat "$T/out")"
[ ! -e "$T/C" ] || fail "dry run wrote files"

# legacy flags train (first group) with --data and --seed
"$BIN" --manifest "$T/m.yml" --mode train --data "$T/d.npy" --seed 5 --out "$T/L" > "$T/out" 2>&1 ||
  fail "legacy train: $(cat "$T/out")"
[ -s "$T/L/a/final/model.safetensors" ] || fail "legacy: no checkpoint"
cmp -s "$T/A/a/final/model.safetensors" "$T/L/a/final/model.safetensors" && fail "legacy --seed ignored"
"$BIN" --manifest "$T/m.yml" --mode bogus > /dev/null 2> "$T/err"
[ $? -eq 2 ] && grep -q "invalid choice: 'bogus'" "$T/err" || fail "legacy bad mode: $(cat "$T/err")"
"$BIN" --manifest "$T/nope.yml" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "Manifest file not found: $T/nope.yml" "$T/err" || fail "legacy missing manifest"

# errors exit 1 with a message and leave the earlier checkpoint intact
sum() { cat "$T/A/a/final/"* "$T/A/a/latest" | cksum; }
before=$(sum)
"$BIN" run "$T/m.yml" --out "$T/A" --data "$T/missing.npy" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "^error: .*missing.npy" "$T/err" || fail "missing data: $(cat "$T/err")"
sed 's/lr: 0.01/lr: 0.01, dtype: float16/' "$T/m.yml" > "$T/bad.yml"
"$BIN" run "$T/bad.yml" --out "$T/A" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "^error: .*float16 is not supported on the CPU" "$T/err" || fail "bad dtype: $(cat "$T/err")"
sed 's/lr: 0.01/lr: 0.01, beta1: 2/' "$T/m.yml" > "$T/bad.yml"
"$BIN" run "$T/bad.yml" --out "$T/A" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "bad.yml:[0-9]*:[0-9]*: .*beta1" "$T/err" || fail "bad beta1: $(cat "$T/err")"
"$BIN" run "$T/m.yml" --out "$T/A" --resume "$T/nowhere" > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "^error: .*nowhere" "$T/err" || fail "bad resume: $(cat "$T/err")"
[ "$(sum)" = "$before" ] || fail "an error changed the earlier checkpoint"

"$BIN" run --help | grep -q -- '--resume' || fail "run --help lacks --resume"
echo "cli_train: ok"
