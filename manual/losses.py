"""Losses of one sample, with their gradient and Hessian with respect to the network output ``y_hat``.

Every function takes batches: ``y_hat`` and ``y`` are ``(N, K)``; values are ``(N,)``, gradients
``(N, K)``, Hessians ``(N, K, K)``. The objective is the batch mean of the values.
Adding a loss means adding one ``Loss`` record here and one line in each reference engine.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .errors import TargetError, unknown_name


@dataclass(frozen=True)
class Loss:
    name: str
    value: Callable
    grad: Callable
    hessian: Callable
    formula: str
    check_targets: Optional[Callable] = None


def _mse_value(y_hat, y):
    """0.5 * ||y_hat - y||^2."""
    r = y_hat - y
    return 0.5 * np.sum(r * r, axis=-1)


def _mse_hessian(y_hat, y):
    """The identity, once per sample."""
    n, k = y_hat.shape
    return np.broadcast_to(np.eye(k, dtype=y_hat.dtype), (n, k, k))


def _log_softmax(y_hat):
    """log softmax by the log-sum-exp trick: subtract the row maximum first."""
    shifted = y_hat - np.max(y_hat, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _ce_value(y_hat, y):
    """-sum_k y_k log softmax(y_hat)_k."""
    return -np.sum(y * _log_softmax(y_hat), axis=-1)


def _ce_grad(y_hat, y):
    """softmax(y_hat) * sum_k y_k - y  (= p - y for probability rows)."""
    p = np.exp(_log_softmax(y_hat))
    return p * np.sum(y, axis=-1, keepdims=True) - y


def _ce_hessian(y_hat, y):
    """(sum_k y_k) (diag(p) - p p^T)."""
    p = np.exp(_log_softmax(y_hat))
    k = p.shape[-1]
    eye = np.eye(k, dtype=p.dtype)
    h = p[:, :, None] * eye - p[:, :, None] * p[:, None, :]
    return h * np.sum(y, axis=-1)[:, None, None]


def _check_probability_rows(y, atol=1e-6):
    """Cross-entropy targets must be probability rows: entries in [0, 1], each row summing to 1."""
    bad_entries = np.argwhere((y < 0) | (y > 1))
    if bad_entries.size:
        n, k = bad_entries[0]
        raise TargetError(
            f"cross_entropy targets must be probability rows, but Y[{n}, {k}] = {float(y[n, k])!r} is outside [0, 1]; "
            "pass one-hot rows or softmax probabilities, or use loss='mse' for regression targets"
        )
    sums = np.sum(y, axis=-1)
    bad_rows = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad_rows.size:
        n = bad_rows[0]
        raise TargetError(
            f"cross_entropy targets must be probability rows, but row {n} of Y sums to {float(sums[n])!r}, not 1; "
            "normalise each row (Y / Y.sum(axis=1, keepdims=True)) or pass one-hot rows"
        )


LOSSES = {
    loss.name: loss
    for loss in [
        Loss("mse", _mse_value, lambda y_hat, y: y_hat - y, _mse_hessian, "0.5 * ||y_hat - y||^2"),
        Loss(
            "cross_entropy",
            _ce_value,
            _ce_grad,
            _ce_hessian,
            "-sum_k y_k log softmax(y_hat)_k",
            check_targets=_check_probability_rows,
        ),
    ]
}


def get_loss(name):
    """The registered ``Loss`` called ``name``; an error listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_name("loss", name, LOSSES, plural="losses") from None
