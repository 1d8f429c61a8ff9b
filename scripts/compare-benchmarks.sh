#!/usr/bin/env bash
# Paired A/B run of two normcl-bench binaries (e.g. main before and after a change) on
# the same device: ROUNDS alternating full runs (A, B, A, B, …) without the peer, then a
# per-case table of the medians over rounds of each case's kernel median, B / A.
# Alternating whole runs spreads slow phases of a noisy machine over both sides; run it
# with nothing else on the machine.
#
#   scripts/compare-benchmarks.sh OLD_BINARY NEW_BINARY [ROUNDS] [extra normcl-bench args…]
#
# Writes the JSON of every run to ${AB_DIR:-/tmp/normcl-ab} and prints the table
# (scripts/compare-benchmarks.py).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
out=${AB_DIR:-/tmp/normcl-ab}
mkdir -p "$out"
rm -f "$out"/*.json
for round in $(seq 1 "$rounds"); do
    for side in a b; do
        binary=$old; [ "$side" = b ] && binary=$new
        echo "round $round/$rounds: $side ($binary)" >&2
        "$binary" --peer none --json "$out/$side-$round.json" "$@" > "$out/$side-$round.txt"
    done
done
python3 scripts/compare-benchmarks.py --old "$out"/a-*.json --new "$out"/b-*.json
