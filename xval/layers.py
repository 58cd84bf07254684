"""The layer kinds a ``Network`` is a sequence of, as plain records: what each computes (torch's semantics), the
shape it maps a sample to, and which of its tensors are parameters.

A parameter field holds an ``int`` (the index of a trainable tensor in ``net.parameters``), a read-only array (a
frozen constant: part of the function, not of the parameter vector) or ``None`` (no such tensor: a Linear without
bias). Shapes here are per sample: ``(features,)`` for a dense input, ``(channels, *spatial)`` for a convolution's.
Every engine computes each kind its own way; an engine that lacks a kind refuses it by name (``unsupported``).
"""

import math
from dataclasses import dataclass, fields
from typing import Optional, Union

import numpy as np

from .errors import ArgumentError, ShapeError

Tensor = Union[int, np.ndarray, None]


def _spatial(value, dims, name):
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims
    if len(value) != dims or not all(isinstance(v, int) for v in value):
        raise ArgumentError(f"{name} must be an int or {dims} ints, got {value!r}")
    return value


@dataclass(frozen=True)
class Dense:
    """``y = x W^T + b`` on the last axis of the sample (``(..., n_in) -> (..., n_out)``; leading axes share ``W``).
    ``weight`` ``(n_out, n_in)``, ``bias`` ``(n_out,)``."""

    weight: Tensor
    bias: Tensor = None
    kind = "dense"

    def output_shape(self, shape, net):
        n_out, n_in = net.tensor(self.weight).shape
        if not shape or shape[-1] != n_in:
            raise ShapeError(
                f"a Linear layer with {n_in} inputs gets samples of shape {tuple(shape)}; its input's "
                f"last axis must have {n_in} entries"
            )
        return (*shape[:-1], n_out)


@dataclass(frozen=True)
class Conv:
    """torch's ``ConvNd`` (``transposed``: ``ConvTransposeNd``) on ``(C_in, *spatial)`` samples, ``dims`` spatial axes.
    ``weight`` ``(C_out, C_in / groups, *kernel)`` (transposed: ``(C_in, C_out / groups, *kernel)``), ``bias``
    ``(C_out,)``; zero padding."""

    weight: Tensor
    bias: Tensor
    dims: int
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int = 1
    transposed: bool = False
    output_padding: tuple = ()
    kind = "conv"

    def channels(self, net):
        """``(C_in, C_out)``."""
        shape = net.tensor(self.weight).shape
        if self.transposed:
            return shape[0], shape[1] * self.groups
        return shape[1] * self.groups, shape[0]

    def kernel(self, net):
        return tuple(net.tensor(self.weight).shape[2:])

    def output_shape(self, shape, net):
        c_in, c_out = self.channels(net)
        if len(shape) != self.dims + 1 or shape[0] != c_in:
            raise ShapeError(
                f"a Conv{self.dims}d layer with {c_in} input channels gets samples of shape "
                f"{tuple(shape)}; it takes ({c_in}, {', '.join('L' * self.dims)})"
            )
        sizes = []
        for axis, (n, k, s, p, d) in enumerate(
            zip(shape[1:], self.kernel(net), self.stride, self.padding, self.dilation)
        ):
            if self.transposed:
                out = (n - 1) * s - 2 * p + d * (k - 1) + self.output_padding[axis] + 1
            else:
                out = (n + 2 * p - d * (k - 1) - 1) // s + 1
            if out < 1:
                raise ShapeError(
                    f"a Conv{self.dims}d layer gets samples of shape {tuple(shape)}: spatial axis "
                    f"{axis} ({n} entries) is too small for kernel {k}, dilation {d}, padding {p}"
                )
            sizes.append(out)
        return (c_out, *sizes)


@dataclass(frozen=True)
class Activation:
    """An elementwise function, named as in ``xval.definitions.ACTIVATIONS``, with its options (``(("slope", 0.01),)``
    for LeakyReLU)."""

    name: str
    options: tuple = ()
    kind = "activation"

    def option(self, key, default=None):
        return dict(self.options).get(key, default)

    def output_shape(self, shape, net):
        return tuple(shape)


@dataclass(frozen=True)
class LogSoftmax:
    """torch's ``LogSoftmax`` over the last axis of the sample: ``y = x - log sum_k exp(x_k)`` (not elementwise)."""

    kind = "log_softmax"

    def output_shape(self, shape, net):
        return tuple(shape)


@dataclass(frozen=True)
class Flatten:
    """torch's ``Flatten(start_dim, end_dim)``; axes counted per sample from 0 (torch's ``start_dim=1`` is 0 here)."""

    start: int = 0
    end: int = -1
    kind = "flatten"

    def axes(self, ndim):
        start, end = self.start % ndim, self.end % ndim
        return start, end

    def output_shape(self, shape, net):
        if not shape:
            return shape
        start, end = self.axes(len(shape))
        return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])


@dataclass(frozen=True)
class Pool:
    """torch's ``MaxPoolNd`` (``mode="max"``) or ``AvgPoolNd`` (``mode="avg"``) on ``(C, *spatial)`` samples."""

    mode: str
    dims: int
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple = ()
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None
    kind = "pool"

    def output_shape(self, shape, net):
        if len(shape) != self.dims + 1:
            raise ShapeError(f"a {self.mode} pooling over {self.dims} axes gets samples of shape {tuple(shape)}")
        sizes = []
        dilation = self.dilation or (1,) * self.dims
        for n, k, s, p, d in zip(shape[1:], self.kernel, self.stride, self.padding, dilation):
            span = n + 2 * p - d * (k - 1) - 1
            out = (-(-span // s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (out - 1) * s >= n + p:  # torch: the last window must start inside the input
                out -= 1
            if out < 1:
                raise ShapeError(f"pooling with kernel {k} gets a spatial axis of {n} entries: too small")
            sizes.append(out)
        return (shape[0], *sizes)


@dataclass(frozen=True)
class AdaptiveAvgPool:
    """torch's ``AdaptiveAvgPoolNd(output_size)`` on ``(C, *spatial)`` samples."""

    dims: int
    output_size: tuple
    kind = "adaptive_avg_pool"

    def output_shape(self, shape, net):
        if len(shape) != self.dims + 1:
            raise ShapeError(f"an adaptive average pooling over {self.dims} axes gets samples of shape {tuple(shape)}")
        return (shape[0], *(n if o is None else o for n, o in zip(shape[1:], self.output_size)))


@dataclass(frozen=True)
class Normalization:
    """torch's ``BatchNormNd`` in eval mode: ``(x - mean) / sqrt(var + eps) * weight + bias`` per channel (axis 0 of
    the sample), with the running statistics as constants."""

    weight: Tensor
    bias: Tensor
    mean: np.ndarray
    var: np.ndarray
    eps: float
    kind = "normalization"

    def output_shape(self, shape, net):
        if not shape or shape[0] != self.mean.shape[0]:
            raise ShapeError(f"a BatchNorm over {self.mean.shape[0]} channels gets samples of shape {tuple(shape)}")
        return tuple(shape)


@dataclass(frozen=True)
class Pad:
    """Zero (constant) padding of the last spatial axes: ``padding`` as torch's ``(left, right, top, bottom, ...)``
    (last axis first)."""

    padding: tuple
    value: float = 0.0
    kind = "pad"

    def output_shape(self, shape, net):
        shape = list(shape)
        for i in range(len(self.padding) // 2):
            axis = len(shape) - 1 - i
            shape[axis] += self.padding[2 * i] + self.padding[2 * i + 1]
            if shape[axis] < 1:
                raise ShapeError(f"padding {self.padding} leaves axis {axis} empty")
        return tuple(shape)


KINDS = (Dense, Conv, Activation, LogSoftmax, Flatten, Pool, AdaptiveAvgPool, Normalization, Pad)
PARAMETER_FIELDS = {"weight", "bias"}


def tensors(layer):
    """``[(field name, value)]`` of the layer's weight and bias fields (parameter indices, constants or ``None``)."""
    return [(f.name, getattr(layer, f.name)) for f in fields(layer) if f.name in PARAMETER_FIELDS]


def parameter_indices(layer):
    """The indices of the trainable tensors the layer uses, in field order (weight, then bias)."""
    return [value for _, value in tensors(layer) if isinstance(value, int) and not isinstance(value, bool)]


def describe(layer, net=None):
    """A short name for messages: ``Dense(8 -> 3)``, ``Conv2d(3 -> 4, kernel (3, 3))``, ``tanh``."""
    if isinstance(layer, Activation):
        options = ", ".join(f"{k}={v}" for k, v in layer.options)
        return f"{layer.name}({options})" if options else layer.name
    if net is not None and isinstance(layer, Dense):
        n_out, n_in = net.tensor(layer.weight).shape
        return f"Dense({n_in} -> {n_out}{'' if layer.bias is not None else ', no bias'})"
    if net is not None and isinstance(layer, Conv):
        c_in, c_out = layer.channels(net)
        name = f"ConvTranspose{layer.dims}d" if layer.transposed else f"Conv{layer.dims}d"
        return f"{name}({c_in} -> {c_out}, kernel {layer.kernel(net)})"
    if isinstance(layer, Pool):
        return f"{'MaxPool' if layer.mode == 'max' else 'AvgPool'}{layer.dims}d(kernel {layer.kernel})"
    return type(layer).__name__
