"""Each layer kind of ``xval.layers`` in jax on a batch ``(N, *sample shape)``, with torch's semantics.

``f(layer, z, tensor, shape)``: ``tensor(field)`` gives a weight or bias (a parameter, a frozen constant or
``None``); ``shape`` is the layer's output shape per sample (``net.shapes``), which fixes the pools' window counts.
Convolutions are ``lax.conv_general_dilated`` (a transposed one: the input dilated by the stride, the kernel flipped
with its channel axes swapped per group); average pools are ``lax.reduce_window`` sums over torch's divisors; max
pools the first largest entry of each window, as torch; the adaptive pool averages each axis over torch's windows
``[floor(i n / o), ceil((i + 1) n / o))``.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xval.errors import ArgumentError

from ._activations import ACTIVATIONS

_SPATIAL = {1: "H", 2: "HW", 3: "DHW"}


def _dimension_numbers(dims):
    return ("NC" + _SPATIAL[dims], "OI" + _SPATIAL[dims], "NC" + _SPATIAL[dims])


def _channel_shape(z):
    """Broadcasts a per-channel vector over a batch ``(N, C, *spatial)``."""
    return (-1,) + (1,) * (z.ndim - 2)


def dense(layer, z, tensor, shape):
    y = z @ tensor(layer.weight).T
    bias = tensor(layer.bias)
    return y if bias is None else y + bias


def conv(layer, z, tensor, shape):
    weight, bias = tensor(layer.weight), tensor(layer.bias)
    numbers = _dimension_numbers(layer.dims)
    if layer.transposed:
        y = _conv_transpose(layer, z, weight, numbers)
    else:
        y = lax.conv_general_dilated(
            z,
            weight,
            layer.stride,
            [(p, p) for p in layer.padding],
            rhs_dilation=layer.dilation,
            dimension_numbers=numbers,
            feature_group_count=layer.groups,
        )
    return y if bias is None else y + bias.reshape(_channel_shape(z))


def _conv_transpose(layer, z, weight, numbers):
    """torch's ConvTransposeNd as a convolution: the input dilated by the stride, padded by ``d (k - 1) - p`` (and
    ``output_padding`` more on the high side), the kernel ``(C_in, C_out/g, *k)`` turned into ``(C_out, C_in/g, *k)``
    group by group and flipped in space."""
    groups, (c_in, c_out_per_group, *kernel) = layer.groups, weight.shape
    weight = weight.reshape(groups, c_in // groups, c_out_per_group, *kernel).swapaxes(1, 2)
    weight = weight.reshape(groups * c_out_per_group, c_in // groups, *kernel)
    weight = jnp.flip(weight, axis=tuple(range(2, 2 + layer.dims)))
    extra = layer.output_padding or (0,) * layer.dims
    padding = [
        (d * (k - 1) - p, d * (k - 1) - p + e) for k, p, d, e in zip(kernel, layer.padding, layer.dilation, extra)
    ]
    return lax.conv_general_dilated(
        z,
        weight,
        (1,) * layer.dims,
        padding,
        lhs_dilation=layer.stride,
        rhs_dilation=layer.dilation,
        dimension_numbers=numbers,
        feature_group_count=groups,
    )


def activation(layer, z, tensor, shape):
    return ACTIVATIONS[layer.name](z, **dict(layer.options))


def log_softmax(layer, z, tensor, shape):
    return jax.nn.log_softmax(z, axis=-1)


def flatten(layer, z, tensor, shape):
    return z.reshape((z.shape[0], *shape))


def pool(layer, z, tensor, shape):
    """torch's MaxPoolNd / AvgPoolNd: windows over the input padded by ``padding`` on the low side and as much as
    the last of the ``shape`` windows needs on the high side (ceil mode), cut to ``shape``."""
    dims, kernel, sizes, outputs = layer.dims, layer.kernel, z.shape[2:], shape[1:]
    stride = layer.stride or kernel
    dilation = layer.dilation or (1,) * dims
    if layer.mode == "avg" and any(d != 1 for d in dilation):
        raise ArgumentError(
            f"average pooling with dilation {layer.dilation}: torch's AvgPool has no dilation; use dilation 1 (or ())"
        )
    padding = [
        (p, max((o - 1) * s + d * (k - 1) + 1 - n - p, 0))
        for n, o, k, s, p, d in zip(sizes, outputs, kernel, stride, layer.padding, dilation)
    ]
    if layer.mode == "max":
        return _max_pool(z, kernel, stride, dilation, padding, outputs)
    # a concrete (numpy) zero lets jax take its differentiable window sum
    y = lax.reduce_window(
        z, np.array(0, z.dtype), lax.add, (1, 1, *kernel), (1, 1, *stride), ((0, 0), (0, 0), *padding)
    )
    y = y[(slice(None), slice(None), *(slice(0, o) for o in outputs))]  # floor mode may leave windows over
    return y / _divisor(layer, sizes, outputs, stride).astype(z.dtype)


def _max_pool(z, kernel, stride, dilation, padding, outputs):
    """torch's max pooling: of each window (the input padded with -inf) the first largest entry in the window's
    row-major order, which alone gets the derivative, as in torch (``reduce_window`` max cannot be differentiated
    with a window dilation, and jnp.maximum would split ties): one strided slice per kernel offset, the first
    ``argmax`` over them, gathered."""
    padded = lax.pad(z, np.array(-np.inf, z.dtype), [(0, 0, 0), (0, 0, 0), *((low, high, 0) for low, high in padding)])
    pieces = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        start = (0, 0, *(j * d for j, d in zip(offset, dilation)))
        limit = (*padded.shape[:2], *(first + (o - 1) * s + 1 for first, o, s in zip(start[2:], outputs, stride)))
        pieces.append(lax.slice(padded, start, limit, (1, 1, *stride)))
    stacked = jnp.stack(pieces)
    first = jnp.argmax(stacked, axis=0)[None]
    return jnp.take_along_axis(stacked, first, axis=0)[0]


def _divisor(layer, sizes, outputs, stride):
    """torch's avg_pool divisor per output window ``(*outputs)``: ``divisor_override``, or the window's size within the
    padded input (``count_include_pad``), or its count of input entries."""
    if layer.divisor_override is not None:
        return np.full(tuple(outputs), float(layer.divisor_override))
    per_axis = []
    for n, o, k, s, p in zip(sizes, outputs, layer.kernel, stride, layer.padding):
        starts = np.arange(o) * s - p
        ends = np.minimum(starts + k, n + p)
        inside = np.minimum(ends, n) - np.maximum(starts, 0)
        count = ends - starts if layer.count_include_pad else inside
        per_axis.append(np.where(inside > 0, count, 1).astype(np.float64))  # torch gives 0 for an empty window
    return functools.reduce(np.multiply.outer, per_axis)


def adaptive_avg_pool(layer, z, tensor, shape):
    for axis, (n, o) in enumerate(zip(z.shape[2:], shape[1:]), start=2):
        average = np.zeros((o, n))
        for i in range(o):
            start, end = (i * n) // o, -(-((i + 1) * n) // o)
            average[i, start:end] = 1.0 / (end - start)
        z = jnp.moveaxis(jnp.tensordot(z, jnp.asarray(average, z.dtype), axes=([axis], [1])), -1, axis)
    return z


def normalization(layer, z, tensor, shape):
    channel = _channel_shape(z)
    y = (z - tensor(layer.mean).reshape(channel)) / jnp.sqrt(tensor(layer.var).reshape(channel) + layer.eps)
    weight, bias = tensor(layer.weight), tensor(layer.bias)
    y = y if weight is None else y * weight.reshape(channel)
    return y if bias is None else y + bias.reshape(channel)


def pad(layer, z, tensor, shape):
    """torch's F.pad (constant): ``padding`` pairs from the last axis backwards; negative entries crop."""
    config = [(0, 0, 0)] * z.ndim
    for i in range(len(layer.padding) // 2):
        config[z.ndim - 1 - i] = (layer.padding[2 * i], layer.padding[2 * i + 1], 0)
    return lax.pad(z, jnp.array(layer.value, z.dtype), config)


# layer kind -> f(layer, z, tensor, output shape per sample)
FORWARD = {
    "dense": dense,
    "conv": conv,
    "activation": activation,
    "log_softmax": log_softmax,
    "flatten": flatten,
    "pool": pool,
    "adaptive_avg_pool": adaptive_avg_pool,
    "normalization": normalization,
    "pad": pad,
}
