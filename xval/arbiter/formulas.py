"""The forward definitions of ``xval.definitions``, written once more over the tape's ``Var`` (any number type of
``numbers``): the arbiter differentiates exactly these formulas and nothing else.

The formulas are the definitions' own, evaluated without float64's guards (no max-shift in the softmax: mpmath has
no overflow), so the arbiter is the mathematical function at the given float64 inputs.
"""
from .. import definitions


def _identity(x, where):
    return x


def _sigmoid(x, where):  # 1 / (1 + exp(-x))
    return 1 / ((-x).exp() + 1)


def _tanh(x, where):
    return x.tanh()


def _relu(x, where):  # max(x, 0)
    return x.relu(where)


def _softplus(x, where):  # log(1 + exp(x)), written log1p(exp(x)): the same function, without losing exp(x) < 1e-40
    return x.exp().log1p()


ACTIVATIONS = {"identity": _identity, "sigmoid": _sigmoid, "tanh": _tanh, "relu": _relu, "softplus": _softplus}


def _total(terms):
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _mse(y_hat, y):  # 0.5 * ||y_hat - y||^2
    differences = [p - t for p, t in zip(y_hat, y)]
    return _total([d * d for d in differences]) * 0.5


def _cross_entropy(y_hat, y):  # -sum_k y_k log softmax(y_hat)_k = -sum_k y_k (y_hat_k - log sum_j exp(y_hat_j))
    log_normaliser = _total([p.exp() for p in y_hat]).log()
    return -_total([(p - log_normaliser) * t for p, t in zip(y_hat, y)])


LOSSES = {"mse": _mse, "cross_entropy": _cross_entropy}
