"""Problem 1: every registered activation's hand-written f' and f'' against sympy.

Three ways: (1) the hand-written numpy code of ``manual.activations``, run on sympy symbols, is symbolically
equal to ``sympy.diff`` of an independent oracle written below (the difference simplifies to zero), on
``x > 0`` and on ``x < 0`` separately, since the code branches on the sign; (2) the numbers agree with the
oracle evaluated at 50 digits on a grid that reaches |x| = 1000; (3) sigma' = sigma (1 - sigma). Way (1) runs the
array-API formulas (what torch, cupy and array-api-strict compute; object arrays take them too); numpy floats take
scipy's ``expit`` for sigmoid below ``manual.activations.EXPIT_ENTRIES`` entries and the array-API formulas from
there on: ways (2) and (3) check both, on the grid and on copies of it that reach that size.
torch and jax check the same derivatives through the engines (test_comparisons.py).
"""

import functools

import mpmath
import numpy as np
import pytest
import sympy as sp

import manual
from manual import activations

x = sp.Symbol("x", real=True)

# The oracle: each activation as a sympy expression, written independently of manual.activations.
ORACLE = {
    "identity": x,
    "sigmoid": 1 / (1 + sp.exp(-x)),
    "tanh": sp.tanh(x),
    "relu": sp.Max(x, 0),
    "softplus": sp.log(1 + sp.exp(x)),
    "leaky_relu": sp.Piecewise((x, x > 0), (sp.Rational(1, 100) * x, True)),
    "elu": sp.Piecewise((x, x > 0), (sp.exp(x) - 1, True)),
    "selu": sp.Float("1.0507009873554804934193349852946", 40)
    * sp.Piecewise((x, x > 0), (sp.Float("1.6732632423543772848170429916717", 40) * (sp.exp(x) - 1), True)),
    "gelu": x * (1 + sp.erf(x / sp.sqrt(2))) / 2,
    "gelu_tanh": x * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 1000000) * x**3))) / 2,
    "silu": x / (1 + sp.exp(-x)),
    "logsigmoid": -sp.log(1 + sp.exp(-x)),
}


def test_the_oracle_covers_every_registered_activation():
    assert sorted(ORACLE) == sorted(manual.ACTIVATIONS)


class Symbolic:
    """A sympy expression dressed so that numpy's object-array loops (np.exp, np.tanh, abs, comparisons)
    run the engine's own code on it."""

    def __init__(self, expr):
        self.expr = sp.sympify(expr)

    @staticmethod
    def _of(other):
        return other.expr if isinstance(other, Symbolic) else sp.sympify(other)

    def __add__(self, other):
        return Symbolic(self.expr + self._of(other))

    def __radd__(self, other):
        return Symbolic(self._of(other) + self.expr)

    def __sub__(self, other):
        return Symbolic(self.expr - self._of(other))

    def __rsub__(self, other):
        return Symbolic(self._of(other) - self.expr)

    def __mul__(self, other):
        return Symbolic(self.expr * self._of(other))

    def __rmul__(self, other):
        return Symbolic(self._of(other) * self.expr)

    def __truediv__(self, other):
        return Symbolic(self.expr / self._of(other))

    def __rtruediv__(self, other):
        return Symbolic(self._of(other) / self.expr)

    def __neg__(self):
        return Symbolic(-self.expr)

    def __abs__(self):
        return Symbolic(sp.Abs(self.expr))

    def __pow__(self, power):
        return Symbolic(self.expr ** self._of(power))

    def _compare(self, other, relation):
        truth = relation(self.expr, self._of(other))
        if truth not in (sp.true, sp.false):
            raise TypeError(f"cannot decide {truth} symbolically; give the symbol a sign")
        return bool(truth)

    def __gt__(self, other):
        return self._compare(other, sp.StrictGreaterThan)

    def __ge__(self, other):
        return self._compare(other, sp.GreaterThan)

    def __lt__(self, other):
        return self._compare(other, sp.StrictLessThan)

    def __le__(self, other):
        return self._compare(other, sp.LessThan)

    def exp(self):
        return Symbolic(sp.exp(self.expr))

    def tanh(self):
        return Symbolic(sp.tanh(self.expr))

    def expm1(self):
        return Symbolic(sp.exp(self.expr) - 1)

    def erfc(self):
        return Symbolic(sp.erfc(self.expr))


def run_symbolically(function, symbol):
    """``function`` (numpy code) applied to a one-element object array holding ``symbol``; a sympy expression."""
    out = function(np.array([Symbolic(symbol)], dtype=object))
    value = np.asarray(out, dtype=object).reshape(-1)[0]
    return value.expr if isinstance(value, Symbolic) else sp.sympify(value)


def simplifies_to_zero(expr):
    return sp.simplify(sp.expand(sp.simplify(expr.rewrite(sp.erf).rewrite(sp.exp)))) == 0


def equal(ours, oracle, symbol, sign):
    """``ours == oracle`` as expressions in ``symbol``: symbolically, or where the code holds float64 constants
    (selu's scale, gelu's 1/sqrt(2 pi)) to their rounding: the difference at 30 digits at points of the sign,
    within 1e-15 of the oracle's size there."""
    if simplifies_to_zero(ours - oracle):
        return True
    if not (ours.atoms(sp.Float) or oracle.atoms(sp.Float)):
        return False
    points = [0.1, 0.5, 1.0, 2.0, 5.0]
    for point in points:
        at = {symbol: sp.Float(point if sign == "positive" else -point, 30)}
        difference, size = abs(sp.N((ours - oracle).subs(at), 30)), abs(sp.N(oracle.subs(at), 30))
        if difference > 1e-15 * max(size, 1e-300):
            return False
    return True


# gelu_tanh's derivatives are beyond sympy's simplify in minutes; they are checked at 30 digits on the grid below.
SYMBOLIC = sorted(set(ORACLE) - {"gelu_tanh"})


@pytest.mark.parametrize("sign", ["positive", "negative"])
@pytest.mark.parametrize("name", SYMBOLIC)
def test_hand_written_derivatives_equal_sympy_symbolically(name, sign):
    symbol = sp.Symbol("t", positive=True) if sign == "positive" else sp.Symbol("t", negative=True)
    oracle = ORACLE[name].subs(x, symbol)
    act = manual.get_activation(name)
    first, second = sp.diff(oracle, symbol), sp.diff(oracle, symbol, 2)
    assert equal(run_symbolically(act.df, symbol), first, symbol, sign), f"{name}' on t {sign}"
    assert equal(run_symbolically(act.d2f, symbol), second, symbol, sign), f"{name}'' on t {sign}"


def _grid():
    """Both signs, from 1e-3 to 1000: the large end is where naive formulas overflow or cancel."""
    magnitudes = np.concatenate([np.geomspace(1e-3, 1e3, 49), [0.5, 1.0, 2.0, 20.0, 36.0, 40.0, 700.0, 710.0]])
    return np.sort(np.concatenate([-magnitudes, magnitudes]))


GRID = _grid()
# numpy takes another sigmoid from this many entries on (``_by_expit``): the grid as it is, and copies of it past that.
SIZES = {"small": 1, "large": -(-activations.EXPIT_ENTRIES // GRID.size)}


def test_the_large_grid_takes_the_array_api_formulas_and_the_small_one_expit():
    assert activations._by_expit(GRID, np) and not activations._by_expit(np.tile(GRID, SIZES["large"]), np)


@functools.lru_cache(maxsize=None)
def _oracle(name, order):
    return _oracle_numbers(sp.diff(ORACLE[name], x, order))


def _oracle_numbers(expr):
    """``expr`` at every grid point in mpmath at 600 digits (the worst cancellation on the grid, log(1 + e^-1000),
    needs about 450; sympy's adaptive ``evalf`` takes minutes on erf at |x| = 1000), rounded to float64."""
    # relu'' is DiracDelta(x): 0 on the grid, which never holds 0
    function = sp.lambdify(x, expr, [{"DiracDelta": lambda value: 0}, "mpmath"])
    with mpmath.workdps(600):
        return np.array([float(function(mpmath.mpf(float(point)))) for point in GRID])


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(ORACLE))
def test_hand_written_values_match_the_oracle_on_a_wide_grid(name, order, size):
    act, copies = manual.get_activation(name), SIZES[size]
    ours = [act.f, act.df, act.d2f][order](np.tile(GRID, copies))
    expected = np.tile(_oracle(name, order), copies)
    # Relative 1e-12, plus rounding at the scale of the function: some formulas are accurate only in absolute
    # terms where a difference cancels (tanh'' = -2 t (1 - t^2) near saturation, for example).
    scale = np.max(np.abs(expected))
    error = np.abs(ours - expected)
    allowed = 1e-12 * np.abs(expected) + 4 * np.finfo(np.float64).eps * scale
    worst = int(np.argmax(error - allowed))
    assert np.all(error <= allowed), (
        f"{name} derivative {order} at x = {GRID[worst % GRID.size]!r}: {ours[worst]!r} != oracle {expected[worst]!r}"
    )


@pytest.mark.parametrize("size", sorted(SIZES))
def test_sigmoid_derivative_is_sigmoid_times_one_minus_sigmoid(size):
    sigma = ORACLE["sigmoid"]
    assert sp.simplify(sp.diff(sigma, x) - sigma * (1 - sigma)) == 0
    # and in the engine's numbers, on the same grid: relatively where 1 - s does not cancel (x <= 0), and
    # at the scale of sigma' (max 1/4) everywhere (for large x the product form itself loses relative accuracy)
    act, grid = manual.get_activation("sigmoid"), np.tile(GRID, SIZES[size])
    s = act.f(grid)
    left = grid <= 0
    np.testing.assert_allclose(act.df(grid)[left], (s * (1 - s))[left], rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(act.df(grid), s * (1 - s), rtol=0, atol=4 * np.finfo(np.float64).eps * 0.25)
    assert act.df(np.zeros(grid.size))[0] == 0.25


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("name", sorted(ORACLE))
def test_curvature_from_the_forward_values_matches_the_oracle(name, size):
    """``Activation.curvature`` (f'' from x, f(x) and f'(x), as the Hessian and hvp passes take it) against the oracle's
    f''; ``None`` only where the oracle's f'' is 0 on the whole grid."""
    act, grid = manual.get_activation(name), np.tile(GRID, SIZES[size])
    expected = np.tile(_oracle(name, 2), SIZES[size])
    ours = act.curvature(grid, act.f(grid), act.df(grid))
    if ours is None:
        assert np.all(expected == 0), f"{name}: curvature says f'' = 0, the oracle does not"
        return
    allowed = 1e-12 * np.abs(expected) + 4 * np.finfo(np.float64).eps * np.max(np.abs(expected))
    assert np.all(np.abs(ours - expected) <= allowed), f"{name}: curvature from the forward values differs from f''"
