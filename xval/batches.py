"""The one rule that fixes which samples each training step uses, and the checks every engine's ``train`` shares.

``manual.train``, ``torch_ref.train`` and ``jax_ref.train`` take their batches from ``batch_indices``, so the
engines walk through the samples in the same order.
"""

import numpy as np

from .checks import check_data
from .errors import NonFiniteError, check_positive, check_seed, check_whole

STEPS_FIX = "pass a number of steps such as 100 (0 returns the network unchanged)"


def batch_indices(n_samples, batch_size, steps, seed=0):
    """The sample indices of every step: a list of ``steps`` integer arrays (``iter_batches`` as a list).

    The rule, in full:

    - ``batch_size`` is ``None`` or ``>= n_samples``: every step uses all samples, ``0 .. N-1`` in order.
    - Otherwise, epoch ``e`` (``e = 0, 1, ...``) shuffles the samples with
      ``numpy.random.default_rng([seed, e]).permutation(n_samples)`` and cuts that order into consecutive
      batches of ``batch_size``; the last batch of an epoch holds the ``n_samples % batch_size`` samples
      left over, if any. Steps take the batches in order, epoch after epoch.

    Seeding each epoch from ``[seed, e]`` makes the order of any epoch computable on its own.
    """
    return list(iter_batches(n_samples, batch_size, steps, seed))


def iter_batches(n_samples, batch_size, steps, seed=0):
    """The batches of ``batch_indices``, one epoch's order at a time: memory stays ``O(n_samples)`` however many
    ``steps`` (training loops use this). The arguments are checked when it is called, before the first batch."""
    check_whole(
        "n_samples", n_samples, 1, "training needs at least one sample (pass X.shape[0] of an X with N >= 1 rows)"
    )
    seed = _check_schedule(steps, batch_size, seed)
    return _batches(int(n_samples), None if batch_size is None else int(batch_size), int(steps), seed)


def _check_schedule(steps, batch_size, seed):
    """The seed as an int, after checking the step count, batch size and seed of a training run."""
    check_whole("steps", steps, 0, STEPS_FIX)
    if batch_size is not None:
        check_whole("batch_size", batch_size, 1, "pass an integer such as 32, or None for the full batch")
    return check_seed("seed", seed)


def _batches(n_samples, batch_size, steps, seed):
    if batch_size is None or batch_size >= n_samples:
        everything = np.arange(n_samples)
        everything.flags.writeable = False  # the same array every step: nobody may change it
        for _ in range(steps):
            yield everything
        return
    step, epoch = 0, 0
    while step < steps:
        order = np.random.default_rng([seed, epoch]).permutation(n_samples)
        for start in range(0, n_samples, batch_size):
            if step == steps:
                return
            yield order[start : start + batch_size]
            step += 1
        epoch += 1


def check_training_arguments(net, X, Y, lr, steps, batch_size=None, seed=0):
    """``(X, Y, lr)``: the data validated for ``net`` and ``lr`` as a float; errors for a learning rate, step count,
    batch size or seed that cannot work."""
    X, Y = check_data(net, X, Y)
    check_positive(
        "lr", lr, "pass a learning rate below the stable bound 2 / lambda_max that manual.diagnose(net, X, Y) reports"
    )
    _check_schedule(steps, batch_size, seed)
    return X, Y, float(lr)


def check_starting_loss(value):
    """Raise ``NonFiniteError`` when the loss at the starting parameters (step 0) is not finite: training cannot
    start there, and calling it a divergence at step 1 would blame the learning rate."""
    if not np.isfinite(value):
        raise NonFiniteError(
            f"the starting loss (step 0, before any update) is {value!r}: the network overflows on this data before "
            "training starts; standardise X, scale the weights down (Network.random(..., weight_scale=1.0)), or use "
            "float64"
        )
    return value


def diverged(step, lr, value):
    """The error for a loss or parameter vector that stopped being finite at ``step``."""
    return NonFiniteError(
        f"training diverged at step {step} with lr = {lr!r}: the {value} is no longer finite; lower the learning rate "
        "below the stable bound 2 / lambda_max that manual.diagnose(net, X, Y, lr) reports"
    )
