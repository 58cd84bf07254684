"""The one rule that fixes which samples each training step uses, and the checks every engine's ``train`` shares.

``manual.train``, ``torch_ref.train`` and ``jax_ref.train`` take their batches from ``batch_indices``, so the
engines walk through the samples in the same order.
"""
import numpy as np

from .checks import check_data
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
