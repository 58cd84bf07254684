"""Hessian-vector products, Hessian blocks and the full Hessian from ``torch.func``.

Blocks differentiate with respect to the two layers' own parameter tensors (``jacfwd`` of ``jacrev``), never by
slicing a full Hessian; the full Hessian is ``torch.func.hessian`` of the objective of one flat vector. Each
function has a ``stage_`` twin (see ``model``).
"""

import torch
from torch.func import grad, hessian as func_hessian, jacfwd, jacrev, jvp

from xval.checks import check_direction, check_layer

from . import _model as model


def stage_hvp(net, X, Y, v):
    """``hvp`` staged: one tensor per layer, the forward-mode derivative of the gradient along ``v``."""
    X, Y = model.data(net, X, Y, "hvp")
    tangents = list(torch.split(model.tensor(check_direction(net, v), net.dtype), net.layer_param_counts))
    params = model.parameters(net)
    gradient = grad(lambda params: model.objective(net, params, X, Y))
    return model.in_forward_mode(lambda: list(jvp(gradient, (params,), (tangents,))[1]))


@model.measured(5.5)
def stage_hessian_block(net, X, Y, l, m):
    """``hessian_block`` staged: the ``(P_l, P_m)`` tensor (after the memory guard's check)."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    X, Y = model.data(net, X, Y, "hessian_block", l=l, m=m)
    params = model.parameters(net)

    def objective(theta_l, theta_m):
        layers = list(params)
        layers[l], layers[m] = theta_l, theta_m
        return model.objective(net, layers, X, Y)

    if l == m:
        return model.in_forward_mode(lambda: func_hessian(lambda theta: objective(theta, theta))(params[l]))
    return model.in_forward_mode(lambda: jacfwd(jacrev(objective, argnums=0), argnums=1)(params[l], params[m]))


@model.measured(3.3)
def stage_hessian(net, X, Y):
    """``hessian`` staged: the ``(P, P)`` tensor (after the memory guard's check)."""
    X, Y = model.data(net, X, Y, "hessian")
    counts = net.layer_param_counts

    def objective(theta):
        return model.objective(net, list(torch.split(theta, counts)), X, Y)

    theta = torch.cat(model.parameters(net))
    return model.in_forward_mode(lambda: func_hessian(objective)(theta))
