"""What every layer kind provides (``Step``), and what a layer with trainable tensors adds (``ParameterStep``).

A step maps one batch ``x`` ``(N, *in_shape)`` to ``y`` ``(N, *out_shape)``. Its linearisation at ``x`` (the cache
of ``forward``) gives ``vjp`` (backprop: ``J^T g``) and ``jvp`` (forward mode: ``J u``) on vectors ``(N, *lead,
*shape)``. A non-linear step also has second-order terms: ``residual_times(cache, g, u) = sum_k g_k d2y_k/dx2 u``
and ``residual(cache, g)``, that matrix itself (``("diag", h)`` for an elementwise step, ``("dense", R)`` with ``R``
``(N, D_in, D_in)`` otherwise, ``None`` for a linear step).

A ``ParameterStep`` is linear in its trainable tensors ``theta`` (weight row-major, then bias: the contract's order)
and bilinear in (weight, input). Its extra products: ``param_grad(cache, g)`` ``J_theta^T g`` per sample
``(N, *lead, P)``; ``param_grad_sum`` summed over the samples; ``param_jvp(cache, v)`` ``J_theta v``;
``mixed_vjp(v, g)`` and ``mixed_param_grad(u, g)``, the two halves of the mixed second derivative
``d2 (g . y) / dtheta dx``: the input backprop with the weight replaced by ``v``'s (no bias), and the weight
gradient with the input replaced by ``u`` (bias part 0).
"""

import math

import numpy as np


class Step:
    """A layer kind bound to its arrays in one array library (``lib``, namespace ``xp``)."""

    parameters = False  # whether the step owns trainable tensors
    linear = True  # whether the step is linear in its input (no second-order terms)

    def __init__(self, record, net, lib, in_shape, out_shape):
        self.record, self.lib, self.xp, self.dtype = record, lib, lib.xp, net.dtype
        self.in_shape, self.out_shape = in_shape, out_shape
        self.in_size, self.out_size = math.prod(in_shape), math.prod(out_shape)

    def asarray(self, array):
        return self.lib.asarray(np.asarray(array), self.dtype)

    # every step
    def forward(self, x):
        """``(y, cache)``."""
        raise NotImplementedError

    def vjp(self, cache, g):
        """``J^T g`` for ``g`` ``(N, *lead, *out_shape)``."""
        raise NotImplementedError

    def jvp(self, cache, u):
        """``J u`` for ``u`` ``(N, *lead, *in_shape)``."""
        raise NotImplementedError

    def residual_times(self, cache, g, u):
        """``sum_k g_k d2 y_k / dx2 u`` (``g`` ``(N, *out_shape)``, ``u`` ``(N, *in_shape)``), ``None`` when linear."""
        return None

    def residual(self, cache, g):
        """The matrix of ``residual_times``: ``None``, ``("diag", h)`` or ``("dense", R)``."""
        return None

    # helpers
    def lead(self, array, shape):
        """The lead axes of ``array`` over a trailing ``shape`` (the axes between the samples and the shape)."""
        return tuple(array.shape[1 : array.ndim - len(shape)])

    def spread(self, per_sample, lead):
        """``per_sample`` ``(N, *shape)`` with singleton axes for ``lead`` after the samples."""
        if not lead:
            return per_sample
        return self.xp.reshape(per_sample, (per_sample.shape[0],) + (1,) * len(lead) + tuple(per_sample.shape[1:]))


class ParameterStep(Step):
    """A step that owns trainable tensors. ``tensors``: ``[(name, array, trainable)]`` for ``weight`` and ``bias``
    (``None`` arrays dropped); ``columns``: the columns of the parameter vector its trainable entries take, in its
    own order (``(P_step,)`` integers; a tensor shared with another step has the same columns there)."""

    parameters = True

    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        offsets = np.cumsum([0] + [p.size for p in net.parameters])
        self.tensors, columns = [], []
        for name in ("weight", "bias"):
            field = getattr(record, name, None)
            if field is None:
                continue
            trainable = isinstance(field, int) and not isinstance(field, bool)
            array = net.tensor(field)
            self.tensors.append((name, self.asarray(array), trainable))
            if trainable:
                columns.append(np.arange(offsets[field], offsets[field] + array.size))
        self.columns = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
        self.n_params = int(self.columns.size)
        contiguous = self.n_params and np.array_equal(
            self.columns, np.arange(self.columns[0], self.columns[0] + self.n_params)
        )
        # The columns as a slice when they are consecutive (always, unless a tensor is shared with another step).
        self.span = slice(int(self.columns[0]), int(self.columns[0]) + self.n_params) if contiguous else None
        self.weight = next((a for n, a, _ in self.tensors if n == "weight"), None)
        self.bias = next((a for n, a, _ in self.tensors if n == "bias"), None)
        self.train_weight = any(n == "weight" and t for n, _, t in self.tensors)
        self.train_bias = any(n == "bias" and t for n, _, t in self.tensors)
        # entry counts from the shapes (a torch tensor's .size is a method)
        self.weight_size = math.prod(self.weight.shape) if self.weight is not None else 0
        self.bias_size = math.prod(self.bias.shape) if self.bias is not None else 0

    def split(self, v):
        """``(V, v_b)``: a direction over this step's trainable entries as a weight-shaped array (zeros when the
        weight is frozen) and a bias-shaped one (zeros, or ``None`` without bias)."""
        xp, start = self.xp, 0
        V = vb = None
        if self.weight is not None:
            if self.train_weight:
                V = xp.reshape(v[..., : self.weight_size], tuple(v.shape[:-1]) + tuple(self.weight.shape))
                start = self.weight_size
            else:
                V = xp.zeros(tuple(v.shape[:-1]) + tuple(self.weight.shape), dtype=v.dtype, device=v.device)
        if self.bias is not None:
            vb = (
                v[..., start : start + self.bias_size]
                if self.train_bias
                else xp.zeros(tuple(v.shape[:-1]) + tuple(self.bias.shape), dtype=v.dtype, device=v.device)
            )
        return V, vb

    def join(self, weight_part, bias_part):
        """The per-sample rows ``(..., P_step)`` from a weight part ``(..., *weight shape)`` and a bias part
        ``(..., *bias shape)``, keeping the trainable ones (weight row-major, then bias)."""
        xp, parts = self.xp, []
        if self.train_weight:
            lead = tuple(weight_part.shape[: weight_part.ndim - self.weight.ndim])
            parts.append(xp.reshape(weight_part, lead + (self.weight_size,)))
        if self.train_bias:
            lead = tuple(bias_part.shape[: bias_part.ndim - self.bias.ndim])
            parts.append(xp.reshape(bias_part, lead + (self.bias_size,)))
        if len(parts) == 1:
            return parts[0]
        return xp.concat(parts, axis=-1)

    def param_grad(self, cache, g):
        raise NotImplementedError

    def param_grad_sum(self, cache, g):
        return self.xp.sum(self.param_grad(cache, g), axis=0)

    def param_jvp(self, cache, v):
        raise NotImplementedError

    def mixed_vjp(self, v, g):
        raise NotImplementedError

    def mixed_param_grad(self, u, g):
        raise NotImplementedError

    def mixed_param_grad_sum(self, u, g):
        return self.xp.sum(self.mixed_param_grad(u, g), axis=0)
