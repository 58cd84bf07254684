"""The generalized Gauss-Newton matrix and its relatives from jax, jitted: the output Jacobian ``J_n`` ``(K, P)`` by
``vmap(jacrev)``, the loss Hessian in the outputs ``Lambda_n`` ``(K, K)`` by ``jax.hessian`` of one sample's loss,
and ``G = c sum_n J_n^T Lambda_n J_n`` (``c`` = ``net.sample_weight(N)``).

``ggnvp`` never forms ``G``: ``J v`` by ``jvp``, ``Lambda`` times it by ``jvp`` of the loss gradient in the outputs,
then ``J^T`` by ``vjp``. ``ggn_diagonal`` is ``e_i^T G e_i`` from those products on unit vectors (``_diagonals``), a
route independent of ``ggn``'s. KFAC splits the forward at the Dense layer: ``A`` from its input, ``G`` from
``B_n = df_n/ds`` (``jacrev`` of the rest of the network in the layer's output ``s``).
"""

import functools

import jax
import jax.numpy as jnp

from xval import contract
from xval.checks import check_direction, check_layer, kfac_position

from . import _model as model
from ._diagonals import diagonal


def _jacobians(arch, params, X, selected):
    """``J_n`` for the layers ``selected``: one ``(N, K, P_l)`` array per layer, by ``vmap(jacrev)``."""

    def one_sample(chosen, x):
        layers = list(params)
        for l, theta in zip(selected, chosen):
            layers[l] = theta
        return model.flat_outputs(arch, tuple(layers), x[None])[0]

    return jax.vmap(jax.jacrev(one_sample), in_axes=(None, 0))(tuple(params[l] for l in selected), X)


def loss_hessians(arch, F, Y):
    """``Lambda_n = d2 loss_n / df2`` ``(N, K, K)`` of the flattened outputs ``F`` ``(N, K)``."""

    def one_sample(f, y):
        return model.losses_of_outputs(arch, f[None], y[None])[0]

    return jax.vmap(jax.hessian(one_sample))(F, Y)


@functools.lru_cache(maxsize=None)
def _gauss_newton(rows, columns):
    """The builder of ``(params, X, Y) -> c sum_n J_{n,rows}^T Lambda_n J_{n,columns}`` for tuples of layers."""
    chosen = tuple(sorted(set(rows) | set(columns)))

    def build(arch):
        def ggn(params, X, Y):
            J = dict(zip(chosen, _jacobians(arch, params, X, chosen)))
            J_rows = jnp.concatenate([J[l] for l in rows], axis=-1)
            J_columns = jnp.concatenate([J[l] for l in columns], axis=-1)
            Lambda = loss_hessians(arch, model.flat_outputs(arch, params, X), Y)
            return arch.sample_weight(X.shape[0]) * jnp.einsum("nkp,nkj,njq->pq", J_rows, Lambda, J_columns)

        return ggn

    return build


def stage_ggn(net, X, Y):
    """``ggn`` staged: the ``(P, P)`` array ``G = c sum_n J_n^T Lambda_n J_n``."""
    X, Y = model.data(net, X, Y, "ggn")
    layers = tuple(range(net.n_layers))
    return model.staged(_gauss_newton(layers, layers), net, model.parameters(net), X, Y)


def stage_ggn_block(net, X, Y, l, m):
    """``ggn_block`` staged: the ``(P_l, P_m)`` block ``c sum_n J_{n,l}^T Lambda_n J_{n,m}``."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    X, Y = model.data(net, X, Y, "ggn_block", l=l, m=m)
    return model.staged(_gauss_newton((l,), (m,)), net, model.parameters(net), X, Y)


def ggn_product(arch, theta, X, Y):
    """``v -> G v`` ``(P,) -> (P,)``: ``jvp`` of the outputs, ``jvp`` of the loss gradient in the outputs, ``vjp``."""
    c = arch.sample_weight(X.shape[0])

    def outputs(theta):
        return model.flat_outputs(arch, model.groups(arch, theta), X)

    def loss_of_outputs(F):
        return c * jnp.sum(model.losses_of_outputs(arch, F, Y))

    def product(v):
        F, Jv = jax.jvp(outputs, (theta,), (v,))
        _, LJv = jax.jvp(jax.grad(loss_of_outputs), (F,), (Jv,))
        return jax.vjp(outputs, theta)[1](LJv)[0]

    return product


def _ggnvp(arch):
    return lambda theta, X, Y, v: ggn_product(arch, theta, X, Y)(v)


def _ggn_diagonal(arch):
    return lambda theta, X, Y: diagonal(ggn_product(arch, theta, X, Y), theta.shape[0], theta.dtype)


def stage_ggnvp(net, X, Y, v):
    """``ggnvp`` staged: ``G v`` ``(P,)``, never forming ``G``."""
    X, Y = model.data(net, X, Y, "ggnvp")
    v = model.array(check_direction(net, v), net.dtype)
    return model.staged(_ggnvp, net, model.array(net.to_vector(), net.dtype), X, Y, v)


@model.pushes(1)
def stage_ggn_diagonal(net, X, Y):
    """``ggn_diagonal`` staged: ``(P,)``, ``e_i^T G e_i`` from ``ggnvp`` products on unit vectors (``P`` products of
    ``O(N |W|)`` each, in chunks; no ``(P, P)`` array)."""
    X, Y = model.data(net, X, Y, "ggn_diagonal")
    return model.staged(_ggn_diagonal, net, model.array(net.to_vector(), net.dtype), X, Y)


def _empirical_fisher(arch):
    objective = model.make_objective(arch)

    def one_sample(theta, x, y):
        return objective(model.groups(arch, theta), x[None], y[None])  # c = 1 for one sample of either reduction

    def fisher(theta, X, Y):
        g = jax.vmap(jax.grad(one_sample), in_axes=(None, 0, 0))(theta, X, Y)
        return arch.sample_weight(X.shape[0]) * g.T @ g

    return fisher


def stage_empirical_fisher(net, X, Y):
    """``empirical_fisher`` staged: ``c sum_n g_n g_n^T`` ``(P, P)``, ``g_n`` by ``vmap(grad)`` of ``loss_n``."""
    X, Y = model.data(net, X, Y, "empirical_fisher")
    return model.staged(_empirical_fisher, net, model.array(net.to_vector(), net.dtype), X, Y)


def _output_jacobian(arch):
    layers = tuple(range(len(arch.groups)))
    return lambda params, X: jnp.concatenate(_jacobians(arch, params, X, layers), axis=-1)


def stage_output_jacobian(net, X):
    """``output_jacobian`` staged: ``(N, K, P)``, row ``n`` the Jacobian of sample ``n``'s flattened outputs."""
    return model.staged(_output_jacobian, net, model.parameters(net), model.inputs(net, X, "output_jacobian"))


@functools.lru_cache(maxsize=None)
def _factors(position):
    """The builder of ``(params, X, Y) -> (A, G)`` for the Dense layer at ``position`` of the layers."""

    def build(arch):
        def factors(params, X, Y):
            def rest(s):  # one sample's layer output (n_out,) -> its flattened network output (K,)
                return model.apply_layers(arch, params, s[None], position + 1).reshape(-1)

            z = model.apply_layers(arch, params, X, 0, position)
            s = model.apply_layers(arch, params, z, position, position + 1)
            a = jnp.concatenate([z, jnp.ones_like(z[:, :1])], axis=1)
            B = jax.vmap(jax.jacrev(rest))(s)
            Lambda = loss_hessians(arch, jax.vmap(rest)(s), Y)
            G = arch.sample_weight(X.shape[0]) * jnp.einsum("nko,nkj,njq->oq", B, Lambda, B)
            return a.T @ a / X.shape[0], G

        return factors

    return build


def _staged_factors(net, X, Y, l):
    compute = model.staged(_factors(kfac_position(net, l)), net, model.parameters(net), X, Y)
    return lambda: model.Factors(compute())


def stage_kfac_factors(net, X, Y, l):
    """``kfac_factors`` staged: ``(A_l, G_l)``, ``A_l = (1/N) sum_n a_n a_n^T`` over ``a_n = [z_n; 1]`` and
    ``G_l = c sum_n B_n^T Lambda_n B_n``, ``B_n = df_n / ds_n`` the Jacobian of the rest of the network."""
    l = check_layer(net, l, "l")
    X, Y = model.data(net, X, Y, "kfac_factors", l=l)
    return _staged_factors(net, X, Y, l)


def stage_kfac_block(net, X, Y, l):
    """``kfac_block`` staged: ``kron(G_l, A_l)`` in layer ``l``'s parameter order
    (``contract.kfac_block_from_factors``)."""
    l = check_layer(net, l, "l")
    X, Y = model.data(net, X, Y, "kfac_block", l=l)
    factors = _staged_factors(net, X, Y, l)

    def compute():
        A, G = model.to_numpy(factors())
        return model.array(contract.kfac_block_from_factors(A, G), net.dtype)

    return compute
