#!/usr/bin/env bash
# Installs the OpenCL packages, builds the benchmark in release mode and runs it on the
# default device. Extra arguments go to normcl-bench (see --help), e.g. --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
swift build -c release --product normcl-bench
exec .build/release/normcl-bench "$@"
