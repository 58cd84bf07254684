"""LogSoftmax over the last axis of a sample: ``y = x - log sum_k exp(x_k)``, ``p = exp(y)``.

J^T g = g - p sum_k g_k,    J u = u - sum_k p_k u_k,
residual: -(sum_k g_k) (diag(p) - p p^T)   (every y_k has the same second derivative)
"""

from .base import Step


class LogSoftmax(Step):
    linear = False

    def forward(self, x):
        xp = self.xp
        top = xp.max(x, axis=-1, keepdims=True)
        shifted = x - top
        y = shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
        return y, xp.exp(y)

    def vjp(self, p, g):
        return g - self.spread(p, self.lead(g, self.out_shape)) * self.xp.sum(g, axis=-1, keepdims=True)

    def jvp(self, p, u):
        p = self.spread(p, self.lead(u, self.in_shape))
        return u - self.xp.sum(p * u, axis=-1, keepdims=True)

    def residual_times(self, p, g, u):
        xp = self.xp
        total = xp.sum(g, axis=-1, keepdims=True)
        return -total * (p * u - p * xp.sum(p * u, axis=-1, keepdims=True))

    def residual(self, p, g):
        """``("dense", R)``, ``R`` ``(N, D, D)``: per position of the sample the block ``-(sum g)(diag p - p p^T)``."""
        xp = self.xp
        n, k = p.shape[0], p.shape[-1]
        positions = self.in_size // k
        p3 = xp.reshape(p, (n, positions, k))
        total = xp.sum(xp.reshape(g, (n, positions, k)), axis=-1)[..., None, None]
        eye = xp.eye(k, dtype=p.dtype, device=p.device)
        blocks = -total * (eye * p3[..., None] - p3[..., :, None] * p3[..., None, :])  # (N, T, k, k)
        if positions == 1:
            return "dense", xp.reshape(blocks, (n, k, k))
        out = xp.zeros((n, positions, k, positions, k), dtype=p.dtype, device=p.device)
        for t in range(positions):
            out[:, t, :, t, :] = blocks[:, t]
        return "dense", xp.reshape(out, (n, self.in_size, self.in_size))
