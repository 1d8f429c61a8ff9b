#!/usr/bin/env python3
"""Every NormCL op, forward and backward, with PyTorch on the CPU, on normcl-bench's shapes.

Usage: python3 Benchmarks/peers/pytorch_norms.py [--threads 2] [--iterations 20] [--filter TEXT] [--json FILE]

Case names are normcl-bench's, so the two reports line up. Forward times the functional
op; backward times `torch.autograd.grad` of a recorded forward (retain_graph), which is
the op's own backward kernel(s) only. Switchable Norm is not in PyTorch: it is written
here with torch ops as the official code does (`switchablenorms/Switchable-Normalization`),
so its figures are autograd's composite, not a fused kernel. Threads default to 2, the
compute units PoCL reports on the development VM. Prints median and min ms per case.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def time_ms(fn, iterations, warmup=3):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), min(samples)


def name(op, shape, layout):
    layout_text = "" if len(shape) == 2 and layout == "NCHW" else f" {layout}"
    return f"{op} ({','.join(map(str, shape))}){layout_text} f32"


def tensor(shape, layout, grad=False):
    x = torch.randn(shape)
    if layout == "NHWC":
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(grad)


def switchable_norm(x, mean_logits, var_logits, weight, bias, eps=1e-5):
    """The official SwitchNorm2d training forward (unbiased instance variance)."""
    n, c = x.shape[:2]
    v = x.reshape(n, c, -1)
    mean_in = v.mean(-1, keepdim=True)
    var_in = v.var(-1, keepdim=True)
    mean_ln = mean_in.mean(1, keepdim=True)
    temp = var_in + mean_in ** 2
    var_ln = temp.mean(1, keepdim=True) - mean_ln ** 2
    mean_bn = mean_in.mean(0, keepdim=True)
    var_bn = temp.mean(0, keepdim=True) - mean_bn ** 2
    pm, pv = F.softmax(mean_logits, 0), F.softmax(var_logits, 0)
    mean = pm[0] * mean_in + pm[1] * mean_ln + pm[2] * mean_bn
    var = pv[0] * var_in + pv[1] * var_ln + pv[2] * var_bn
    y = (v - mean) / (var + eps).sqrt()
    return y.reshape(x.shape) * weight.view(1, c, *([1] * (x.dim() - 2))) + bias.view(1, c, *([1] * (x.dim() - 2)))


def cases():
    """(op, shape, layout, forward(x, params) -> y, params) for each normcl-bench shape."""
    out = []
    for shape in [(32, 64, 56, 56), (8, 128, 28, 28), (256, 2048)]:
        for layout in ["NCHW", "NHWC"] if len(shape) == 4 else ["NCHW"]:
            c = shape[1]
            params = [torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)]
            stats = (torch.zeros(c), torch.ones(c))
            out.append(("BatchNorm train", shape, layout,
                        lambda x, p, s=stats: F.batch_norm(x, s[0].clone(), s[1].clone(), p[0], p[1], True), params))
            out.append(("BatchNorm eval", shape, layout,
                        lambda x, p, s=stats: F.batch_norm(x, s[0], s[1], p[0], p[1], False), params))
    for shape in [(8192, 1024), (4096, 4096)]:
        d = shape[1]
        out.append(("LayerNorm", shape, "NCHW", lambda x, p: F.layer_norm(x, (x.shape[1],), p[0], p[1]),
                    [torch.ones(d, requires_grad=True), torch.zeros(d, requires_grad=True)]))
    out.append(("RMSNorm", (4096, 4096), "NCHW", lambda x, p: F.rms_norm(x, (x.shape[1],), p[0], 1e-6),
                [torch.ones(4096, requires_grad=True)]))
    for layout in ["NCHW", "NHWC"]:
        out.append(("GroupNorm G=32", (8, 512, 32, 32), layout, lambda x, p: F.group_norm(x, 32, p[0], p[1]),
                    [torch.ones(512, requires_grad=True), torch.zeros(512, requires_grad=True)]))
        out.append(("InstanceNorm", (8, 64, 128, 128), layout, lambda x, p: F.instance_norm(x), []))
        logits = [torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)]
        out.append(("SwitchableNorm train", (8, 64, 56, 56), layout,
                    lambda x, p: switchable_norm(x, p[2], p[3], p[0], p[1]),
                    [torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)] + logits))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--filter", default="")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for op, shape, layout, forward, params in cases():
        for direction in ("", " backward"):
            # normcl-bench puts the direction before a variant suffix: "GroupNorm backward G=32".
            head, _, variant = op.partition(" G=")
            case_name = name(head + direction + (f" G={variant}" if variant else ""), shape, layout)
            if args.filter not in case_name:
                continue
            x = tensor(shape, layout, grad=bool(direction))
            if direction:
                y = forward(x, params)
                dy = torch.randn_like(y)
                wrt = [x] + params
                run = lambda: torch.autograd.grad(y, wrt, dy, retain_graph=True)
            else:
                run = lambda: forward(x, params)
            with torch.set_grad_enabled(bool(direction)):
                median, minimum = time_ms(run, args.iterations)
            results.append({"name": case_name, "median_ms": median, "min_ms": minimum})
            print(f"{case_name:52s} {median:8.3f} {minimum:8.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peer": f"PyTorch {torch.__version__} CPU, {args.threads} threads", "cases": results}, f, indent=2)


if __name__ == "__main__":
    main()
