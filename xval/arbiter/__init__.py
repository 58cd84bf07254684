"""The arbiter: an engine that computes every quantity of the contract in high precision (mpmath at
``XVAL_ARBITER_DIGITS`` digits, default 40) from the forward definition alone, and returns float64 numpy arrays
rounded from its high-precision values. It decides who is right when engines disagree.

How: ``formulas`` writes the activations and losses of ``xval.definitions`` over a reverse-mode ``tape``; the
gradient is the tape's backward pass over ``mpf`` values, and second derivatives are the same backward pass over
``Dual`` values (forward over reverse: the tangent of the gradient along ``v`` is ``H v``; with the P unit vectors as
tangents it is ``H``). No derivative code of any other engine is used; the only rules are those of ``numbers``.

Checked precision: every result is computed at ``d`` and at ``2 d`` digits; while any entry's float64 rounding
differs between the last two (cancellation ate the margin) the precision doubles again, up to
``MAX_DIGITS_FACTOR * d``. So each entry is the correctly rounded float64 of the exact value, except an entry that
cancels to (nearly) zero and still moves at the highest precision: it is returned when it is below
``10**-(8 d - 5)`` of the largest entry, and otherwise ``ArbiterPrecisionError`` says so.

relu: where a pre-activation is exactly 0 the derivative is a convention, not a value; the arbiter raises
``KinkError`` naming the unit rather than pick one. Sizes beyond ``LIMITS`` raise ``ArbiterLimitError``.
"""
from dataclasses import dataclass

import mpmath
import numpy as np

from .. import checks, config, memory
from ..errors import XvalError
from . import formulas, numbers
from .tape import KinkError, Tape, linear

MAX_DIGITS_FACTOR = 16


class ArbiterLimitError(XvalError, ValueError):
    """A problem too large for the arbiter (its cost grows like N P for first derivatives, N P K for K columns)."""


class ArbiterUnsupportedError(ArbiterLimitError):
    """A network the arbiter has no formulas for (a layer kind, activation or loss it does not write out)."""


class ArbiterPrecisionError(XvalError, ArithmeticError):
    """Results that still change in float64 between the two highest precisions tried."""


@dataclass(frozen=True)
class Limits:
    """The largest problems the arbiter takes (measured on 2 CPU cores: docs/findings.md, "The arbiter").

    ``first_order``: N * P for forward, loss, gradient, per-sample gradients and hvp. ``columns``: N * P * K for
    ``hessian`` (K = P) and ``hessian_block`` (K = P_m). ``parameters``: P for anything second order."""

    first_order: int = 64_000
    columns: int = 800_000
    parameters: int = 5_000


LIMITS = Limits()


def _check_supported(net, what):
    """Refuse, by name, a network the arbiter has no formulas for."""
    if not net.is_mlp:
        raise ArbiterUnsupportedError(f"{what}: the arbiter writes out plain MLPs only, not {net.describe()}")
    missing = sorted({name for name in net.activations if name not in formulas.ACTIVATIONS}
                     | ({net.loss} - set(formulas.LOSSES)))
    if missing:
        raise ArbiterUnsupportedError(f"{what}: the arbiter has no formula for {', '.join(missing)}")


def _check_size(net, n, columns, what):
    _check_supported(net, what)
    p = net.n_params
    if columns is None:
        if n * p > LIMITS.first_order or p > LIMITS.parameters:
            raise ArbiterLimitError(
                f"{what}: the arbiter takes N * P <= {LIMITS.first_order} (and P <= {LIMITS.parameters}); this problem "
                f"has N = {n}, P = {p}, N * P = {n * p}; use fewer samples or a smaller network to arbitrate it"
            )
    elif n * p * columns > LIMITS.columns:
        raise ArbiterLimitError(
            f"{what}: the arbiter takes N * P * K <= {LIMITS.columns} for second derivatives (K Hessian columns); this "
            f"problem has N = {n}, P = {p}, K = {columns}, N * P * K = {n * p * columns}; use fewer samples, a smaller "
            "network or hvp (K = 1)"
        )


# ---- one pass over the samples ----------------------------------------------------------------------------
def _sample(net, parameters, x, y, n, gradient):
    """Outputs, loss and (when ``gradient``) the adjoint of every parameter for sample ``n`` on a fresh tape."""
    tape = Tape()
    leaves = [tape.leaf(p) for p in parameters]
    z, offset = list(x), 0
    for l, (w, name) in enumerate(zip(net.weights, net.activations)):
        rows, cols = w.shape
        weights, biases = leaves[offset:offset + rows * cols], leaves[offset + rows * cols:offset + rows * (cols + 1)]
        offset += rows * (cols + 1)
        activation = formulas.ACTIVATIONS[name]
        z = [activation(linear(weights[i * cols:(i + 1) * cols], z, biases[i]), (l, n, i)) for i in range(rows)]
    loss = formulas.LOSSES[net.loss](z, y)
    adjoints = tape.backward(loss) if gradient else None
    return [o.value for o in z], loss.value, (None if adjoints is None else [adjoints[leaf.index] for leaf in leaves])


def _passes(net, X, Y, parameters, gradient):
    return [_sample(net, parameters, x, y, n, gradient) for n, (x, y) in enumerate(zip(X, Y))]


def _mp(array):
    return [mpmath.mpf(float(value)) for value in np.asarray(array, dtype=np.float64).reshape(-1)]


def _inputs(net, X, Y):
    X, Y = checks.check_data(net, X, Y)
    return [_mp(row) for row in X], [_mp(row) for row in Y]


def _tangents(tangent, count):
    """The tangent array ``(count,)`` of an adjoint (zeros where it is not a ``Dual``: no dependence)."""
    if isinstance(tangent, numbers.Dual):
        tangent = tangent.tangent
        return tangent if isinstance(tangent, np.ndarray) else np.array([tangent], dtype=object)
    return np.array([mpmath.mpf(0)] * count, dtype=object)


# ---- the quantities, in high precision (lists / object arrays of mpf or Bounded) --------------------------
def _leaf_values(net, unit):
    theta = _mp(net.to_vector())
    return theta if unit is None else [numbers.Bounded(t, mpmath.mpf(0), unit) for t in theta]


def _exact(quantity, net, X, Y, arguments, unit):
    """``quantity`` in high precision at the current mpmath precision, as an object array of numbers."""
    X, Y = _inputs(net, X, Y)
    n, p = len(X), net.n_params
    theta = _leaf_values(net, unit)
    zero = numbers.Bounded(mpmath.mpf(0), mpmath.mpf(0), unit) if unit else mpmath.mpf(0)
    if quantity in ("forward", "loss"):
        runs = _passes(net, X, Y, theta, gradient=False)
        if quantity == "forward":
            return np.array([outputs for outputs, _, _ in runs], dtype=object)
        return np.array(sum((loss for _, loss, _ in runs), zero) / n, dtype=object)
    if quantity in ("gradient", "per_sample_gradients"):
        rows = [[zero if a is None else a for a in adjoints] for _, _, adjoints in _passes(net, X, Y, theta, True)]
        rows = np.array(rows, dtype=object)
        return rows if quantity == "per_sample_gradients" else rows.sum(axis=0) / n
    if quantity == "hvp":
        v = _mp(checks.check_direction(net, arguments[0]))
        parameters = [numbers.Dual(t, vj) for t, vj in zip(theta, v)]
        runs = _passes(net, X, Y, parameters, True)
        return sum(np.array([_tangents(a, 1)[0] for a in adjoints], dtype=object) for _, _, adjoints in runs) / n
    if quantity in ("hessian", "hessian_block"):
        rows, cols = _block_slices(net, *arguments) if quantity == "hessian_block" else (slice(0, p), slice(0, p))
        k = cols.stop - cols.start
        zeros = np.array([zero] * k, dtype=object)
        parameters = []
        for j, t in enumerate(theta):
            tangent = zeros
            if cols.start <= j < cols.stop:
                tangent = zeros.copy()
                tangent[j - cols.start] = mpmath.mpf(1) if unit is None else numbers.Bounded(mpmath.mpf(1), mpmath.mpf(0), unit)
            parameters.append(numbers.Dual(t, tangent))
        total = np.array([[zero] * k for _ in range(rows.stop - rows.start)], dtype=object)
        for _, _, adjoints in _passes(net, X, Y, parameters, True):
            total = total + np.array([_tangents(a, k) for a in adjoints[rows]], dtype=object)
        return total / n
    raise ValueError(f"unknown quantity {quantity!r}")


def _block_slices(net, l, m):
    l, m = checks.check_layer(net, l, "l"), checks.check_layer(net, m, "m")
    return net.param_slices[l], net.param_slices[m]


def _columns(quantity, net, arguments):
    """K, the Hessian columns a second-order call computes (None for first order), after the memory guard."""
    if quantity == "hessian":
        p = net.n_params
        _guard(p, p, net, "arbiter.hessian")
        return p
    if quantity == "hessian_block":
        l, m = checks.check_layer(net, arguments[0], "l"), checks.check_layer(net, arguments[1], "m")
        rows, cols = net.layer_param_counts[l], net.layer_param_counts[m]
        _guard(rows, cols, net, f"arbiter.hessian_block(l={l}, m={m})")
        return cols
    return None


def _guard(rows, cols, net, what):
    """The memory guard on a ``(rows, cols)`` result (its working memory, mpmath numbers for one sample at a time,
    is far smaller within ``LIMITS``)."""
    result = memory.result_bytes(rows * cols, net.dtype)
    memory.check(result, f"{what} (a {rows} x {cols} array)", f"{result} bytes for the result")


def _to_float(array):
    return np.vectorize(lambda x: float(numbers.real(x)), otypes=[np.float64])(np.asarray(array, dtype=object))


def _settled(low, high):
    """Entries whose float64 roundings at two precisions agree (equal, or 1 unit apart in the last place)."""
    return (low == high) | (np.abs(low - high) <= np.spacing(np.abs(high)))


def _split(quantity, net, arguments):
    """``(X, Y, rest)`` from a contract call's arguments after ``net`` (``forward`` has no ``Y``: a neutral one)."""
    if quantity == "forward":
        X = checks.check_inputs(net, arguments[0])
        neutral = 1.0 / net.sizes[-1] if net.loss == "cross_entropy" else 0.0  # probability rows for the target check
        return X, np.full((X.shape[0], net.sizes[-1]), neutral, dtype=net.dtype), ()
    return arguments[0], arguments[1], tuple(arguments[2:])


def compute(quantity, net, *arguments, digits=None):
    """``quantity`` (a contract name; ``arguments`` as in the contract, after ``net``) as a float64 array, correctly
    rounded from the checked high precision."""
    start = config.arbiter_digits() if digits is None else digits
    X, Y, arguments = _split(quantity, net, arguments)
    _check_size(net, np.shape(X)[0] if np.ndim(X) == 2 else 1, _columns(quantity, net, arguments), f"arbiter.{quantity}")
    digits = start
    with mpmath.workdps(digits):
        low = _to_float(_exact(quantity, net, X, Y, arguments, None))
    while True:
        digits *= 2
        with mpmath.workdps(digits):
            high = _to_float(_exact(quantity, net, X, Y, arguments, None))
        unsettled = ~_settled(low, high)
        if not unsettled.any():
            return high
        if digits >= MAX_DIGITS_FACTOR * start:
            # What still moves at the highest precision is, to 10**-(digits/2 - 5) of the largest entry, zero.
            floor = 10.0 ** -(digits // 2 - 5) * np.max(np.abs(high), initial=0.0)
            if np.all(np.abs(high[unsettled]) <= floor):
                return high
            raise ArbiterPrecisionError(
                f"arbiter.{quantity}: {int(unsettled.sum())} float64 entries still change between {digits // 2} and "
                f"{digits} digits; raise XVAL_ARBITER_DIGITS (now {start}) to arbitrate this problem"
            )
        low = high


def with_error_bound(quantity, net, *arguments, unit=2.0 ** -53, digits=None):
    """``(value, bound)``: ``quantity`` in float64 and, per entry, the first-order bound on the error that a
    floating-point evaluation (unit roundoff ``unit``) of the same formulas makes; the rounding floor of
    ``xval.verdict``. Not precision-checked: the bound is an estimate of float64's reach, not a value."""
    digits = config.arbiter_digits() if digits is None else digits
    X, Y, arguments = _split(quantity, net, arguments)
    _check_size(net, np.shape(X)[0] if np.ndim(X) == 2 else 1, _columns(quantity, net, arguments), f"arbiter.{quantity}")
    with mpmath.workdps(digits):
        result = _exact(quantity, net, X, Y, arguments, mpmath.mpf(unit))
        values = np.vectorize(numbers.value_part, otypes=[object])(result)
        bounds = np.vectorize(numbers.error_part, otypes=[object])(result)
        return _to_float(values), _to_float(bounds)


# ---- the contract ---------------------------------------------------------------------------------------
def forward(net, X):
    """``(N, n_L)`` outputs."""
    return compute("forward", net, X)


def loss(net, X, Y):
    """``E = (1/N) sum_n loss_n``, a float."""
    return float(compute("loss", net, X, Y))


def gradient(net, X, Y):
    """``(P,)``, ``dE/dtheta``."""
    return compute("gradient", net, X, Y)


def per_sample_gradients(net, X, Y):
    """``(N, P)``, row ``n`` = ``d loss_n / dtheta``."""
    return compute("per_sample_gradients", net, X, Y)


def hvp(net, X, Y, v):
    """``(P,)``, ``H v``: the tangent of the gradient along ``v``."""
    return compute("hvp", net, X, Y, v)


def hessian_block(net, X, Y, l, m):
    """``(P_l, P_m)``: rows of layer ``l``, columns of layer ``m``."""
    return compute("hessian_block", net, X, Y, l, m)


def hessian(net, X, Y):
    """``(P, P)``, ``d2E/dtheta2``."""
    return compute("hessian", net, X, Y)
