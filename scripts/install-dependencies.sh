#!/usr/bin/env bash
# Installs what NormCL needs on Debian/Ubuntu: the OpenCL headers and ICD loader to
# build, and PoCL (OpenCL on the CPU) so there is a device to run on.
# Skips apt entirely when everything is already installed.
set -euo pipefail
packages=(ocl-icd-opencl-dev opencl-headers pocl-opencl-icd)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}"
fi
# Swift: use the toolchain on PATH, else the one in /opt/swift.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    echo "export PATH=/opt/swift/usr/bin:\$PATH"
fi
