"""Losses of one sample, with their gradient and Hessian with respect to the network output ``y_hat``.

Every function takes batches: ``y_hat`` and ``y`` are ``(N, K)``; values are ``(N,)``, gradients
``(N, K)``, Hessians ``(N, K, K)``, Hessian-vector products ``(N, K)``. The objective is the batch mean of the values.
Adding a loss means adding one ``Loss`` record here, its definition (and target check) in ``xval/definitions.py``
and one line in each reference engine.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from xval.errors import unknown_name


@dataclass(frozen=True)
class Loss:
    """One loss: ``value``, ``grad`` and ``hessian`` of ``(y_hat, y)``, and ``hessian_times(y_hat, y, r)``, the
    products ``H_n r_n`` ``(N, K)`` without forming ``H``. Each takes, optionally, the array-API namespace ``xp``
    of its arrays' library (numpy by default)."""

    name: str
    value: Callable
    grad: Callable
    hessian: Callable
    formula: str
    hessian_times: Callable = None


def _mse_value(y_hat, y, xp=np):
    """0.5 * ||y_hat - y||^2."""
    r = y_hat - y
    return 0.5 * xp.sum(r * r, axis=-1)


def _mse_grad(y_hat, y, xp=np):
    return y_hat - y


def _mse_hessian(y_hat, y, xp=np):
    """The identity, once per sample."""
    n, k = y_hat.shape
    return xp.broadcast_to(xp.eye(k, dtype=y_hat.dtype, device=y_hat.device), (n, k, k))


def _mse_hessian_times(y_hat, y, r, xp=np):
    return r


def _log_softmax(y_hat, xp=np):
    """log softmax by the log-sum-exp trick: subtract the row maximum first."""
    shifted = y_hat - xp.max(y_hat, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def _ce_value(y_hat, y, xp=np):
    """-sum_k y_k log softmax(y_hat)_k."""
    return -xp.sum(y * _log_softmax(y_hat, xp), axis=-1)


def _ce_grad(y_hat, y, xp=np):
    """softmax(y_hat) * sum_k y_k - y  (= p - y for probability rows)."""
    p = xp.exp(_log_softmax(y_hat, xp))
    return p * xp.sum(y, axis=-1, keepdims=True) - y


def _ce_hessian(y_hat, y, xp=np):
    """(sum_k y_k) (diag(p) - p p^T)."""
    p = xp.exp(_log_softmax(y_hat, xp))
    k = p.shape[-1]
    eye = xp.eye(k, dtype=p.dtype, device=p.device)
    h = p[:, :, None] * eye - p[:, :, None] * p[:, None, :]
    return h * xp.sum(y, axis=-1)[:, None, None]


def _ce_hessian_times(y_hat, y, r, xp=np):
    """(sum_k y_k) (p * r - p (p . r))."""
    p = xp.exp(_log_softmax(y_hat, xp))
    return xp.sum(y, axis=-1, keepdims=True) * (p * r - p * xp.sum(p * r, axis=-1, keepdims=True))


LOSSES = {
    loss.name: loss
    for loss in [
        Loss("mse", _mse_value, _mse_grad, _mse_hessian, "0.5 * ||y_hat - y||^2", _mse_hessian_times),
        Loss("cross_entropy", _ce_value, _ce_grad, _ce_hessian, "-sum_k y_k log softmax(y_hat)_k", _ce_hessian_times),
    ]
}


def get_loss(name):
    """The registered ``Loss`` called ``name``; an error listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_name("loss", name, LOSSES, plural="losses") from None
