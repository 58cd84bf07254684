"""Losses of one sample, with their gradient and Hessian with respect to the network output ``y_hat``.

Every function takes batches: ``y_hat`` and ``y`` are ``(N, K)``; values are ``(N,)``, gradients
``(N, K)``, Hessians ``(N, K, K)``. The objective is the batch mean of the values.
Adding a loss means adding one ``Loss`` record here, its definition (and target check) in ``xval/definitions.py``
and one line in each reference engine.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from xval.errors import unknown_name


@dataclass(frozen=True)
class Loss:
    name: str
    value: Callable
    grad: Callable
    hessian: Callable
    formula: str


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
        ),
    ]
}


def get_loss(name):
    """The registered ``Loss`` called ``name``; an error listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_name("loss", name, LOSSES, plural="losses") from None
