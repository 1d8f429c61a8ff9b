#!/usr/bin/env python3
"""BatchNorm with PyTorch on the CPU, on normcl-bench's shapes, for a side-by-side look.

Usage: python3 Benchmarks/peers/pytorch_batchnorm.py [--threads 2] [--iterations 30] [--json FILE]
Threads default to 2, the compute units PoCL reports here. Prints median and min ms per case.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = [(32, 64, 56, 56), (8, 128, 28, 28), (256, 2048)]


def time_ms(fn, iterations, warmup=3):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), min(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = []
    layouts = [(shape, "NCHW") for shape in SHAPES] + [(shape, "NHWC") for shape in SHAPES if len(shape) == 4]
    for shape, layout in layouts:
        c = shape[1]
        x = torch.rand(shape) * 4 - 1.5
        if layout == "NHWC":
            x = x.contiguous(memory_format=torch.channels_last)
        weight, bias = torch.ones(c), torch.zeros(c)
        for mode in ("train", "eval"):
            running_mean, running_var = torch.zeros(c), torch.ones(c)
            training = mode == "train"
            run = lambda: F.batch_norm(x, running_mean, running_var, weight, bias, training, 0.1, 1e-5)
            median, minimum = time_ms(run, args.iterations)
            name = f"BatchNorm {mode} ({','.join(map(str, shape))}) {layout} f32"
            cases.append({"name": name, "median_ms": median, "min_ms": minimum})
            print(f"{name:42s} {median:8.3f} {minimum:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peer": f"PyTorch {torch.__version__} CPU, {args.threads} threads", "cases": cases}, f, indent=2)


if __name__ == "__main__":
    main()
