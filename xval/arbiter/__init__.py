"""The arbiter: an engine that computes every quantity of the contract in high precision (mpmath at
``XVAL_ARBITER_DIGITS`` digits, default 40) from the forward definition alone, and returns float64 numpy arrays
rounded from its high-precision values. It decides who is right when engines disagree.

How: ``passes`` writes every layer kind of ``xval.layers`` and ``formulas`` the activations and losses of
``xval.definitions`` over a reverse-mode ``tape``; the gradient is the tape's backward pass over ``mpf`` values, and
second derivatives are the same backward pass over ``Dual`` values (forward over reverse: the tangent of the gradient
along ``v`` is ``H v``; with unit vectors as tangents, columns of ``H``). ``quantities`` computes a few primitives per
sample (outputs, gradients, the output Jacobian, the loss's Hessian in the outputs, Hessian columns) and derives the
rest, through the contract's derivations where they hold in high precision. No derivative code of any other engine is
used; the only rules are those of ``numbers``.

Checked precision: every result is computed at ``d`` and at ``2 d`` digits; while any entry's float64 rounding
differs between the last two (cancellation ate the margin) the precision doubles again, up to
``MAX_DIGITS_FACTOR * d``. So each entry is the correctly rounded float64 of the exact value, except an entry that
cancels to (nearly) zero and still moves at the highest precision: it is returned when it is below
``10**-(8 d - 5)`` of the largest entry, and otherwise ``ArbiterPrecisionError`` says so. A value beyond float64's
range raises ``OverflowResultError``, as every engine does.

Kinks: where a piecewise function (relu, leaky_relu, elu, selu, softplus's threshold, max pooling's ties) is exactly
at its kink and the derivatives a call needs do not exist there, the arbiter raises ``KinkError`` naming the layer,
sample and unit rather than pick a convention; values (forward, loss) are computed there. Calls whose cost is beyond
``LIMITS`` raise ``ArbiterLimitError``, and calls whose high-precision working set would not fit raise the memory
guard's ``MemoryGuardError``, before any work.
"""

import threading
from dataclasses import dataclass

import mpmath
import numpy as np

from .. import checks, config, contract, memory
from ..errors import UnsupportedError, XvalError
from . import eigen, formulas, numbers, passes, quantities
from .tape import KinkError

MAX_DIGITS_FACTOR = 16


class ArbiterLimitError(XvalError, ValueError):
    """A problem too costly for the arbiter (about N x tape entries x passes x tangents number operations)."""


class ArbiterUnsupportedError(ArbiterLimitError, UnsupportedError):
    """A network the arbiter has no formulas for (a layer kind, activation or loss it does not write out)."""


class ArbiterPrecisionError(XvalError, ArithmeticError):
    """Results that still change in float64 between the two highest precisions tried."""


@dataclass(frozen=True)
class Limits:
    """The largest problems the arbiter takes (measured on 2 CPU cores: docs/findings.md, "The arbiter").

    ``operations``: high-precision number operations of one call at the set precision, estimated as
    ``N x E x (B + 1) x (T + 1)`` (E: parent entries of one sample's tape, B: backward passes per sample, T: tangents
    per number) plus the matrix products outside the tape."""

    operations: int = 3_000_000


LIMITS = Limits()


# ---- arguments, and what a call will cost ------------------------------------------------------------------
def _arguments(quantity, net, arguments):
    """``{name: checked value}`` of a contract call's arguments after ``net``."""
    checks.check_network(net)
    if len(arguments) != len(quantity.parameters):
        raise TypeError(
            f"arbiter.{quantity.signature} takes {len(quantity.parameters)} arguments after net, got {len(arguments)}"
        )
    given = dict(zip(quantity.parameters, arguments))
    if "Y" in given:
        given["X"], given["Y"] = checks.check_data(net, given["X"], given["Y"])
    else:
        given["X"] = checks.check_inputs(net, given["X"])
    if "v" in given:
        given["v"] = checks.check_direction(net, given["v"])
    for name in ("l", "m"):
        if name in given:
            given[name] = checks.check_layer(net, given[name], name)
    if "k" in given:
        given["k"] = checks.check_count(net, given["k"])
    return given


def _check_supported(net, what):
    """Refuse, by name, a network the arbiter has no formulas for."""
    missing = passes.unsupported(net)
    if missing:
        raise ArbiterUnsupportedError(f"{what}: the arbiter has no formula for {', '.join(missing)}")


@dataclass(frozen=True)
class Cost:
    """A call's estimated ``operations`` (what ``LIMITS`` bounds) and the parts of its high-precision working set:
    ``nodes`` and ``entries`` of one sample's tape, ``tangents`` per number, ``cells`` held beside the tape, the
    backward ``passes`` per sample. ``at_least``: without the dry run, from ``entries >= P`` only."""

    operations: int
    nodes: int
    entries: int
    tangents: int
    cells: int
    passes: int
    at_least: bool = False


def _tape_size(net, arguments):
    """``(nodes, entries)`` of one sample's tape: a dry run of the first sample (values only)."""
    first = {name: value[:1] if name in ("X", "Y") else value for name, value in arguments.items()}
    problem = quantities.Problem(net, first, None)
    run, _, _ = problem.sample(0, problem.theta, 0, loss=problem.targets is not None)
    return len(run.tape.parents), run.tape.entries


def cost(quantity, net, arguments):
    """The ``Cost`` of ``quantity`` on checked ``arguments`` (``{name: value}``), from the plan of methods it runs."""
    n, p = arguments["X"].shape[0], net.n_params
    steps = quantities.plan(quantity)
    tangents = max(step.tangents(net, arguments) for step in steps)
    backward = max(step.passes(net, arguments) for step in steps)
    cells = max(step.cells(net, n, arguments) for step in steps)
    at_least = n * p * (backward + 1) * (tangents + 1) > LIMITS.operations  # every parameter is used at least once
    nodes, entries = (p, p) if at_least else _tape_size(net, arguments)
    operations = sum(
        n * entries * (step.passes(net, arguments) + 1) * (step.tangents(net, arguments) + 1)
        + n * step.dense(net, arguments)
        + step.once(net, arguments)
        for step in steps
    )
    return Cost(int(operations), nodes, entries, tangents, cells, backward, at_least)


def _check_cost(quantity, net, arguments, what):
    _check_supported(net, what)
    estimate = cost(quantity, net, arguments)
    if estimate.operations > LIMITS.operations:
        n, about = arguments["X"].shape[0], "at least" if estimate.at_least else "about"
        growth = f"N * P * K for K = {estimate.tangents} Hessian columns" if estimate.tangents else "N * P"
        raise ArbiterLimitError(
            f"{what}: {about} {estimate.operations:.3g} high-precision operations (N = {n} samples x {about} "
            f"{estimate.entries} tape entries per sample x {estimate.passes + 1} passes x {estimate.tangents + 1} for "
            f"{estimate.tangents} tangents, P = {net.n_params}: it grows like {growth}); the arbiter takes at most "
            f"{LIMITS.operations:.3g} (about a minute on 2 cores); use fewer samples or a smaller network to arbitrate "
            "it"
        )
    return estimate


# ---- the memory guard: mpmath numbers are Python objects ------------------------------------------------------
def mpf_bytes(digits):
    """Bytes of one ``mpf`` at ``digits`` decimal digits with the pointer that holds it (its object, the tuple of its
    parts and the mantissa's integer: measured 212 + 0.28 digits bytes; the guard takes 240 + 0.45 digits)."""
    return int(240 + 0.45 * digits)


def number_bytes(digits, tangents, bounded):
    """Bytes of one number of the tape: an ``mpf`` (a ``Bounded`` holds two and itself), and for ``Dual`` numbers
    the ``Dual``, its tangent array and the ``tangents`` numbers in it."""
    base = mpf_bytes(digits) * (2 if bounded else 1) + (64 if bounded else 0)
    return base + (64 + 112 + tangents * base if tangents else 0)


def memory_estimate(estimate, digits, bounded):
    """Bytes of a call's peak working set: per sample, three numbers per tape node (its value, a local derivative,
    its adjoint), the tape's entries and nodes themselves, and beside the tape the ``cells`` numbers held."""
    tape = estimate.nodes * (3 * number_bytes(digits, estimate.tangents, bounded) + 160) + estimate.entries * 80
    return int(tape + estimate.cells * number_bytes(digits, 0, bounded) + BASE_BYTES)


BASE_BYTES = 200_000  # what any call allocates beside its numbers (the dry run's tape, arrays of references)


def _guard(estimate, digits, bounded, what):
    cached = _cached_cells()
    needed = memory_estimate(estimate, digits, bounded) + cached * number_bytes(digits, 0, True)
    memory.check(
        needed,
        f"{what} at {digits} digits",
        f"{estimate.nodes} tape nodes of numbers with {estimate.tangents} tangents, {estimate.cells} numbers "
        f"held and {cached} kept from the last call on these data, at "
        f"{number_bytes(digits, estimate.tangents, bounded)} bytes per number (xval.arbiter.memory_estimate)",
    )


# ---- values ---------------------------------------------------------------------------------------------------
def _parts(result):
    return result if isinstance(result, tuple) else (result,)


def _shaped(parts, paired):
    return tuple(parts) if paired else parts[0]


def _to_float(array):
    """float64 of every number (infinite beyond float64's range: ``_finished`` reports it)."""
    with np.errstate(over="ignore"):
        return np.vectorize(lambda x: float(numbers.real(x)), otypes=[np.float64])(np.asarray(array, dtype=object))


def _settled(low, high):
    """Entries whose float64 roundings at two precisions agree (equal, or 1 unit apart in the last place)."""
    with np.errstate(invalid="ignore"):  # inf - inf where both overflowed: equal, so settled
        return (low == high) | (np.abs(low - high) <= np.spacing(np.abs(high)))


def _prepare(name, net, arguments):
    quantity = contract.quantity(name)
    what = f"arbiter.{quantity.name}"
    arguments = _arguments(quantity, net, arguments)
    estimate = _check_cost(quantity, net, arguments, what)
    return quantity, what, arguments, estimate


# The values of quantities of X and Y alone computed on the last problem (network and data), per precision and unit
# roundoff: a trace, a diagonal and the eigenvalues read one Hessian, every GGN block one GGN, across calls.
_LAST = {"key": None, "net": None, "levels": {}}
_LAST_LOCK = threading.Lock()


def _shared(net, arguments, unit):
    X, Y = arguments["X"], arguments.get("Y")
    key = (id(net), X.dtype.str, X.shape, X.tobytes(), None if Y is None else (Y.dtype.str, Y.shape, Y.tobytes()))
    with _LAST_LOCK:
        if _LAST["key"] != key:  # a new problem: the last one's values go (the network is held, so ids stay unique)
            _LAST.update(key=key, net=net, levels={})
        return _LAST["levels"].setdefault((mpmath.mp.dps, unit), {})


def _cached_cells():
    """High-precision numbers the last problem's values hold (what the memory guard adds to a call's own)."""
    with _LAST_LOCK:
        levels = list(_LAST["levels"].values())
    return sum(sum(np.size(part) for part in _parts(v)) for values in levels for v in list(values.values()))


def _exact(quantity, net, arguments, unit):
    try:
        problem = quantities.Problem(net, arguments, unit, _shared(net, arguments, unit))
        return quantities.value(problem, quantity)
    except eigen.NotConverged as exc:
        raise ArbiterPrecisionError(f"arbiter.{quantity.name}: {exc}") from None


def _finished(quantity, net, arguments, what, parts, paired):
    """The float64 result, or the engines' ``OverflowResultError`` where it is not finite."""
    result = _shaped(parts, paired)
    if not checks.finite(result):
        raise checks.overflow_error(net, arguments["X"], what, result)
    return result


def compute(quantity, net, *arguments, digits=None):
    """``quantity`` (a contract name; ``arguments`` as in the contract, after ``net``) as a float64 array (0-d for a
    scalar, a pair for ``kfac_factors``), correctly rounded from the checked high precision."""
    start = config.arbiter_digits() if digits is None else digits
    quantity, what, arguments, estimate = _prepare(quantity, net, arguments)
    digits = start
    _guard(estimate, digits, False, what)
    with mpmath.workdps(digits):
        result = _exact(quantity, net, arguments, None)
        paired, low = isinstance(result, tuple), [_to_float(part) for part in _parts(result)]
        del result  # only its float64 rounding is kept across precisions
    while True:
        digits *= 2
        _guard(estimate, digits, False, what)
        with mpmath.workdps(digits):
            high = [_to_float(part) for part in _parts(_exact(quantity, net, arguments, None))]
        unsettled = [~_settled(a, b) for a, b in zip(low, high)]
        if not any(u.any() for u in unsettled):
            return _finished(quantity, net, arguments, what, high, paired)
        if digits >= MAX_DIGITS_FACTOR * start:
            # What still moves at the highest precision is, to 10**-(digits/2 - 5) of the largest entry, zero.
            floors = [10.0 ** -(digits // 2 - 5) * np.max(np.abs(h), initial=0.0) for h in high]
            if all(np.all(np.abs(h[u]) <= f) for h, u, f in zip(high, unsettled, floors)):
                return _finished(quantity, net, arguments, what, high, paired)
            count = sum(int(u.sum()) for u in unsettled)
            raise ArbiterPrecisionError(
                f"{what}: {count} float64 entries still change between {digits // 2} and {digits} digits; raise "
                f"XVAL_ARBITER_DIGITS (now {start}) to arbitrate this problem"
            )
        low = high


def with_error_bound(quantity, net, *arguments, unit=2.0**-53, digits=None):
    """``(value, bound)``: ``quantity`` in float64 and, per entry, the first-order bound on the error that a
    floating-point evaluation (unit roundoff ``unit``) of the same formulas makes; the rounding floor of
    ``xval.verdict``. Not precision-checked: the bound is an estimate of float64's reach, not a value. For
    ``kfac_factors`` both are pairs."""
    digits = config.arbiter_digits() if digits is None else digits
    quantity, what, arguments, estimate = _prepare(quantity, net, arguments)
    _guard(estimate, digits, True, what)
    with mpmath.workdps(digits):
        result = _exact(quantity, net, arguments, mpmath.mpf(unit))
        paired = isinstance(result, tuple)
        values = [_to_float(np.vectorize(numbers.value_part, otypes=[object])(part)) for part in _parts(result)]
        bounds = [_to_float(np.vectorize(numbers.error_part, otypes=[object])(part)) for part in _parts(result)]
    values = _finished(quantity, net, arguments, what, values, paired)
    return values, _shaped(bounds, paired)


# ---- the contract: one function per quantity, made from the contract's records ---------------------------------
def _contract_function(quantity):
    def function(net, *arguments):
        result = compute(quantity.name, net, *arguments)
        return result if isinstance(result, tuple) or np.ndim(result) else float(result)

    function.__name__ = function.__qualname__ = quantity.name
    function.__doc__ = (
        f"``{quantity.signature}``: {quantity.returns}; correctly rounded from the checked high precision."
    )
    function.__signature__ = contract.signature(quantity)
    return function


CONTRACT = tuple(q.name for q in (*contract.QUANTITIES.values(), *contract.PENDING.values()))
globals().update({q.name: _contract_function(q) for q in (*contract.QUANTITIES.values(), *contract.PENDING.values())})

__all__ = [
    "ArbiterLimitError",
    "ArbiterPrecisionError",
    "ArbiterUnsupportedError",
    "KinkError",
    "LIMITS",
    "Limits",
    "compute",
    "cost",
    "formulas",
    "memory_estimate",
    "numbers",
    "with_error_bound",
    *CONTRACT,
]
