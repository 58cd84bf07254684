"""Plain (mini-batch) gradient descent.

``theta_{k+1} = theta_k - lr * dE_{B_k}/dtheta (theta_k)``, where ``E_{B_k}`` is the mean loss over the
batch ``B_k`` of step ``k``, taken from ``xval.batches.batch_indices`` (the order every engine uses).
"""
import numpy as np

from xval.batches import batch_indices, check_training_arguments, diverged

from .backprop import gradient, loss


def train(net, X, Y, lr, steps, batch_size=None, seed=0):
    """Run ``steps`` steps of plain SGD from ``net``; return ``(trained network, losses)``.

    ``losses`` is ``(steps + 1,)``: ``losses[k]`` is the full-batch objective ``E`` (over all of ``X, Y``)
    at ``theta_k``, so ``losses[0]`` is the starting loss and ``losses[-1]`` that of the returned network.
    Batches follow ``batch_indices(N, batch_size, steps, seed)``. A non-finite loss raises ``NonFiniteError``.
    """
    X, Y = check_training_arguments(net, X, Y, lr, steps)
    losses = [loss(net, X, Y)]
    theta = net.to_vector()
    for step, batch in enumerate(batch_indices(X.shape[0], batch_size, steps, seed)):
        with np.errstate(over="ignore", invalid="ignore"):
            theta = theta - lr * gradient(net, X[batch], Y[batch]).astype(net.dtype)
        if not np.all(np.isfinite(theta)):
            raise diverged(step + 1, lr, "parameter vector")
        net = net.from_vector(theta)
        with np.errstate(over="ignore", invalid="ignore"):
            losses.append(loss(net, X, Y))
        if not np.isfinite(losses[-1]):
            raise diverged(step + 1, lr, "loss")
    return net, np.array(losses, dtype=np.float64)
