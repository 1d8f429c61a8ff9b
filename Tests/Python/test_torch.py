"""NormCL's C API against PyTorch's autograd (float64 on the CPU), when torch is importable:
LayerNorm, RMSNorm, BatchNorm (training, with its running-statistics update), GroupNorm
and InstanceNorm, forward and backward. Skipped without torch."""

import numpy as np
import pytest

from normcl_ctypes import DeviceArray
from test_capi import check, random

try:
    import torch
except ImportError:  # not installed (or broken): these tests are optional
    pytest.skip("PyTorch is not importable", allow_module_level=True)
F = torch.nn.functional

EPS = 1e-5


def torch_forward_backward(function, x, dy, weight, bias):
    """y and (dx, dweight, dbias) of `function(x, weight, bias)` by autograd."""
    leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) if v is not None else None
              for v in (x, weight, bias)]
    y = function(*leaves)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), [leaf.grad.numpy() if leaf is not None else None for leaf in leaves]


def run(normcl, queue, runtime, forward, backward, x, dy, weight, bias, outputs):
    """Runs a NormCL forward and backward; `forward(xa, wa, ba, ya, stats)` and
    `backward(dya, xa, wa, stats, dxa, dwa, dba)` return the call arguments; `outputs`
    are the saved statistics' shapes. Returns y, dx, dweight, dbias."""
    xa, dya = DeviceArray(queue, x.shape, values=x), DeviceArray(queue, x.shape, values=dy)
    wa = DeviceArray(queue, weight.shape, values=weight)
    ba = DeviceArray(queue, bias.shape, values=bias) if bias is not None else None
    ya, dxa = DeviceArray(queue, x.shape), DeviceArray(queue, x.shape)
    dwa = DeviceArray(queue, weight.shape)
    dba = DeviceArray(queue, weight.shape) if bias is not None else None
    stats = [DeviceArray(queue, shape) for shape in outputs]
    name, *arguments = forward(xa, wa, ba, ya, stats)
    done = normcl.call(name, runtime, *arguments)
    name, *arguments = backward(dya, xa, wa, stats, dxa, dwa, dba)
    done = normcl.call(name, runtime, *arguments, wait_for=[done])
    return (ya.read([done]), dxa.read(), dwa.read(), dba.read() if dba else None)


def compare(got, want):
    for name, g, w in zip(("y", "dx", "dweight", "dbias"), got, (want[0], *want[1])):
        if w is not None:
            check(name, g, w)


def test_layer_norm(normcl, in_order_queue, in_order_runtime):
    x, dy, w, b = random((3, 5, 8), 2, 1), random((3, 5, 8)), random((5, 8), 0.5, 1), random((5, 8), 0.5)
    got = run(normcl, in_order_queue, in_order_runtime,
              lambda xa, wa, ba, ya, s: ("layer_norm_forward", xa.desc, 2, wa.desc, ba.desc, EPS, ya.desc, s[0].desc,
                                         s[1].desc),
              lambda dya, xa, wa, s, dxa, dwa, dba: ("layer_norm_backward", dya.desc, xa.desc, 2, wa.desc, s[0].desc,
                                                     s[1].desc, dxa.desc, dwa.desc, dba.desc),
              x, dy, w, b, [(3,), (3,)])
    compare(got, torch_forward_backward(lambda x, w, b: F.layer_norm(x, (5, 8), w, b, EPS), x, dy, w, b))


def test_rms_norm(normcl, in_order_queue, in_order_runtime):
    if not hasattr(F, "rms_norm"):
        pytest.skip("torch.nn.functional.rms_norm needs PyTorch 2.4")
    x, dy, w = random((4, 16), 2, 0.5), random((4, 16)), random(16, 0.5, 1)
    got = run(normcl, in_order_queue, in_order_runtime,
              lambda xa, wa, ba, ya, s: ("rms_norm_forward", xa.desc, 1, wa.desc, EPS, ya.desc, s[0].desc),
              lambda dya, xa, wa, s, dxa, dwa, dba: ("rms_norm_backward", dya.desc, xa.desc, 1, wa.desc, s[0].desc,
                                                     dxa.desc, dwa.desc),
              x, dy, w, None, [(4,)])
    compare(got, torch_forward_backward(lambda x, w, b: F.rms_norm(x, (16,), w, EPS), x, dy, w, None))


def test_batch_norm_training(normcl, in_order_queue, in_order_runtime):
    x, dy, w, b = random((4, 3, 5, 2), 2, 1), random((4, 3, 5, 2)), random(3, 0.5, 1), random(3, 0.5)
    running = [DeviceArray(in_order_queue, (3,), values=v) for v in (np.zeros(3), np.ones(3))]
    got = run(normcl, in_order_queue, in_order_runtime,
              lambda xa, wa, ba, ya, s: ("batch_norm_forward_training", xa.desc, wa.desc, ba.desc, running[0].desc,
                                         running[1].desc, 0.1, None, EPS, ya.desc, s[0].desc, s[1].desc),
              lambda dya, xa, wa, s, dxa, dwa, dba: ("batch_norm_backward_training", dya.desc, xa.desc, wa.desc,
                                                     s[0].desc, s[1].desc, dxa.desc, dwa.desc, dba.desc),
              x, dy, w, b, [(3,), (3,)])
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    compare(got, torch_forward_backward(
        lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=True, momentum=0.1, eps=EPS), x, dy, w, b))
    check("running_mean", running[0].read(), mean.numpy())
    check("running_var", running[1].read(), var.numpy())


def test_group_norm(normcl, in_order_queue, in_order_runtime):
    x, dy, w, b = random((2, 6, 4, 5), 2, 0.5), random((2, 6, 4, 5)), random(6, 0.5, 1), random(6, 0.5)
    got = run(normcl, in_order_queue, in_order_runtime,
              lambda xa, wa, ba, ya, s: ("group_norm_forward", xa.desc, 3, wa.desc, ba.desc, EPS, ya.desc, s[0].desc,
                                         s[1].desc),
              lambda dya, xa, wa, s, dxa, dwa, dba: ("group_norm_backward", dya.desc, xa.desc, 3, wa.desc, s[0].desc,
                                                     s[1].desc, dxa.desc, dwa.desc, dba.desc),
              x, dy, w, b, [(2, 3), (2, 3)])
    compare(got, torch_forward_backward(lambda x, w, b: F.group_norm(x, 3, w, b, EPS), x, dy, w, b))


def test_instance_norm(normcl, in_order_queue, in_order_runtime):
    x, dy, w, b = random((3, 4, 3, 5), 2, 0.5), random((3, 4, 3, 5)), random(4, 0.5, 1), random(4, 0.5)
    got = run(normcl, in_order_queue, in_order_runtime,
              lambda xa, wa, ba, ya, s: ("instance_norm_forward", xa.desc, wa.desc, ba.desc, None, None, 1, 0.1, None,
                                         EPS, ya.desc, s[0].desc, s[1].desc),
              lambda dya, xa, wa, s, dxa, dwa, dba: ("instance_norm_backward", dya.desc, xa.desc, wa.desc, s[0].desc,
                                                     s[1].desc, dxa.desc, dwa.desc, dba.desc),
              x, dy, w, b, [(3, 4), (3, 4)])
    compare(got, torch_forward_backward(lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=EPS), x, dy, w, b))
