#!/usr/bin/env python3
"""Every NormCL op, forward and backward, with PyTorch, on normcl-bench's cases.

Usage: python3 Benchmarks/peers/pytorch_norms.py [--cases FILE] [--device cpu|cuda]
           [--threads 2] [--iterations 20] [--filter TEXT] [--json FILE]
       python3 Benchmarks/peers/pytorch_norms.py --serve [--device cpu|cuda] [--threads 2]

Batch mode (the first form, by hand or for normcl-bench's --peer-json) times every case of
`--cases`, a JSON list of normcl-bench's cases ({"name", "op", "shape", "layout", "dtype"}),
or without it the full suite in float32, and writes {"peer", "allocator", "cases": [{"name",
"median_ms", "min_ms", "p10_ms", "p90_ms"}]}.

Serve mode is how normcl-bench (its --peer option) drives the peer: one process for the
whole run, timed case by case in batches that alternate with NormCL's iterations, so both
see the same machine. It speaks one JSON object per line: first it writes
{"peer": ..., "allocator": ...}; then it answers each request on stdin with one line on stdout:
  {"prepare": {case}, "warmup": N}  ->  {"ok": true} | {"skipped": why} | {"error": why}
      (makes the case's tensors, runs N untimed calls; replaces the previous case)
  {"time": K}                       ->  {"ms": [K wall times]} | {"error": why}
      (K timed calls of the prepared case)
and exits when stdin ends. Anything else the process prints goes to stderr.

Forward times the functional op under torch.no_grad (channels_last input for NHWC); backward times `torch.autograd.grad` of a recorded
forward (retain_graph), which is the op's own backward kernel(s) only. Switchable Norm is
not in PyTorch: it is written here with torch ops as the official code does
(`switchablenorms/Switchable-Normalization`), so its figures are autograd's composite,
not a fused kernel. On the CPU, half-storage cases are skipped (PyTorch's CPU kernels are
float32 ones); on CUDA they run in torch.half. Threads default to 2, the compute units
PoCL reports on the development VM. Exits with status 3 when torch cannot be imported.
"""
import argparse
import ctypes
import ctypes.util
import json
import re
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as error:  # normcl-bench reports this as "PyTorch not available"
    print(f"pytorch_norms.py: cannot import torch: {error}", file=sys.stderr)
    sys.exit(3)


def keep_freed_memory():
    """Makes glibc's malloc keep freed memory, as NormCL's buffer pool and PyTorch's own
    CPU performance guide (jemalloc/tcmalloc) do: with glibc's defaults every output above
    the mmap threshold (at most 32 MiB) is a fresh mapping, page-faulted on every call,
    which more than doubles PyTorch's time on large cases and would make the comparison
    unfair to it. The same as MALLOC_MMAP_THRESHOLD_=2000000000
    MALLOC_TRIM_THRESHOLD_=4000000000 in the environment, set here because normcl-bench
    starts this script. Returns a line for the report, or why it was not set."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return "glibc not found: default allocator"
    libc = ctypes.CDLL(libc_name)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
    # glibc caps M_MMAP_THRESHOLD at HEAP_MAX/2 (32 MiB on 64-bit) unless larger values
    # are allowed by M_MMAP_MAX=0 (no mmap at all): do that, it is what the variables do.
    M_MMAP_MAX = -4
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return "allocator keeps freed memory (mallopt: no mmap, no trim)" if ok else "mallopt failed: default allocator"


def timed_calls(fn, iterations, device, warmup=0):
    """Wall time of each of `iterations` calls of `fn` in ms, after `warmup` untimed ones
    (CUDA: synchronised around each call)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def percentile(samples, fraction):
    """Linear interpolation between the closest ranks (numpy's default), as normcl-bench's
    TimingSummary computes its p10 and p90."""
    ordered = sorted(samples)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def name(op, shape, layout, dtype="f32"):
    """normcl-bench's case name (BenchmarkCase.name)."""
    layout_text = "" if len(shape) == 2 and layout == "NCHW" else f" {layout}"
    return f"{op} ({','.join(map(str, shape))}){layout_text} {dtype}"


def switchable_norm(x, mean_logits, var_logits, weight, bias, running=None, eps=1e-5):
    """The official SwitchNorm2d forward (unbiased instance variance); `running` = BN's
    running (mean, var) in inference."""
    n, c = x.shape[:2]
    v = x.reshape(n, c, -1)
    mean_in = v.mean(-1, keepdim=True)
    var_in = v.var(-1, keepdim=True)
    mean_ln = mean_in.mean(1, keepdim=True)
    temp = var_in + mean_in ** 2
    var_ln = temp.mean(1, keepdim=True) - mean_ln ** 2
    if running is None:
        mean_bn = mean_in.mean(0, keepdim=True)
        var_bn = temp.mean(0, keepdim=True) - mean_bn ** 2
    else:
        mean_bn, var_bn = running[0].view(1, c, 1), running[1].view(1, c, 1)
    pm, pv = F.softmax(mean_logits, 0), F.softmax(var_logits, 0)
    mean = pm[0] * mean_in + pm[1] * mean_ln + pm[2] * mean_bn
    var = pv[0] * var_in + pv[1] * var_ln + pv[2] * var_bn
    y = (v - mean) / (var + eps).sqrt()
    view = (1, c) + (1,) * (x.dim() - 2)
    return y.reshape(x.shape) * weight.view(view) + bias.view(view)


ACTIVATIONS = {"ReLU": F.relu, "SiLU": F.silu, "GELU": F.gelu,
               "GELU-tanh": lambda v: F.gelu(v, approximate="tanh")}


def fused_forward_for(op, shape, device, ones, zeros, stats):
    """The composites of normcl-bench's fused cases ("RMSNorm+residual", "LayerNorm+GELU",
    "BatchNorm+add+ReLU train", "GroupNorm+SiLU G=32"), as eager PyTorch runs them: one op
    after another, as transformer, ResNet and diffusers code does (ResNet's add and ReLU
    in place). A residual case returns (y, h), as the fused op does; its backward takes
    the gradient of both. Extra tensors (residual, addend) are params without grad."""
    c = shape[1]
    head = op.split(" ")[0]
    parts = head.split("+")
    if "separate" in op:
        return None, None  # NormCL's own unfused baseline: no peer figure
    other = torch.randn(shape, device=device)
    if parts[0] == "RMSNorm" and parts[1:] == ["residual"]:
        def rms(x, p):
            h = x + p[1]
            return F.rms_norm(h, (c,), p[0], 1e-6), h
        return rms, [ones(c), other]
    if parts[0] == "LayerNorm" and parts[1:] == ["residual"]:
        def layer(x, p):
            h = x + p[2]
            return F.layer_norm(h, (c,), p[0], p[1]), h
        return layer, [ones(c), zeros(c), other]
    if parts[0] == "LayerNorm" and len(parts) == 2 and parts[1] in ACTIVATIONS:
        f = ACTIVATIONS[parts[1]]
        return (lambda x, p: f(F.layer_norm(x, (c,), p[0], p[1]))), [ones(c), zeros(c)]
    if parts[0] == "RMSNorm" and len(parts) == 2 and parts[1] in ACTIVATIONS:
        f = ACTIVATIONS[parts[1]]
        return (lambda x, p: f(F.rms_norm(x, (c,), p[0], 1e-6))), [ones(c)]
    if parts[0] == "BatchNorm" and parts[1:] == ["add", "ReLU"]:
        training = "train" in op

        def bn_add_relu(x, p):
            y = F.batch_norm(x, stats[0].clone(), stats[1].clone(), p[0], p[1], training)
            y += p[2]
            return F.relu(y, inplace=True)
        z = other.contiguous(memory_format=torch.channels_last) if "NHWC" in op else other
        return bn_add_relu, [ones(c), zeros(c), z]
    if parts[0] == "BatchNorm" and len(parts) == 2 and parts[1] in ACTIVATIONS:
        training = "train" in op
        f = ACTIVATIONS[parts[1]]
        return ((lambda x, p: f(F.batch_norm(x, stats[0].clone(), stats[1].clone(), p[0], p[1], training))),
                [ones(c), zeros(c)])
    if parts[0] == "GroupNorm" and len(parts) == 2 and parts[1] in ACTIVATIONS:
        groups = int(re.search(r"G=(\d+)", op).group(1))
        f = ACTIVATIONS[parts[1]]
        return (lambda x, p: f(F.group_norm(x, groups, p[0], p[1]))), [ones(c), zeros(c)]
    return None, None


def forward_for(op, shape, device):
    """(forward(x, params) -> y or (y, h), params) for one of normcl-bench's op names."""
    def ones(n):
        return torch.ones(n, device=device, requires_grad=True)

    def zeros(n):
        return torch.zeros(n, device=device, requires_grad=True)

    c = shape[1]
    stats = (torch.zeros(c, device=device), torch.ones(c, device=device))
    if "+" in op.split(" ")[0]:
        return fused_forward_for(op, shape, device, ones, zeros, stats)
    if op.startswith("BatchNorm"):
        training = "train" in op
        return (lambda x, p: F.batch_norm(x, stats[0].clone(), stats[1].clone(), p[0], p[1], training)), [ones(c), zeros(c)]
    if op.startswith("LayerNorm"):
        return (lambda x, p: F.layer_norm(x, (c,), p[0], p[1])), [ones(c), zeros(c)]
    if op.startswith("RMSNorm"):
        return (lambda x, p: F.rms_norm(x, (c,), p[0], 1e-6)), [ones(c)]
    if op.startswith("GroupNorm"):
        groups = int(re.search(r"G=(\d+)", op).group(1))
        return (lambda x, p: F.group_norm(x, groups, p[0], p[1])), [ones(c), zeros(c)]
    if op.startswith("InstanceNorm"):
        return (lambda x, p: F.instance_norm(x)), []
    if op.startswith("SwitchableNorm"):
        running = None if "train" in op else stats
        return ((lambda x, p: switchable_norm(x, p[2], p[3], p[0], p[1], running)),
                [ones(c), zeros(c), ones(3), ones(3)])
    return None, None


def default_cases():
    """The full normcl-bench suite in float32, for runs without --cases."""
    specs = []

    def add(op, shape, layouts=("NCHW",)):
        for layout in layouts:
            for direction in ("", " backward"):
                # normcl-bench puts the direction before a variant suffix: "GroupNorm backward G=32".
                head, _, variant = op.partition(" G=")
                full = head + direction + (f" G={variant}" if variant else "")
                specs.append({"name": name(full, shape, layout), "op": full, "shape": list(shape),
                              "layout": layout, "dtype": "f32"})
    for shape in [(32, 64, 56, 56), (8, 128, 28, 28), (256, 2048)]:
        layouts = ("NCHW", "NHWC") if len(shape) == 4 else ("NCHW",)
        add("BatchNorm train", shape, layouts)
        add("BatchNorm eval", shape, layouts)
    for shape in [(8192, 1024), (4096, 4096)]:
        add("LayerNorm", shape)
    add("RMSNorm", (4096, 4096))
    add("GroupNorm G=32", (8, 512, 32, 32), ("NCHW", "NHWC"))
    add("InstanceNorm", (8, 64, 128, 128), ("NCHW", "NHWC"))
    add("SwitchableNorm train", (8, 64, 56, 56), ("NCHW", "NHWC"))
    return specs


class Skipped(Exception):
    """A case this peer has no figure for (said in the reply or on stderr, never fatal)."""


class PreparedCase:
    """One case's tensors and the call to time: the functional forward, or
    `torch.autograd.grad` of a recorded forward for a backward case. `grad` is the autograd
    mode to time it in: forward runs under no_grad (as inference does), backward needs it."""

    def __init__(self, spec, device):
        op, shape, layout, dtype = spec["op"], spec["shape"], spec["layout"], spec["dtype"]
        if dtype == "f16" and device == "cpu":
            raise Skipped("PyTorch's CPU kernels are float32 ones")
        forward, params = forward_for(op, shape, device)
        if forward is None:
            raise Skipped(f"no PyTorch equivalent of '{op}'")
        self.grad = "backward" in op
        x = torch.randn(shape, device=device, dtype=torch.half if dtype == "f16" else torch.float)
        if layout == "NHWC":
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(self.grad)
        if self.grad:
            y = forward(x, params)
            outputs = list(y) if isinstance(y, tuple) else [y]
            grads = [torch.randn_like(o) for o in outputs]
            wrt = [x] + [p for p in params if p.requires_grad]
            self.run = lambda: torch.autograd.grad(outputs, wrt, grads, retain_graph=True)
        else:
            self.run = lambda: forward(x, params)

    def time(self, iterations, device, warmup=0):
        with torch.set_grad_enabled(self.grad):
            return timed_calls(self.run, iterations, device, warmup)


def peer_name(device, threads):
    return (f"PyTorch {torch.__version__} CUDA ({torch.cuda.get_device_name()})" if device == "cuda"
            else f"PyTorch {torch.__version__} CPU, {threads} threads")


def serve(device, threads, allocator):
    """The line protocol of the module docstring, until stdin ends."""
    replies = sys.stdout
    sys.stdout = sys.stderr  # stray prints (ours or a library's) must not corrupt the replies

    def reply(message):
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    reply({"peer": peer_name(device, threads), "allocator": allocator})
    prepared = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if "prepare" in request:
                prepared = None  # the previous case's tensors go before the next one's are made
                try:
                    prepared = PreparedCase(request["prepare"], device)
                    prepared.time(0, device, warmup=request.get("warmup", 3))
                    reply({"ok": True})
                except Skipped as why:
                    reply({"skipped": str(why)})
            elif "time" in request:
                if prepared is None:
                    reply({"error": "no prepared case"})
                else:
                    reply({"ms": prepared.time(int(request["time"]), device)})
            else:
                reply({"error": f"unknown request {line.strip()}"})
        except Exception as error:  # one case's failure is reported, the process goes on
            prepared = None
            reply({"error": f"{type(error).__name__}: {error}"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="JSON list of normcl-bench cases to time")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--filter", default="", help="case-insensitive part of the case name")
    parser.add_argument("--json")
    parser.add_argument("--serve", action="store_true", help="answer normcl-bench's requests on stdin (see above)")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("pytorch_norms.py: CUDA not available, timing on the CPU", file=sys.stderr)
        device = "cpu"
    torch.set_num_threads(args.threads)
    allocator = keep_freed_memory()
    print(f"pytorch_norms.py: {allocator}, {args.threads} threads", file=sys.stderr, flush=True)
    if args.serve:
        serve(device, args.threads, allocator)
        return
    if args.cases:
        with open(args.cases) as f:
            specs = json.load(f)
    else:
        specs = default_cases()
    results = []
    for spec in specs:
        case_name = spec["name"]
        if args.filter.lower() not in case_name.lower():
            continue
        try:
            case = PreparedCase(spec, device)
        except Skipped as why:
            print(f"pytorch_norms.py: {case_name}: skipped ({why})", file=sys.stderr)
            continue
        samples = case.time(args.iterations, device, warmup=3)
        median, minimum = statistics.median(samples), min(samples)
        results.append({"name": case_name, "median_ms": median, "min_ms": minimum,
                        "p10_ms": percentile(samples, 0.1), "p90_ms": percentile(samples, 0.9)})
        print(f"{case_name:52s} {median:8.3f} {minimum:8.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peer": peer_name(device, args.threads), "allocator": allocator, "cases": results}, f, indent=2)


if __name__ == "__main__":
    main()
