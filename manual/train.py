"""Plain (mini-batch) gradient descent, and the one rule that fixes which samples each step uses.

``theta_{k+1} = theta_k - lr * dE_{B_k}/dtheta (theta_k)``, where ``E_{B_k}`` is the mean loss over the
batch ``B_k`` of step ``k``. ``torch_ref.train`` and ``jax_ref.train`` take their batches from
``batch_indices`` below, so the three engines walk through the samples in the same order.
"""
import numpy as np

from .backprop import gradient, loss
from .data import check_data
from .errors import NonFiniteError, check_positive, check_whole

STEPS_FIX = "pass a number of steps such as 100 (0 returns the network unchanged)"


def batch_indices(n_samples, batch_size, steps, seed=0):
    """The sample indices of every step: a list of ``steps`` integer arrays.

    The rule, in full:

    - ``batch_size`` is ``None`` or ``>= n_samples``: every step uses all samples, ``0 .. N-1`` in order.
    - Otherwise, epoch ``e`` (``e = 0, 1, ...``) shuffles the samples with
      ``numpy.random.default_rng([seed, e]).permutation(n_samples)`` and cuts that order into consecutive
      batches of ``batch_size``; the last batch of an epoch holds the ``n_samples % batch_size`` samples
      left over, if any. Steps take the batches in order, epoch after epoch.

    Seeding each epoch from ``[seed, e]`` makes the order of any epoch computable on its own.
    """
    check_whole("n_samples", n_samples, 1, "training needs at least one sample (pass X.shape[0] of an X with N >= 1 rows)")
    check_whole("steps", steps, 0, STEPS_FIX)
    if batch_size is not None:
        check_whole("batch_size", batch_size, 1, "pass an integer such as 32, or None for the full batch")
    n_samples, steps = int(n_samples), int(steps)
    if batch_size is None or int(batch_size) >= n_samples:
        everything = np.arange(n_samples)
        return [everything] * steps
    batch_size = int(batch_size)
    batches, epoch = [], 0
    while len(batches) < steps:
        order = np.random.default_rng([seed, epoch]).permutation(n_samples)
        batches.extend(order[start:start + batch_size] for start in range(0, n_samples, batch_size))
        epoch += 1
    return batches[:steps]


def check_training_arguments(net, X, Y, lr, steps):
    """``(X, Y)`` validated for ``net``; errors for a learning rate or step count that cannot work."""
    X, Y = check_data(net, X, Y)
    check_positive("lr", lr, "pass a learning rate below the stable bound 2 / lambda_max that manual.diagnose(net, X, Y) reports")
    check_whole("steps", steps, 0, STEPS_FIX)
    return X, Y


def diverged(step, lr, value):
    """The error for a loss or parameter vector that stopped being finite at ``step``."""
    return NonFiniteError(
        f"training diverged at step {step} with lr = {lr!r}: the {value} is no longer finite; lower the learning rate "
        "below the stable bound 2 / lambda_max that manual.diagnose(net, X, Y, lr) reports"
    )


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
