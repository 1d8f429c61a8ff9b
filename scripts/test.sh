#!/usr/bin/env bash
# Installs the OpenCL packages and runs the whole test suite (OpenCL on the default
# device against the CPU reference, plus the reference path alone). Extra arguments
# go to `swift test`, e.g. --filter RMSNormErrorTests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
exec swift test "$@"
