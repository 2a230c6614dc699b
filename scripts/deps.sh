#!/usr/bin/env bash
# Installs what libotp needs to build and test, on Debian/Ubuntu, with
# apt-get — only the packages that are missing, so running it again is cheap.
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      zlib1g-dev libcmocka-dev liburing-dev libwolfssl-dev
      erlang-base erlang-dev elixir)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
