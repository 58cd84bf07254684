"""Forward, loss, gradient and per-sample gradients from ``torch.autograd`` and ``torch.func``."""

import torch
from torch.func import grad, vmap

from . import _model as model


def stage_forward(net, X):
    """``forward`` staged (see ``model``): the outputs as a tensor on the device."""
    params, X = model.parameters(net), model.inputs(net, X, "forward")

    def compute():
        with torch.no_grad():
            return model.outputs(net, params, X)

    return model.synchronized(compute)


def stage_loss(net, X, Y):
    """``loss`` staged: ``E`` as a 0-d tensor."""
    X, Y = model.data(net, X, Y, "loss")
    params = model.parameters(net)

    def compute():
        with torch.no_grad():
            return model.objective(net, params, X, Y)

    return model.synchronized(compute)


def stage_gradient(net, X, Y):
    """``gradient`` staged: one tensor per layer, by reverse mode (``torch.autograd.grad``)."""
    X, Y = model.data(net, X, Y, "gradient")
    params = [p.requires_grad_() for p in model.parameters(net)]
    return model.synchronized(lambda: list(torch.autograd.grad(model.objective(net, params, X, Y), params)))


@model.measured(1.7)
def stage_per_sample_gradients(net, X, Y):
    """``per_sample_gradients`` staged: one ``(N, P_l)`` tensor per layer, by ``vmap(grad)`` over the samples."""
    X, Y = model.data(net, X, Y, "per_sample_gradients")
    params = model.parameters(net)

    def one_sample(params, x, y):
        return model.sample_losses(net, params, x[None], y[None])[0]

    rows = vmap(grad(one_sample), in_dims=(None, 0, 0))
    return model.synchronized(lambda: list(rows(params, X, Y)))
