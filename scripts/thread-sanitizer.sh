#!/usr/bin/env bash
# Builds the tests with Thread Sanitizer (in .build-tsan, apart from the normal build)
# and runs the concurrency and runtime suites, or the suites matching "$1".
#
# PoCL and the OpenCL ICD loader are not instrumented: TSan cannot see their locks, so
# it reports races inside them (e.g. memcpy in a PoCL worker). scripts/tsan.supp
# suppresses reports whose frames lie in those libraries only, never NormCL frames; any
# report that remains is a race to fix. Exits non-zero when TSan reports anything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
swift build --build-tests --sanitize=thread --scratch-path .build-tsan
export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp ${TSAN_OPTIONS:-}"
exec swift test --sanitize=thread --scratch-path .build-tsan --skip-build --filter "${1:-Concurrency|RuntimeTests}"
