"""Dense: ``y = x W^T + b`` on the last axis of a sample (``(..., n_in) -> (..., n_out)``; leading axes of the sample
share ``W``: a Linear applied over positions).

    J_x^T g = g W,    J_x u = u W^T,    J_theta^T g = (sum_t g_t x_t^T, sum_t g_t),    J_theta v = x V^T + v_b

with ``t`` the positions of the sample (one for a plain ``(N, n_in)`` batch).
"""

from .base import ParameterStep


class Dense(ParameterStep):
    def __init__(self, record, net, lib, in_shape, out_shape):
        super().__init__(record, net, lib, in_shape, out_shape)
        self.weight_t = self.weight.T
        self.n_out, self.n_in = self.weight.shape
        self.positions = len(in_shape) - 1  # axes of the sample before the features

    def forward(self, x):
        y = x @ self.weight_t
        if self.bias is not None:
            y = y + self.bias
        return y, x

    def vjp(self, x, g):
        return g @ self.weight

    def jvp(self, x, u):
        return u @ self.weight_t

    def _outer(self, g, x):
        """``(sum_t g_t x_t^T)`` per sample and lead: ``g`` ``(N, *lead, *pos, n_out)``, ``x`` ``(N, *lead', *pos,
        n_in)`` with ``lead'`` either ``lead`` or empty (broadcast) -> ``(N, *lead, n_out, n_in)``."""
        xp = self.xp
        lead = self.lead(g, self.out_shape)
        n, rows = g.shape[0], 1
        for extent in lead:
            rows *= extent
        t = 1
        for extent in self.out_shape[:-1]:
            t *= extent
        g3 = xp.reshape(g, (n, rows, t, self.n_out))
        if x.ndim == g.ndim:
            x3 = xp.reshape(x, (n, rows, t, self.n_in))
        else:
            x3 = xp.reshape(x, (n, 1, t, self.n_in))
        product = xp.matrix_transpose(g3) @ x3  # (N, rows, n_out, n_in): the sum over positions
        return xp.reshape(product, (n, *lead, self.n_out, self.n_in))

    def _bias_sum(self, g):
        if not self.positions:
            return g
        axes = tuple(range(g.ndim - 1 - self.positions, g.ndim - 1))
        return self.xp.sum(g, axis=axes)

    def param_grad(self, x, g):
        weight = self._outer(g, x) if self.train_weight else None
        return self.join(weight, self._bias_sum(g) if self.train_bias else None)

    def param_grad_sum(self, x, g):
        xp = self.xp
        parts = []
        if self.train_weight:
            parts.append(xp.reshape(xp.reshape(g, (-1, self.n_out)).T @ xp.reshape(x, (-1, self.n_in)), (-1,)))
        if self.train_bias:
            parts.append(xp.sum(xp.reshape(g, (-1, self.n_out)), axis=0))
        return parts[0] if len(parts) == 1 else xp.concat(parts)

    def param_diagonal(self, x, G):
        """``sum_n diag(J_theta^T G_n J_theta)`` for per-sample matrices ``G`` ``(N, n_out, n_out)`` over the output,
        from ``G``'s diagonal alone on a plain ``(N, n_in)`` batch: ``sum_n G_n[p, p] x_n[q]^2`` for ``W[p, q]`` and
        ``sum_n G_n[p, p]`` for ``b[p]``. ``None`` over positions (the cross terms between positions need all of
        ``G``)."""
        if self.positions:
            return None
        return self.param_diagonal_from(self.xp.linalg.diagonal(G), x)

    def param_diagonal_of_rows(self, x, rows):
        """``sum_n diag(J_theta^T R_n^T R_n J_theta)`` for backpropagated rows ``R`` ``(N, C, n_out)`` (the GGN's square
        root at the output), on a plain ``(N, n_in)`` batch: ``sum_n (sum_c R[n, c, p]^2) x_n[q]^2``."""
        return self.param_diagonal_from(self.xp.sum(rows * rows, axis=1), x)

    def param_diagonal_from(self, diagonal, x):
        """The same sum from the diagonals ``(N, n_out)`` of the per-sample matrices."""
        xp = self.xp
        parts = []
        if self.train_weight:
            parts.append(xp.reshape(xp.matrix_transpose(diagonal) @ (x * x), (-1,)))
        if self.train_bias:
            parts.append(xp.sum(diagonal, axis=0))
        return parts[0] if len(parts) == 1 else xp.concat(parts)

    def param_jvp(self, x, v):
        V, vb = self.split(v)
        y = x @ self.xp.matrix_transpose(V)
        return y + vb if vb is not None else y

    def mixed_vjp(self, v, g):
        V, _ = self.split(v)
        return g @ V

    def mixed_param_grad_sum(self, u, g):
        xp, parts = self.xp, []
        if self.train_weight:
            parts.append(xp.reshape(xp.reshape(g, (-1, self.n_out)).T @ xp.reshape(u, (-1, self.n_in)), (-1,)))
        if self.train_bias:
            parts.append(xp.zeros((self.n_out,), dtype=g.dtype, device=g.device))
        return parts[0] if len(parts) == 1 else xp.concat(parts)

    def mixed_param_grad(self, u, g):
        weight = self._outer(g, u) if self.train_weight else None
        zeros = self.xp.zeros_like(self._bias_sum(g)) if self.train_bias else None
        return self.join(weight, zeros)
