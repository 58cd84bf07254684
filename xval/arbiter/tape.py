"""A scalar reverse-mode tape (micrograd's idea, with flat lists): every ``Var`` records its parents and the local
derivative towards each, and ``backward`` sums ``adjoint(parent) += adjoint(child) * local`` in reverse creation
order. The values may be any number type of ``numbers`` (``mpf``, ``Dual``, ``Bounded``): over ``Dual`` values the
adjoints are ``Dual`` too, and their tangents are derivatives of the gradient (forward over reverse).

The local derivatives come from ``numbers``' elementary rules, nothing else: a network's derivatives are whatever
the chain rule makes of its forward definition.
"""
from ..errors import XvalError
from . import numbers


class KinkError(XvalError, ArithmeticError):
    """A relu pre-activation exactly at 0, where the derivative is a convention rather than a value."""


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

    def backward(self, output, seed=1):
        """Adjoints ``d output / d node`` for every node, as a list (``None`` where the node does not reach ``output``)."""
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


class Var:
    """A value on a tape. Arithmetic with another ``Var`` or with a constant records a node."""

    __slots__ = ("tape", "value", "index")

    def __init__(self, tape, value, index):
        self.tape, self.value, self.index = tape, value, index

    def _node(self, value, parents):
        return self.tape.record(value, parents)

    def __add__(self, other):
        if isinstance(other, Var):
            return self._node(self.value + other.value, ((self.index, 1), (other.index, 1)))
        return self._node(self.value + other, ((self.index, 1),))

    __radd__ = __add__

    def __neg__(self):
        return self._node(-self.value, ((self.index, -1),))

    def __sub__(self, other):
        if isinstance(other, Var):
            return self._node(self.value - other.value, ((self.index, 1), (other.index, -1)))
        return self._node(self.value - other, ((self.index, 1),))

    def __rsub__(self, other):
        return self._node(other - self.value, ((self.index, -1),))

    def __mul__(self, other):
        if isinstance(other, Var):
            return self._node(self.value * other.value, ((self.index, other.value), (other.index, self.value)))
        return self._node(self.value * other, ((self.index, other),))

    __rmul__ = __mul__

    def __rtruediv__(self, other):  # other / self, other a constant
        inverse = 1 / self.value
        value = other * inverse
        return self._node(value, ((self.index, -value * inverse),))

    def __truediv__(self, other):
        if isinstance(other, Var):
            return self * (1 / other)
        return self._node(self.value / other, ((self.index, 1 / other),))

    def exp(self):
        value = numbers.exp(self.value)
        return self._node(value, ((self.index, value),))

    def log(self):
        return self._node(numbers.log(self.value), ((self.index, 1 / self.value),))

    def log1p(self):
        return self._node(numbers.log1p(self.value), ((self.index, 1 / (1 + self.value)),))

    def tanh(self):
        value = numbers.tanh(self.value)
        return self._node(value, ((self.index, 1 - value * value),))

    def relu(self, where):
        """``max(x, 0)``; at ``x = 0`` exactly the derivative is a convention, so ``KinkError`` naming the unit
        (``where`` = (layer, sample, unit))."""
        x = numbers.real(self.value)
        if x == 0:
            layer, n, unit = where
            raise KinkError(
                f"relu pre-activation a_{layer}[{n}, {unit}] (layer {layer}, sample {n}, unit {unit}) is exactly 0, "
                "where relu has no derivative (engines return a convention there, usually 0); move the input or bias "
                "off the kink to compare derivatives"
            )
        if x > 0:
            return self._node(self.value, ((self.index, 1),))
        return self._node(self.value * 0, ())


def linear(weights, inputs, bias):
    """``sum_j weights[j] * inputs[j] + bias``, one node whose parents are every ``Var`` among the arguments (local
    derivative: the other factor of its product, or 1 for the bias). ``inputs`` may be constants (the data)."""
    tape = bias.tape
    value = bias.value
    parents = [(bias.index, 1)]
    for w, z in zip(weights, inputs):
        if isinstance(z, Var):
            value = value + w.value * z.value
            parents.append((w.index, z.value))
            parents.append((z.index, w.value))
        else:
            value = value + w.value * z
            parents.append((w.index, z))
    return tape.record(value, tuple(parents))
