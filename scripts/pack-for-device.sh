#!/usr/bin/env bash
# Builds normcl-bench as a static-stdlib release binary and packs it with the OpenCL
# ICD loader into gpu-pack/, for a machine that has an OpenCL driver but no Swift.
#
# On that machine (from the folder that holds gpu-pack/):
#   icd=$(ls /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so* /usr/local/nvidia/lib64/libnvidia-opencl.so* 2>/dev/null | head -1)
#   mkdir -p /tmp/icd && echo "$icd" > /tmp/icd/nvidia.icd      # skip if /etc/OpenCL/vendors has one
#   OCL_ICD_VENDORS=/tmp/icd gpu-pack/normcl-bench --peer-script gpu-pack/pytorch_norms.py \
#       --json gpu.json --plot gpu.svg
# (the peer script times the same cases with PyTorch CUDA when python3 there imports torch).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh
source scripts/lib/swift-path.sh
# The benchmark is its own package (Benchmarks/Package.swift); this replaces the dynamically
# linked binary scripts/benchmark.sh builds there with a static-stdlib one.
swift build -c release --static-swift-stdlib --package-path Benchmarks --product normcl-bench \
    -Xlinker -rpath -Xlinker '$ORIGIN'
rm -rf gpu-pack && mkdir -p gpu-pack
cp Benchmarks/.build/release/normcl-bench gpu-pack/
strip gpu-pack/normcl-bench
# The ICD loader the binary links against (Debian's ocl-icd-libopencl1), beside it.
cp "$(readlink -f /usr/lib/x86_64-linux-gnu/libOpenCL.so.1)" gpu-pack/libOpenCL.so.1
cp Benchmarks/peers/pytorch_norms.py gpu-pack/
ls -l gpu-pack
