"""The engine contract as data: one entry per quantity, read by the tests, the benchmarks, the examples and
``python -m xval check``.

A ``Quantity`` says how the contract function is called (its arguments after ``net``, built from a ``Problem``),
the shape of what it returns, and which tolerance table judges it. ``Quantity.calls(problem)`` lists the concrete
calls; ``Call.evaluate(engine)`` runs one on an engine module and returns float64 numpy. Adding a quantity means one
entry in ``QUANTITIES`` plus its implementations in the engines.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import compare


@dataclass(frozen=True)
class Problem:
    """One input of the contract: a network, a batch ``X`` ``(N, n_0)``, targets ``Y`` ``(N, n_L)``, a direction ``v``
    ``(P,)`` for ``hvp`` and the layer pair ``block`` of ``hessian_block`` (when only one pair is wanted)."""

    name: str
    net: object
    X: np.ndarray
    Y: np.ndarray
    v: np.ndarray
    block: Optional[tuple] = None

    def astype(self, dtype):
        """The same problem in ``dtype`` (every array and the network)."""
        return Problem(self.name, self.net.astype(dtype), self.X.astype(dtype), self.Y.astype(dtype), self.v.astype(dtype),
                       self.block)


def same_layer_block(net):
    """The block the benchmarks measure: the same-layer block of layer 1, or of layer 0 in a one-layer network."""
    layer = 1 if net.n_layers > 1 else 0
    return (layer, layer)


@dataclass(frozen=True)
class Call:
    """One concrete call of a quantity: ``label`` (``hessian_block(0, 2)``), the arguments after ``net`` and the shape
    of the result."""

    quantity: "Quantity"
    label: str
    net: object
    arguments: tuple
    shape: tuple

    def function(self, engine, staged=False):
        """The engine's function for this call (``stage_<name>`` when ``staged``), or ``None`` when it has none."""
        value = getattr(engine, f"stage_{self.quantity.name}" if staged else self.quantity.name, None)
        return value if callable(value) else None

    def evaluate(self, engine):
        """Run the call on ``engine``; the result as a float64 numpy array. ``AttributeError`` when not implemented."""
        function = self.function(engine)
        if function is None:
            raise AttributeError(f"{getattr(engine, '__name__', engine)!r} does not implement {self.quantity.name}")
        return np.asarray(function(self.net, *self.arguments), dtype=np.float64)

    def stage(self, engine):
        """``stage_<name>(net, *arguments)`` when the engine has it, else a call of the plain function (numpy in and
        out): a zero-argument function for timing."""
        staged = self.function(engine, staged=True)
        if staged is not None:
            return staged(self.net, *self.arguments)
        function = self.function(engine)
        net, arguments = self.net, self.arguments
        return lambda: function(net, *arguments)


def _pairs(net):
    return [(l, m) for l in range(net.n_layers) for m in range(net.n_layers)]


@dataclass(frozen=True)
class Quantity:
    """A function of the contract. ``parameters`` are its arguments after ``net`` (taken from a ``Problem``:
    ``X``, ``Y``, ``v``, and ``l, m`` from the problem's block, or every layer pair), ``returns`` says what it gives,
    ``shape(net, N, l, m)`` its shape, ``tolerances`` the table (keyed by dtype) that judges two engines."""

    name: str
    parameters: tuple
    returns: str
    shape: Callable
    tolerances: dict = field(default_factory=lambda: compare.TOLERANCES)
    in_contract: bool = True

    @property
    def signature(self):
        return f"{self.name}(net, {', '.join(self.parameters)})"

    def implemented_by(self, engine):
        return callable(getattr(engine, self.name, None))

    def tolerance(self, dtype):
        return self.tolerances[np.dtype(dtype).name]

    def calls(self, problem, every_block=False):
        """The calls of this quantity on ``problem``: one, or for ``hessian_block`` one per layer pair (every pair
        when ``every_block``, else the problem's ``block``, by default the same-layer block of layer 1)."""
        n = problem.X.shape[0]
        values = {"X": problem.X, "Y": problem.Y, "v": problem.v}
        if "l" not in self.parameters:
            arguments = tuple(values[name] for name in self.parameters)
            return [Call(self, self.name, problem.net, arguments, self.shape(problem.net, n, None, None))]
        pairs = _pairs(problem.net) if every_block else [problem.block or same_layer_block(problem.net)]
        calls = []
        for l, m in pairs:
            arguments = tuple(values[name] for name in self.parameters if name not in ("l", "m")) + (l, m)
            calls.append(Call(self, f"{self.name}({l}, {m})", problem.net, arguments, self.shape(problem.net, n, l, m)))
        return calls


QUANTITIES = {
    q.name: q
    for q in [
        Quantity("forward", ("X",), "(N, n_L) outputs", lambda net, n, l, m: (n, net.sizes[-1])),
        Quantity("loss", ("X", "Y"), "float, the batch mean E = (1/N) sum_n loss_n", lambda net, n, l, m: ()),
        Quantity("gradient", ("X", "Y"), "(P,), dE/dtheta", lambda net, n, l, m: (net.n_params,)),
        Quantity("per_sample_gradients", ("X", "Y"), "(N, P), row n = d loss_n / dtheta (not divided by N)",
                 lambda net, n, l, m: (n, net.n_params)),
        Quantity("hvp", ("X", "Y", "v"), "(P,), the exact Hessian-vector product H v of E",
                 lambda net, n, l, m: (net.n_params,)),
        Quantity("hessian_block", ("X", "Y", "l", "m"), "(P_l, P_m), rows of layer l, columns of layer m",
                 lambda net, n, l, m: (net.layer_param_counts[l], net.layer_param_counts[m])),
        Quantity("hessian", ("X", "Y"), "(P, P), d2E/dtheta2", lambda net, n, l, m: (net.n_params, net.n_params)),
    ]
}

# Not part of the contract: the central-difference oracle, which the benchmarks measure for ``manual``.
FINITE_DIFFERENCE_GRADIENT = Quantity(
    "finite_difference_gradient", ("X", "Y"), "(P,), central differences of E", lambda net, n, l, m: (net.n_params,),
    tolerances=compare.FINITE_DIFFERENCE_TOLERANCES, in_contract=False,
)


def quantity(name):
    """The contract's ``Quantity`` called ``name`` (or the finite-difference oracle); an error listing the valid names."""
    from .errors import unknown_name

    if name == FINITE_DIFFERENCE_GRADIENT.name:
        return FINITE_DIFFERENCE_GRADIENT
    try:
        return QUANTITIES[name]
    except (KeyError, TypeError):
        raise unknown_name("quantity", name, QUANTITIES, plural="quantities") from None
