#!/usr/bin/env bash
# Synchronized BatchNorm's cost across processes: normcl-mpi-check --bench under mpirun,
# per-rank batch (8, 64, 56, 56) float32 NCHW, the median of synchronized forward+backward
# against single-device forward+backward of the same per-rank tensor, and the bytes
# exchanged per step. 2 ranks unless NORMCL_MPI_RANKS says otherwise; extra arguments go
# to the benchmark (--iterations N, --warmup N, --reference).
#
#   bash scripts/bench-mpi.sh [--iterations 50]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
source scripts/lib/mpi.sh
run_mpi "${NORMCL_MPI_RANKS:-2}" --bench "$@"
