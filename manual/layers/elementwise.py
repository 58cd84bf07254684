"""An elementwise activation ``y = f(x)`` (``manual.activations``: ``f``, ``f'``, ``f''`` side by side).

J^T g = f'(x) g,    J u = f'(x) u,    residual: diag(f''(x) g)
"""

from ..activations import get_activation
from .base import Step


class Elementwise(Step):
    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        self.activation = get_activation(record.name, record.options)
        self.linear = self.activation.flat and record.name == "identity"
        self.identity = record.name == "identity"

    def forward(self, x):
        if self.identity:
            return x, (x, x, None)
        y, slope = self.activation.value_and_slope(x, self.xp)
        return y, (x, y, slope)

    def output(self, x):
        """``f(x)`` alone (no slope: the forward of a call that needs no derivative)."""
        return x if self.identity else self.activation.f(x, self.xp)

    def vjp(self, cache, g):
        slope = cache[2]
        return g if slope is None else g * self.spread(slope, self.lead(g, self.out_shape))

    def jvp(self, cache, u):
        slope = cache[2]
        return u if slope is None else u * self.spread(slope, self.lead(u, self.in_shape))

    def curvature(self, cache):
        """``f''(x)``, or ``None`` where it is 0 everywhere (identity, relu, leaky relu)."""
        x, y, slope = cache
        if slope is None:
            return None
        return self.activation.curvature(x, y, slope, self.xp)

    def residual_times(self, cache, g, u):
        h = self.curvature(cache)
        return None if h is None else h * g * u

    def residual(self, cache, g):
        h = self.curvature(cache)
        return None if h is None else ("diag", h * g)
