#!/usr/bin/env bash
# Installs the Debian 12 packages pigeon builds and tests with. Idempotent:
# when everything is present it returns in about a second.
set -euo pipefail
PKGS=(cmake ninja-build g++ pkg-config make
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  librocksdb-dev libsimdjson-dev libxxhash-dev libspdlog-dev libfmt-dev
  libssl-dev libsodium-dev libcli11-dev libtomlplusplus-dev prometheus-cpp-dev
  libcurl4-openssl-dev libnghttp2-dev openssl nodejs
  libgtest-dev libgmock-dev libbenchmark-dev clang-format clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
