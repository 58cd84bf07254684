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
    unit_hessian: bool = False  # the Hessian is the identity for every sample (the curvature pass skips forming it)
    # ``S`` ``(N, K, C)`` with ``S S^T`` the Hessian of each sample (the GGN's square root: backpropagating its ``C``
    # columns costs ``C`` vectors instead of a ``K x K`` matrix per layer)
    hessian_factor: Callable = None


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


def _softmax_parts(y_hat, xp=np):
    """``(log p, 1 - p, top)`` of ``p = softmax(y_hat)``, each to full relative accuracy, and the one-hot mask ``top``
    of each row's largest entry.

    Saturated rows (one ``p_k`` within rounding of 1) are where the plain formulas lose every digit: ``1 - p_k`` and
    ``p_k - p_k^2`` round to 0 although the truth is, say, ``1e-39``. Here the log-sum-exp leaves the largest term out
    of the sum (``log(1 + s)`` by ``log1p``), and ``1 - p = -expm1(log p)``.
    """
    k = y_hat.shape[-1]
    top = xp.reshape(xp.arange(k, device=y_hat.device), (1, k)) == xp.argmax(y_hat, axis=-1, keepdims=True)
    top_value = xp.max(y_hat, axis=-1, keepdims=True)
    shifted = y_hat - top_value
    others = xp.sum(xp.where(top, xp.zeros_like(shifted), xp.exp(shifted)), axis=-1, keepdims=True)
    log_p = shifted - xp.log1p(others)
    return log_p, -xp.expm1(log_p), top


def _log_softmax(y_hat, xp=np):
    """log softmax, accurate also for saturated rows (``_softmax_parts``)."""
    return _softmax_parts(y_hat, xp)[0]


def _ce_value(y_hat, y, xp=np):
    """-sum_k y_k log softmax(y_hat)_k."""
    return -xp.sum(y * _log_softmax(y_hat, xp), axis=-1)


def _ce_grad(y_hat, y, xp=np):
    """``p S - y`` with ``S = sum_k y_k`` (``p - y`` for probability rows), written ``(S - y) - S (1 - p)`` so that a
    saturated row keeps its digits: ``p_k - 1`` is ``-(1 - p_k)``, not 0."""
    log_p, one_minus_p, _ = _softmax_parts(y_hat, xp)
    total = xp.sum(y, axis=-1, keepdims=True)
    return (total - y) - total * one_minus_p


def _identity_factor(scale):
    """``sqrt(scale) I`` per sample."""

    def factor(y_hat, y, xp=np):
        n, k = y_hat.shape
        root = scale(y_hat) ** 0.5
        return xp.broadcast_to(root * xp.eye(k, dtype=y_hat.dtype, device=y_hat.device), (n, k, k))

    return factor


def _ce_factor(y_hat, y, xp=np):
    """``S (diag(sqrt p) - p sqrt(p)^T)``-style root of ``S (diag p - p p^T)``: ``(diag(r) - p r^T) sqrt(S)`` with
    ``r = sqrt(p)`` (``(diag r - p r^T)(diag r - r p^T) = diag p - 2 p p^T + p (r.r) p^T = diag p - p p^T``)."""
    log_p, _, _ = _softmax_parts(y_hat, xp)
    p = xp.exp(log_p)
    r = xp.exp(0.5 * log_p)
    k = p.shape[-1]
    eye = xp.eye(k, dtype=p.dtype, device=p.device)
    root = eye * r[:, None, :] - p[:, :, None] * r[:, None, :]
    return root * xp.sqrt(xp.sum(y, axis=-1))[:, None, None]


def _ce_hessian(y_hat, y, xp=np):
    """``S (diag(p) - p p^T)``, its diagonal written ``p (1 - p)`` (no cancellation in saturated rows)."""
    log_p, one_minus_p, _ = _softmax_parts(y_hat, xp)
    p = xp.exp(log_p)
    k = p.shape[-1]
    eye = xp.eye(k, dtype=p.dtype, device=p.device)
    h = eye * (p * one_minus_p)[:, :, None] - (1.0 - eye) * (p[:, :, None] * p[:, None, :])
    return h * xp.sum(y, axis=-1)[:, None, None]


def _ce_hessian_times(y_hat, y, r, xp=np):
    """``S p (r - p . r)``. For each row's largest ``p_k``, ``r_k - p . r`` is written
    ``(1 - p_k) r_k - sum_{j != k} p_j r_j``, which keeps its digits when ``p_k`` rounds to 1."""
    log_p, one_minus_p, top = _softmax_parts(y_hat, xp)
    p = xp.exp(log_p)
    zeros = xp.zeros_like(p)
    others = xp.sum(xp.where(top, zeros, p * r), axis=-1, keepdims=True)  # sum over j != k of p_j r_j
    top_r = xp.sum(xp.where(top, r, zeros), axis=-1, keepdims=True)
    top_one_minus_p = xp.sum(xp.where(top, one_minus_p, zeros), axis=-1, keepdims=True)
    top_p = xp.sum(xp.where(top, p, zeros), axis=-1, keepdims=True)
    deviation = xp.where(top, top_one_minus_p * top_r - others, r - (top_p * top_r + others))
    return xp.sum(y, axis=-1, keepdims=True) * p * deviation


def _scaled(loss, name, factor_of, formula):
    """``loss`` times ``factor_of(y_hat)`` (a number fixed by the output's shape), under ``name``."""

    def scale(function):
        def scaled(y_hat, *rest, **options):
            return factor_of(y_hat) * function(y_hat, *rest, **options)

        return scaled

    def scale_root(function):
        def scaled(y_hat, *rest, **options):
            return factor_of(y_hat) ** 0.5 * function(y_hat, *rest, **options)

        return scaled

    return Loss(
        name,
        scale(loss.value),
        scale(loss.grad),
        scale(loss.hessian),
        formula,
        scale(loss.hessian_times),
        unit_hessian=False,
        hessian_factor=scale_root(loss.hessian_factor),
    )


def _entries(y_hat):
    return 1.0 / y_hat.shape[-1]


def _bce_value(y_hat, y, xp=np):
    """sum_k max(f, 0) - f y + log(1 + exp(-|f|))."""
    return xp.sum(xp.maximum(y_hat, xp.zeros_like(y_hat)) - y_hat * y + xp.log1p(xp.exp(-xp.abs(y_hat))), axis=-1)


def _sigmoid(x, xp):
    e = xp.exp(-xp.abs(x))
    r = 1.0 / (1.0 + e)
    return xp.where(x >= 0, r, e * r), e * r * r  # sigma and sigma' = sigma (1 - sigma), without cancellation


def _bce_grad(y_hat, y, xp=np):
    return _sigmoid(y_hat, xp)[0] - y


def _bce_hessian(y_hat, y, xp=np):
    n, k = y_hat.shape
    return xp.eye(k, dtype=y_hat.dtype, device=y_hat.device) * _sigmoid(y_hat, xp)[1][:, :, None]


def _bce_hessian_times(y_hat, y, r, xp=np):
    return _sigmoid(y_hat, xp)[1] * r


def _bce_factor(y_hat, y, xp=np):
    n, k = y_hat.shape
    return xp.eye(k, dtype=y_hat.dtype, device=y_hat.device) * xp.sqrt(_sigmoid(y_hat, xp)[1])[:, :, None]


def _nll_value(y_hat, y, xp=np):
    return -xp.sum(y * y_hat, axis=-1)


def _nll_grad(y_hat, y, xp=np):
    return -y


def _nll_hessian(y_hat, y, xp=np):
    n, k = y_hat.shape
    return xp.zeros((n, k, k), dtype=y_hat.dtype, device=y_hat.device)


def _nll_hessian_times(y_hat, y, r, xp=np):
    return xp.zeros_like(r)


def _nll_factor(y_hat, y, xp=np):
    n, k = y_hat.shape
    return xp.zeros((n, k, 1), dtype=y_hat.dtype, device=y_hat.device)


_MSE = Loss(
    "mse",
    _mse_value,
    _mse_grad,
    _mse_hessian,
    "0.5 * ||y_hat - y||^2",
    _mse_hessian_times,
    unit_hessian=True,
    hessian_factor=_identity_factor(lambda y_hat: 1.0),
)
_BCE = Loss(
    "bce_with_logits",
    _bce_value,
    _bce_grad,
    _bce_hessian,
    "sum_k BCE(sigma(f_k), y_k)",
    _bce_hessian_times,
    hessian_factor=_bce_factor,
)

LOSSES = {
    loss.name: loss
    for loss in [
        _MSE,
        Loss(
            "cross_entropy",
            _ce_value,
            _ce_grad,
            _ce_hessian,
            "-sum_k y_k log softmax(y_hat)_k",
            _ce_hessian_times,
            hessian_factor=_ce_factor,
        ),
        _scaled(_MSE, "squared_error", lambda y_hat: 2.0, "||y_hat - y||^2"),
        _scaled(_MSE, "mean_squared_error", lambda y_hat: 2.0 / y_hat.shape[-1], "||y_hat - y||^2 / K"),
        _BCE,
        _scaled(_BCE, "mean_bce_with_logits", _entries, "sum_k BCE(sigma(f_k), y_k) / K"),
        Loss(
            "nll", _nll_value, _nll_grad, _nll_hessian, "-sum_k y_k f_k", _nll_hessian_times, hessian_factor=_nll_factor
        ),
    ]
}


def get_loss(name):
    """The registered ``Loss`` called ``name``; an error listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_name("loss", name, LOSSES, plural="losses") from None
