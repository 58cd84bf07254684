"""The generalized Gauss-Newton matrix and its relatives from ``torch.func``: the output Jacobian ``J_n`` ``(K, P)``
by ``vmap(jacrev)``, the loss Hessian in the outputs ``Lambda_n`` ``(K, K)`` by ``torch.func.hessian`` of one
sample's loss, and ``G = c sum_n J_n^T Lambda_n J_n`` (``c`` = ``net.sample_weight(N)``).

``ggnvp`` never forms ``G``: ``J v`` by ``jvp``, ``Lambda`` times it by ``jvp`` of the loss gradient in the outputs,
then ``J^T`` by ``vjp``. ``ggn_diagonal`` is ``e_i^T G e_i`` from those products on unit vectors (see
``_diagonals``), a route independent of ``ggn``'s. KFAC splits the forward at the Dense layer: ``A`` from its input,
``G`` from ``B_n = df_n/ds`` (``jacrev`` of the rest of the network in the layer's output ``s``).
"""

import torch
from torch.func import grad, hessian, jacrev, jvp, vjp, vmap

from xval import contract
from xval.checks import check_direction, check_layer, kfac_position

from . import _model as model
from ._diagonals import CHUNK, diagonal


def _jacobians(net, params, X, selected):
    """``J_n`` for the layers ``selected``: one ``(N, K, P_l)`` tensor per layer, by ``vmap(jacrev)``."""

    def one_sample(chosen, x):
        layers = list(params)
        for l, theta in zip(selected, chosen):
            layers[l] = theta
        return model.flat_outputs(net, layers, x[None])[0]

    return list(vmap(jacrev(one_sample), in_dims=(None, 0))(tuple(params[l] for l in selected), X))


def loss_hessians(net, F, Y):
    """``Lambda_n = d2 loss_n / df2`` ``(N, K, K)`` of the flattened outputs ``F`` ``(N, K)``."""

    def one_sample(f, y):
        return model.losses_of_outputs(net, f[None], y[None])[0]

    return vmap(hessian(one_sample))(F, Y)


def _gauss_newton(net, X, Y, rows, columns):
    """``c sum_n J_n^T Lambda_n J_n`` between the layers ``rows`` and ``columns``."""
    params = model.parameters(net)

    def compute():
        J = _jacobians(net, params, X, sorted(set(rows) | set(columns)))
        by_layer = dict(zip(sorted(set(rows) | set(columns)), J))
        J_rows = torch.cat([by_layer[l] for l in rows], dim=-1)
        J_columns = torch.cat([by_layer[l] for l in columns], dim=-1)
        Lambda = loss_hessians(net, model.flat_outputs(net, params, X), Y)
        return net.sample_weight(X.shape[0]) * torch.einsum("nkp,nkj,njq->pq", J_rows, Lambda, J_columns)

    return model.in_forward_mode(compute)


def stage_ggn(net, X, Y):
    """``ggn`` staged: the ``(P, P)`` tensor ``G = c sum_n J_n^T Lambda_n J_n``."""
    X, Y = model.data(net, X, Y, "ggn")
    layers = list(range(net.n_layers))
    return _gauss_newton(net, X, Y, layers, layers)


def stage_ggn_block(net, X, Y, l, m):
    """``ggn_block`` staged: the ``(P_l, P_m)`` block ``c sum_n J_{n,l}^T Lambda_n J_{n,m}``."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    X, Y = model.data(net, X, Y, "ggn_block", l=l, m=m)
    return _gauss_newton(net, X, Y, [l], [m])


def ggn_product(net, X, Y):
    """``v -> G v`` ``(P,) -> (P,)``: ``jvp`` of the outputs, ``jvp`` of the loss gradient in the outputs, ``vjp``."""
    theta = torch.cat(model.parameters(net))
    c = net.sample_weight(X.shape[0])

    def outputs(theta):
        return model.flat_outputs(net, model.groups(net, theta), X)

    def loss_of_outputs(F):
        return c * model.losses_of_outputs(net, F, Y).sum()

    def product(v):
        F, Jv = jvp(outputs, (theta,), (v,))
        _, LJv = jvp(grad(loss_of_outputs), (F,), (Jv,))
        return vjp(outputs, theta)[1](LJv)[0]

    return product


def stage_ggnvp(net, X, Y, v):
    """``ggnvp`` staged: ``G v`` ``(P,)``, never forming ``G``."""
    X, Y = model.data(net, X, Y, "ggnvp")
    v = model.tensor(check_direction(net, v), net.dtype)
    product = ggn_product(net, X, Y)
    return model.in_forward_mode(lambda: product(v))


@model.pushes(CHUNK)
def stage_ggn_diagonal(net, X, Y):
    """``ggn_diagonal`` staged: ``(P,)``, ``e_i^T G e_i`` from ``ggnvp`` products on unit vectors (``P`` products of
    ``O(N |W|)`` each, in chunks; no ``(P, P)`` array)."""
    X, Y = model.data(net, X, Y, "ggn_diagonal")
    product = ggn_product(net, X, Y)
    return model.in_forward_mode(lambda: diagonal(product, net.n_params, net.dtype))


def stage_empirical_fisher(net, X, Y):
    """``empirical_fisher`` staged: ``c sum_n g_n g_n^T`` ``(P, P)``, ``g_n`` by ``vmap(grad)`` of ``loss_n``."""
    X, Y = model.data(net, X, Y, "empirical_fisher")
    theta = torch.cat(model.parameters(net))

    def one_sample(theta, x, y):
        return model.sample_losses(net, model.groups(net, theta), x[None], y[None])[0]

    def compute():
        g = vmap(grad(one_sample), in_dims=(None, 0, 0))(theta, X, Y)
        return net.sample_weight(X.shape[0]) * g.T @ g

    return model.synchronized(compute)


def stage_output_jacobian(net, X):
    """``output_jacobian`` staged: ``(N, K, P)``, row ``n`` the Jacobian of sample ``n``'s flattened outputs."""
    X = model.inputs(net, X, "output_jacobian")
    params = model.parameters(net)
    return model.synchronized(lambda: torch.cat(_jacobians(net, params, X, list(range(net.n_layers))), dim=-1))


def _factors(net, X, Y, l, position):
    """``(A_l, G_l)``: the forward split at the Dense layer at ``position``."""
    params = model.parameters(net)
    c = net.sample_weight(X.shape[0])

    def rest(s):  # one sample's layer output (n_out,) -> its flattened network output (K,)
        return model.apply_layers(net, params, s[None], position + 1).reshape(-1)

    def compute():
        z = model.apply_layers(net, params, X, 0, position)
        s = model.apply_layers(net, params, z, position, position + 1)
        a = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)
        A = a.T @ a / X.shape[0]
        B = vmap(jacrev(rest))(s)
        Lambda = loss_hessians(net, vmap(rest)(s), Y)
        G = c * torch.einsum("nko,nkj,njq->oq", B, Lambda, B)
        return model.Factors((A, G))

    return model.in_forward_mode(compute)


def stage_kfac_factors(net, X, Y, l):
    """``kfac_factors`` staged: ``(A_l, G_l)``, ``A_l = (1/N) sum_n a_n a_n^T`` over ``a_n = [z_n; 1]`` and
    ``G_l = c sum_n B_n^T Lambda_n B_n``, ``B_n = df_n / ds_n`` the Jacobian of the rest of the network."""
    l = check_layer(net, l, "l")
    X, Y = model.data(net, X, Y, "kfac_factors", l=l)
    return _factors(net, X, Y, l, kfac_position(net, l))


def stage_kfac_block(net, X, Y, l):
    """``kfac_block`` staged: ``kron(G_l, A_l)`` in layer ``l``'s parameter order
    (``contract.kfac_block_from_factors``)."""
    l = check_layer(net, l, "l")
    X, Y = model.data(net, X, Y, "kfac_block", l=l)
    factors = _factors(net, X, Y, l, kfac_position(net, l))

    def compute():
        A, G = model.to_numpy(factors())
        return model.tensor(contract.kfac_block_from_factors(A, G), net.dtype)

    return compute
