"""The Hessian's diagonal and trace from jax, jitted, exact, without a ``(P, P)`` array.

The diagonal is ``e_i^T H e_i`` read off Hessian-vector products (forward over reverse) on the unit vectors, the
trace the sum of second directional derivatives ``d2/dt2 E(theta + t e_i)`` (forward over forward): two routes, so
that ``hessian_trace == sum(hessian_diagonal)`` checks one against the other. Both cost ``P`` products of
``O(N |W|)`` each, one unit vector at a time (``lax.map``: one compiled body, memory of one product): fine for the
references' sizes, not for P = 10^5.
"""

import jax
import jax.numpy as jnp

from . import _model as model


def _each_unit_vector(function, size, dtype):
    """``[function(e_i, i) for i in 0..size-1]``, ``e_i`` the unit vectors, one after the other."""

    def one(i):
        return function((jnp.arange(size) == i).astype(dtype), i)

    return jax.lax.map(one, jnp.arange(size))


def diagonal(product, size, dtype):
    """``(P,)``: ``e_i^T M e_i`` for ``i = 0..P-1`` from ``product(v) = M v``."""
    return _each_unit_vector(lambda e, i: product(e)[i], size, dtype)


def _objective_of_vector(arch, X, Y):
    objective = model.make_objective(arch)
    return lambda theta: objective(model.groups(arch, theta), X, Y)


def _hessian_diagonal(arch):
    def hessian_diagonal(theta, X, Y):
        gradient = jax.grad(_objective_of_vector(arch, X, Y))
        return diagonal(lambda v: jax.jvp(gradient, (theta,), (v,))[1], theta.shape[0], theta.dtype)

    return hessian_diagonal


def _hessian_trace(arch):
    def hessian_trace(theta, X, Y):
        objective = _objective_of_vector(arch, X, Y)

        def curvature(e, i):
            slope = lambda point: jax.jvp(objective, (point,), (e,))[1]  # noqa: E731
            return jax.jvp(slope, (theta,), (e,))[1]

        return jnp.sum(_each_unit_vector(curvature, theta.shape[0], theta.dtype))

    return hessian_trace


@model.pushes(1)
def stage_hessian_diagonal(net, X, Y):
    """``hessian_diagonal`` staged: ``(P,)``, ``(H e_i)_i`` from ``jvp`` of ``grad`` on each unit vector."""
    X, Y = model.data(net, X, Y, "hessian_diagonal")
    return model.staged(_hessian_diagonal, net, model.array(net.to_vector(), net.dtype), X, Y)


@model.pushes(1)
def stage_hessian_trace(net, X, Y):
    """``hessian_trace`` staged: a 0-d array, ``sum_i d2/dt2 E(theta + t e_i)`` by ``jvp`` of ``jvp``."""
    X, Y = model.data(net, X, Y, "hessian_trace")
    return model.staged(_hessian_trace, net, model.array(net.to_vector(), net.dtype), X, Y)
