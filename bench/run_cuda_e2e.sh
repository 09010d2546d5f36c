#!/usr/bin/env bash
# Issue 6 on the lent GPU machine, in one job: the GPU tests, then the training benchmark with
# its PyTorch peers (eager, torch.compile) and the decode benchmarks with the Hugging Face peer,
# all in the same run. Expects the build outputs in $CARRY (default .gpucarry: libcaramba.so,
# libcaramba_cuda.so, caramba, test_cuda_model, test_cuda_ops, bench_cuda_train,
# bench_cuda_decode) and the shared libraries the machine lacks in .devlibs (OpenBLAS gzipped).
# Logs go to $OUT (default ./out-gpu). Usage: bench/run_cuda_e2e.sh [tests|train|decode|all|sanitize]...
# ('all' = tests train decode; 'sanitize' runs compute-sanitizer over test_cuda_model, ~250-400 s, only
# when named)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CARRY="${CARRY:-$ROOT/.gpucarry}"
FINAL="${OUT:-$ROOT/out-gpu}"
OUT=/tmp/e2e-logs # everything here, packed into $FINAL/logs.tgz at the end (few files come back)
mkdir -p "$FINAL" "$OUT" /tmp/devlibs
cp "$ROOT"/.devlibs/*.so* /tmp/devlibs/ 2>/dev/null
[ -f /tmp/devlibs/libopenblas.so.0.gz ] && gunzip -f /tmp/devlibs/libopenblas.so.0.gz
export LD_LIBRARY_PATH="$CARRY:/tmp/devlibs:${LD_LIBRARY_PATH:-}"
export CARAMBA_SOURCE_DIR="$ROOT" CARAMBA_BIN="$CARRY/caramba" PYTHONUNBUFFERED=1
cd "$ROOT"
what="${*:-all}"
pack() { # after every section: what ran so far comes back even if a later step hits the limit
  python3 bench/cuda_e2e_report.py "$OUT" > "$OUT/report.md" 2>&1
  cp "$OUT/report.md" "$FINAL/report.md"; cp "$OUT/summary.txt" "$FINAL/summary.txt" 2>/dev/null
  tar czf "$FINAL/logs.tgz" -C "$OUT" .
}
has() { [[ " $what " == *" $1 "* || " $what " == *" all "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
ldd "$CARRY/caramba" "$CARRY/libcaramba_cuda.so" | grep "not found" && echo "MISSING LIBRARIES"

if has tests; then
  echo "== tests"
  timeout 300 "$CARRY/test_cuda_model" > "$OUT/test_cuda_model.log" 2>&1; echo "test_cuda_model exit $?" | tee -a "$OUT/summary.txt"
  grep -E "PASSED|FAILED|SKIPPED|Failure|error|worst|loss|decoder|identical|device" "$OUT/test_cuda_model.log" | head -60
  timeout 120 "$CARRY/test_cuda_ops" > "$OUT/test_cuda_ops.log" 2>&1; echo "test_cuda_ops exit $?" | tee -a "$OUT/summary.txt"
  grep -E "PASSED|FAILED" "$OUT/test_cuda_ops.log"
  timeout 200 bash tests/cli_train_cuda.sh "$CARRY/caramba" > "$OUT/cli_train_cuda.log" 2>&1; echo "cli_train_cuda exit $?" | tee -a "$OUT/summary.txt"
  tail -4 "$OUT/cli_train_cuda.log"
  timeout 120 bash tests/cli_generate_cuda.sh "$CARRY/caramba" > "$OUT/cli_generate_cuda.log" 2>&1; echo "cli_generate_cuda exit $?" | tee -a "$OUT/summary.txt"
  tail -5 "$OUT/cli_generate_cuda.log"
  pack
fi
SMALL="--d-model 768 --layers 12 --heads 12 --kv-heads 4 --d-ff 2048 --vocab 32768 --batch 16 --seq 1024"
if has train; then
  echo "== train"
  timeout 200 "$CARRY/bench_cuda_train" --iters 10 --profile --json "$OUT/train_caramba.json" 2>&1 | tee "$OUT/train_caramba.log"
  timeout 200 python3 bench/torch_peer.py --device cuda --dtype bfloat16 $SMALL --iters 10 --no-prefill --matmul 8192 \
    > "$OUT/train_torch_eager.json" 2> "$OUT/train_torch_eager.err"; cat "$OUT/train_torch_eager.json"
  timeout 300 python3 bench/torch_peer.py --device cuda --dtype bfloat16 $SMALL --iters 10 --no-prefill --compile \
    > "$OUT/train_torch_compile.json" 2> "$OUT/train_torch_compile.err"; cat "$OUT/train_torch_compile.json"
  tail -3 "$OUT/train_torch_compile.err"
  pack
fi
if has decode; then
  echo "== decode"
  timeout 200 "$CARRY/bench_cuda_decode" --dir /tmp/small_hf --json "$OUT/decode_caramba.json" 2>&1 | tee "$OUT/decode_caramba.log"
  timeout 300 python3 bench/hf_decode_peer.py --model /tmp/small_hf --prompt-file /tmp/small_hf/prompt.txt --new 128 \
    > "$OUT/decode_hf.json" 2> "$OUT/decode_hf.err"; tail -3 "$OUT/decode_hf.err"
  cp /tmp/small_hf/ours_ids.txt "$OUT/" 2>/dev/null
  echo "== long-context decode, the 1b shape (Llama-3.2-1B)"
  timeout 200 "$CARRY/bench_cuda_decode" --config 1b --long-only --kinds fp16,q8_0,q4_0,nf4 --dir /tmp/b1 \
    --json "$OUT/decode_1b.json" 2>&1 | tee "$OUT/decode_1b.log"
  pack
fi
if [[ " $what " == *" sanitize "* ]]; then
  echo "== compute-sanitizer memcheck over test_cuda_model"
  timeout 420 compute-sanitizer --tool memcheck "$CARRY/test_cuda_model" > "$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?" | tee -a "$OUT/summary.txt"
  grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | tail -5
fi
pack
cat "$FINAL/report.md"
