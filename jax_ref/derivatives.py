"""Forward, loss, gradient and per-sample gradients from ``jax.grad`` and ``jax.vmap``, jitted."""
import jax

from . import model


def _per_sample_gradients(arch):
    objective = model.make_objective(arch)

    def one_sample(params, x, y):
        return objective(params, x[None], y[None])

    return jax.vmap(jax.grad(one_sample), in_axes=(None, 0, 0))


def _gradient(arch):
    return jax.grad(model.make_objective(arch))


def _call(builder, net, *args):
    return model.jitted(model.architecture(net), builder)(model.parameters(net), *args)


def forward(net, X):
    """``(N, n_L)`` outputs."""
    return model.to_numpy(_call(model.make_outputs, net, model.inputs(net, X)))


def loss(net, X, Y):
    """``E`` as a float."""
    return float(_call(model.make_objective, net, *model.data(net, X, Y)))


def gradient(net, X, Y):
    """``dE/dtheta``, ``(P,)``, by ``jax.grad``."""
    return model.to_numpy(_call(_gradient, net, *model.data(net, X, Y)))


def per_sample_gradients(net, X, Y):
    """``d loss_n / dtheta``, ``(N, P)``, by ``vmap(grad)`` over the samples."""
    return model.to_numpy(_call(_per_sample_gradients, net, *model.data(net, X, Y)))
