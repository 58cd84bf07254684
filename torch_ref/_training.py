"""Plain SGD with ``torch.autograd``: the same steps and sample order as every engine (``xval.batches``)."""

import numpy as np
import torch

from xval.batches import check_starting_loss, check_training_arguments, diverged, iter_batches

from . import _model as model


def train(net, X, Y, lr, steps, batch_size=None, seed=0):
    """``(trained network, losses)`` after ``steps`` SGD steps; ``losses[k]`` is the full-batch ``E`` at step ``k``.

    Batches come from ``xval.batches.iter_batches(N, batch_size, steps, seed)`` (the order of ``batch_indices``).
    """
    X, Y, lr = check_training_arguments(net, X, Y, lr, steps, batch_size, seed)
    X, Y = model.tensor(X, net.dtype), model.tensor(Y, net.dtype)
    params = model.parameters(net)
    with torch.no_grad():
        losses = [check_starting_loss(float(model.objective(net, params, X, Y)))]
    for step, batch in enumerate(iter_batches(X.shape[0], batch_size, steps, seed)):
        index = torch.as_tensor(batch, device=X.device)
        params = [p.detach().requires_grad_() for p in params]
        grads = torch.autograd.grad(model.objective(net, params, X[index], Y[index]), params)
        with torch.no_grad():
            params = [p - lr * g for p, g in zip(params, grads)]
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise diverged(step + 1, lr, "parameter vector")
            losses.append(float(model.objective(net, params, X, Y)))
        if not np.isfinite(losses[-1]):
            raise diverged(step + 1, lr, "loss")
    return net.from_vector(model.to_numpy(list(params))), np.array(losses, dtype=np.float64)
