"""The number types the arbiter computes with, all over mpmath: plain ``mpf``, ``Dual`` (a value and its derivative
along one or several directions) and ``Bounded`` (a value and a bound on the error a float64 evaluation of the same
operations would make). They nest: a ``Dual`` whose parts are ``Bounded`` carries the float64 error bound of a
second derivative.

The elementary functions (``exp``, ``expm1``, ``log``, ``log1p``, ``tanh``, ``erf``) dispatch on the type, so the tape
and the network code are written once for every type (the tape's ``Var`` has the same methods). These derivative
rules are the only calculus in the arbiter: ``d exp = exp``, ``d expm1 = exp``, ``d log x = 1/x``,
``d log1p x = 1/(1+x)``, ``d tanh = 1 - tanh^2``, ``d erf x = 2/sqrt(pi) exp(-x^2)`` and the product and quotient
rules.
"""

import mpmath
import numpy as np

_PLAIN = (mpmath.mpf, int, float)


def _dispatch(name, function):
    def elementary(x):
        return function(x) if isinstance(x, _PLAIN) else getattr(x, name)()

    elementary.__name__ = name
    return elementary


exp = _dispatch("exp", mpmath.exp)
expm1 = _dispatch("expm1", mpmath.expm1)
log = _dispatch("log", mpmath.log)
log1p = _dispatch("log1p", mpmath.log1p)
tanh = _dispatch("tanh", mpmath.tanh)
erf = _dispatch("erf", mpmath.erf)


def erf_slope(x):
    """``d erf(x) / dx = 2 / sqrt(pi) exp(-x^2)`` for any number type."""
    return exp(-(x * x)) * (2 / mpmath.sqrt(mpmath.pi))


def real(x):
    """The ``mpf`` value under any nesting of ``Dual`` and ``Bounded``."""
    while isinstance(x, (Dual, Bounded)):
        x = x.value
    return x


def _exact_number(x):
    """Python ints and floats as ``mpf`` (so that ``1 / 3`` is not rounded to float64 on the way)."""
    return mpmath.mpf(x) if isinstance(x, (int, float)) else x


class Dual:
    """``value + tangent * eps`` with ``eps^2 = 0``: ``tangent`` is a number (one direction) or an object array
    ``(K,)`` (K directions at once; the full Hessian uses the K unit vectors)."""

    __slots__ = ("value", "tangent")

    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    def __add__(self, other):
        if isinstance(other, Dual):
            return Dual(self.value + other.value, self.tangent + other.tangent)
        return Dual(self.value + other, self.tangent)

    __radd__ = __add__

    def __neg__(self):
        return Dual(-self.value, -self.tangent)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, Dual):
            return Dual(self.value * other.value, self.tangent * other.value + other.tangent * self.value)
        if isinstance(other, np.ndarray):
            return NotImplemented
        return Dual(self.value * other, self.tangent * other)

    __rmul__ = __mul__

    def reciprocal(self):
        inverse = 1 / self.value
        return Dual(inverse, self.tangent * (-(inverse * inverse)))

    def __truediv__(self, other):
        return self * (other.reciprocal() if isinstance(other, Dual) else 1 / _exact_number(other))

    def __rtruediv__(self, other):
        return self.reciprocal() * other

    def exp(self):
        value = exp(self.value)
        return Dual(value, self.tangent * value)

    def log(self):
        return Dual(log(self.value), self.tangent * (1 / self.value))

    def log1p(self):
        return Dual(log1p(self.value), self.tangent * (1 / (1 + self.value)))

    def tanh(self):
        value = tanh(self.value)
        return Dual(value, self.tangent * (1 - value * value))

    def expm1(self):
        return Dual(expm1(self.value), self.tangent * exp(self.value))

    def erf(self):
        return Dual(erf(self.value), self.tangent * erf_slope(self.value))


class Bounded:
    """A value and ``error``, a first-order bound on the error of evaluating the same operations in floating point
    with unit roundoff ``unit`` (``2**-53`` for float64): each operation adds ``unit * |result|`` to the errors it
    inherits (``|a| e_b + |b| e_a`` for a product, ``e_a + e_b`` for a sum, ``|f'(a)| e_a`` for a function).
    Inputs (float64 arrays, held exactly) carry no error. When a sum cancels, the bound keeps the size of the terms:
    that is the rounding floor of the result (docs/findings.md, "The rounding floor")."""

    __slots__ = ("value", "error", "unit")

    def __init__(self, value, error, unit):
        self.value, self.error, self.unit = value, error, unit

    def _rounded(self, value, error):
        return Bounded(value, error + self.unit * abs(value), self.unit)

    def __add__(self, other):
        if isinstance(other, Bounded):
            return self._rounded(self.value + other.value, self.error + other.error)
        if isinstance(other, (Dual, np.ndarray)):
            return NotImplemented
        return self._rounded(self.value + other, self.error)

    __radd__ = __add__

    def __neg__(self):
        return Bounded(-self.value, self.error, self.unit)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, Bounded):
            error = abs(self.value) * other.error + abs(other.value) * self.error
            return self._rounded(self.value * other.value, error)
        if isinstance(other, (Dual, np.ndarray)):
            return NotImplemented
        return self._rounded(self.value * other, abs(other) * self.error)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, Bounded):
            value = self.value / other.value
            return self._rounded(value, (self.error + abs(value) * other.error) / abs(other.value))
        return self._rounded(self.value / other, self.error / abs(other))

    def __rtruediv__(self, other):  # other / self, other exact
        value = other / self.value
        return self._rounded(value, abs(value) * self.error / abs(self.value))

    def exp(self):
        value = mpmath.exp(self.value)
        return self._rounded(value, value * self.error)

    def log(self):
        return self._rounded(mpmath.log(self.value), self.error / abs(self.value))

    def log1p(self):
        return self._rounded(mpmath.log1p(self.value), self.error / abs(1 + self.value))

    def tanh(self):
        value = mpmath.tanh(self.value)
        return self._rounded(value, (1 - value * value) * self.error)

    def expm1(self):
        return self._rounded(mpmath.expm1(self.value), mpmath.exp(self.value) * self.error)

    def erf(self):
        return self._rounded(mpmath.erf(self.value), erf_slope(self.value) * self.error)


def _each(function, tangent):
    return np.vectorize(function, otypes=[object])(tangent) if isinstance(tangent, np.ndarray) else function(tangent)


def value_part(x):
    """``x`` without its error bound (``Bounded -> mpf``, ``Dual`` of ``Bounded`` -> ``Dual`` of ``mpf``)."""
    if isinstance(x, Bounded):
        return x.value
    if isinstance(x, Dual):
        tangent = x.tangent
        tangent = _each(value_part, tangent)
        return Dual(value_part(x.value), tangent)
    return x


def error_part(x):
    """The error bound of ``x`` (``Bounded -> mpf``; ``Dual`` -> ``Dual`` of the bounds); 0 for exact numbers."""
    if isinstance(x, Bounded):
        return x.error
    if isinstance(x, Dual):
        tangent = x.tangent
        tangent = _each(error_part, tangent)
        return Dual(error_part(x.value), tangent)
    return mpmath.mpf(0)
