"""Forward, loss, gradient and per-sample gradients from ``torch.autograd`` and ``torch.func``."""
import torch
from torch.func import grad, vmap

from . import model


def forward(net, X):
    """``(N, n_L)`` outputs."""
    with torch.no_grad():
        return model.to_numpy(model.outputs(net, model.parameters(net), model.inputs(net, X)))


def loss(net, X, Y):
    """``E`` as a float."""
    X, Y = model.data(net, X, Y)
    with torch.no_grad():
        return float(model.objective(net, model.parameters(net), X, Y))


def gradient(net, X, Y):
    """``dE/dtheta``, ``(P,)``, by reverse mode (``torch.autograd.grad``)."""
    X, Y = model.data(net, X, Y)
    params = [p.requires_grad_() for p in model.parameters(net)]
    return model.to_numpy(list(torch.autograd.grad(model.objective(net, params, X, Y), params)))


def per_sample_gradients(net, X, Y):
    """``d loss_n / dtheta``, ``(N, P)``, by ``vmap(grad)`` over the samples."""
    X, Y = model.data(net, X, Y)

    def one_sample(params, x, y):
        return model.sample_losses(net, params, x[None], y[None])[0]

    rows = vmap(grad(one_sample), in_dims=(None, 0, 0))(model.parameters(net), X, Y)
    return model.to_numpy(list(rows))
