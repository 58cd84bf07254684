"""Forward, loss, gradient and per-sample gradients from ``torch.autograd`` and ``torch.func``."""
import torch
from torch.func import grad, vmap

from xval.checks import check_memory, finite_result

from . import model


def stage_forward(net, X):
    """``forward`` staged (see ``model``): the outputs as a tensor on the device."""
    params, X = model.parameters(net), model.inputs(net, X)

    def compute():
        with torch.no_grad():
            return model.outputs(net, params, X)

    return model.synchronized(compute)


@finite_result
def forward(net, X):
    """``(N, n_L)`` outputs."""
    return model.to_numpy(stage_forward(net, X)())


@finite_result
def loss(net, X, Y):
    """``E`` as a float."""
    X, Y = model.data(net, X, Y)
    with torch.no_grad():
        return float(model.objective(net, model.parameters(net), X, Y))


def stage_gradient(net, X, Y):
    """``gradient`` staged: one tensor per layer, by reverse mode (``torch.autograd.grad``)."""
    X, Y = model.data(net, X, Y)
    params = [p.requires_grad_() for p in model.parameters(net)]
    return model.synchronized(lambda: list(torch.autograd.grad(model.objective(net, params, X, Y), params)))


@finite_result
def gradient(net, X, Y):
    """``dE/dtheta``, ``(P,)``, by reverse mode (``torch.autograd.grad``)."""
    return model.to_numpy(stage_gradient(net, X, Y)())


def stage_per_sample_gradients(net, X, Y):
    """``per_sample_gradients`` staged: one ``(N, P_l)`` tensor per layer, by ``vmap(grad)`` over the samples."""
    X, Y = model.data(net, X, Y)
    check_memory(net, "torch_ref", "per_sample_gradients", X.shape[0])
    params = model.parameters(net)

    def one_sample(params, x, y):
        return model.sample_losses(net, params, x[None], y[None])[0]

    rows = vmap(grad(one_sample), in_dims=(None, 0, 0))
    return model.synchronized(lambda: list(rows(params, X, Y)))


@finite_result
def per_sample_gradients(net, X, Y):
    """``d loss_n / dtheta``, ``(N, P)``, by ``vmap(grad)`` over the samples."""
    return model.to_numpy(stage_per_sample_gradients(net, X, Y)())
