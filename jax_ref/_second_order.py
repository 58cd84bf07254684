"""Hessian-vector products, Hessian blocks and the full Hessian from ``jax.jvp``/``jax.grad`` and ``jax.hessian``.

Each function is built per architecture (and per layer pair for blocks) and jitted through ``model.jitted``, so it
compiles once per architecture, pair, batch size and dtype. Blocks differentiate with respect to the two layers'
own parameter arrays (``argnums``), never by slicing a full Hessian. Each function has a ``stage_`` twin (see
``model``).
"""

import functools

import jax

from xval.checks import check_direction, check_layer

from . import _model as model


def _hvp(arch):
    objective = model.make_objective(arch)

    def product(params, X, Y, v):
        return jax.jvp(lambda p: jax.grad(objective)(p, X, Y), (params,), (v,))[1]

    return product


@functools.lru_cache(maxsize=None)
def _block(l, m):
    """The builder of ``(theta_0, ..., theta_last, X, Y) -> d2E / dtheta_l dtheta_m`` (one per pair, so cached)."""

    def build(arch):
        objective = model.make_objective(arch)

        def layered(*args):
            *params, X, Y = args
            return objective(tuple(params), X, Y)

        if l == m:
            return jax.hessian(layered, argnums=l)
        return jax.jacfwd(jax.jacrev(layered, argnums=l), argnums=m)

    return build


def _hessian(arch):
    objective = model.make_objective(arch)

    def flat(theta, X, Y):
        return objective(model.groups(arch, theta), X, Y)

    return jax.hessian(flat)


def stage_hvp(net, X, Y, v):
    """``hvp`` staged (see ``model``): one array per layer, by ``jax.jvp`` of ``jax.grad`` along ``v``."""
    X, Y = model.data(net, X, Y, "hvp")
    v = check_direction(net, v)
    tangent = tuple(model.array(v[sl], net.dtype) for sl in net.param_slices)
    return model.staged(_hvp, net, model.parameters(net), X, Y, tangent)


@model.measured(2.3)
def stage_hessian_block(net, X, Y, l, m):
    """``hessian_block`` staged: the ``(P_l, P_m)`` array (after the memory guard's check)."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    X, Y = model.data(net, X, Y, "hessian_block", l=l, m=m)
    return model.staged(_block(l, m), net, *model.parameters(net), X, Y)


@model.measured(3.8)
def stage_hessian(net, X, Y):
    """``hessian`` staged: the ``(P, P)`` array (after the memory guard's check)."""
    X, Y = model.data(net, X, Y, "hessian")
    return model.staged(_hessian, net, model.array(net.to_vector(), net.dtype), X, Y)
