#!/usr/bin/env bash
# Installs what the build needs, then runs every test of the workspace: unit tests of each
# crate and the end-to-end tests (a real server on port 0, the real client binary), then the
# HTTP API against its OpenAPI document (scripts/api-check.sh, schemathesis).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --tests
# What the build and the tests have to work with: a full disk fails them midway.
df -h . "${TMPDIR:-/tmp}" | sed 's/^/disk: /'
# The end-to-end tests run the client binary: build every binary first.
cargo build --workspace --bins
cargo test --workspace "$@"
scripts/api-check.sh
