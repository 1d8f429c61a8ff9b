#!/usr/bin/env python3
"""Per-case comparison of normcl-bench JSON runs: --old A1.json A2.json … --new B1.json …

For each case, the median over runs of its kernel median (host median where there is no
kernel time), then new / old: below 1 is faster. Also the first-call times and programs
built, and whether every case matched the reference in every run. Exit status 1 when a
case is slower than --limit (default 1.05) or a run mismatched the reference.
"""
import argparse
import json
import statistics
import sys


def load(paths):
    runs = [json.load(open(p)) for p in paths]
    cases = {}
    for run in runs:
        for case in run["cases"]:
            cases.setdefault(case["name"], []).append(case)
    return cases


def time(case):
    return case["kernel_median_ms"] if case["kernel_median_ms"] is not None else case["host_median_ms"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", nargs="+", required=True)
    parser.add_argument("--new", nargs="+", required=True)
    parser.add_argument("--limit", type=float, default=1.05)
    args = parser.parse_args()
    old, new = load(args.old), load(args.new)
    rows = []
    failed = False
    for name in old:
        if name not in new:
            continue
        a = statistics.median(time(c) for c in old[name])
        b = statistics.median(time(c) for c in new[name])
        first_a = statistics.median(c["first_call_ms"] for c in old[name])
        first_b = statistics.median(c["first_call_ms"] for c in new[name])
        ok = all(c["matches_reference"] is not False for c in old[name] + new[name])
        ratio = b / a if a > 0 else float("nan")
        failed |= not ok or ratio > args.limit
        rows.append((name, a, b, ratio, first_a, first_b, "ok" if ok else "MISMATCH"))
    print("| case | old ms | new ms | new / old | old first ms | new first ms | check |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, a, b, ratio, fa, fb, check in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {ratio:.3f} | {fa:.1f} | {fb:.1f} | {check} |")
    ratios = [r[3] for r in rows]
    geomean = statistics.geometric_mean(ratios) if ratios else float("nan")
    print(f"\n{len(rows)} cases, geometric mean new / old {geomean:.3f}, worst {max(ratios):.3f}, "
          f"slower than {args.limit}: {sum(r > args.limit for r in ratios)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
