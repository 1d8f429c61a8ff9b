#!/usr/bin/env bash
# Installs what NormCL needs on Debian/Ubuntu: the OpenCL headers and ICD loader to
# build, and PoCL (OpenCL on the CPU) so there is a device to run on.
# Skips apt entirely when everything is already installed.
#
#   bash scripts/install-dependencies.sh      (then: source scripts/lib/swift-path.sh)
#
# Only installs: it prints nothing on standard output. Every message, its own and
# apt-get's, goes to standard error, so no caller can ever run installer output as
# shell (as evaluating this script's output once did with apt-get's
# "Selecting previously unselected package …"). Finding Swift is scripts/lib/swift-path.sh.
#
# As root it runs apt-get; otherwise through sudo when there is one; otherwise it names
# the missing packages and the command to install them, and exits non-zero.
# Exits non-zero when the packages are still not installed after apt-get.
set -euo pipefail
exec 1>&2  # nothing below writes to the caller's stdout

packages=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd)

# "Installed" is dpkg's status "install ok installed". Not `dpkg -s`: it also succeeds
# for a package removed with its configuration files kept ("deinstall ok config-files"),
# which `apt-get remove pocl-opencl-icd` leaves behind.
is_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ $status == *" installed" ]]
}

missing_packages() {
    missing=()
    local p
    for p in "${packages[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-dependencies: not a Debian-based system (no dpkg-query); not installing anything."
    echo "  NormCL needs the OpenCL headers, the OpenCL ICD loader (libOpenCL, with pkg-config"
    echo "  file OpenCL.pc) and an OpenCL driver such as PoCL; install them with your package manager."
    exit 0
fi

missing_packages
((${#missing[@]})) || exit 0

install_command="apt-get update && apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "error: NormCL needs Debian packages that are not installed: ${missing[*]}"
    echo "  This script is not running as root and there is no sudo to install them."
    echo "  Install them as root, then run this again:"
    echo "    $install_command"
    exit 1
fi

echo "install-dependencies: installing ${missing[*]}${as_root:+ (with sudo)}"
# Through env: sudo resets the environment, so an exported variable would not reach apt-get.
apt_get=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
if ! "${apt_get[@]}" update -qq || ! "${apt_get[@]}" install -y -qq "${missing[@]}"; then
    echo "error: apt-get failed to install: ${missing[*]}"
    echo "  Install them as root, then run this again:"
    echo "    $install_command"
    exit 1
fi

missing_packages
if ((${#missing[@]})); then
    echo "error: apt-get succeeded, but these packages are still not installed: ${missing[*]}"
    echo "  Check their status with: dpkg -l ${packages[*]}"
    exit 1
fi
echo "install-dependencies: installed ${packages[*]}"
