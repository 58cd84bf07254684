"""Hessian-vector products, Hessian blocks and the full Hessian from ``torch.func``.

Blocks differentiate with respect to the two layers' own parameter tensors (``jacfwd`` of ``jacrev``), never by
slicing a full Hessian; the full Hessian is ``torch.func.hessian`` of the objective of one flat vector. Each
function has a ``stage_`` twin (see ``model``).
"""
import contextlib
import warnings

import torch
from torch.func import grad, hessian as func_hessian, jacfwd, jacrev, jvp

from xval.checks import check_direction, check_reference_block, check_memory, finite_result

from . import model


@contextlib.contextmanager
def _forward_mode():
    """torch's forward-mode AD scripts its decompositions with the deprecated ``torch.jit.script``; that
    warning is torch's own business, not the caller's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
        yield


def _in_forward_mode(compute):
    def run():
        with _forward_mode():
            return compute()

    return model.synchronized(run)


def stage_hvp(net, X, Y, v):
    """``hvp`` staged: one tensor per layer, the forward-mode derivative of the gradient along ``v``."""
    X, Y = model.data(net, X, Y)
    tangents = list(torch.split(model.tensor(check_direction(net, v), net.dtype), net.layer_param_counts))
    params = model.parameters(net)
    gradient = grad(lambda params: model.objective(net, params, X, Y))
    return _in_forward_mode(lambda: list(jvp(gradient, (params,), (tangents,))[1]))


@finite_result
def hvp(net, X, Y, v):
    """``H v``, ``(P,)``, as the forward-mode derivative of the gradient along ``v`` (``jvp`` of ``grad``)."""
    return model.to_numpy(stage_hvp(net, X, Y, v)())


def stage_hessian_block(net, X, Y, l, m):
    """``hessian_block`` staged: the ``(P_l, P_m)`` tensor (after the memory guard's check)."""
    X, Y = model.data(net, X, Y)
    l, m = check_reference_block(net, l, m, "torch_ref", X.shape[0])
    params = model.parameters(net)

    def objective(theta_l, theta_m):
        layers = list(params)
        layers[l], layers[m] = theta_l, theta_m
        return model.objective(net, layers, X, Y)

    if l == m:
        return _in_forward_mode(lambda: func_hessian(lambda theta: objective(theta, theta))(params[l]))
    return _in_forward_mode(lambda: jacfwd(jacrev(objective, argnums=0), argnums=1)(params[l], params[m]))


@finite_result
def hessian_block(net, X, Y, l, m):
    """``d2E / dtheta_l dtheta_m``, ``(P_l, P_m)``: ``torch.func.hessian`` (``l == m``) or ``jacfwd(jacrev)`` with
    respect to the two layers' parameter tensors."""
    return model.to_numpy(stage_hessian_block(net, X, Y, l, m)())


def stage_hessian(net, X, Y):
    """``hessian`` staged: the ``(P, P)`` tensor (after the memory guard's check)."""
    X, Y = model.data(net, X, Y)
    P = net.n_params
    check_memory(net, "torch_ref", "hessian", X.shape[0], what=f"hessian (a {P} x {P} array)")
    counts = net.layer_param_counts

    def objective(theta):
        return model.objective(net, list(torch.split(theta, counts)), X, Y)

    theta = torch.cat(model.parameters(net))
    return _in_forward_mode(lambda: func_hessian(objective)(theta))


@finite_result
def hessian(net, X, Y):
    """``d2E / dtheta^2``, ``(P, P)``, by ``torch.func.hessian`` of the objective of the flat parameter vector."""
    return model.to_numpy(stage_hessian(net, X, Y)())
