#!/usr/bin/env bash
# Leak check: a subset of the tests under AddressSanitizer with LeakSanitizer.
#
#   bash scripts/leak-check.sh [filter]     (default: the runtime, fault and leak suites, and the README examples)
#
# The sanitizer build has its own scratch path (.build-asan, git-ignored), so it does not
# replace the normal debug build; the first build takes ~20 min on 2 cores, later ones ~1 min.
# Exits non-zero when a test fails or LeakSanitizer reports a leak (LSan's exit code 23).
# The OpenCL objects themselves are also counted by LeakTests (OpenCLObjectCounts).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/swift-path.sh
filter="${1:-LeakTests|DeviceFaultTests|RuntimeTests|BufferPoolTests|ReadmeExampleTests}"
swift build --build-tests --sanitize=address --scratch-path .build-asan
ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
    swift test --sanitize=address --scratch-path .build-asan --skip-build --disable-xctest --filter "$filter"
