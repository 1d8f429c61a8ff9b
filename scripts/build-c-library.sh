#!/usr/bin/env bash
# Builds libnormcl.so, the C API's library (include/normcl.h), and prints its path: the
# only line this script writes on standard output (the build's output goes to stderr).
#
#   library=$(bash scripts/build-c-library.sh)     (Tests/C/run.sh, Tests/Python/conftest.py)
#
# NORMCL_LIBRARY set: prints it and builds nothing. Otherwise `swift build --product normcl`
# in release, with the flags of scripts/test.sh's build (-enable-testing), so that after
# the test build it only links the library (seconds) instead of compiling NormCL again
# with other flags (a few minutes on 2 cores), and the test build stays valid after it.
# An up-to-date library is a no-op build of a few seconds, never a stale library.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${NORMCL_LIBRARY:-}" ]; then
    echo "$NORMCL_LIBRARY"
    exit 0
fi
flags=(-c release -Xswiftc -enable-testing)
{
    bash scripts/install-dependencies.sh
    source scripts/lib/swift-path.sh
    swift build "${flags[@]}" --product normcl
} 1>&2
echo "$(swift build "${flags[@]}" --show-bin-path)/libnormcl.so"
