"""Each layer kind of ``xval.layers`` as torch's own function on a batch ``(N, *sample shape)``.

``tensor(field)`` gives a layer's weight or bias: a parameter (by index), a frozen constant, or ``None``.
"""

import torch
import torch.nn.functional as F

from xval.errors import ArgumentError

from ._activations import ACTIVATIONS

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
ADAPTIVE_AVG_POOL = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def dense(layer, z, tensor):
    return F.linear(z, tensor(layer.weight), tensor(layer.bias))


def conv(layer, z, tensor):
    weight, bias = tensor(layer.weight), tensor(layer.bias)
    if layer.transposed:
        return CONV_TRANSPOSE[layer.dims](
            z, weight, bias, layer.stride, layer.padding, layer.output_padding or 0, layer.groups, layer.dilation
        )
    return CONV[layer.dims](z, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def activation(layer, z, tensor):
    return ACTIVATIONS[layer.name](z, **dict(layer.options))


def log_softmax(layer, z, tensor):
    return torch.log_softmax(z, -1)


def flatten(layer, z, tensor):
    start, end = layer.axes(z.dim() - 1)
    return z.flatten(start + 1, end + 1)


def pool(layer, z, tensor):
    stride = layer.stride or None  # torch's default: the kernel
    if layer.mode == "max":
        return MAX_POOL[layer.dims](z, layer.kernel, stride, layer.padding, layer.dilation or 1, layer.ceil_mode)
    check_avg_pool(layer)
    if layer.dims == 1 and layer.divisor_override is not None:
        # avg_pool1d has no divisor_override: the same pooling as avg_pool2d over a unit axis
        kernel, stride = (1, *layer.kernel), (1, *(stride or layer.kernel))
        return F.avg_pool2d(
            z.unsqueeze(-2),
            kernel,
            stride,
            (0, *layer.padding),
            layer.ceil_mode,
            layer.count_include_pad,
            layer.divisor_override,
        ).squeeze(-2)
    options = (layer.ceil_mode, layer.count_include_pad)
    if layer.dims > 1:
        options += (layer.divisor_override,)
    return AVG_POOL[layer.dims](z, layer.kernel, stride, layer.padding, *options)


def check_avg_pool(layer):
    """torch's average pooling has no dilation: refuse one rather than compute another function."""
    if any(d != 1 for d in layer.dilation or ()):
        raise ArgumentError(
            f"average pooling with dilation {layer.dilation}: torch's AvgPool has no dilation; use dilation 1 (or ())"
        )


def adaptive_avg_pool(layer, z, tensor):
    return ADAPTIVE_AVG_POOL[layer.dims](z, layer.output_size)


def normalization(layer, z, tensor):
    mean, var = tensor(layer.mean), tensor(layer.var)
    return F.batch_norm(z, mean, var, tensor(layer.weight), tensor(layer.bias), training=False, eps=layer.eps)


def pad(layer, z, tensor):
    return F.pad(z, tuple(layer.padding), mode="constant", value=layer.value)


# layer kind -> f(layer, z, tensor)
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
