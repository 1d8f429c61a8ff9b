#!/usr/bin/env bash
# Builds NormCL's DocC documentation (the public API's doc comments, plus the catalog
# Sources/NormCL/NormCL.docc when there is one) into .build/docs, for static hosting.
# Warnings are errors: a broken ``symbol`` link or a parameter the signature does not
# have fails the build (CI runs this).
#
#   bash scripts/build-docs.sh [more generate-documentation options]
#
# swift-docc-plugin is a dependency of the root package only while NORMCL_DOCS is set
# (see Package.swift), so that consumers of the library never fetch it. DocC itself
# (docc) comes with the Swift toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-dependencies.sh   # building the symbol graph compiles the library
source scripts/lib/swift-path.sh
NORMCL_DOCS=1 swift package --allow-writing-to-directory .build/docs \
    generate-documentation --target NormCL --warnings-as-errors --output-path .build/docs "$@"
echo "documentation: .build/docs (open .build/docs/index.html through a web server, or host the folder)"
