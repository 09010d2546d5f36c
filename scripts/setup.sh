#!/usr/bin/env bash
# Installs the Debian packages caramba builds against. A no-op when they are all present.
# Called by the Makefile targets, so a fresh machine needs only `make` / `make test`.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libyaml-dev libcjson-dev libpcre2-dev
  libopenblas-dev libopenblas-openmp-dev liblapacke-dev
  libcmocka-dev
  libplplot-dev libcairo2-dev
  libopenmpi-dev openmpi-bin
  clang libclang-rt-14-dev libomp-14-dev
)
# Optional extras for benchmarks only: make bench installs them (python3-torch is the CPU peer).
if [ "${1:-}" = "--bench" ]; then
  packages+=(python3-torch python3-numpy nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/update-success-stamp
if [ ! -d /var/lib/apt/lists ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
  $SUDO apt-get update -qq
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
