"""Steps that only move entries: Flatten (a reshape of the sample) and Pad (a constant border; its Jacobian pads
with zeros, its transpose crops)."""

from .base import Step


class Flatten(Step):
    def forward(self, x):
        return self.xp.reshape(x, (x.shape[0], *self.out_shape)), None

    def vjp(self, cache, g):
        lead = self.lead(g, self.out_shape)
        return self.xp.reshape(g, (g.shape[0], *lead, *self.in_shape))

    def jvp(self, cache, u):
        lead = self.lead(u, self.in_shape)
        return self.xp.reshape(u, (u.shape[0], *lead, *self.out_shape))


class Pad(Step):
    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        padding = record.padding
        self.window = [slice(None)] * len(in_shape)
        for i in range(len(padding) // 2):
            axis = len(in_shape) - 1 - i
            self.window[axis] = slice(padding[2 * i], padding[2 * i] + in_shape[axis])
        self.window = tuple(self.window)
        self.value = float(record.value)

    def _pad(self, x, shape, value):
        xp = self.xp
        lead = tuple(x.shape[: x.ndim - len(shape)])
        out = xp.full(lead + self.out_shape, value, dtype=x.dtype, device=x.device)
        out[(Ellipsis,) + self.window] = x
        return out

    def forward(self, x):
        return self._pad(x, self.in_shape, self.value), None

    def vjp(self, cache, g):
        return g[(Ellipsis,) + self.window]

    def jvp(self, cache, u):
        return self._pad(u, self.in_shape, 0.0)
