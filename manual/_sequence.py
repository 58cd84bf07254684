"""Every quantity of the contract, written once over a sequence of layer steps (``manual.layers``): any network the
suite can describe (convolutions, pooling, weight sharing, frozen tensors, ...). Plain MLPs also have the
hand-tuned dense paths of ``manual._dense_chain`` for the quantities the benchmarks time; the tests check that both
agree.

Notation: step ``i`` maps ``x_i`` to ``x_{i+1}``; ``g_{i+1} = d loss_n / d x_{i+1}`` per sample (backprop, not
scaled), ``G_{i+1} = d2 loss_n / d x_{i+1}^2`` (Hessian backprop: ``G_i = J_i^T G_{i+1} J_i + sum_k g_k d2 x_{i+1,k} /
dx_i^2``); the objective is ``E = c sum_n loss_n`` (``c = 1/N`` or 1). For a parameter step ``u`` (output ``a_u``,
linear in its parameters ``theta_u``), the Hessian of ``E`` is, per pair ``u <= v`` of parameter steps,

    d2E / dtheta_u dtheta_v = c sum_n J_theta_u^T M_n,
    M_n = J_theta_v^T G_v J_v K_uv  +  d(J_theta_v^T g_v)/dx_v K_uv      (u < v),      M_n = J_theta_u^T G_u  (u = v)

with ``K_uv = d x_v / d a_u`` (the Jacobian of the steps between them, carried forward as rows) and ``J_v`` step
``v``'s input Jacobian: the same-layer block is ``J^T G J`` and a cross block adds the mixed term of the bilinear
step ``v`` (``docs/hessian.md``). Parameter steps that share a tensor add up at its columns.
"""

import math
from dataclasses import dataclass

import numpy as np

from xval.contract import kfac_block_from_factors
from xval.errors import UnsupportedNetworkError
from xval.layers import Dense, LogSoftmax, parameter_indices

from . import layers
from .losses import get_loss


def uses(kind):
    """Mark a ``Sequence`` method with the kind of working memory it holds (``working_entries``)."""

    def mark(method):
        method.memory = kind
        return method

    return mark


class Sequence:
    """A network as steps in one array library: ``steps``, the indices ``parametric`` of the steps with trainable
    entries, the loss, and the parameter layout (``columns`` of each parameter step, ``group_columns[l]`` of each
    contract layer)."""

    def __init__(self, net, lib):
        self.net, self.lib, self.xp, self.dtype = net, lib, lib.xp, net.dtype
        shapes = net.shapes
        self.steps = [layers.build(record, net, lib, shapes[i], shapes[i + 1]) for i, record in enumerate(net.layers)]
        self.parametric = [i for i, step in enumerate(self.steps) if step.parameters and step.n_params]
        self.loss = None if net.loss is None else get_loss(net.loss)
        self.n_params = net.n_params
        self.out_shape, self.out_size = tuple(net.output_shape), net.output_size
        self.group_columns = [np.arange(sl.start, sl.stop) for sl in net.param_slices]
        self.first = self.parametric[0] if self.parametric else len(self.steps)
        self._parametric_set = set(self.parametric)
        self.tied = (
            len(np.unique(np.concatenate([self.steps[i].columns for i in self.parametric])))
            != sum(self.steps[i].n_params for i in self.parametric)
            if self.parametric
            else False
        )

    # ---- passes ------------------------------------------------------------------------------------------------
    def forward(self, X):
        """``(xs, caches)``: every step's input and the output ``xs[-1]``, and each step's cache."""
        xs, caches = [X], []
        for step in self.steps:
            y, cache = step.forward(xs[-1])
            xs.append(y)
            caches.append(cache)
        return xs, caches

    @uses("passes")
    def outputs(self, X):
        x = X
        for step in self.steps:
            x = step.output(x) if hasattr(step, "output") else step.forward(x)[0]
        return x

    def flat(self, y):
        return self.xp.reshape(y, (y.shape[0], self.out_size))

    def unflat(self, y, lead=()):
        return self.xp.reshape(y, (y.shape[0], *lead, *self.out_shape))

    def backward(self, caches, g_out, lowest=None):
        """``gs``: ``gs[i + 1]`` the backprop vectors at step ``i``'s output, down to the first parameter step (or
        ``lowest``); ``g_out`` ``(N, *lead, *out_shape)``."""
        lowest = self.first if lowest is None else lowest
        gs = [None] * (len(self.steps) + 1)
        gs[-1] = g_out
        for i in range(len(self.steps) - 1, lowest, -1):
            gs[i] = self.steps[i].vjp(caches[i], gs[i + 1])
        return gs

    def loss_parts(self, y, Y):
        """``(g_out, y_flat)``: the per-sample loss gradient at the outputs and the flat outputs."""
        flat = self.flat(y)
        return self.unflat(self.loss.grad(flat, Y, self.xp)), flat

    def weight(self, n):
        return self.net.sample_weight(n)

    # ---- first order -------------------------------------------------------------------------------------------
    @uses("passes")
    def loss_value(self, X, Y):
        values = self.loss.value(self.flat(self.outputs(X)), Y, self.xp)
        return self.xp.sum(values) * self.weight(X.shape[0])

    @uses("passes")
    def gradient(self, X, Y):
        xs, caches = self.forward(X)
        g_out, _ = self.loss_parts(xs[-1], Y)
        gs = self.backward(caches, g_out)
        out = self.lib.zeros((self.n_params,), self.dtype)
        for i in self.parametric:
            self._add(out, self._at(i), self.steps[i].param_grad_sum(caches[i], gs[i + 1]))
        return out * self.weight(X.shape[0])

    @uses("per_sample")
    def per_sample_gradients(self, X, Y):
        xs, caches = self.forward(X)
        g_out, _ = self.loss_parts(xs[-1], Y)
        gs = self.backward(caches, g_out)
        out = self.lib.zeros((X.shape[0], self.n_params), self.dtype)
        for i in self.parametric:
            self._add(out, (slice(None),) + self._at(i), self.steps[i].param_grad(caches[i], gs[i + 1]))
        return out

    @uses("jacobian")
    def output_jacobian(self, X):
        """``(N, K, P)``: the output rows ``e_k`` backpropagated (``J_n = d f(x_n) / dtheta``)."""
        xs, caches = self.forward(X)
        rows = self._output_rows(X.shape[0])
        gs = self.backward(caches, rows)
        out = self.lib.zeros((X.shape[0], self.out_size, self.n_params), self.dtype)
        for i in self.parametric:
            self._add(out, (slice(None), slice(None)) + self._at(i), self.steps[i].param_grad(caches[i], gs[i + 1]))
        return out

    def _output_rows(self, n):
        xp = self.xp
        eye = xp.eye(self.out_size, dtype=self.lib.dtype(self.dtype), device=self.lib.device)
        rows = xp.broadcast_to(eye, (n, self.out_size, self.out_size))
        return xp.reshape(rows, (n, self.out_size, *self.out_shape))

    @uses("jacobian")
    def empirical_fisher(self, X, Y):
        rows = self.per_sample_gradients(X, Y)
        return (self.xp.matrix_transpose(rows) @ rows) * self.weight(X.shape[0])

    # ---- products ----------------------------------------------------------------------------------------------
    def _r_forward(self, caches, xs, v):
        """``R x`` at every step's input and output along the parameter direction ``v`` (Pearlmutter's R-operator;
        ``None`` before the first parameter step, where it is 0)."""
        r = [None] * (len(self.steps) + 1)
        for i, step in enumerate(self.steps):
            value = None if r[i] is None else step.jvp(caches[i], r[i])
            if i in self._parametric_set:
                direction = self._entries(v, i)
                value = (
                    step.param_jvp(caches[i], direction)
                    if value is None
                    else value + step.param_jvp(caches[i], direction)
                )
            r[i + 1] = value
        return r

    def _entries(self, v, i):
        """The entries of ``v`` ``(P,)`` that step ``i``'s parameters take."""
        step = self.steps[i]
        if step.span is not None:
            return v[step.span]
        return self.xp.take(v, self.xp.asarray(step.columns, device=self.lib.device), axis=0)

    @uses("passes")
    def hvp(self, X, Y, v):
        xs, caches = self.forward(X)
        r = self._r_forward(caches, xs, v)
        g_out, flat = self.loss_parts(xs[-1], Y)
        gs = self.backward(caches, g_out)
        rg = self.unflat(self.loss.hessian_times(flat, Y, self.flat(r[-1]), self.xp))
        out = self.lib.zeros((self.n_params,), self.dtype)
        for i in range(len(self.steps) - 1, self.first - 1, -1):
            step = self.steps[i]
            if i in self._parametric_set:
                value = step.param_grad_sum(caches[i], rg)
                if r[i] is not None:
                    value = value + step.mixed_param_grad_sum(r[i], gs[i + 1])
                self._add(out, self._at(i), value)
            if i == self.first:
                break
            below = step.vjp(caches[i], rg)
            if r[i] is not None:
                extra = step.residual_times(caches[i], gs[i + 1], r[i])
                if extra is not None:
                    below = below + extra
            if i in self._parametric_set:
                below = below + step.mixed_vjp(self._entries(v, i), gs[i + 1])
            rg = below
        return out * self.weight(X.shape[0])

    @uses("passes")
    def ggnvp(self, X, Y, v):
        """``G v``: ``J v`` forward (R-operator), ``Lambda`` at the outputs, ``J^T`` back; no second-order terms."""
        xs, caches = self.forward(X)
        r = self._r_forward(caches, xs, v)
        flat = self.flat(xs[-1])
        top = self.unflat(self.loss.hessian_times(flat, Y, self.flat(r[-1]), self.xp))
        gs = self.backward(caches, top)
        out = self.lib.zeros((self.n_params,), self.dtype)
        for i in self.parametric:
            self._add(out, self._at(i), self.steps[i].param_grad_sum(caches[i], gs[i + 1]))
        return out * self.weight(X.shape[0])

    # ---- the GGN and its parts -----------------------------------------------------------------------------
    def _jacobian_parts(self, X, Y):
        """``(caches, gs, Lambda)``: the output rows backpropagated (``gs[i + 1]`` ``(N, K, *shape)``) and the loss
        Hessian in the outputs ``(N, K, K)``."""
        xs, caches = self.forward(X)
        lam = self.loss.hessian(self.flat(xs[-1]), Y, self.xp)
        gs = self.backward(caches, self._output_rows(X.shape[0]))
        return caches, gs, lam

    def _step_jacobian(self, caches, gs, i):
        return self.steps[i].param_grad(caches[i], gs[i + 1])  # (N, K, P_step)

    def ggn_columns(self, X, Y, rows_of, cols_of):
        """The GGN restricted to the parameter-step sets ``rows_of`` x ``cols_of``, as ``{(u, v): (P_u, P_v)}``."""
        caches, gs, lam = self._jacobian_parts(X, Y)
        c, xp = self.weight(X.shape[0]), self.xp
        jac = {i: self._step_jacobian(caches, gs, i) for i in set(rows_of) | set(cols_of)}
        blocks = {}
        for u in rows_of:
            left = lam @ jac[u]  # (N, K, P_u): Lambda J_u
            n, k, p_u = left.shape
            # one product over samples and outputs together: (P_u, N K) @ (N K, P_v), never an (N, P_u, P_v) array
            left = xp.matrix_transpose(xp.reshape(left, (n * k, p_u)))
            for v in cols_of:
                blocks[u, v] = (left @ xp.reshape(jac[v], (n * k, jac[v].shape[-1]))) * c
        return blocks

    @uses("jacobian")
    def ggn(self, X, Y):
        return self._assemble(self.ggn_columns(X, Y, self.parametric, self.parametric), None, None)

    @uses("jacobian")
    def ggn_block(self, X, Y, l, m):
        rows, cols = self._steps_of(l), self._steps_of(m)
        return self._assemble(self.ggn_columns(X, Y, rows, cols), l, m)

    @uses("diagonal")
    def ggn_diagonal(self, X, Y):
        """``diag(G)`` without a ``P x P`` array: per parameter step ``c sum_n diag(J_theta^T B^T Lambda B J_theta)``,
        ``B^T Lambda B`` the loss Hessian backpropagated without second-order terms (``curvature(gauss_newton=True)``)
        where the step has a fast diagonal, else from its Jacobian rows."""
        if self.tied:  # shared columns need the cross blocks: from the (small) GGN itself
            return self.xp.linalg.diagonal(self.ggn(X, Y))
        out = self.lib.zeros((self.n_params,), self.dtype)
        caches, rows = self._factor_rows(X, Y)
        for i in self.parametric:  # rows[i + 1] (N, C, *out): the factor's columns backpropagated
            self._add(out, self._at(i), self._squares_diagonal(i, caches[i], rows[i + 1]))
        return out * self.weight(X.shape[0])

    def _factor_columns(self, y, Y):
        """The columns of the loss Hessian's square root ``S`` (``Lambda = S S^T``) at the outputs ``y``,
        ``(N, C, *out_shape)``."""
        S = self.loss.hessian_factor(self.flat(y), Y, self.xp)  # (N, K, C)
        return self.xp.reshape(self.xp.matrix_transpose(S), (S.shape[0], S.shape[-1], *self.out_shape))

    def _factor_rows(self, X, Y, lowest=None):
        """``(caches, rows)``: the columns of the loss Hessian's square root ``S`` (``Lambda = S S^T``) backpropagated,
        ``rows[i + 1]`` ``(N, C, *shape)`` at step ``i``'s output: ``B^T S``, so ``B^T Lambda B = rows^T rows``."""
        xs, caches = self.forward(X)
        return caches, self.backward(caches, self._factor_columns(xs[-1], Y), lowest)

    def _fast_diagonal(self, i):
        step = self.steps[i]
        return hasattr(step, "param_diagonal_of_rows") and not getattr(step, "positions", 0)

    @uses("factors")
    def kfac_factors(self, X, Y, l):
        """``(A_l, G_l)`` of the Dense layer ``l`` (``net.layer_fan``): ``A = (1/N) sum a a^T`` over ``a = [x; 1]``,
        ``G = c sum B^T Lambda B`` with ``B`` the output rows backpropagated to the layer's output."""
        xp = self.xp
        i = self._kfac_step(l)
        n = X.shape[0]
        caches, rows = self._factor_rows(X, Y, lowest=i)
        x = caches[i]  # the Dense step's cache is its input
        ones = xp.ones((n, 1), dtype=x.dtype, device=x.device)
        a = xp.concat([x, ones], axis=1)
        A = (xp.matrix_transpose(a) @ a) / n
        R = xp.reshape(rows[i + 1], (-1, rows[i + 1].shape[-1]))  # (N C, n_out): B^T S for every sample
        G = (xp.matrix_transpose(R) @ R) * self.weight(n)
        return A, G

    @uses("factors")
    def kfac_block(self, X, Y, l):
        A, G = self.kfac_factors(X, Y, l)
        return self.lib.asarray(kfac_block_from_factors(to_numpy(A), to_numpy(G)), self.dtype)

    def _kfac_step(self, l):
        net = self.net
        net.layer_fan(l)  # refuses a layer that is not Dense
        steps = self._steps_of(l)
        step = self.steps[steps[0]]
        if len(steps) != 1 or step.positions or not (step.train_weight and step.train_bias) or self.tied:
            raise UnsupportedNetworkError(
                f"kfac_factors: layer {l} must be one Dense layer on (N, n_in) inputs with a trainable weight "
                "and bias, used once (its Kronecker factors are over [x; 1] and the layer's outputs)"
            )
        return steps[0]

    # ---- the Hessian ----------------------------------------------------------------------------------------
    def curvature(self, X, Y, lowest, gauss_newton=False):
        """``(caches, gs, Gs)``: backprop vectors and the Hessian of the loss at the output of every step from
        ``lowest`` on (``Gs[i + 1]`` ``(N, D, D)``); with ``gauss_newton``, without the steps' second-order terms
        (``Gs[i + 1] = B^T Lambda B``, ``B`` the Jacobian of the outputs)."""
        xp = self.xp
        xs, caches = self.forward(X)
        g_out, flat = self.loss_parts(xs[-1], Y)
        gs = self.backward(caches, g_out)
        n = X.shape[0]
        Gs = [None] * (len(self.steps) + 1)
        Gs[-1] = self.loss.hessian(flat, Y, xp)
        for i in range(len(self.steps) - 1, lowest, -1):
            step = self.steps[i]
            G = Gs[i + 1]
            d_out, d_in = step.out_size, step.in_size
            half = step.vjp(caches[i], xp.reshape(G, (n, d_out, *step.out_shape)))  # (N, D_out, *in)
            half = xp.matrix_transpose(xp.reshape(half, (n, d_out, d_in)))
            full = xp.reshape(step.vjp(caches[i], xp.reshape(half, (n, d_in, *step.out_shape))), (n, d_in, d_in))
            residual = None if gauss_newton else step.residual(caches[i], gs[i + 1])
            if residual is not None:
                kind, value = residual
                if kind == "diag":
                    full = full + self.lib.diag(xp.reshape(value, (n, d_in)))
                else:
                    full = full + value
            Gs[i] = full
        return caches, gs, Gs

    def hessian_blocks(self, X, Y, rows_of, cols_of):
        """``{(u, v): (P_u, P_v)}`` for parameter steps ``u`` in ``rows_of``, ``v`` in ``cols_of``."""
        xp, n = self.xp, X.shape[0]
        lowest = min(list(rows_of) + list(cols_of))
        caches, gs, Gs = self.curvature(X, Y, lowest)
        c = self.weight(n)
        blocks = {}
        wanted = {(u, v) for u in rows_of for v in cols_of} | {(v, u) for u in rows_of for v in cols_of}
        for u in sorted(set(rows_of) | set(cols_of)):
            step_u = self.steps[u]
            d_u = step_u.out_size
            later = sorted(v for v in self.parametric if (u, v) in wanted and v >= u)
            if not later:
                continue
            K = None  # rows d x / d a_u, (N, D_u, *shape) at the current step's input
            for j in range(u, later[-1] + 1):
                step = self.steps[j]
                if j == u:
                    if u in later:
                        G = xp.reshape(Gs[u + 1], (n, d_u, *step_u.out_shape))
                        blocks[u, u] = self._contract(caches, u, step_u.param_grad(caches[u], G), c)
                    K = self._output_rows_of(n, step_u)
                    continue
                J = step.jvp(caches[j], K)  # rows d x_{j+1} / d a_u, (N, D_u, *out_j)
                if j in later:
                    A = xp.reshape(J, (n, d_u, step.out_size)) @ Gs[j + 1]
                    A = xp.reshape(A, (n, d_u, *step.out_shape))
                    g = xp.broadcast_to(step.spread(gs[j + 1], (d_u,)), (n, d_u, *step.out_shape))
                    M = step.param_grad(caches[j], A) + step.mixed_param_grad(K, g)  # (N, D_u, P_j)
                    blocks[u, j] = self._contract(caches, u, M, c)
                K = J
        return {key: value for key, value in blocks.items() if key[0] in rows_of and key[1] in cols_of} | {
            (v, u): xp.matrix_transpose(value)
            for (u, v), value in blocks.items()
            if (v, u) not in blocks and v in rows_of and u in cols_of
        }

    def _output_rows_of(self, n, step):
        xp = self.xp
        eye = xp.eye(step.out_size, dtype=self.lib.dtype(self.dtype), device=self.lib.device)
        return xp.reshape(xp.broadcast_to(eye, (n, step.out_size, step.out_size)), (n, step.out_size, *step.out_shape))

    def _contract(self, caches, u, M, c):
        """``c sum_n J_theta_u^T M_n``: ``M`` ``(N, D_u, P_v)`` over step ``u``'s outputs -> ``(P_u, P_v)``."""
        xp, step = self.xp, self.steps[u]
        n, d_u, p_v = M.shape
        rows = xp.reshape(xp.matrix_transpose(M), (n, p_v, *step.out_shape))
        return xp.matrix_transpose(xp.sum(step.param_grad(caches[u], rows), axis=0)) * c  # (P_u, P_v)

    @uses("blocks")
    def hessian(self, X, Y):
        return self._assemble(self.hessian_blocks(X, Y, self.parametric, self.parametric), None, None)

    @uses("blocks")
    def hessian_block(self, X, Y, l, m):
        return self._assemble(self.hessian_blocks(X, Y, self._steps_of(l), self._steps_of(m)), l, m)

    @uses("diagonal")
    def hessian_diagonal(self, X, Y):
        """The diagonal of each parameter step's own block ``c sum_n diag(J^T G J)`` (``param_diagonal``), never a
        ``P x P`` array; weights shared between steps add their cross blocks' diagonals too. Where backpropagating
        ``G`` would hold more than the per-sample output rows of every parameter (``by_columns``), the same sum
        from ``G``'s parts backpropagated as columns, a chunk at a time (``_diagonal_by_columns``)."""
        n = X.shape[0]
        if by_columns(self.net) and not self.tied:
            return self._diagonal_by_columns(X, Y)
        caches, gs, Gs = self.curvature(X, Y, self.first)
        out = self.lib.zeros((self.n_params,), self.dtype)
        for i in self.parametric:
            self._add(out, self._at(i), self._param_diagonal(caches, i, Gs[i + 1]))
        if self.tied:
            blocks = self.hessian_blocks(X, Y, self.parametric, self.parametric)
            for (u, v), block in blocks.items():
                if u == v:
                    continue
                shared = np.intersect1d(self.steps[u].columns, self.steps[v].columns)
                for column in shared:
                    a = int(np.flatnonzero(self.steps[u].columns == column)[0])
                    b = int(np.flatnonzero(self.steps[v].columns == column)[0])
                    out[int(column)] = out[int(column)] + block[a, b] / self.weight(n)
        return out * self.weight(n)

    def _diagonal_by_columns(self, X, Y):
        """``c sum_n diag(J_theta^T G J_theta)`` per parameter step from the parts of ``G``, each backpropagated as
        columns: the loss Hessian's square root ``S`` at the output (``Lambda = S S^T``: the GGN's part), and for each
        step ``k`` with a second-order term ``diag(h)`` at its input (an activation's ``f'' g``) the unit columns
        ``e_u`` there, weighted by ``h[n, u]`` when squared: ``G = B^T S S^T B + sum_k B_k^T diag(h_k) B_k``, with
        ``B`` the Jacobians of the steps between. The columns go down ``chunk_columns`` at a time, so the working
        memory is a few times ``N P K`` entries whatever the activations' size (``G`` is ``N D^2`` per step)."""
        xp, n = self.xp, X.shape[0]
        xs, caches = self.forward(X)
        gs = self.backward(caches, self.loss_parts(xs[-1], Y)[0])
        out = self.lib.zeros((self.n_params,), self.dtype)
        top = self._factor_columns(xs[-1], Y)
        chunk = chunk_columns(self.net, n)
        for start in range(0, top.shape[1], chunk):
            self._add_column_squares(out, caches, len(self.steps), top[:, start : start + chunk, ...], None)
        for k in range(len(self.steps) - 1, self.first, -1):
            step = self.steps[k]
            residual = step.residual(caches[k], gs[k + 1])
            if residual is None:
                continue
            h = xp.reshape(residual[1], (n, step.in_size))  # "diag": f''(x) g at step k's input
            for start in range(0, step.in_size, chunk):
                stop = min(start + chunk, step.in_size)
                units = xp.eye(stop - start, step.in_size, k=start, dtype=h.dtype, device=self.lib.device)
                units = xp.broadcast_to(units, (n, stop - start, step.in_size))
                columns = xp.reshape(units, (n, stop - start, *step.in_shape))
                self._add_column_squares(out, caches, k, columns, h[:, start:stop])
        return out * self.weight(n)

    def _add_column_squares(self, out, caches, k, columns, weights):
        """Add ``sum_n sum_c w[n, c] (J_theta^T r_c)^2`` for every parameter step below ``k`` into ``out``, ``r_c`` the
        ``columns`` ``(N, C, *shape)`` at step ``k``'s input backpropagated to the step's output (``weights``
        ``(N, C)``, ``None``: all 1)."""
        rows = columns
        for i in range(k - 1, self.first - 1, -1):
            if i in self._parametric_set:
                self._add(out, self._at(i), self._squares_diagonal(i, caches[i], rows, weights))
            if i > self.first:
                rows = self.steps[i].vjp(caches[i], rows)

    def _squares_diagonal(self, i, cache, rows, weights=None):
        """``sum_n sum_c w[n, c] (J_theta^T r_c)^2`` of parameter step ``i``, for ``rows`` ``(N, C, *out)`` at its
        output (``weights`` ``(N, C)``, ``None``: all 1): the step's fast form where it has one, else from its
        Jacobian rows."""
        step, xp = self.steps[i], self.xp
        if self._fast_diagonal(i):  # a Dense step on a plain batch: rows (N, C, n_out)
            if weights is None:
                return step.param_diagonal_of_rows(cache, rows)
            return step.param_diagonal_from(xp.sum(rows * rows * weights[:, :, None], axis=1), cache)
        jac = step.param_grad(cache, rows)  # (N, C, P_step)
        squares = jac * jac if weights is None else jac * jac * weights[:, :, None]
        return xp.sum(squares, axis=(0, 1))

    def _param_diagonal(self, caches, i, G):
        """``sum_n diag(J_theta^T G_n J_theta)`` of step ``i`` (the step's own fast form, else from its Jacobian
        rows)."""
        step, xp = self.steps[i], self.xp
        if hasattr(step, "param_diagonal"):
            value = step.param_diagonal(caches[i], G)
            if value is not None:
                return value
        n = G.shape[0]
        rows = self._output_rows_of(n, step)
        jac = step.param_grad(caches[i], rows)  # (N, D, P): J rows
        weighted = step.param_grad(caches[i], xp.reshape(G, (n, step.out_size, *step.out_shape)))  # (N, D, P)
        return xp.sum(jac * weighted, axis=(0, 1))

    # ---- assembly -------------------------------------------------------------------------------------------
    def _steps_of(self, l):
        group = set(self.group_columns[l].tolist())
        return [i for i in self.parametric if group.intersection(self.steps[i].columns.tolist())]

    def _assemble(self, blocks, l, m):
        """The blocks of parameter steps added into the ``(P_l, P_m)`` block of the parameter vector (everything
        when ``l`` is ``None``)."""
        rows = np.arange(self.n_params) if l is None else self.group_columns[l]
        cols = np.arange(self.n_params) if m is None else self.group_columns[m]
        out = self.lib.zeros((rows.size, cols.size), self.dtype)
        if not self.tied:  # every step's columns a slice inside one group: place each block whole
            r0, c0 = int(rows[0]), int(cols[0])
            for (u, v), block in blocks.items():
                su, sv = self.steps[u].span, self.steps[v].span
                if su.start >= r0 and su.stop <= r0 + rows.size and sv.start >= c0 and sv.stop <= c0 + cols.size:
                    self._add(out, (slice(su.start - r0, su.stop - r0), slice(sv.start - c0, sv.stop - c0)), block)
            return out
        row_at = {int(c): k for k, c in enumerate(rows)}
        col_at = {int(c): k for k, c in enumerate(cols)}
        for (u, v), block in blocks.items():
            r_keep = [k for k, c in enumerate(self.steps[u].columns) if int(c) in row_at]
            c_keep = [k for k, c in enumerate(self.steps[v].columns) if int(c) in col_at]
            if not r_keep or not c_keep:
                continue
            r_to = np.asarray([row_at[int(self.steps[u].columns[k])] for k in r_keep])
            c_to = np.asarray([col_at[int(self.steps[v].columns[k])] for k in c_keep])
            part = block
            if len(r_keep) != block.shape[0]:
                part = self.xp.take(part, self.xp.asarray(np.asarray(r_keep), device=self.lib.device), axis=0)
            if len(c_keep) != block.shape[1]:
                part = self.xp.take(part, self.xp.asarray(np.asarray(c_keep), device=self.lib.device), axis=1)
            self._add_block(out, r_to, c_to, part)
        return out

    def _at(self, i):
        """Step ``i``'s columns as an index: a slice, or its column array when a tensor is shared."""
        step = self.steps[i]
        return (step.span,) if step.span is not None else (step.columns,)

    def _add(self, out, index, value):
        """``out[index] += value``; ``index`` slices, or a last entry of columns (a tensor shared between steps): then
        ``value``'s columns are added into ``out``'s through a 0/1 matrix (the array API has no scatter-add, and a
        column may come twice)."""
        if isinstance(index[-1], np.ndarray):
            lead = index[:-1]
            out[lead] = out[lead] + value @ self._scatter(index[-1], out.shape[-1])
            return
        out[index] = out[index] + value

    def _add_block(self, out, rows, cols, block):
        """``out[rows][:, cols] += block`` for row and column index arrays, through 0/1 matrices."""
        out[...] = out + self.xp.matrix_transpose(self._scatter(rows, out.shape[0])) @ block @ self._scatter(
            cols, out.shape[1]
        )

    def _scatter(self, columns, size):
        """``(len(columns), size)``: row ``k`` is the unit vector of ``columns[k]``."""
        matrix = np.zeros((len(columns), size))
        matrix[np.arange(len(columns)), columns] = 1.0
        return self.lib.asarray(matrix, self.dtype)


def to_numpy(value):
    from .arrays import to_numpy as convert

    return convert(value)


@dataclass(frozen=True)
class Sizes:
    """Peak entries of the generic algorithms (the memory guard): ``kept`` per call plus the result."""

    entries: int


def by_columns(net):
    """Whether ``hessian_diagonal`` backpropagates ``G``'s parts as columns (``Sequence._diagonal_by_columns``):
    when ``G`` (``N D^2`` entries at each step's input) outweighs the per-sample output rows of every parameter
    (``N P K``), as for a convolution's activations, and every second-order term is an activation's diagonal one
    (a log-softmax's is dense) with no tensor shared between steps."""
    if net.loss is None or any(isinstance(layer, LogSoftmax) for layer in net.layers):
        return False
    used = [index for layer in net.layers for index in parameter_indices(layer)]
    if len(used) != len(set(used)):  # a tensor shared between steps: the cross blocks' diagonals come in
        return False
    return sum(math.prod(shape) ** 2 for shape in net.shapes[:-1]) > net.n_params * net.output_size


# Entries a backpropagated column holds per entry of the widest activation, at its peak (a convolution's unfolded
# patches and products), with a margin: measured as resident memory, 36 a column at 2,048 activation entries
# (32 channels of 8 x 8).
COLUMN_ENTRIES = 48


def chunk_columns(net, n):
    """Columns backpropagated at a time by ``_diagonal_by_columns``: about ``N P K`` entries of working memory
    (``COLUMN_ENTRIES`` per activation entry and column, ``N`` columns per sample each), at least one column."""
    widest = max(math.prod(shape) for shape in net.shapes)
    return max(1, net.n_params * net.output_size // (COLUMN_ENTRIES * widest))


def working_entries(net, kind, n):
    """A conservative count of the entries a ``Sequence`` method of memory ``kind`` (``uses``) holds on ``n``
    samples beyond its result: ``passes``, the activations, their backprop vectors and a few parameter vectors;
    ``per_sample``, an ``(N, P)`` array besides; ``jacobian``, the output rows (``N K`` per activation entry) and their
    parameter rows; ``factors``, the loss Hessian's square root backpropagated; ``diagonal``, the loss Hessian
    backpropagated (``N D^2`` per step) and a step's Jacobian rows; ``blocks``, besides, the carried rows ``K``, the
    products ``M`` and a block of one pair of layers per sample."""
    shapes = [math.prod(shape) for shape in net.shapes]
    tape = 3 * n * sum(shapes)
    k, p = net.output_size, net.n_params
    widest, biggest = max(shapes), max(net.layer_param_counts)
    if kind == "passes":
        return 2 * tape + 4 * p
    if kind == "per_sample":
        return tape + 2 * n * p
    rows = n * k * sum(shapes) + n * k * k
    if kind == "jacobian":
        return tape + rows + 3 * n * k * p
    if kind == "factors":
        return tape + rows + 3 * n * widest * widest
    curvature = 3 * n * sum(s * s for s in shapes)
    if kind == "diagonal":  # a step without a fast diagonal (a convolution) holds its Jacobian rows (N, D, P_step)
        slow = any(
            not (isinstance(layer, Dense) and len(net.shapes[i]) == 1)
            for i, layer in enumerate(net.layers)
            if parameter_indices(layer)
        )
        jacobian_rows = 2 * n * widest * biggest if slow else 0
        if by_columns(net):  # G's parts as columns, a chunk at a time, instead of G
            return tape + rows + jacobian_rows + COLUMN_ENTRIES * n * widest * chunk_columns(net, n)
        return tape + curvature + rows + jacobian_rows
    products = 3 * n * widest * (widest + biggest) + n * biggest * biggest
    return tape + curvature + products + rows
