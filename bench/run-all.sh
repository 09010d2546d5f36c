#!/usr/bin/env bash
# make bench: every CPU benchmark with its peer in the same run, same thread count.
# Tables go to stdout and JSON to bench/results/ (git-ignored). Usage: bench/run-all.sh BUILD_DIR
set -uo pipefail
build=${1:-build}
threads=${CARAMBA_THREADS:-2}
out=bench/results
mkdir -p "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p') | $(nproc) cores | threads $threads | $(date -u +%FT%TZ)"
run() { echo; echo "== $*"; "$@" || echo "(failed: $?)"; }
run "$build/bench_train" --threads "$threads" --json "$out/train.json"
run "$build/bench_decode" --threads "$threads" --json "$out/decode.json"
run "$build/bench_kv_attention" --threads "$threads" --json "$out/kv.json"
run "$build/bench_tokenizer" --json "$out/tokenizer.json"
