"""Convolution and transposed convolution (torch's ``ConvNd`` / ``ConvTransposeNd``: stride, padding, dilation,
groups), written through window tables (``windows``): every window of the input gathered at once (``unfold``), the
weight applied to them as one batched product per group, and the transpose of the gather (``fold``) for backprop.

Both kinds are written through one convolution ``A``: for ``ConvNd``, ``A`` is the layer (input -> output); a
``ConvTransposeNd`` is the adjoint in the input of the convolution ``A`` that maps its output space back to its input
space with the same weight. With ``cols(x)`` the windows of ``x``:

    A_W x = W cols(x),    A_W^T g = fold(W^T g),    d(A_W x)/dW^T applied to g = g cols(x)^T

so ``ConvNd``: ``y = A_W x + b``, backprop ``A_W^T g``, weight gradient ``g cols(x)^T``; ``ConvTransposeNd``:
``y = A_W^T x + b``, backprop ``A_W g``, weight gradient ``x cols(g)^T``.
"""

import math

from . import windows as window_tables
from .base import ParameterStep


class Conv(ParameterStep):
    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        self.transposed = record.transposed
        self.groups = record.groups
        kernel = record.kernel(net)
        a_in, a_out = (out_shape, in_shape) if self.transposed else (in_shape, out_shape)
        self.a_in, self.a_out = a_in, a_out  # (channels, *spatial) of A's input and output
        self.windows = window_tables.sliding(
            a_in[1:], a_out[1:], kernel, record.stride, record.padding, record.dilation
        )
        self.tables = window_tables.device_tables(lib, self.windows)
        self.k = math.prod(kernel)
        self.i, self.o = math.prod(a_in[1:]), math.prod(a_out[1:])
        self.ci, self.co = a_in[0] // self.groups, a_out[0] // self.groups
        self.weight_shape = tuple(self.weight.shape)
        self.grouped = self._grouped(self.weight)
        self.spatial = len(in_shape) - 1

    # ---- the convolution A and its transpose, for any weight of the layer's shape -------------------------------
    def _grouped(self, W):
        lead = tuple(W.shape[: W.ndim - len(self.weight_shape)])
        return self.xp.reshape(W, lead + (self.groups, self.co, self.ci * self.k))

    def _cols(self, x):
        """``(..., a_in)`` -> ``(..., groups, ci k, o)``."""
        xp = self.xp
        lead = tuple(x.shape[: x.ndim - len(self.a_in)])
        flat = xp.reshape(x, lead + (self.a_in[0], self.i))
        columns = window_tables.unfold(xp, flat, self.tables)  # (..., C, K, O)
        return xp.reshape(columns, lead + (self.groups, self.ci * self.k, self.o))

    def _apply(self, grouped, x):
        xp = self.xp
        lead = tuple(x.shape[: x.ndim - len(self.a_in)])
        y = grouped @ self._cols(x)  # (..., groups, co, o)
        return xp.reshape(y, lead + tuple(self.a_out))

    def _adjoint(self, grouped, g):
        xp = self.xp
        lead = tuple(g.shape[: g.ndim - len(self.a_out)])
        g3 = xp.reshape(g, lead + (self.groups, self.co, self.o))
        columns = xp.matrix_transpose(grouped) @ g3  # (..., groups, ci k, o)
        columns = xp.reshape(columns, lead + (self.a_in[0], self.k, self.o))
        return xp.reshape(window_tables.fold(xp, columns, self.tables), lead + tuple(self.a_in))

    def _weight_grad(self, g, x):
        """``g cols(x)^T`` per sample and lead: ``g`` ``(N, *lead, a_out)``, ``x`` ``(N, *lead or none, a_in)``
        -> ``(N, *lead, *weight shape)``."""
        xp = self.xp
        lead = tuple(g.shape[1 : g.ndim - len(self.a_out)])
        columns = self._cols(x)
        if x.ndim < g.ndim:
            columns = self.spread(columns, lead)
        g3 = xp.reshape(g, (g.shape[0], *lead, self.groups, self.co, self.o))
        product = g3 @ xp.matrix_transpose(columns)  # (N, *lead, groups, co, ci k)
        return xp.reshape(product, (g.shape[0], *lead) + self.weight_shape)

    def _bias_sum(self, g):
        if not self.spatial:
            return g
        return self.xp.sum(g, axis=tuple(range(g.ndim - self.spatial, g.ndim)))

    def _with_bias(self, y, b):
        if b is None:
            return y
        return y + self.xp.reshape(b, (-1,) + (1,) * self.spatial)

    # ---- the step ------------------------------------------------------------------------------------------
    def forward(self, x):
        y = self._adjoint(self.grouped, x) if self.transposed else self._apply(self.grouped, x)
        return self._with_bias(y, self.bias), x

    def vjp(self, x, g):
        return self._apply(self.grouped, g) if self.transposed else self._adjoint(self.grouped, g)

    def jvp(self, x, u):
        return self._adjoint(self.grouped, u) if self.transposed else self._apply(self.grouped, u)

    def _weight_part(self, x, g):
        if not self.train_weight:
            return None
        return self._weight_grad(x, g) if self.transposed else self._weight_grad(g, x)

    def param_grad(self, x, g):
        if self.transposed and x.ndim < g.ndim:
            x = self._broadcast(x, g)
        return self.join(self._weight_part(x, g), self._bias_sum(g) if self.train_bias else None)

    def _broadcast(self, x, like):
        lead = self.lead(like, self.out_shape)
        return self.xp.broadcast_to(self.spread(x, lead), (x.shape[0], *lead, *self.in_shape))

    def param_jvp(self, x, v):
        V, vb = self.split(v)
        grouped = self._grouped(V)
        y = self._adjoint(grouped, x) if self.transposed else self._apply(grouped, x)
        return self._with_bias(y, vb)

    def mixed_vjp(self, v, g):
        grouped = self._grouped(self.split(v)[0])
        return self._apply(grouped, g) if self.transposed else self._adjoint(grouped, g)

    def mixed_param_grad(self, u, g):
        zeros = self.xp.zeros_like(self._bias_sum(g)) if self.train_bias else None
        return self.join(self._weight_part(u, g), zeros)
