"""BatchNorm in eval mode: per channel ``c`` (axis 0 of the sample), ``y = xhat w_c + b_c`` with
``xhat = (x - mean_c) s_c``, ``s_c = 1 / sqrt(var_c + eps)`` (running statistics: constants).

    J_x = diag(w s),    J_theta^T g = (sum_spatial g xhat, sum_spatial g),    mixed: d xhat / dx = s
"""

import numpy as np

from .base import ParameterStep


class Normalization(ParameterStep):
    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        channel = (-1,) + (1,) * (len(in_shape) - 1)  # broadcast a per-channel vector over the sample
        inverse = 1.0 / np.sqrt(np.asarray(record.var, dtype=np.float64) + record.eps)
        self.scale = self.asarray(inverse.reshape(channel))
        self.mean = self.asarray(np.asarray(record.mean, dtype=np.float64).reshape(channel))
        self.channel_shape = channel
        self.w = None if self.weight is None else self.xp.reshape(self.weight, channel)
        self.b = None if self.bias is None else self.xp.reshape(self.bias, channel)
        self.slope = self.scale if self.w is None else self.scale * self.w
        self.spatial = tuple(range(-len(in_shape) + 1, 0))

    def forward(self, x):
        xhat = (x - self.mean) * self.scale
        y = xhat if self.w is None else xhat * self.w
        return (y if self.b is None else y + self.b), xhat

    def vjp(self, xhat, g):
        return g * self.slope

    def jvp(self, xhat, u):
        return u * self.slope

    def _sum_spatial(self, values):
        return self.xp.sum(values, axis=self.spatial) if self.spatial else values

    def param_grad(self, xhat, g):
        lead = self.lead(g, self.out_shape)
        weight = self._sum_spatial(g * self.spread(xhat, lead)) if self.train_weight else None
        return self.join(weight, self._sum_spatial(g) if self.train_bias else None)

    def param_jvp(self, xhat, v):
        V, vb = self.split(v)
        y = xhat * self.xp.reshape(V, self.channel_shape) if V is not None else self.xp.zeros_like(xhat)
        return y + self.xp.reshape(vb, self.channel_shape) if vb is not None else y

    def mixed_vjp(self, v, g):
        V, _ = self.split(v)
        if V is None:
            return self.xp.zeros(
                (*g.shape[: g.ndim - len(self.out_shape)], *self.in_shape), dtype=g.dtype, device=g.device
            )
        return g * (self.scale * self.xp.reshape(V, self.channel_shape))

    def mixed_param_grad(self, u, g):
        weight = self._sum_spatial(g * u * self.scale) if self.train_weight else None
        zeros = self.xp.zeros_like(self._sum_spatial(g)) if self.train_bias else None
        return self.join(weight, zeros)
