"""The vocabulary of the contract: which activations and losses exist, what each one is, and what its targets
must look like.

Each entry is the forward definition only (a formula and a float64 numpy value), never a derivative: engines write
their own derivatives, and the suite uses these for the input checks (valid names, valid targets), the case table
(targets that nearly fit) and as the definition the high-precision arbiter evaluates. Adding an activation or a
loss means one entry here, one record in ``manual`` and one line in each reference engine.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .errors import TargetError, unknown_name


@dataclass(frozen=True)
class Definition:
    """``name``: ``formula``; ``value`` evaluates it on float64 numpy arrays."""

    name: str
    formula: str
    value: Callable
    check_targets: Optional[Callable] = None  # losses only: raise TargetError for targets the loss cannot take


def _log_softmax(y_hat):
    shifted = y_hat - np.max(y_hat, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def check_probability_rows(y, atol=1e-6):
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


ACTIVATIONS = {
    d.name: d
    for d in [
        Definition("identity", "f(x) = x", lambda x: x),
        Definition("sigmoid", "f(x) = 1 / (1 + exp(-x))", lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))),
        Definition("tanh", "f(x) = tanh(x)", np.tanh),
        Definition("relu", "f(x) = max(x, 0)", lambda x: np.maximum(x, 0.0)),
        Definition("softplus", "f(x) = log(1 + exp(x))", lambda x: np.logaddexp(x, 0.0)),
    ]
}

# per-sample losses of (y_hat, y), both (N, K) -> (N,)
LOSSES = {
    d.name: d
    for d in [
        Definition("mse", "0.5 * ||y_hat - y||^2", lambda y_hat, y: 0.5 * np.sum((y_hat - y) ** 2, axis=-1)),
        Definition(
            "cross_entropy",
            "-sum_k y_k log softmax(y_hat)_k",
            lambda y_hat, y: -np.sum(y * _log_softmax(y_hat), axis=-1),
            check_targets=check_probability_rows,
        ),
    ]
}


def activation(name):
    """The ``Definition`` of the activation ``name``; an error listing the valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise unknown_name("activation", name, ACTIVATIONS) from None


def loss(name):
    """The ``Definition`` of the loss ``name``; an error listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_name("loss", name, LOSSES, plural="losses") from None


def outputs(net, X):
    """``y_hat`` of ``net`` on ``X`` from the definitions alone, in float64 (for building data, not for checking)."""
    z = np.asarray(X, dtype=np.float64)
    for w, b, name in zip(net.weights, net.biases, net.activations):
        z = activation(name).value(z @ np.asarray(w, dtype=np.float64).T + b)
    return z
