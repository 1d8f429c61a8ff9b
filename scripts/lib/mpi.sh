# shellcheck shell=bash
# Sourced (not run) by scripts/test-mpi.sh and scripts/bench-mpi.sh, from the repository
# root: installs Open MPI when it is missing, builds the Integrations/MPI package
# (release) and defines `run_mpi NP ARGS…`, which runs normcl-mpi-check under mpirun.
#
#   source scripts/lib/mpi.sh      (needs set -euo pipefail and scripts/lib/swift-path.sh)

mpi_package=Integrations/MPI
mpi_check="$mpi_package/.build/release/normcl-mpi-check"

# SwiftPM names a package that a path dependency refers to after its folder: the
# repository root (Integrations/MPI's `.package(path: "../..")`) and Integrations/MPI itself
# would both be "mpi" in a clone or worktree folder called mpi, and SwiftPM refuses that.
if [ "$(basename "$PWD" | tr '[:upper:]' '[:lower:]')" = mpi ]; then
    echo "error: the repository folder is called '$(basename "$PWD")', the same package identity as $mpi_package" >&2
    echo "  (SwiftPM names path dependencies by folder). Clone it, or bind-mount it, under another name." >&2
    exit 1
fi

# Open MPI: mpirun (openmpi-bin), <mpi.h> and libmpi with pkg-config's `mpi` entry
# (libopenmpi-dev), and pkg-config itself for SwiftPM's system-library target.
mpi_missing=()
command -v pkg-config >/dev/null 2>&1 || mpi_missing+=(pkg-config)
command -v mpirun >/dev/null 2>&1 || mpi_missing+=(openmpi-bin)
if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists mpi; then mpi_missing+=(libopenmpi-dev); fi
if ((${#mpi_missing[@]})); then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "error: Open MPI is missing and this is not root (no sudo): install ${mpi_missing[*]}:" >&2
        echo "  apt-get update && apt-get install -y ${mpi_missing[*]}" >&2
        exit 1
    fi
    echo "mpi: installing ${mpi_missing[*]}${as_root:+ (with sudo)}" >&2
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${mpi_missing[@]}" >&2
    command -v mpirun >/dev/null 2>&1 && pkg-config --exists mpi || {
        echo "error: apt-get ran, but mpirun or pkg-config's mpi entry is still missing" >&2
        exit 1
    }
fi

swift build -c release --package-path "$mpi_package" --product normcl-mpi-check
swift build -c release --package-path "$mpi_package" --product normcl-mpi-example

# mpirun's flags on this kind of machine (a container, as root, 2 cores):
# --allow-run-as-root as root; --oversubscribe for more ranks than cores (3 ranks on 2).
# The ranks are on one machine and talk through shared memory (btl vader) with its default
# settings; single-copy transfers (CMA) are turned off, as containers often forbid the
# ptrace they need (the exchanges are a few KB, copied through shared memory anyway).
# NORMCL_MPIRUN_FLAGS adds more (e.g. "--mca btl self,tcp").
mpirun_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpirun_flags+=(--allow-run-as-root)
# shellcheck disable=SC2206  # word splitting intended
[ -n "${NORMCL_MPIRUN_FLAGS:-}" ] && mpirun_flags+=(${NORMCL_MPIRUN_FLAGS})
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
# No "running on the CPU reference" notice from every rank when there is no OpenCL device.
export NORMCL_QUIET="${NORMCL_QUIET:-1}"

run_mpi() {  # run_mpi NP [normcl-mpi-check arguments…]
    local np=$1; shift
    run_mpi_program "$np" "$mpi_check" "$@"
}

run_mpi_program() {  # run_mpi_program NP PROGRAM [arguments…]
    local np=$1 program=$2; shift 2
    echo "+ mpirun ${mpirun_flags[*]} -np $np $program $*" >&2
    timeout --kill-after=30 "${NORMCL_MPI_TIMEOUT:-600}" mpirun "${mpirun_flags[@]}" -np "$np" "$program" "$@"
}
