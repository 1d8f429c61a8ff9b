"""NormCL through its C API (libnormcl.so, ctypes) on the test's own pyopencl context,
queues and buffers: every op's forward and backward against the float64 numpy reference
(reference.py), chained by the events NormCL returns, on in-order and out-of-order
queues; f16 storage at a byte offset; channels-last; running statistics updated in place;
the output mask; wait lists; errors; the fused epilogues (the `_fused` functions). PyTorch,
when importable, is checked too (test_torch.py)."""

import ctypes

import numpy as np
import pyopencl as cl
import pytest

import normcl_ctypes as nc
import reference as ref
from normcl_ctypes import DeviceArray, switchable_statistics

RNG = np.random.default_rng(20261207)


def random(shape, scale=1.0, shift=0.0):
    return shift + scale * RNG.uniform(-1, 1, size=shape)


def check(name, got, want, dtype=np.float32):
    """f32 storage: 1e-4 relative and absolute; f16 storage: the half's rounding."""
    tolerance = 1e-4 if np.dtype(dtype) == np.float32 else 4e-3
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance, err_msg=name)


def check_all(event, *checks):
    """check(name, array.read([event]), want) for each (name, array, want)."""
    for name, array, want in checks:
        check(name, array.read([event]), want)


def arrays(queue, *specs, **options):
    """DeviceArrays: a spec is a shape (NaN-filled output) or a numpy array (input)."""
    return [DeviceArray(queue, spec.shape, values=spec, **options) if isinstance(spec, np.ndarray)
            else DeviceArray(queue, spec, **options) for spec in specs]


# ---- LayerNorm and RMSNorm ------------------------------------------------------------------

def test_layer_norm(normcl, queue, runtime):
    """Forward after the caller's non-blocking write of x, backward after the forward."""
    shape, k, eps = (4, 6, 10), 2, 1e-5
    x, dy = random(shape, 2, 0.5), random(shape)
    w, b = random(shape[-k:], 0.5, 1), random(shape[-k:], 0.5)
    xa = DeviceArray(queue, shape)
    written = xa.write(x, blocking=False)
    wa, ba, dya = arrays(queue, w, b, dy)
    ya, mean_a, invstd_a, dxa, dwa, dba = arrays(queue, shape, shape[:-k], shape[:-k], shape, shape[-k:], shape[-k:])

    forward = normcl.call("layer_norm_forward", runtime, xa.desc, k, wa.desc, ba.desc, eps, ya.desc, mean_a.desc,
                          invstd_a.desc, wait_for=[written])
    backward = normcl.call("layer_norm_backward", runtime, dya.desc, xa.desc, k, wa.desc, mean_a.desc, invstd_a.desc,
                           dxa.desc, dwa.desc, dba.desc, wait_for=[forward])

    y, mean, invstd = ref.layer_norm(x, k, w, b, eps)
    check_all(forward, ("y", ya, y), ("save_mean", mean_a, mean), ("save_invstd", invstd_a, invstd))
    dx, dw, db = ref.layer_norm_backward(dy, x, k, w, mean_a.read(), invstd_a.read())
    check_all(backward, ("dx", dxa, dx), ("dweight", dwa, dw), ("dbias", dba, db))


def test_layer_norm_f16_at_byte_offset(normcl, queue, runtime, device):
    """Half storage for x, y, dy and dx, each at a non-zero aligned offset in its buffer."""
    shape, k, eps = (6, 48), 1, 1e-5
    offset = 3 * device.mem_base_addr_align // 8
    x = random(shape, 2, 1).astype(np.float16).astype(np.float64)
    dy = random(shape).astype(np.float16).astype(np.float64)
    w, b = random(shape[-1:], 0.5, 1), random(shape[-1:], 0.5)
    half = dict(dtype=np.float16, byte_offset=offset)
    xa, dya, ya, dxa = (DeviceArray(queue, shape, values=v, **half) for v in (x, dy, None, None))
    wa, ba = arrays(queue, w, b)
    mean_a, invstd_a, dwa, dba = arrays(queue, shape[:1], shape[:1], shape[1:], shape[1:])

    forward = normcl.call("layer_norm_forward", runtime, xa.desc, k, wa.desc, ba.desc, eps, ya.desc, mean_a.desc,
                          invstd_a.desc)
    backward = normcl.call("layer_norm_backward", runtime, dya.desc, xa.desc, k, wa.desc, mean_a.desc, invstd_a.desc,
                           dxa.desc, dwa.desc, dba.desc, wait_for=[forward])

    y, mean, invstd = ref.layer_norm(x, k, w, b, eps)
    check("y (f16)", ya.read([forward]), y, np.float16)
    check("save_mean", mean_a.read([forward]), mean)
    check("save_invstd", invstd_a.read([forward]), invstd)
    dx, dw, db = ref.layer_norm_backward(dy, x, k, w, mean_a.read(), invstd_a.read())
    check("dx (f16)", dxa.read([backward]), dx, np.float16)
    check("dweight", dwa.read([backward]), dw)
    check("dbias", dba.read([backward]), db)


def test_rms_norm(normcl, queue, runtime):
    """eps NORMCL_EPS_DEFAULT: float32's machine epsilon, as PyTorch's eps=None."""
    shape, k = (5, 3, 16), 1
    x, dy, w = random(shape, 2, 0.25), random(shape), random(shape[-1:], 0.5, 1)
    xa, dya, wa = arrays(queue, x, dy, w)
    ya, invrms_a, dxa, dwa = arrays(queue, shape, shape[:-1], shape, shape[-1:])

    forward = normcl.call("rms_norm_forward", runtime, xa.desc, k, wa.desc, nc.EPS_DEFAULT, ya.desc, invrms_a.desc)
    backward = normcl.call("rms_norm_backward", runtime, dya.desc, xa.desc, k, wa.desc, invrms_a.desc, dxa.desc,
                           dwa.desc, wait_for=[forward])

    y, invrms = ref.rms_norm(x, k, w, np.finfo(np.float32).eps)
    check_all(forward, ("y", ya, y), ("save_invrms", invrms_a, invrms))
    dx, dw = ref.rms_norm_backward(dy, x, k, w, invrms_a.read())
    check_all(backward, ("dx", dxa, dx), ("dweight", dwa, dw))


# ---- BatchNorm ------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", [nc.CHANNELS_FIRST, nc.CHANNELS_LAST], ids=["NCHW", "NHWC"])
def test_batch_norm(normcl, queue, runtime, layout):
    """Training with the running statistics updated in place (cumulative average: the
    count goes 3 -> 4, weight 1/4), its backward; inference with the updated statistics
    and its backward."""
    shape, eps = (4, 3, 5, 6), 1e-5
    x, dy = random(shape, 3, -1), random(shape)
    w, b = random(3, 0.5, 1), random(3, 0.5)
    rm, rv = np.array([0.5, -0.25, 0.0]), np.array([1.0, 2.0, 0.5])
    xa, dya, ya, y2a, dxa, dx2a = (DeviceArray(queue, shape, values=v, layout=layout) for v in (x, dy, None, None,
                                                                                              None, None))
    wa, ba, rma, rva = arrays(queue, w, b, rm, rv)
    mean_a, invstd_a, dwa, dba, dw2a, db2a = arrays(queue, *[(3,)] * 6)
    tracked = ctypes.c_int64(3)

    forward = normcl.call("batch_norm_forward_training", runtime, xa.desc, wa.desc, ba.desc, rma.desc, rva.desc,
                          nc.MOMENTUM_CUMULATIVE, ctypes.byref(tracked), eps, ya.desc, mean_a.desc, invstd_a.desc)
    assert tracked.value == 4
    backward = normcl.call("batch_norm_backward_training", runtime, dya.desc, xa.desc, wa.desc, mean_a.desc,
                           invstd_a.desc, dxa.desc, dwa.desc, dba.desc, wait_for=[forward])
    inference = normcl.call("batch_norm_forward_inference", runtime, xa.desc, wa.desc, ba.desc, rma.desc, rva.desc,
                            eps, y2a.desc, wait_for=[forward])
    backward2 = normcl.call("batch_norm_backward_inference", runtime, dya.desc, xa.desc, wa.desc, rma.desc, rva.desc,
                            eps, dx2a.desc, dw2a.desc, db2a.desc, wait_for=[inference])

    y, mean, invstd, new_rm, new_rv, _, _ = ref.batch_norm_training(x, w, b, rm, rv, 0.25, eps)
    check_all(forward, ("y", ya, y), ("save_mean", mean_a, mean), ("save_invstd", invstd_a, invstd),
              ("running_mean", rma, new_rm), ("running_var", rva, new_rv))
    dx, dw, db = ref.batch_norm_backward_training(dy, x, w, mean_a.read(), invstd_a.read())
    check_all(backward, ("dx", dxa, dx), ("dweight", dwa, dw), ("dbias", dba, db))
    rm_now, rv_now = rma.read(), rva.read()
    check("inference y", y2a.read([inference]), ref.batch_norm_inference(x, w, b, rm_now, rv_now, eps))
    dx, dw, db = ref.batch_norm_backward_inference(dy, x, w, rm_now, rv_now, eps)
    check_all(backward2, ("inference dx", dx2a, dx), ("inference dweight", dw2a, dw), ("inference dbias", db2a, db))


def test_batch_renorm(normcl, queue, runtime):
    """r and d clipped for some channels (rmax 1.5, dmax 0.5); momentum 0.1."""
    shape, eps, momentum, rmax, dmax = (3, 4, 7), 1e-5, 0.1, 1.5, 0.5
    x, dy = random(shape, 2, 0.5), random(shape)
    w, b = random(4, 0.5, 1), random(4, 0.5)
    rm, rv = np.array([0.5, -2.0, 0.0, 0.4]), np.array([1.0, 0.1, 9.0, 0.6])
    xa, dya, wa, ba, rma, rva = arrays(queue, x, dy, w, b, rm, rv)
    ya, dxa = arrays(queue, shape, shape)
    mean_a, invstd_a, ra, da, dwa, dba = arrays(queue, *[(4,)] * 6)

    forward = normcl.call("batch_renorm_forward", runtime, xa.desc, wa.desc, ba.desc, rma.desc, rva.desc, rmax, dmax,
                          momentum, None, eps, ya.desc, mean_a.desc, invstd_a.desc, ra.desc, da.desc)
    backward = normcl.call("batch_renorm_backward", runtime, dya.desc, xa.desc, wa.desc, mean_a.desc, invstd_a.desc,
                           ra.desc, da.desc, dxa.desc, dwa.desc, dba.desc, wait_for=[forward])

    y, mean, invstd, new_rm, new_rv, r, d = ref.batch_norm_training(x, w, b, rm, rv, momentum, eps, rmax, dmax)
    assert np.any(np.abs(r) == rmax) or np.any(np.abs(d) == dmax), "the test should clip"
    check_all(forward, ("y", ya, y), ("renorm_r", ra, r), ("renorm_d", da, d), ("running_mean", rma, new_rm),
              ("running_var", rva, new_rv))
    dx, dw, db = ref.batch_norm_backward_training(dy, x, w, mean_a.read(), invstd_a.read(), ra.read(), da.read())
    check_all(backward, ("dx", dxa, dx), ("dweight", dwa, dw), ("dbias", dba, db))


def test_output_mask(normcl, in_order_queue, in_order_runtime):
    """A backward computes only the gradients whose tensor is given: dx and dbias stay NaN."""
    queue, shape = in_order_queue, (4, 3, 5, 6)
    x, dy = random(shape), random(shape)
    xa, dya = arrays(queue, x, dy)
    ya, dxa = arrays(queue, shape, shape)
    mean_a, invstd_a, dwa = arrays(queue, (3,), (3,), (3,))
    normcl.call("batch_norm_forward_training", in_order_runtime, xa.desc, None, None, None, None, 0.1, None, 1e-5,
                ya.desc, mean_a.desc, invstd_a.desc)
    event = normcl.call("batch_norm_backward_training", in_order_runtime, dya.desc, xa.desc, None, mean_a.desc,
                        invstd_a.desc, None, dwa.desc, None)
    _, dw, _ = ref.batch_norm_backward_training(dy, x, None, mean_a.read(), invstd_a.read())
    check("dweight", dwa.read([event]), dw)
    assert np.isnan(dxa.read()).all()


# ---- GroupNorm and InstanceNorm -----------------------------------------------------------

def test_group_norm(normcl, queue, runtime):
    shape, groups, eps = (2, 6, 4, 5), 3, 1e-5
    x, dy, w, b = random(shape, 2, 0.5), random(shape), random(6, 0.5, 1), random(6, 0.5)
    xa, dya, wa, ba = arrays(queue, x, dy, w, b)
    ya, dxa = arrays(queue, shape, shape)
    mean_a, invstd_a, dwa, dba = arrays(queue, (2, groups), (2, groups), (6,), (6,))

    forward = normcl.call("group_norm_forward", runtime, xa.desc, groups, wa.desc, ba.desc, eps, ya.desc,
                          mean_a.desc, invstd_a.desc)
    backward = normcl.call("group_norm_backward", runtime, dya.desc, xa.desc, groups, wa.desc, mean_a.desc,
                           invstd_a.desc, dxa.desc, dwa.desc, dba.desc, wait_for=[forward])

    y, mean, invstd = ref.group_norm(x, groups, w, b, eps)
    check_all(forward, ("y", ya, y), ("save_mean", mean_a, mean), ("save_invstd", invstd_a, invstd))
    dx, dw, db = ref.group_norm_backward(dy, x, groups, w, mean_a.read(), invstd_a.read())
    check_all(backward, ("dx", dxa, dx), ("dweight", dwa, dw), ("dbias", dba, db))


def test_instance_norm(normcl, queue, runtime):
    """Training with the running statistics updated in place (momentum 0.1) and its
    backward; use_input_stats == 0 with the updated statistics and its backward."""
    shape, eps, momentum = (3, 4, 3, 5), 1e-5, 0.1
    x, dy, w, b = random(shape, 2, 0.5), random(shape), random(4, 0.5, 1), random(4, 0.5)
    rm, rv = random(4, 0.5), random(4, 0.5, 1.0)
    xa, dya, wa, ba, rma, rva = arrays(queue, x, dy, w, b, rm, rv)
    ya, y2a, dxa, dx2a = arrays(queue, shape, shape, shape, shape)
    mean_a, invstd_a = arrays(queue, shape[:2], shape[:2])
    dwa, dba, dw2a, db2a = arrays(queue, (4,), (4,), (4,), (4,))
    tracked = ctypes.c_int64(0)

    forward = normcl.call("instance_norm_forward", runtime, xa.desc, wa.desc, ba.desc, rma.desc, rva.desc, 1,
                          momentum, ctypes.byref(tracked), eps, ya.desc, mean_a.desc, invstd_a.desc)
    assert tracked.value == 1
    backward = normcl.call("instance_norm_backward", runtime, dya.desc, xa.desc, wa.desc, mean_a.desc, invstd_a.desc,
                           dxa.desc, dwa.desc, dba.desc, wait_for=[forward])
    inference = normcl.call("instance_norm_forward", runtime, xa.desc, wa.desc, ba.desc, rma.desc, rva.desc, 0, 0.1,
                            None, eps, y2a.desc, None, None, wait_for=[forward])
    backward2 = normcl.call("instance_norm_backward_inference", runtime, dya.desc, xa.desc, wa.desc, rma.desc,
                            rva.desc, eps, dx2a.desc, dw2a.desc, db2a.desc, wait_for=[inference])

    # InstanceNorm is GroupNorm with one channel per group.
    y, mean, invstd = ref.group_norm(x, 4, w, b, eps)
    new_rm, new_rv = ref.instance_norm_running(x, rm, rv, momentum)
    check_all(forward, ("y", ya, y), ("save_mean", mean_a, mean), ("save_invstd", invstd_a, invstd),
              ("running_mean", rma, new_rm), ("running_var", rva, new_rv))
    dx, dw, db = ref.group_norm_backward(dy, x, 4, w, mean_a.read(), invstd_a.read())
    check_all(backward, ("dx", dxa, dx), ("dweight", dwa, dw), ("dbias", dba, db))
    rm_now, rv_now = rma.read(), rva.read()
    check("use_input_stats=0 y", y2a.read([inference]), ref.batch_norm_inference(x, w, b, rm_now, rv_now, eps))
    dx, dw, db = ref.batch_norm_backward_inference(dy, x, w, rm_now, rv_now, eps)
    check_all(backward2, ("use_input_stats=0 dx", dx2a, dx), ("use_input_stats=0 dweight", dw2a, dw),
              ("use_input_stats=0 dbias", db2a, db))


# ---- Events and errors ---------------------------------------------------------------------

@pytest.mark.parametrize("op", ["layer_norm", "group_norm"])
def test_wait_list_holds_the_op(normcl, queue, runtime, context, op):
    """The op waits for the caller's user event (LayerNorm takes the wait list itself,
    GroupNorm through a marker): nothing is written and the returned event does not
    complete until the caller sets it; the call itself does not block."""
    shape = (3, 2, 8)
    x = random(shape)
    xa, = arrays(queue, x)
    ya, = arrays(queue, shape)
    gate = cl.UserEvent(context)
    if op == "layer_norm":
        event = normcl.call("layer_norm_forward", runtime, xa.desc, 1, None, None, 1e-5, ya.desc, None, None,
                            wait_for=[gate])
        want = ref.layer_norm(x, 1, None, None, 1e-5)[0]
    else:
        event = normcl.call("group_norm_forward", runtime, xa.desc, 1, None, None, 1e-5, ya.desc, None, None,
                            wait_for=[gate])
        want = ref.group_norm(x, 1, None, None, 1e-5)[0]
    assert event.command_execution_status != cl.command_execution_status.COMPLETE
    gate.set_status(cl.command_execution_status.COMPLETE)
    check("y", ya.read([event]), want)


def test_empty_input_returns_a_marker(normcl, in_order_queue, in_order_runtime, context):
    """No kernel to run: the event is a marker after the wait list."""
    x = nc.Tensor(rank=2, dtype=0)
    x.shape[0], x.shape[1] = 0, 8
    gate = cl.UserEvent(context)
    event = normcl.call("layer_norm_forward", in_order_runtime, ctypes.pointer(x), 1, None, None, 1e-5,
                        ctypes.pointer(x), None, None, wait_for=[gate])
    assert event.command_execution_status != cl.command_execution_status.COMPLETE
    gate.set_status(cl.command_execution_status.COMPLETE)
    event.wait()


# ---- Fused epilogues -------------------------------------------------------------------------

def silu(a):
    return a / (1 + np.exp(-a))


def silu_gradient(a):
    s = 1 / (1 + np.exp(-a))
    return s * (1 + a * (1 - s))


def test_layer_norm_fused(normcl, queue, runtime):
    """h = (x + c) + residual, c the input bias, y = silu(layer_norm(h)), h returned; the
    backward through both, with dL/dh added to dx, and dc."""
    shape, k, eps = (4, 3, 8), 2, 1e-5
    x, r, dy, gs = random(shape, 2, 0.5), random(shape), random(shape), random(shape)
    w, b, c = random(shape[-k:], 0.5, 1), random(shape[-k:], 0.5), random(shape[-k:])
    xa, ra, dya, gsa, wa, ba, ca = arrays(queue, x, r, dy, gs, w, b, c)
    ya, ha, mean_a, invstd_a, dxa, dwa, dba, dca = arrays(
        queue, shape, shape, shape[:-k], shape[:-k], shape, shape[-k:], shape[-k:], shape[-k:])
    silu_epilogue = nc.epilogue(nc.ACTIVATION_SILU)

    forward = normcl.call("layer_norm_forward_fused", runtime, xa.desc, ra.desc, ca.desc, k, wa.desc, ba.desc, eps,
                          silu_epilogue, ya.desc, mean_a.desc, invstd_a.desc, ha.desc)
    backward = normcl.call("layer_norm_backward_fused", runtime, dya.desc, xa.desc, ra.desc, ca.desc, ha.desc, k,
                           wa.desc, ba.desc, mean_a.desc, invstd_a.desc, silu_epilogue, gsa.desc, dxa.desc, dwa.desc,
                           dba.desc, dca.desc, wait_for=[forward])

    h = (x + c) + r
    a, mean, invstd = ref.layer_norm(h, k, w, b, eps)
    check_all(forward, ("y", ya, silu(a)), ("residual_sum", ha, h), ("save_invstd", invstd_a, invstd))
    dx, dw, db = ref.layer_norm_backward(dy * silu_gradient(a), h, k, w, mean_a.read(), invstd_a.read())
    check_all(backward, ("dx", dxa, dx + gs), ("dweight", dwa, dw), ("dbias", dba, db),
              ("dinput_bias", dca, (dx + gs).sum(axis=0)))


@pytest.mark.parametrize("layout", [nc.CHANNELS_FIRST, nc.CHANNELS_LAST], ids=["NCHW", "NHWC"])
def test_batch_norm_inference_fused(normcl, queue, runtime, layout):
    """y = relu(BN(x) + z) with the running statistics; dz = dy where the sum is positive."""
    shape, eps = (2, 4, 3, 5), 1e-5
    x, z, dy = random(shape, 2), random(shape), random(shape)
    w, b, rm, rv = random(4, 0.5, 1), random(4, 0.5), random(4, 0.5), random(4, 0.5, 1.5)
    xa, za, dya, ya, dxa, dza = arrays(queue, x, z, dy, shape, shape, shape, layout=layout)
    wa, ba, rma, rva, dwa, dba = arrays(queue, w, b, rm, rv, (4,), (4,))
    relu = nc.epilogue(nc.ACTIVATION_RELU)

    forward = normcl.call("batch_norm_forward_inference_fused", runtime, xa.desc, wa.desc, ba.desc, rma.desc,
                          rva.desc, eps, za.desc, relu, ya.desc)
    backward = normcl.call("batch_norm_backward_inference_fused", runtime, dya.desc, xa.desc, wa.desc, ba.desc,
                           rma.desc, rva.desc, eps, za.desc, relu, dxa.desc, dwa.desc, dba.desc, dza.desc,
                           wait_for=[forward])

    a = ref.batch_norm_inference(x, w, b, rm, rv, eps) + z
    check("y", ya.read([forward]), np.maximum(a, 0))
    g = np.where(a > 0, dy, 0)
    dx, dw, db = ref.batch_norm_backward_inference(g, x, w, rm, rv, eps)
    check_all(backward, ("dx", dxa, dx), ("dweight", dwa, dw), ("dbias", dba, db), ("dz", dza, g))


def test_fused_errors(normcl, in_order_queue, in_order_runtime):
    """An unknown activation, a residual of another shape, an addend of another dtype:
    typed errors, nothing written."""
    queue, runtime = in_order_queue, in_order_runtime
    xa, ra, ya, sa = arrays(queue, random((4, 8)), random((4, 8)), (4, 8), (4,))
    other, = arrays(queue, random((4, 7)))
    half, = arrays(queue, random((4, 8)), dtype=np.float16)

    def fails(status, needle, name, *arguments):
        with pytest.raises(nc.NormCLError) as error:
            normcl.call(name, *arguments)
        assert error.value.status == status and needle in error.value.message, error.value

    fails(nc.INVALID_ARGUMENT, "epilogue.activation", "rms_norm_forward_fused", runtime, xa.desc, ra.desc, None, 1,
          None, None, 1e-5, nc.epilogue(8), ya.desc, sa.desc, None)
    fails(nc.SHAPE_MISMATCH, "'residual'", "rms_norm_forward_fused", runtime, xa.desc, other.desc, None, 1, None,
          None, 1e-5, None, ya.desc, sa.desc, None)
    fails(nc.UNSUPPORTED, "'addend'", "batch_norm_forward_training_fused", runtime, xa.desc, None, None, None, None,
          0.1, None, 1e-5, half.desc, nc.epilogue(nc.ACTIVATION_RELU), ya.desc, None, None)
    assert np.isnan(ya.read()).all() and np.isnan(sa.read()).all()


def test_errors(normcl, in_order_queue, in_order_runtime):
    queue, runtime = in_order_queue, in_order_runtime
    xa, ya = arrays(queue, (4, 8), (4, 8))
    stats, = arrays(queue, (3,))

    def fails(status, needle, name, *arguments):
        with pytest.raises(nc.NormCLError) as error:
            normcl.call(name, *arguments)
        assert error.value.status == status and needle in error.value.message, error.value

    fails(nc.INVALID_ARGUMENT, "'runtime'", "layer_norm_forward", None, xa.desc, 1, None, None, 1e-5, ya.desc, None,
          None)
    bad = xa.desc
    bad.contents.dtype = 9
    fails(nc.INVALID_ARGUMENT, "x.dtype", "group_norm_forward", runtime, bad, 1, None, None, 1e-5, ya.desc, None,
          None)
    fails(nc.SHAPE_MISMATCH, "'save_mean'", "group_norm_forward", runtime, xa.desc, 1, None, None, 1e-5, ya.desc,
          stats.desc, None)
    fails(nc.INVALID_ARGUMENT, "num_groups", "group_norm_forward", runtime, xa.desc, 3, None, None, 1e-5, ya.desc,
          None, None)
    fails(nc.INVALID_SHAPE, "x", "instance_norm_forward", runtime, xa.desc, None, None, None, None, 1, 0.1, None,
          1e-5, ya.desc, None, None)
    # Nothing was written by the failed calls.
    assert np.isnan(ya.read()).all() and np.isnan(stats.read()).all()


def test_threads_share_a_runtime(normcl, in_order_queue, in_order_runtime):
    """ctypes releases the GIL, so these calls overlap: four threads run LayerNorm on one
    runtime at once, and each thread's last error is its own."""
    import threading

    shape, eps = (3, 16), 1e-5
    x = random(shape)
    want = ref.layer_norm(x, 1, None, None, eps)[0]
    failures, barrier = [], threading.Barrier(4)

    def work(index):
        try:
            xa, ya = arrays(in_order_queue, x, shape)
            for _ in range(5):
                event = normcl.call("layer_norm_forward", in_order_runtime, xa.desc, 1, None, None, eps, ya.desc,
                                    None, None)
                check("y", ya.read([event]), want)
            with pytest.raises(nc.NormCLError):
                normcl.call("layer_norm_forward", in_order_runtime, xa.desc, 10 + index, None, None, eps, ya.desc,
                            None, None)
            barrier.wait()  # every thread has failed with its own normalized_rank
            assert f"{10 + index} is not in" in normcl.last_error(), normcl.last_error()
        except Exception as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


# ---- Switchable Norm -----------------------------------------------------------------------

@pytest.mark.parametrize("branches,unbiased,training", [(0, 1, 1), (2, 0, 1), (0, 1, 0)],
                         ids=["IN-LN-BN-training", "LN-BN-biased-training", "IN-LN-BN-inference"])
def test_switchable_norm(normcl, queue, runtime, branches, unbiased, training):
    """Forward (y, every statistic, the running update) against the reference; backward
    (dx, dweight, dbias and both logit gradients) against central differences of
    sum(dy * y) through the float64 reference."""
    shape, eps, momentum = (2, 3, 2, 3), 1e-5, 0.1
    n, c = shape[:2]
    count = 3 if branches == 0 else 2
    x, dy = random(shape, 2, 0.5), random(shape)
    w, b = random(c, 0.5, 1), random(c, 0.5)
    mean_logits, var_logits = random(count), random(count)
    rm, rv = random(c, 0.5), random(c, 0.5, 1.5)
    xa, dya, wa, ba, mla, vla, rma, rva = arrays(queue, x, dy, w, b, mean_logits, var_logits, rm, rv)
    ya, dxa, dwa, dba, dmla, dvla = arrays(queue, shape, shape, (c,), (c,), (count,), (count,))
    shapes = dict(save_mean=(n, c), save_invstd=(n, c), layer_mean=(n,), layer_var=(n,))
    if branches != 2:
        shapes.update(instance_mean=(n, c), instance_var=(n, c))
    if branches != 1 and training:
        shapes.update(batch_mean=(c,), batch_var=(c,))
    stats = {name: DeviceArray(queue, s) for name, s in shapes.items()}

    forward = normcl.call("switchable_norm_forward", runtime, xa.desc, mla.desc, vla.desc, wa.desc, ba.desc, rma.desc,
                          rva.desc, training, branches, unbiased, momentum, None, eps, ya.desc,
                          switchable_statistics(stats))
    backward = normcl.call("switchable_norm_backward", runtime, dya.desc, xa.desc, mla.desc, vla.desc, wa.desc,
                           rma.desc, rva.desc, training, branches, unbiased, eps, switchable_statistics(stats),
                           dxa.desc, dwa.desc, dba.desc, dmla.desc, dvla.desc, wait_for=[forward])

    def run_reference():
        return ref.switchable_norm(x, mean_logits, var_logits, w, b, branches, unbiased, eps, training, rm, rv,
                                   momentum)

    y, mean, invstd, branch_stats, new_running = run_reference()
    check("y", ya.read([forward]), y)
    check("save_mean", stats["save_mean"].read(), mean)
    check("save_invstd", stats["save_invstd"].read(), invstd)
    for name, value in branch_stats.items():
        check(name, stats[name].read(), value)
    if new_running is not None:
        check("running_mean", rma.read(), new_running[0])
        check("running_var", rva.read(), new_running[1])
    else:
        check("running_mean (unchanged)", rma.read(), rm)
    gradients = ref.numerical_gradients(lambda: (dy * run_reference()[0]).sum(), [x, w, b, mean_logits, var_logits])
    for name, array, want in zip(("dx", "dweight", "dbias", "d_mean_logits", "d_var_logits"),
                                 (dxa, dwa, dba, dmla, dvla), gradients):
        check(name, array.read([backward]), want)
