"""The vocabulary of the contract: which activations and losses exist, what each one is, and what its targets
must look like.

Each entry is the forward definition only (a formula and a float64 numpy value), never a derivative: engines write
their own derivatives, and the suite uses these for the input checks (valid names, valid targets), the case table
(targets that nearly fit) and as the definition the high-precision arbiter evaluates. Activations follow torch's
semantics where torch has the function (options as torch names them: ``slope``, ``alpha``, ``beta``,
``threshold``). Adding an activation or a loss means one entry here, one record in ``manual`` and one line in each
reference engine and in the arbiter's formulas.
"""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .errors import ArgumentError, TargetError, unknown_name


@dataclass(frozen=True)
class Definition:
    """``name``: ``formula``; ``value`` evaluates it on float64 numpy arrays (activations: ``value(x, **options)``)."""

    name: str
    formula: str
    value: Callable
    check_targets: Optional[Callable] = None  # losses only: raise TargetError for targets the loss cannot take
    options: tuple = ()  # activations: the options it takes, with their defaults ((name, default), ...)
    class_targets: bool = False  # losses only: targets may be class indices (N,), taken as one-hot rows


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


def check_probabilities(y):
    """Binary cross-entropy targets must lie in [0, 1]."""
    bad = np.argwhere((y < 0) | (y > 1))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise TargetError(f"bce_with_logits targets must lie in [0, 1], but Y{list(index)} = {float(y[index])!r}")


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _softplus(x, beta=1.0, threshold=None):
    """log(1 + exp(beta x)) / beta; with a ``threshold`` (torch's Softplus), x itself where beta x > threshold."""
    value = np.logaddexp(beta * x, 0.0) / beta
    return value if threshold is None else np.where(beta * x > threshold, x, value)


def _erf(x):
    # scipy is imported here, not with xval: `python -m xval` fixes its import path only after the package loads
    from scipy.special import erf

    return erf(x)


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# The activations a plain MLP may use (``Network.from_arrays``); the rest come with torch models.
SUITE_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "softplus")

ACTIVATIONS = {
    d.name: d
    for d in [
        Definition("identity", "f(x) = x", lambda x: x),
        Definition("sigmoid", "f(x) = 1 / (1 + exp(-x))", lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))),
        Definition("tanh", "f(x) = tanh(x)", np.tanh),
        Definition("relu", "f(x) = max(x, 0)", lambda x: np.maximum(x, 0.0)),
        Definition(
            "softplus",
            "f(x) = log(1 + exp(beta x)) / beta, and x where beta x > threshold (if given)",
            _softplus,
            options=(("beta", 1.0), ("threshold", None)),
        ),
        Definition(
            "leaky_relu",
            "f(x) = x for x > 0, slope x otherwise",
            lambda x, slope=0.01: np.where(x > 0, x, slope * x),
            options=(("slope", 0.01),),
        ),
        Definition(
            "elu",
            "f(x) = x for x > 0, alpha (exp(x) - 1) otherwise",
            lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
            options=(("alpha", 1.0),),
        ),
        Definition(
            "selu",
            "f(x) = scale (x for x > 0, alpha (exp(x) - 1) otherwise)",
            lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0))),
        ),
        Definition(
            "gelu",
            "f(x) = x Phi(x) = x (1 + erf(x / sqrt(2))) / 2",
            lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
        ),
        Definition("gelu_tanh", "f(x) = x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2", _gelu_tanh),
        Definition("silu", "f(x) = x / (1 + exp(-x))", lambda x: x * 0.5 * (1.0 + np.tanh(0.5 * x))),
        Definition("logsigmoid", "f(x) = -log(1 + exp(-x))", lambda x: -np.logaddexp(-x, 0.0)),
    ]
}


def _squared(y_hat, y):
    r = (y_hat - y).reshape(len(y_hat), -1)
    return np.sum(r * r, axis=-1)


def _entries(y):
    return int(np.prod(np.shape(y)[1:]))


def _bce(y_hat, y):
    y_hat, y = y_hat.reshape(len(y_hat), -1), y.reshape(len(y), -1)
    return np.sum(np.maximum(y_hat, 0.0) - y_hat * y + np.log1p(np.exp(-np.abs(y_hat))), axis=-1)


# per-sample losses of (y_hat, y), both (N, *output shape) -> (N,)
LOSSES = {
    d.name: d
    for d in [
        Definition("mse", "0.5 * ||y_hat - y||^2", lambda y_hat, y: 0.5 * _squared(y_hat, y)),
        Definition(
            "cross_entropy",
            "-sum_k y_k log softmax(y_hat)_k",
            lambda y_hat, y: -np.sum(y * _log_softmax(y_hat), axis=-1),
            check_targets=check_probability_rows,
            class_targets=True,
        ),
        Definition("squared_error", "||y_hat - y||^2 (torch's MSELoss, reduction='sum')", _squared),
        Definition(
            "mean_squared_error",
            "||y_hat - y||^2 / K, K entries per sample (torch's MSELoss, reduction='mean')",
            lambda y_hat, y: _squared(y_hat, y) / _entries(y),
        ),
        Definition(
            "nll",
            "-sum_k y_k f_k, f log-probabilities (torch's NLLLoss after LogSoftmax, reduction='sum' or "
            "'mean' over the samples)",
            lambda y_hat, y: -np.sum(y * y_hat.reshape(len(y_hat), -1), axis=-1),
            check_targets=check_probability_rows,
            class_targets=True,
        ),
        Definition(
            "bce_with_logits",
            "sum_k max(f, 0) - f y + log(1 + exp(-|f|)) (torch's BCEWithLogitsLoss, 'sum')",
            _bce,
            check_targets=check_probabilities,
        ),
        Definition(
            "mean_bce_with_logits",
            "the same / K (torch's BCEWithLogitsLoss, reduction='mean')",
            lambda y_hat, y: _bce(y_hat, y) / _entries(y),
            check_targets=check_probabilities,
        ),
    ]
}


def activation(name):
    """The ``Definition`` of the activation ``name``; an error listing the valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise unknown_name("activation", name, ACTIVATIONS) from None


def check_options(name, options):
    """``options`` (``((key, value), ...)``) checked against what the activation ``name`` takes."""
    valid = dict(activation(name).options)
    for key, value in options:
        if key not in valid:
            listed = ", ".join(valid) or "none"
            raise ArgumentError(f"activation {name!r} takes no option {key!r}; its options are: {listed}")
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ArgumentError(f"activation {name!r}: option {key} = {value!r} must be a finite number")
    if name == "softplus" and dict(options).get("beta", 1.0) <= 0:
        raise ArgumentError("softplus: beta must be > 0")
    return tuple(options)


def loss(name):
    """The ``Definition`` of the loss ``name``; an error listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_name("loss", name, LOSSES, plural="losses") from None


def outputs(net, X):
    """``y_hat`` of a plain MLP ``net`` on ``X`` from the definitions alone, in float64 (for building data, not for
    checking)."""
    z = np.asarray(X, dtype=np.float64)
    for w, b, name in zip(net.weights, net.biases, net.activations):
        z = activation(name).value(z @ np.asarray(w, dtype=np.float64).T + b)
    return z
