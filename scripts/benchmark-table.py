#!/usr/bin/env python3
"""Turns normcl-bench's --json output into the Markdown table of README.md.

Usage: python3 scripts/benchmark-table.py docs/benchmark.json > table.md
       python3 scripts/benchmark-table.py docs/benchmark.json --readme README.md
           (replaces what lies between <!-- BENCHMARK-TABLE --> and <!-- /BENCHMARK-TABLE -->)
"""
import json
import sys


def fmt(value, pattern):
    return "—" if value is None else pattern.format(value)


def table(report):
    # The allocator and how the peer was timed are absent from JSON written before they were recorded.
    peer = report.get("peer") or "none"
    peer += "".join(f", {report[key]}" for key in ("peer_allocator", "peer_timing") if report.get(key))
    lines = [
        f"Device: {report['device']}; DRAM copy {fmt(report.get('dram_copy_bandwidth_gb_per_s'), '{:.1f}')} GB/s; "
        f"peer: {peer}; {report['iterations']} timed iterations per case.",
        "",
        "| case | kernels | kernel ms | GB/s | % copy | × PyTorch | check |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in report["cases"]:
        check = {True: "ok", False: "MISMATCH", None: "—"}[c.get("matches_reference")]
        lines.append(
            f"| {c['name']} | {c['kernels']} | {fmt(c.get('kernel_median_ms'), '{:.3f}')} | "
            f"{fmt(c.get('gb_per_s'), '{:.1f}')} | {fmt(c.get('fraction_of_copy') and c['fraction_of_copy'] * 100, '{:.0f}%')} | "
            f"{fmt(c.get('speedup_over_peer'), '{:.2f}×')} | {check} |")
    peers = [c["speedup_over_peer"] for c in report["cases"] if c.get("speedup_over_peer")]
    if peers:
        slower = sum(1 for p in peers if p < 1)
        lines += ["", f"NormCL is faster than PyTorch on {len(peers) - slower} of {len(peers)} cases with a peer, "
                      f"slower on {slower}."]
    busy = [c["name"] for c in report["cases"] if c.get("busy")]
    if busy:
        lines += ["", f"The machine looked busy ({report.get('busy_rule')}) on {len(busy)} cases: {'; '.join(busy)}."]
    return "\n".join(lines)


def main():
    report = json.load(open(sys.argv[1]))
    text = table(report)
    if len(sys.argv) > 3 and sys.argv[2] == "--readme":
        path = sys.argv[3]
        readme = open(path).read()
        start, end = "<!-- BENCHMARK-TABLE -->", "<!-- /BENCHMARK-TABLE -->"
        head, rest = readme.split(start, 1)
        tail = rest.split(end, 1)[1] if end in rest else rest
        open(path, "w").write(head + start + "\n" + text + "\n" + end + tail)
    else:
        print(text)


if __name__ == "__main__":
    main()
