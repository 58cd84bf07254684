"""Pooling over windows (``windows``): max pooling (torch pads with -inf; the first largest entry of a window takes
its gradient, as torch's kernels do), average pooling (torch's divisor rules: ``count_include_pad``, ``ceil_mode``,
``divisor_override``) and adaptive average pooling (torch's windows ``[floor(o L / O), ceil((o + 1) L / O))``).

Max pooling is piecewise linear: at ``x`` its Jacobian selects one entry per window (``mask``), and it has no
second-order terms; average pooling is linear.
"""

import math

import numpy as np

from . import windows as window_tables
from .base import Step


class _Windowed(Step):
    """A pooling over ``self.windows`` with ``self.tables``; ``(N, *lead, C, *spatial)`` arrays."""

    def _flat(self, x, shape):
        lead = tuple(x.shape[: x.ndim - len(shape)])
        return self.xp.reshape(x, lead + (shape[0], math.prod(shape[1:]))), lead

    def _unfold(self, x, fill=0.0):
        flat, lead = self._flat(x, self.in_shape)
        return window_tables.unfold(self.xp, flat, self.tables, fill), lead

    def _fold(self, columns, lead):
        folded = window_tables.fold(self.xp, columns, self.tables)
        return self.xp.reshape(folded, lead + tuple(self.in_shape))

    def _out(self, flat, lead):
        return self.xp.reshape(flat, lead + tuple(self.out_shape))


class _Average(_Windowed):
    """``y_o = sum_k x_{window(o, k)} / divisor_o``."""

    def _set_divisor(self, divisor):
        self.divisor = self.asarray(np.asarray(divisor, dtype=np.float64))

    def forward(self, x):
        columns, lead = self._unfold(x)
        return self._out(self.xp.sum(columns, axis=-2) / self.divisor, lead), None

    def vjp(self, cache, g):
        xp = self.xp
        flat, lead = self._flat(g, self.out_shape)
        scaled = (flat / self.divisor)[..., None, :]
        columns = xp.broadcast_to(scaled, scaled.shape[:-2] + (self.windows.kernel_size, self.windows.out_size))
        return self._fold(columns, lead)

    def jvp(self, cache, u):
        return self.forward(u)[0]


class Pool(_Windowed):
    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        dims = record.dims
        dilation = record.dilation or (1,) * dims
        self.windows = window_tables.sliding(
            in_shape[1:], out_shape[1:], record.kernel, record.stride, record.padding, dilation
        )
        self.tables = window_tables.device_tables(lib, self.windows)
        self.max = record.mode == "max"
        if not self.max:
            self.divisor = self.asarray(_divisor(record, in_shape[1:], out_shape[1:], self.windows))

    def forward(self, x):
        xp = self.xp
        if not self.max:
            return _Average.forward(self, x)
        columns, lead = self._unfold(x, fill=-xp.inf)
        arg = xp.argmax(columns, axis=-2, keepdims=True)
        offsets = xp.reshape(xp.arange(self.windows.kernel_size, device=x.device), (-1, 1))
        mask = xp.astype(offsets == arg, x.dtype)  # (N, C, K, O): the entry each window passes on
        return self._out(xp.max(columns, axis=-2), lead), mask

    def vjp(self, mask, g):
        if not self.max:
            return _Average.vjp(self, mask, g)
        flat, lead = self._flat(g, self.out_shape)
        return self._fold(self.spread(mask, lead[1:]) * flat[..., None, :], lead)

    def jvp(self, mask, u):
        if not self.max:
            return _Average.jvp(self, mask, u)
        columns, lead = self._unfold(u)
        return self._out(self.xp.sum(columns * self.spread(mask, lead[1:]), axis=-2), lead)


class AdaptivePool(_Windowed):
    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        starts, ends = [], []
        for n, o in zip(in_shape[1:], out_shape[1:]):
            index = np.arange(o)
            starts.append((index * n) // o)
            ends.append(-((-(index + 1) * n) // o))
        self.windows = window_tables.ranges(in_shape[1:], out_shape[1:], starts, ends)
        self.tables = window_tables.device_tables(lib, self.windows)
        sizes = [e - s for s, e in zip(starts, ends)]
        divisor = sizes[0]
        for size in sizes[1:]:
            divisor = np.multiply.outer(divisor, size)
        self.divisor = self.asarray(np.asarray(divisor, dtype=np.float64).reshape(-1))

    forward = _Average.forward
    vjp = _Average.vjp
    jvp = _Average.jvp


def _divisor(record, in_spatial, out_spatial, windows):
    """torch's divisor of each average-pooling window, flat over the output positions."""
    if record.divisor_override:
        return np.full(windows.out_size, float(record.divisor_override))
    if not record.count_include_pad:
        return windows.valid.sum(axis=0).astype(np.float64)
    sizes = []
    for n, o, k, s, p in zip(in_spatial, out_spatial, record.kernel, record.stride, record.padding):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        sizes.append(end - start)
    divisor = sizes[0]
    for size in sizes[1:]:
        divisor = np.multiply.outer(divisor, size)
    return np.asarray(divisor, dtype=np.float64).reshape(-1)
