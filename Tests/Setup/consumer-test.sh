#!/usr/bin/env bash
# A consumer of the library fetches only what the library needs.
#
#   bash Tests/Setup/consumer-test.sh      (CI runs it)
#
# Builds Examples/Consumer, a package that depends on the `NormCL` product only (by path),
# from scratch in its own scratch path (.build-consumer, apart from every other build), runs
# it (LayerNorm forward checked against the formula), and checks that resolving it fetched
# none of the packages that only the repository itself uses: swift-argument-parser (the
# benchmark's, in Benchmarks/Package.swift), swift-docc-plugin and its swift-docc-symbolkit
# (the root manifest adds them only under NORMCL_DOCS), and swift-numerics and
# swift-property-based (the library's test target's: SwiftPM resolves a dependency's
# products, not its tests' dependencies). Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
bash scripts/install-dependencies.sh || exit 1
source scripts/lib/swift-path.sh || exit 1

consumer=Examples/Consumer
scratch=$PWD/.build-consumer
not_for_consumers=(swift-argument-parser swift-docc-plugin swift-docc-symbolkit swift-numerics swift-property-based)

passed=0 failed=0
check() {  # check DESCRIPTION CONDITION-COMMAND...
    local description=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "PASS: $description"
    else failed=$((failed + 1)); echo "FAIL: $description"; fi
}

# A fresh start: no earlier checkouts or pins can hide (or fake) a fetch.
rm -rf "$scratch" "$consumer/Package.resolved"
# NORMCL_DOCS would add swift-docc-plugin to the library's manifest: a consumer never sets it.
env -u NORMCL_DOCS swift build --package-path "$consumer" --scratch-path "$scratch"
check "the consumer builds against the NormCL product" test $? -eq 0

"$scratch/debug/NormCLConsumer"
check "the consumer runs LayerNorm forward and gets the formula's values" test $? -eq 0

fetched() {  # any trace of package $1 in the consumer's scratch path or pins
    compgen -G "$scratch/checkouts/$1*" >/dev/null || compgen -G "$scratch/repositories/$1-*" >/dev/null ||
        grep -qs "\"identity\" : \"$1\"" "$consumer/Package.resolved"
}
for package in "${not_for_consumers[@]}"; do
    check "the consumer did not fetch $package" eval "! fetched $package"
done
echo "fetched by the consumer: $(ls "$scratch/checkouts" 2>/dev/null | tr '\n' ' ')(end)"

echo "$passed passed, $failed failed"
((failed == 0))
