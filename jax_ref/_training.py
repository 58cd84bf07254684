"""Plain SGD with ``jax.grad``, one jitted step: the same steps and sample order as every engine (``xval.batches``)."""

import jax
import numpy as np

from xval.batches import check_starting_loss, check_training_arguments, diverged, iter_batches

from . import _model as model


def _step(arch):
    objective = model.make_objective(arch)
    gradient = jax.grad(objective)

    def step(params, X, Y, lr):
        return tuple(p - lr * g for p, g in zip(params, gradient(params, X, Y)))

    return step


def train(net, X, Y, lr, steps, batch_size=None, seed=0):
    """``(trained network, losses)`` after ``steps`` SGD steps; ``losses[k]`` is the full-batch ``E`` at step ``k``.

    Batches come from ``xval.batches.iter_batches(N, batch_size, steps, seed)`` (the order of ``batch_indices``).
    """
    X, Y, lr = check_training_arguments(net, X, Y, lr, steps, batch_size, seed)
    arch = model.architecture(net)
    step_fn, objective = model.jitted(arch, _step), model.jitted(arch, model.make_objective)
    X_all, Y_all = model.array(X, net.dtype), model.array(Y, net.dtype)
    lr_array = model.array(lr, net.dtype)
    params = model.parameters(net)
    losses = [check_starting_loss(float(objective(params, X_all, Y_all)))]
    for step, batch in enumerate(iter_batches(X.shape[0], batch_size, steps, seed)):
        params = step_fn(params, model.array(X[batch], net.dtype), model.array(Y[batch], net.dtype), lr_array)
        losses.append(float(objective(params, X_all, Y_all)))
        if not np.isfinite(losses[-1]):
            raise diverged(step + 1, lr, "loss")
    theta = model.to_numpy(params)
    if not np.all(np.isfinite(theta)):
        raise diverged(steps, lr, "parameter vector")
    return net.from_vector(theta), np.array(losses, dtype=np.float64)
