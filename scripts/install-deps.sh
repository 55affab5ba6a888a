#!/usr/bin/env bash
# Installs the Debian (bookworm) packages gptq.cpp builds with. Safe to run again.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      libopenblas-dev liblapacke-dev nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev
      libgtest-dev libbenchmark-dev python3 python3-numpy
      python3-dev python3-venv
      libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
