#!/usr/bin/env bash
# Installs the OpenCL packages and runs the whole test suite (OpenCL on the default
# device against the CPU reference, plus the reference path alone). Extra arguments
# go to `swift test`, e.g. --filter RMSNormErrorTests.
#
# Optimised (`-c release`, with `-enable-testing` for the tests' `@testable import`): the
# suite compares every kernel with the float64 reference and checks tolerances element
# by element, Swift code a debug build runs as unspecialised generic calls (about 60% of
# the CPU time of a debug run). Measured on the 2-core machine: 124 s of tests (debug)
# against 38 s (optimised) with PoCL's kernel cache warm, 380 s against 254 s with it
# empty, where compiling kernels is the rest; the build takes about 2.5 minutes longer.
# Preconditions and overflow checks stay on in -O; NormCL has no `assert`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
exec swift test -c release -Xswiftc -enable-testing "$@"
