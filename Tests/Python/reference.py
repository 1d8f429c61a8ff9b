"""float64 numpy references of the ops (docs/SEMANTICS.md): forward results, saved
statistics, running-statistics updates and backward gradients. Backward references take
the forward's saved statistics, as NormCL's backward does. Arrays are logical
(N, C, *spatial) for every layout."""

import numpy as np


def _affine(xhat, weight, bias, parameter_axes_shape):
    y = xhat
    if weight is not None:
        y = y * weight.reshape(parameter_axes_shape)
    if bias is not None:
        y = y + bias.reshape(parameter_axes_shape)
    return y


# ---- LayerNorm and RMSNorm: over the last k dims -----------------------------------------

def layer_norm(x, k, weight, bias, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    y = _affine((x - mean) * invstd, weight, bias, x.shape[x.ndim - k:])
    return y, mean.reshape(x.shape[:x.ndim - k]), invstd.reshape(x.shape[:x.ndim - k])


def layer_norm_backward(dy, x, k, weight, mean, invstd):
    axes = tuple(range(x.ndim - k, x.ndim))
    stat = x.shape[:x.ndim - k] + (1,) * k
    xhat = (x - mean.reshape(stat)) * invstd.reshape(stat)
    g = dy * (weight if weight is not None else 1)
    d = np.prod(x.shape[x.ndim - k:])
    dx = invstd.reshape(stat) / d * (d * g - g.sum(axis=axes, keepdims=True) -
                                     xhat * (g * xhat).sum(axis=axes, keepdims=True))
    lead = tuple(range(x.ndim - k))
    return dx, (dy * xhat).sum(axis=lead), dy.sum(axis=lead)


def rms_norm(x, k, weight, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    invrms = 1 / np.sqrt((x ** 2).mean(axis=axes, keepdims=True) + eps)
    return _affine(x * invrms, weight, None, x.shape[x.ndim - k:]), invrms.reshape(x.shape[:x.ndim - k])


def rms_norm_backward(dy, x, k, weight, invrms):
    axes = tuple(range(x.ndim - k, x.ndim))
    r = invrms.reshape(x.shape[:x.ndim - k] + (1,) * k)
    xhat = x * r
    g = dy * (weight if weight is not None else 1)
    d = np.prod(x.shape[x.ndim - k:])
    dx = r * (g - xhat * (g * xhat).sum(axis=axes, keepdims=True) / d)
    return dx, (dy * xhat).sum(axis=tuple(range(x.ndim - k)))


# ---- BatchNorm: per channel over N and the spatial dims -----------------------------------

def _channel(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _channel_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def batch_norm_training(x, weight, bias, running_mean, running_var, momentum, eps, rmax=None, dmax=None):
    """y, save_mean, save_invstd, new running mean and var, and Batch Renorm's r and d
    (with rmax and dmax)."""
    axes, shape = _channel_axes(x), _channel(x)
    n = x.size / x.shape[1]
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    r = d = None
    if rmax is not None:
        sigma = np.sqrt(running_var + eps)
        r = np.clip(np.sqrt(var + eps) / sigma, 1 / rmax, rmax)
        d = np.clip((mean - running_mean) / sigma, -dmax, dmax)
        xhat = xhat * r.reshape(shape) + d.reshape(shape)
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    return _affine(xhat, weight, bias, shape), mean, invstd, new_mean, new_var, r, d


def batch_norm_inference(x, weight, bias, running_mean, running_var, eps):
    shape = _channel(x)
    xhat = (x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + eps)
    return _affine(xhat, weight, bias, shape)


def batch_norm_backward_training(dy, x, weight, mean, invstd, r=None, d=None):
    axes, shape = _channel_axes(x), _channel(x)
    n = x.size / x.shape[1]
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    gamma = (weight if weight is not None else np.ones(x.shape[1])).reshape(shape)
    sum_dy, sum_dy_xhat = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
    r = np.ones(x.shape[1]) if r is None else r
    d = np.zeros(x.shape[1]) if d is None else d
    dx = gamma * (r * invstd).reshape(shape) / n * (
        n * dy - sum_dy.reshape(shape) - xhat * sum_dy_xhat.reshape(shape))
    return dx, sum_dy_xhat * r + sum_dy * d, sum_dy


def batch_norm_backward_inference(dy, x, weight, running_mean, running_var, eps):
    axes, shape = _channel_axes(x), _channel(x)
    invstd = 1 / np.sqrt(running_var + eps)
    gamma = weight if weight is not None else np.ones(x.shape[1])
    xhat = (x - running_mean.reshape(shape)) * invstd.reshape(shape)
    return dy * (gamma * invstd).reshape(shape), (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


# ---- GroupNorm and InstanceNorm: per (n, group) over its channels and the spatial dims ---

def group_norm(x, groups, weight, bias, eps):
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    mean, invstd = grouped.mean(axis=2), 1 / np.sqrt(grouped.var(axis=2) + eps)
    xhat = ((grouped - mean[:, :, None]) * invstd[:, :, None]).reshape(x.shape)
    return _affine(xhat, weight, bias, _channel(x)), mean, invstd


def group_norm_backward(dy, x, groups, weight, mean, invstd):
    n, c = x.shape[:2]
    gamma = (weight if weight is not None else np.ones(c)).reshape(_channel(x))
    xg = x.reshape(n, groups, -1)
    xhat = ((xg - mean[:, :, None]) * invstd[:, :, None])
    g = (dy * gamma).reshape(n, groups, -1)
    m = xg.shape[2]
    dx = invstd[:, :, None] / m * (m * g - g.sum(axis=2, keepdims=True) - xhat * (g * xhat).sum(axis=2, keepdims=True))
    xhat = xhat.reshape(x.shape)
    return dx.reshape(x.shape), (dy * xhat).sum(axis=_channel_axes(x)), dy.sum(axis=_channel_axes(x))


def instance_norm_running(x, running_mean, running_var, momentum):
    """The running statistics after an InstanceNorm training step: the batch average of
    the per-instance mean and unbiased variance."""
    axes = tuple(range(2, x.ndim))
    m = np.prod(x.shape[2:])
    mean, var = x.mean(axis=axes).mean(axis=0), x.var(axis=axes).mean(axis=0)
    return (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var * m / (m - 1)


# ---- Switchable Norm ----------------------------------------------------------------------

def _softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


def switchable_norm(x, mean_logits, var_logits, weight, bias, branches, unbiased, eps, training,
                    running_mean=None, running_var=None, momentum=0.1):
    """y, the mixed mean and invstd per (n, c), the branch statistics (instance mean and
    variance (n, c), layer (n), batch (c)) and the updated running statistics.
    branches: 0 instance-layer-batch, 1 instance-layer, 2 layer-batch."""
    n, c = x.shape[:2]
    xr = x.reshape(n, c, -1)
    length = xr.shape[2]
    ddof = 1 if unbiased else 0
    has_instance, has_batch = branches in (0, 1), branches in (0, 2)
    stats = {}
    if has_instance:
        mu_in, var_in = xr.mean(axis=2), xr.var(axis=2, ddof=ddof)
        stats.update(instance_mean=mu_in, instance_var=var_in)
        mu_ln = mu_in.mean(axis=1)
        var_ln = var_in.mean(axis=1) + ((mu_in - mu_ln[:, None]) ** 2).mean(axis=1)
        mu_bn = mu_in.mean(axis=0)
        var_bn = var_in.mean(axis=0) + ((mu_in - mu_bn) ** 2).mean(axis=0)
    else:
        by_sample, by_channel = xr.reshape(n, -1), np.moveaxis(xr, 1, 0).reshape(c, -1)
        mu_ln, var_ln = by_sample.mean(axis=1), by_sample.var(axis=1, ddof=ddof)
        mu_bn, var_bn = by_channel.mean(axis=1), by_channel.var(axis=1, ddof=ddof)
    stats.update(layer_mean=mu_ln, layer_var=var_ln)
    new_running = None
    if has_batch and training:
        stats.update(batch_mean=mu_bn, batch_var=var_bn)
        if running_mean is not None:
            values = np.moveaxis(xr, 1, 0).reshape(c, -1)
            new_running = ((1 - momentum) * running_mean + momentum * values.mean(axis=1),
                           (1 - momentum) * running_var + momentum * values.var(axis=1, ddof=1))
    elif has_batch:
        mu_bn, var_bn = running_mean, running_var
    branch_means = ([mu_in] if has_instance else []) + [np.broadcast_to(mu_ln[:, None], (n, c))] + (
        [np.broadcast_to(mu_bn[None, :], (n, c))] if has_batch else [])
    branch_vars = ([var_in] if has_instance else []) + [np.broadcast_to(var_ln[:, None], (n, c))] + (
        [np.broadcast_to(var_bn[None, :], (n, c))] if has_batch else [])
    mean = sum(p * m for p, m in zip(_softmax(mean_logits), branch_means))
    var = sum(p * v for p, v in zip(_softmax(var_logits), branch_vars))
    invstd = 1 / np.sqrt(var + eps)
    y = (xr - mean[:, :, None]) * invstd[:, :, None]
    if weight is not None:
        y = y * weight[None, :, None]
    if bias is not None:
        y = y + bias[None, :, None]
    return y.reshape(x.shape), mean, invstd, stats, new_running


def numerical_gradients(loss, arrays, h=1e-6):
    """Central differences of the scalar `loss()` with respect to each array (changed in place)."""
    gradients = []
    for array in arrays:
        gradient = np.zeros_like(array)
        flat, out = array.reshape(-1), gradient.reshape(-1)
        for index in range(flat.size):
            keep = flat[index]
            flat[index] = keep + h
            up = loss()
            flat[index] = keep - h
            down = loss()
            flat[index] = keep
            out[index] = (up - down) / (2 * h)
        gradients.append(gradient)
    return gradients
