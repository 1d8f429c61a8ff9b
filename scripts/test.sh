#!/usr/bin/env bash
# Installs the OpenCL packages and runs the whole test suite (OpenCL on the default
# device against the CPU reference, plus the reference path alone). Extra arguments
# go to `swift test`, e.g. --filter RMSNormErrorTests; `--skip-build` (first) reuses
# the last build.
#
# Optimised (`-c release`, with `-enable-testing` for the tests' `@testable import`): the
# suite compares every kernel with the float64 reference and checks tolerances element
# by element, Swift code a debug build runs as unspecialised generic calls (about 60% of
# the CPU time of a debug run). Measured on the 2-core machine: 124 s of tests (debug)
# against 38 s (optimised) with PoCL's kernel cache warm, 380 s against 254 s with it
# empty, where compiling kernels is the rest; the build takes about 2.5 minutes longer.
# Preconditions and overflow checks stay on in -O; NormCL has no `assert`.
#
# The whole suite (no arguments besides --skip-build and --skip PATTERN) runs as two
# test processes at once, split by op family. On an empty PoCL cache most of the time is PoCL compiling
# kernels, and PoCL compiles under one process-wide lock, so one process keeps one core
# busy (user time ≈ wall time); two processes compile on two cores. SwiftPM locks its
# build directory per `swift test`, so the shards run the built test binary directly
# (`--testing-library swift-testing`, as `swift test` runs it). Each shard's lines are
# prefixed with its name; the script fails when either shard fails. NORMCL_TEST_SHARDS=1
# runs the suite as one `swift test` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh

skip_build=false
if [ "${1:-}" = "--skip-build" ]; then skip_build=true; shift; fi
# Only `--skip PATTERN` pairs keep the sharded run (each shard skips them too); any
# other argument selects tests another way and goes to one `swift test`.
skips=()
arguments=("$@")
while [ $# -ge 2 ] && [ "$1" = "--skip" ]; do skips+=(--skip "$2"); shift 2; done
if [ $# -gt 0 ] || [ "${NORMCL_TEST_SHARDS:-2}" = "1" ]; then
    set -- "${arguments[@]}"
    $skip_build && set -- --skip-build "$@"
    exec swift test -c release -Xswiftc -enable-testing "$@"
fi

$skip_build || swift build -c release --build-tests -Xswiftc -enable-testing
binary="$(swift build -c release --show-bin-path)/NormCLPackageTests.xctest"
[ -x "$binary" ] || { echo "test.sh: no test binary at $binary (build without --skip-build)" >&2; exit 1; }

# The op suites (BatchNorm, LayerNorm, RMSNorm, GroupNorm, InstanceNorm, Switchable Norm)
# in one shard, the suites across ops (runtime, caches, specialisation, properties,
# validation, NaN isolation, concurrency) in the other: together every test exactly once
# (--filter and --skip of the same pattern). Measured from an empty PoCL cache: 150 s
# and 130 s, 150 s in all, against 280–308 s as one process.
families='NormCLTests\.(BatchNorm|BatchRenorm|LayerNorm|RMSNorm|GroupNorm|InstanceNorm|SwitchableNorm)'
start=$(date +%s)
(set -o pipefail; "$binary" --testing-library swift-testing --filter "$families" ${skips[@]+"${skips[@]}"} 2>&1 | sed -u 's/^/[ops] /') &
first=$!
(set -o pipefail; "$binary" --testing-library swift-testing --skip "$families" ${skips[@]+"${skips[@]}"} 2>&1 | sed -u 's/^/[across] /') &
second=$!
status=0
wait $first || status=1
wait $second || status=1
echo "test.sh: both shards $([ $status = 0 ] && echo passed || echo 'did not pass') in $(($(date +%s) - start)) s"
exit $status
