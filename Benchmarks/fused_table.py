#!/usr/bin/env python3
"""The fused epilogues' table from several normcl-bench runs (#18's measure).

Usage: python3 Benchmarks/fused_table.py RUN1.json RUN2.json RUN3.json

Each run is `normcl-bench --filter + --json RUN.json`. For every fused case ("RMSNorm+residual
(2048,4096) f32", ...) it pairs the same work done as separate NormCL ops ("... separate ops")
and PyTorch's eager composite (the run's peer), and prints a Markdown table of medians over
the runs: NormCL fused host ms, separate ops host ms, PyTorch ms, fused ÷ separate (× faster)
and fused vs PyTorch (above 1: NormCL faster), each ratio the median of the per-run ratios
(each run times both sides back to back, so its ratio is steadier than a ratio of medians).
"""
import json
import statistics
import sys


def main(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append({c["name"]: c for c in json.load(f)["cases"]})
    names = [n for n in runs[0] if "+" in n.split(" ")[0] and " separate ops" not in n]
    print(f"| case | fused ms | separate ops ms | × separate | PyTorch ms | × PyTorch | % copy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        op, _, rest = name.partition(" (")
        separate_name = f"{op} separate ops ({rest}"
        fused = [r[name]["host_median_ms"] for r in runs if name in r]
        separate = [r[separate_name]["host_median_ms"] for r in runs if separate_name in r]
        peer = [r[name]["peer_median_ms"] for r in runs if name in r and r[name].get("peer_median_ms")]
        copy = [r[name]["fraction_of_copy"] for r in runs if name in r and r[name].get("fraction_of_copy")]
        over_separate = [r[separate_name]["host_median_ms"] / r[name]["host_median_ms"]
                         for r in runs if name in r and separate_name in r]
        over_peer = [r[name]["peer_median_ms"] / r[name]["host_median_ms"]
                     for r in runs if name in r and r[name].get("peer_median_ms")]

        def cell(values, digits=3, suffix=""):
            return f"{statistics.median(values):.{digits}f}{suffix}" if values else "—"
        print(f"| {name} | {cell(fused)} | {cell(separate)} | {cell(over_separate, 2, '×')} | {cell(peer)} | "
              f"{cell(over_peer, 2, '×')} | {cell([100 * c for c in copy], 0, '%')} |")
    print(f"\nMedians of {len(runs)} runs.")


if __name__ == "__main__":
    main(sys.argv[1:])
