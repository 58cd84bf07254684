"""What the torch tests compare: a network taken in by ``Network.from_torch`` against the torch model it came from.

``assert_same_model`` checks, in float64: the trainable parameter count and vector (``module.parameters()`` order),
and the outputs, loss, gradient and Hessian of the ORIGINAL module and loss (``torch.func`` on its trainable
parameters, tied ones once) against those of ``net.to_torch()`` with the same loss, to 1e-12; and the outputs and
loss against ``numpy_forward``, a small numpy forward of the network's layer records written here, independent of
torch, and the suite's loss definitions (``xval.definitions.LOSSES``), to 1e-10.
"""

import itertools
import math

import numpy as np
import torch

from xval import definitions
from xval.layers import Activation, AdaptiveAvgPool, Conv, Dense, Flatten, LogSoftmax, Normalization, Pad, Pool

RTOL = 1e-12
# The numpy forward writes some functions another way than torch (softplus as logaddexp, not log1p(exp)): their
# rounding differs by ulps, which a chain can amplify (softplus(beta) by 1 / beta); a misreading differs by far more.
NUMPY_RTOL = 1e-10


# ---- a numpy forward of the layer records -------------------------------------------------------------------------
def numpy_forward(net, X):
    """``(N, *net.output_shape)`` outputs of ``net`` on ``X`` in float64 numpy, layer by layer."""
    z = np.asarray(X, dtype=np.float64)
    for layer in net.layers:
        z = _forward(layer, z, net)
    return z


def _array(net, field):
    value = net.tensor(field)
    return None if value is None else np.asarray(value, dtype=np.float64)


def _forward(layer, z, net):
    if isinstance(layer, Dense):
        b = _array(net, layer.bias)
        return z @ _array(net, layer.weight).T + (0.0 if b is None else b)
    if isinstance(layer, Activation):
        return definitions.activation(layer.name).value(z, **dict(layer.options))
    if isinstance(layer, LogSoftmax):
        shifted = z - z.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    if isinstance(layer, Flatten):
        shape = z.shape[1:]
        start, end = layer.axes(len(shape))
        return z.reshape(len(z), *shape[:start], -1, *shape[end + 1 :])
    if isinstance(layer, Pad):
        pairs = [(0, 0)] * z.ndim
        for i in range(len(layer.padding) // 2):
            pairs[z.ndim - 1 - i] = (layer.padding[2 * i], layer.padding[2 * i + 1])
        return np.pad(z, pairs, constant_values=layer.value)
    if isinstance(layer, Normalization):
        shape = (-1,) + (1,) * (z.ndim - 2)  # per channel, axis 1 of the batch
        w, b = _array(net, layer.weight), _array(net, layer.bias)
        out = (z - _array(net, layer.mean).reshape(shape)) / np.sqrt(_array(net, layer.var).reshape(shape) + layer.eps)
        return out * (1.0 if w is None else w.reshape(shape)) + (0.0 if b is None else b.reshape(shape))
    if isinstance(layer, Conv):
        return _conv_transposed(layer, z, net) if layer.transposed else _conv(layer, z, net)
    if isinstance(layer, Pool):
        return _pool(layer, z)
    if isinstance(layer, AdaptiveAvgPool):
        return _adaptive(layer, z)
    raise NotImplementedError(type(layer).__name__)


def _window(start, count, stride):
    return slice(start, start + (count - 1) * stride + 1, stride)


def _conv(layer, z, net):
    """``out[n, o, i] = b[o] + sum_{c, k} w[o, c, k] x_pad[n, g(o) c, i s + k d]`` over kernel offsets ``k``."""
    w, b, d = _array(net, layer.weight), _array(net, layer.bias), layer.dims
    x = np.pad(z, [(0, 0), (0, 0)] + [(p, p) for p in layer.padding])
    out_shape = layer.output_shape(z.shape[1:], net)
    g, c_in, c_out = layer.groups, w.shape[1], w.shape[0]
    out = np.zeros((len(z), *out_shape))
    for k in itertools.product(*(range(n) for n in w.shape[2:])):
        window = tuple(_window(k[a] * layer.dilation[a], out_shape[1 + a], layer.stride[a]) for a in range(d))
        for group in range(g):
            rows, cols = slice(group * c_out // g, (group + 1) * c_out // g), slice(group * c_in, (group + 1) * c_in)
            out[:, rows] += np.einsum("oc,nc...->no...", w[(rows, slice(None), *k)], x[(slice(None), cols, *window)])
    return out + (0.0 if b is None else b.reshape((-1,) + (1,) * d))


def _conv_transposed(layer, z, net):
    """The adjoint of ``_conv``: each input entry spreads ``w[c, o, k] x[n, c, i]`` to ``out[n, o, i s + k d - p]``."""
    w, b, d = _array(net, layer.weight), _array(net, layer.bias), layer.dims
    out_shape = layer.output_shape(z.shape[1:], net)
    g, c_in, c_out = layer.groups, w.shape[0], w.shape[1]
    full = [o + 2 * p for o, p in zip(out_shape[1:], layer.padding)]
    out = np.zeros((len(z), out_shape[0], *[f + s * k for f, s, k in zip(full, layer.stride, w.shape[2:])]))
    for k in itertools.product(*(range(n) for n in w.shape[2:])):
        window = tuple(_window(k[a] * layer.dilation[a], z.shape[2 + a], layer.stride[a]) for a in range(d))
        for group in range(g):
            rows, cols = slice(group * c_in // g, (group + 1) * c_in // g), slice(group * c_out, (group + 1) * c_out)
            out[(slice(None), cols, *window)] += np.einsum("co,nc...->no...", w[(rows, slice(None), *k)], z[:, rows])
    crop = tuple(slice(p, p + o) for p, o in zip(layer.padding, out_shape[1:]))
    return out[(slice(None), slice(None), *crop)] + (0.0 if b is None else b.reshape((-1,) + (1,) * d))


def _pool(layer, z):
    """Max or average over each window; an average divides by the window's entries inside the padded input
    (``count_include_pad``, torch's rule also with ``ceil_mode``), inside the input, or ``divisor_override``."""
    out_shape = layer.output_shape(z.shape[1:], None)
    dilation = layer.dilation or (1,) * layer.dims
    fill = -np.inf if layer.mode == "max" else 0.0
    extra = [
        max(0, (o - 1) * s + (k - 1) * dd + 1 - (n + 2 * p))
        for o, s, k, dd, n, p in zip(out_shape[1:], layer.stride, layer.kernel, dilation, z.shape[2:], layer.padding)
    ]
    pairs = [(0, 0), (0, 0)] + [(p, p + e) for p, e in zip(layer.padding, extra)]
    x = np.pad(z, pairs, constant_values=fill)
    inside = np.pad(np.ones(z.shape[2:]), pairs[2:])
    padded = np.pad(np.ones([n + 2 * p for n, p in zip(z.shape[2:], layer.padding)]), [(0, e) for e in extra])
    out = np.full((len(z), *out_shape), fill)
    count, span = np.zeros(out_shape[1:]), np.zeros(out_shape[1:])
    for k in itertools.product(*(range(n) for n in layer.kernel)):
        window = tuple(_window(k[a] * dilation[a], out_shape[1 + a], layer.stride[a]) for a in range(layer.dims))
        part = x[(slice(None), slice(None), *window)]
        out = np.maximum(out, part) if layer.mode == "max" else out + part
        count += inside[window]
        span += padded[window]
    if layer.mode == "max":
        return out
    return out / (layer.divisor_override or (span if layer.count_include_pad else count))


def _adaptive(layer, z):
    """torch's windows: output ``i`` of ``o`` over an axis of ``n`` averages entries
    ``[floor(i n / o), ceil((i + 1) n / o))``."""
    out = z
    for axis, o in enumerate(layer.output_size):
        axis += 2
        n = out.shape[axis]
        o = n if o is None else o
        parts = [
            out.take(range(i * n // o, -(-(i + 1) * n // o)), axis=axis).mean(axis=axis, keepdims=True)
            for i in range(o)
        ]
        out = np.concatenate(parts, axis=axis)
    return out


def numpy_objective(net, X, Y):
    """``E = c sum_n loss_n`` from ``numpy_forward`` and the suite's loss definition (class indices one-hot)."""
    outputs = numpy_forward(net, X)
    Y = np.asarray(Y)
    if Y.dtype.kind in "iu":
        Y = np.eye(net.output_shape[0])[Y]
    return float(np.sum(definitions.loss(net.loss).value(outputs, Y.astype(np.float64)))) * net.sample_weight(len(X))


# ---- the original module against the rebuilt one ---------------------------------------------------------------------
def trainable(module):
    """``[(name, parameter)]`` of the trainable parameters, in ``module.parameters()`` order (tied ones once)."""
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def derivatives(module, loss, X, Y, hessian=True):
    """``(outputs, loss, gradient, Hessian)`` of ``loss(module(X), Y)`` in float64, with respect to the trainable
    parameters flattened in ``module.parameters()`` order (``torch.func``; tied parameters once); the Hessian is
    ``None`` unless asked for."""
    named = trainable(module)
    theta = torch.cat([p.detach().reshape(-1) for _, p in named]).double()
    shapes = [p.shape for _, p in named]

    def unflatten(vector):
        parts, start = {}, 0
        for (name, _), shape in zip(named, shapes):
            size = math.prod(shape)
            parts[name] = vector[start : start + size].reshape(shape)
            start += size
        return parts

    def objective(vector):
        return loss(torch.func.functional_call(module, unflatten(vector), (X,)), Y)

    with torch.no_grad():
        outputs = module(X)
    value = objective(theta)
    gradient = torch.func.grad(objective)(theta)
    curvature = torch.func.hessian(objective)(theta).numpy() if hessian else None
    return outputs.numpy(), float(value), gradient.numpy(), curvature


def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)) if a.shape == b.shape else np.inf


def assert_close(name, got, expected, rtol=RTOL):
    error = relative(got, expected)
    assert error <= rtol, f"{name}: relative difference {error:.3g} > {rtol:g}"


def inputs(net, n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *net.input_shape))


def targets(net, loss, n, seed=1):
    """Targets the loss takes: class indices for the class losses, entries in [0, 1] for BCE, normal otherwise."""
    rng = np.random.default_rng(seed)
    name = type(loss).__name__ if not isinstance(loss, str) else loss
    if name in ("CrossEntropyLoss", "NLLLoss", "cross_entropy", "nll"):
        return rng.integers(0, net.output_shape[0], size=n)
    if name == "BCEWithLogitsLoss":
        return rng.uniform(0.0, 1.0, size=(n, *net.output_shape))
    return rng.standard_normal((n, *net.output_shape))


def assert_same_model(module, loss, net, n=3, seed=0, hessian=True, numpy_check=True):
    """The network computes what ``module`` and ``loss`` compute (see the module docstring); float64 models only."""
    count = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert net.n_params == count, f"P = {net.n_params}, but the module has {count} trainable parameters"
    vector = torch.cat([p.detach().reshape(-1) for _, p in trainable(module)]).double().numpy()
    np.testing.assert_array_equal(net.to_vector(), vector)
    X = inputs(net, n, seed)
    rebuilt = net.to_torch()
    assert sum(p.numel() for p in rebuilt.parameters() if p.requires_grad) == count
    Xt = torch.as_tensor(X)
    if loss is None:
        with torch.no_grad():
            expected, got = module(Xt).numpy(), rebuilt(Xt).numpy()
        assert_close("outputs", got, expected)
        if numpy_check:
            assert_close("numpy outputs", numpy_forward(net, X), expected, NUMPY_RTOL)
        return
    Y = targets(net, loss, n, seed + 1)
    Yt = torch.as_tensor(Y)
    original = derivatives(module, loss, Xt, Yt, hessian)
    again = derivatives(rebuilt, loss, Xt, Yt, hessian)
    for name, got, expected in zip(("outputs", "loss", "gradient", "Hessian"), again, original):
        if expected is not None:
            assert_close(name, got, expected)
    if numpy_check:
        assert_close("numpy outputs", numpy_forward(net, X), original[0], NUMPY_RTOL)
        assert_close("numpy loss", numpy_objective(net, X, Y), original[1], NUMPY_RTOL)
