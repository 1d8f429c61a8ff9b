#!/usr/bin/env bash
# Installs the OpenCL packages, builds the benchmark in release mode and runs it on the
# default device. Extra arguments go to normcl-bench (see --help), e.g. --quick.
#
# The benchmark is its own package, Benchmarks/ (so that the library package has no
# dependency on swift-argument-parser); its binary is Benchmarks/.build/release/normcl-bench.
# It runs from the repository root, where its default --peer-script path
# (Benchmarks/peers/pytorch_norms.py) is found.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
swift build -c release --package-path Benchmarks --product normcl-bench
exec Benchmarks/.build/release/normcl-bench "$@"
