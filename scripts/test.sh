#!/usr/bin/env bash
# Installs the OpenCL packages and runs the whole test suite (OpenCL on the default
# device against the CPU reference, plus the reference path alone).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/install-dependencies.sh)"
exec swift test "$@"
