#!/usr/bin/env bash
# Synchronized BatchNorm across processes (issue #19): the Integrations/MPI package's
# check, normcl-mpi-check, under mpirun with 2 and with 3 ranks (N split unevenly, one rank
# with no samples among 3), on the default device, then with 3 ranks on the CPU
# reference, and README.md's MPI example (normcl-mpi-example) with 2 ranks. Installs Open MPI (libopenmpi-dev, openmpi-bin) and the OpenCL packages when
# missing, and builds the package in release (scratch path Integrations/MPI/.build).
#
#   bash scripts/test-mpi.sh        (CI runs it)
#
# Each mpirun has a time limit (NORMCL_MPI_TIMEOUT, 600 s): a hang fails instead of
# blocking. Exits non-zero when any run fails; the check itself exits non-zero unless
# every rank passed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
source scripts/lib/mpi.sh

status=0
for np in 2 3; do
    run_mpi "$np" || { echo "test-mpi.sh: the check failed with $np ranks" >&2; status=1; }
done
run_mpi_program 2 "$mpi_package/.build/release/normcl-mpi-example" ||
    { echo "test-mpi.sh: README.md's MPI example failed" >&2; status=1; }
run_mpi 3 --reference || { echo "test-mpi.sh: the check failed with 3 ranks on the CPU reference" >&2; status=1; }
echo "test-mpi.sh: $([ $status = 0 ] && echo 'passed with 2 and 3 ranks' || echo 'FAILED')"
exit $status
