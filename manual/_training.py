"""Plain (mini-batch) gradient descent.

``theta_{k+1} = theta_k - lr * dE_{B_k}/dtheta (theta_k)``, where ``E_{B_k}`` is the mean loss over the
batch ``B_k`` of step ``k``, taken from ``xval.batches.batch_indices`` (the order every engine uses).
"""

import numpy as np

from xval.batches import check_starting_loss, check_training_arguments, diverged, iter_batches

from . import gradient, loss


# Without the overflow check of the contract functions: training reports a non-finite value as divergence at its step.
_objective, _gradient = loss.__wrapped__, gradient.__wrapped__


def train(net, X, Y, lr, steps, batch_size=None, seed=0):
    """Run ``steps`` steps of plain SGD from ``net``; return ``(trained network, losses)``.

    ``losses`` is ``(steps + 1,)``: ``losses[k]`` is the full-batch objective ``E`` (over all of ``X, Y``)
    at ``theta_k``, so ``losses[0]`` is the starting loss and ``losses[-1]`` that of the returned network.
    Batches follow ``xval.batches.batch_indices(N, batch_size, steps, seed)``, drawn one epoch at a time. A
    non-finite starting loss, loss or parameter vector raises ``NonFiniteError`` naming the step.
    """
    X, Y, lr = check_training_arguments(net, X, Y, lr, steps, batch_size, seed)
    with np.errstate(over="ignore", invalid="ignore"):
        losses = [check_starting_loss(_objective(net, X, Y))]
    theta = net.to_vector()
    for step, batch in enumerate(iter_batches(X.shape[0], batch_size, steps, seed)):
        with np.errstate(over="ignore", invalid="ignore"):
            theta = theta - lr * _gradient(net, X[batch], Y[batch]).astype(net.dtype)
        if not np.all(np.isfinite(theta)):
            raise diverged(step + 1, lr, "parameter vector")
        net = net.from_vector(theta)
        with np.errstate(over="ignore", invalid="ignore"):
            losses.append(_objective(net, X, Y))
        if not np.isfinite(losses[-1]):
            raise diverged(step + 1, lr, "loss")
    return net, np.array(losses, dtype=np.float64)
