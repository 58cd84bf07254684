"""The Hessian's diagonal and trace from ``torch.func``, exact, without a ``(P, P)`` array.

The diagonal is ``e_i^T H e_i`` read off Hessian-vector products (forward over reverse) on the unit vectors, the
trace the sum of second directional derivatives ``d2/dt2 E(theta + t e_i)`` (forward over forward): two routes, so
that ``hessian_trace == sum(hessian_diagonal)`` checks one against the other. Both cost ``P`` products of
``O(N |W|)`` each, ``CHUNK`` unit vectors at a time (``vmap``): fine for the references' sizes, not for P = 10^5.
"""

import torch
from torch.func import grad, jvp, vmap

from . import _model as model

CHUNK = 64  # unit vectors per vmap: memory CHUNK x (P + one tape)


def _unit_vectors(indices, size, dtype):
    rows = torch.zeros(len(indices), size, dtype=getattr(torch, dtype.name), device=model.device())
    rows[torch.arange(len(indices)), indices] = 1.0
    return rows


def diagonal(product, size, dtype):
    """``(P,)``: ``e_i^T M e_i`` for ``i = 0..P-1`` from ``product(v) = M v``."""
    entries = []
    for start in range(0, size, CHUNK):
        indices = torch.arange(start, min(start + CHUNK, size))
        rows = vmap(product)(_unit_vectors(indices, size, dtype))
        entries.append(rows[torch.arange(len(indices)), indices])
    return torch.cat(entries)


def _objective_of_vector(net, X, Y):
    return lambda theta: model.objective(net, model.groups(net, theta), X, Y)


@model.pushes(CHUNK)
def stage_hessian_diagonal(net, X, Y):
    """``hessian_diagonal`` staged: ``(P,)``, ``(H e_i)_i`` from ``jvp`` of ``grad`` on each unit vector."""
    X, Y = model.data(net, X, Y, "hessian_diagonal")
    theta = torch.cat(model.parameters(net))
    gradient = grad(_objective_of_vector(net, X, Y))

    def product(v):
        return jvp(gradient, (theta,), (v,))[1]

    return model.in_forward_mode(lambda: diagonal(product, net.n_params, net.dtype))


@model.pushes(CHUNK)
def stage_hessian_trace(net, X, Y):
    """``hessian_trace`` staged: a 0-d tensor, ``sum_i d2/dt2 E(theta + t e_i)`` by ``jvp`` of ``jvp``."""
    X, Y = model.data(net, X, Y, "hessian_trace")
    theta = torch.cat(model.parameters(net))
    objective = _objective_of_vector(net, X, Y)

    def curvature(e):
        slope = lambda point: jvp(objective, (point,), (e,))[1]  # noqa: E731
        return jvp(slope, (theta,), (e,))[1]

    def compute():
        total = torch.zeros((), dtype=theta.dtype, device=theta.device)
        for start in range(0, net.n_params, CHUNK):
            indices = torch.arange(start, min(start + CHUNK, net.n_params))
            total = total + vmap(curvature)(_unit_vectors(indices, net.n_params, net.dtype)).sum()
        return total

    return model.in_forward_mode(compute)
