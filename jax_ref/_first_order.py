"""Forward, loss, gradient and per-sample gradients from ``jax.grad`` and ``jax.vmap``, jitted."""

import jax

from . import _model as model


def _per_sample_gradients(arch):
    objective = model.make_objective(arch)

    def one_sample(params, x, y):
        return objective(params, x[None], y[None])

    return jax.vmap(jax.grad(one_sample), in_axes=(None, 0, 0))


def _gradient(arch):
    return jax.grad(model.make_objective(arch))


def stage_forward(net, X):
    """``forward`` staged (see ``model``): the outputs as a jax array."""
    return model.staged(model.make_outputs, net, model.parameters(net), model.inputs(net, X, "forward"))


def stage_loss(net, X, Y):
    """``loss`` staged: ``E`` as a 0-d jax array."""
    return model.staged(model.make_objective, net, model.parameters(net), *model.data(net, X, Y, "loss"))


def stage_gradient(net, X, Y):
    """``gradient`` staged: one array per layer, by ``jax.grad``."""
    return model.staged(_gradient, net, model.parameters(net), *model.data(net, X, Y, "gradient"))


@model.measured(1.2)
def stage_per_sample_gradients(net, X, Y):
    """``per_sample_gradients`` staged: one ``(N, P_l)`` array per layer, by ``vmap(grad)`` over the samples."""
    X, Y = model.data(net, X, Y, "per_sample_gradients")
    return model.staged(_per_sample_gradients, net, model.parameters(net), X, Y)
