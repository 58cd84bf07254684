"""A scalar reverse-mode tape (micrograd's idea, with flat lists): every ``Var`` records its parents and the local
derivative towards each, and ``backward`` sums ``adjoint(parent) += adjoint(child) * local`` in reverse creation
order. The values may be any number type of ``numbers`` (``mpf``, ``Dual``, ``Bounded``): over ``Dual`` values the
adjoints are ``Dual`` too, and their tangents are derivatives of the gradient (forward over reverse).

A value that does not depend on the parameters (data, frozen constants, a relu's zero) stays a plain number and is
never recorded. The local derivatives come from ``numbers``' elementary rules, nothing else: a network's derivatives
are whatever the chain rule makes of its forward definition.
"""

import mpmath

from ..errors import XvalError
from . import numbers


class KinkError(XvalError, ArithmeticError):
    """A piecewise function evaluated exactly at its kink where the derivatives asked for do not exist there (their
    value would be a convention, not a value): the message names the layer, the sample and the unit."""


def _exact(x):
    """Python ints and floats as ``mpf``, so that ``1 / 3`` is not rounded to float64 on the way."""
    return mpmath.mpf(x) if isinstance(x, (int, float)) else x


class Tape:
    """The nodes of one computation in creation order (which is a topological order)."""

    def __init__(self):
        self.parents = []  # per node: tuple of (parent index, local derivative)

    def record(self, value, parents):
        index = len(self.parents)
        self.parents.append(parents)
        return Var(self, value, index)

    def leaf(self, value):
        return self.record(value, ())

    @property
    def entries(self):
        """Parent entries over all nodes: the work of one backward pass."""
        return sum(len(parents) for parents in self.parents)

    def backward(self, output, seed=1):
        """Adjoints ``d output / d node`` for every node, a list (``None`` where a node does not reach ``output``)."""
        adjoints = [None] * len(self.parents)
        adjoints[output.index] = seed
        for index in range(output.index, -1, -1):
            adjoint = adjoints[index]
            if adjoint is None:
                continue
            for parent, local in self.parents[index]:
                term = adjoint * local
                adjoints[parent] = term if adjoints[parent] is None else adjoints[parent] + term
        return adjoints


def value_of(x):
    """The number of a ``Var``, or ``x`` itself (a constant)."""
    return x.value if isinstance(x, Var) else x


class Var:
    """A value on a tape. Arithmetic with another ``Var`` or with a constant records a node."""

    __slots__ = ("tape", "value", "index")

    def __init__(self, tape, value, index):
        self.tape, self.value, self.index = tape, value, index

    def _node(self, value, parents):
        return self.tape.record(value, parents)

    def apply(self, value, local):
        """A node ``f(self)`` whose value is ``value`` and whose derivative towards ``self`` is ``local``."""
        return self._node(value, ((self.index, local),))

    def __add__(self, other):
        if isinstance(other, Var):
            return self._node(self.value + other.value, ((self.index, 1), (other.index, 1)))
        return self._node(self.value + _exact(other), ((self.index, 1),))

    __radd__ = __add__

    def __neg__(self):
        return self._node(-self.value, ((self.index, -1),))

    def __sub__(self, other):
        if isinstance(other, Var):
            return self._node(self.value - other.value, ((self.index, 1), (other.index, -1)))
        return self._node(self.value - _exact(other), ((self.index, 1),))

    def __rsub__(self, other):
        return self._node(_exact(other) - self.value, ((self.index, -1),))

    def __mul__(self, other):
        if isinstance(other, Var):
            return self._node(self.value * other.value, ((self.index, other.value), (other.index, self.value)))
        other = _exact(other)
        return self._node(self.value * other, ((self.index, other),))

    __rmul__ = __mul__

    def __rtruediv__(self, other):  # other / self, other a constant
        inverse = 1 / self.value
        value = _exact(other) * inverse
        return self._node(value, ((self.index, -value * inverse),))

    def __truediv__(self, other):
        if isinstance(other, Var):
            return self * (1 / other)
        other = _exact(other)
        return self._node(self.value / other, ((self.index, 1 / other),))

    def exp(self):
        value = numbers.exp(self.value)
        return self.apply(value, value)

    def expm1(self):
        return self.apply(numbers.expm1(self.value), numbers.exp(self.value))

    def log(self):
        return self.apply(numbers.log(self.value), 1 / self.value)

    def log1p(self):
        return self.apply(numbers.log1p(self.value), 1 / (1 + self.value))

    def tanh(self):
        value = numbers.tanh(self.value)
        return self.apply(value, 1 - value * value)

    def erf(self):
        return self.apply(numbers.erf(self.value), numbers.erf_slope(self.value))


def linear(terms, bias=None):
    """``sum_i a_i * b_i + bias`` over ``terms`` ``[(a_i, b_i)]`` as one node whose parents are every ``Var`` among
    the factors (local derivative: the other factor) and the bias (local derivative 1); a plain number when nothing
    is a ``Var``. Used by every linear layer (dense, convolution, average pooling)."""
    tape, parents = None, []
    if isinstance(bias, Var):
        tape, value = bias.tape, bias.value
        parents.append((bias.index, 1))
    else:
        value = bias
    for a, b in terms:
        a_value, b_value = value_of(a), value_of(b)
        product = a_value * b_value
        value = product if value is None else value + product
        if isinstance(a, Var):
            tape = a.tape
            parents.append((a.index, b_value))
        if isinstance(b, Var):
            tape = b.tape
            parents.append((b.index, a_value))
    if value is None:
        value = mpmath.mpf(0)
    return tape.record(value, tuple(parents)) if parents else value
