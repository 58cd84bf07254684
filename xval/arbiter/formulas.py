"""The forward definitions of ``xval.definitions``, written once more over the tape's ``Var`` and plain numbers (any
number type of ``numbers``): the arbiter differentiates exactly these formulas and nothing else.

The formulas are the definitions' own, evaluated without float64's guards (no max-shift in the softmax: mpmath has
no overflow), so the arbiter is the mathematical function at the given float64 inputs. Constants: irrational ones
(sqrt(2), sqrt(2/pi)) at the working precision, decimal ones as the decimals written (0.044715; SELU's alpha and
scale to the 31 digits of their definition), options (slope, alpha, beta, threshold) as the float64 numbers given.

Piecewise functions (relu, leaky_relu, elu, selu, softplus's threshold) take the branch of their definition; exactly
at the kink, where a derivative the pass needs does not exist, they raise ``AtKink`` (the layer turns it into a
``KinkError`` naming the unit). ``order``: the derivatives the pass takes (0 values, 1 first, 2 second).
"""

import mpmath

from . import numbers
from .tape import Var, value_of

SELU_ALPHA = "1.6732632423543772848170429916717"
SELU_SCALE = "1.0507009873554804934193349852946"


class AtKink(Exception):
    """``x`` is exactly at ``point``, where ``name`` has derivatives up to ``smoothness`` only."""

    def __init__(self, name, point, smoothness):
        super().__init__(name, point, smoothness)
        self.name, self.point, self.smoothness = name, point, smoothness


def side(x, compared, point, smoothness, order, name):
    """``1`` / ``-1`` when ``compared`` (the real number the definition tests, e.g. ``beta x``) is above / below
    ``point``; ``0`` at it, after raising ``AtKink`` when ``x`` depends on the parameters and the pass needs
    derivatives of an order the function does not have there."""
    if compared > point:
        return 1
    if compared < point:
        return -1
    if isinstance(x, Var) and order > smoothness:
        raise AtKink(name, point, smoothness)
    return 0


def _real(x):
    return numbers.real(value_of(x))


def _zero():
    return mpmath.mpf(0)


def _identity(x, order):
    return x


def _sigmoid(x, order):  # 1 / (1 + exp(-x))
    return 1 / (numbers.exp(-x) + 1)


def _tanh(x, order):
    return numbers.tanh(x)


def _relu(x, order):  # max(x, 0): x for x > 0, else 0 (a constant: no dependence on the parameters)
    return x if side(x, _real(x), 0, 0, order, "relu") > 0 else _zero()


def _softplus(x, order, beta=1.0, threshold=None):
    """log(1 + exp(beta x)) / beta, written log1p(exp(.)): the same function, without losing exp(.) < 1e-40; x where
    beta x > threshold (torch's Softplus). At beta x = threshold the function jumps: no derivative there."""
    beta = mpmath.mpf(beta)
    if threshold is not None and side(x, _real(x) * beta, mpmath.mpf(threshold), 0, order, "softplus") > 0:
        return x
    if beta == 1:
        return numbers.log1p(numbers.exp(x))
    return numbers.log1p(numbers.exp(x * beta)) / beta


def _leaky_relu(x, order, slope=0.01):  # x for x > 0, slope x otherwise; smooth where slope = 1
    slope = mpmath.mpf(slope)
    smoothness = 2 if slope == 1 else 0
    return x if side(x, _real(x), 0, smoothness, order, "leaky_relu") > 0 else x * slope


def _elu(x, order, alpha=1.0):
    """x for x > 0, alpha (exp(x) - 1) otherwise: C1 at 0 when alpha = 1 (both slopes 1), C0 otherwise."""
    alpha = mpmath.mpf(alpha)
    if side(x, _real(x), 0, 1 if alpha == 1 else 0, order, "elu") > 0:
        return x
    return numbers.expm1(x) * alpha


def _selu(x, order):  # scale (x for x > 0, alpha (exp(x) - 1) otherwise): slopes scale and scale alpha at 0
    scale, alpha = mpmath.mpf(SELU_SCALE), mpmath.mpf(SELU_ALPHA)
    if side(x, _real(x), 0, 0, order, "selu") > 0:
        return x * scale
    return numbers.expm1(x) * (alpha * scale)


def _gelu(x, order):  # x (1 + erf(x / sqrt(2))) / 2
    return x * (numbers.erf(x * (1 / mpmath.sqrt(2))) + 1) * mpmath.mpf(0.5)


def _gelu_tanh(x, order):  # x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2
    inner = (x + x * x * x * mpmath.mpf("0.044715")) * mpmath.sqrt(2 / mpmath.pi)
    return x * (numbers.tanh(inner) + 1) * mpmath.mpf(0.5)


def _silu(x, order):  # x / (1 + exp(-x))
    return x * _sigmoid(x, order)


def _logsigmoid(x, order):  # -log(1 + exp(-x))
    return -numbers.log1p(numbers.exp(-x))


ACTIVATIONS = {
    "identity": _identity,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "relu": _relu,
    "softplus": _softplus,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "selu": _selu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": _silu,
    "logsigmoid": _logsigmoid,
}


def log_softmax(row):
    """``x_k - log sum_j exp(x_j)`` over a row (a list), without the max-shift."""
    log_normaliser = numbers.log(total([numbers.exp(x) for x in row]))
    return [x - log_normaliser for x in row]


def total(terms):
    """``terms[0] + terms[1] + ...`` in order (the sum's own order matters for ``Bounded``)."""
    result = terms[0]
    for term in terms[1:]:
        result = result + term
    return result


def _squares(y_hat, y):
    differences = [p - t for p, t in zip(y_hat, y)]
    return total([d * d for d in differences])


def _mse(y_hat, y):  # 0.5 ||y_hat - y||^2
    return _squares(y_hat, y) * mpmath.mpf(0.5)


def _squared_error(y_hat, y):  # ||y_hat - y||^2
    return _squares(y_hat, y)


def _mean_squared_error(y_hat, y):  # ||y_hat - y||^2 / K
    return _squares(y_hat, y) / len(y_hat)


def _cross_entropy(y_hat, y):  # -sum_k y_k log softmax(y_hat)_k
    return -total([p * t for p, t in zip(log_softmax(y_hat), y)])


def _nll(y_hat, y):  # -sum_k y_k f_k
    return -total([p * t for p, t in zip(y_hat, y)])


def _bce(y_hat, y):
    """sum_k max(f, 0) - f y + log(1 + exp(-|f|)), which is sum_k log(1 + exp(f)) - f y: written so, without the
    kinks of max and |f| that cancel in the sum."""
    return total([numbers.log1p(numbers.exp(f)) - f * t for f, t in zip(y_hat, y)])


def _mean_bce(y_hat, y):
    return _bce(y_hat, y) / len(y_hat)


LOSSES = {
    "mse": _mse,
    "cross_entropy": _cross_entropy,
    "squared_error": _squared_error,
    "mean_squared_error": _mean_squared_error,
    "nll": _nll,
    "bce_with_logits": _bce,
    "mean_bce_with_logits": _mean_bce,
}
