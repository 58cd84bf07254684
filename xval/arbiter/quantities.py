"""The contract's quantities in high precision, from a few primitives per sample ``n`` (``Problem``):

- the outputs ``f_n`` and ``loss_n`` (a ``Pass``: the forward definition on a tape);
- the per-sample gradient ``g_n`` (one backward pass) and the output Jacobian ``J_n`` (one backward pass per output);
- ``Lambda_n = d2 loss_n / df2`` (the loss alone on output leaves carrying the K unit tangents);
- Hessian columns (the backward pass over ``Dual`` parameters whose tangents are unit vectors, or ``v``);

and, with ``c`` the reduction's weight (``1/N`` or 1): ``gradient = c sum g_n``, ``ggn = c sum J_n^T Lambda_n J_n``,
``ggnvp = c sum J_n^T Lambda_n J_n v``, ``empirical_fisher = c sum g_n g_n^T``, the Kronecker factors from the kept
input of the layer and the backward passes' adjoints at its output. A quantity without a method here is derived by
the contract (``contract.derive``: a block of the GGN, the diagonals, ``kfac_block`` from the factors), applied to
the high-precision values; the trace and the eigenvalues take their contract source's value and sum it or solve it
(``eigen``) in high precision, where the contract's own derivation would round to float64 first.

Values are object arrays of numbers (``mpf``, or ``Bounded`` for the rounding floor); ``kfac_factors`` a pair.
"""

from dataclasses import dataclass
from typing import Callable

import mpmath
import numpy as np

from .. import contract
from ..errors import UnsupportedNetworkError
from ..layers import describe, parameter_indices
from . import eigen, formulas, numbers
from .numbers import Bounded, Dual
from .passes import Pass
from .tape import Tape, Var, value_of


class Numbers:
    """How float64 inputs become numbers: ``mpf`` (exactly), or for the rounding floor ``Bounded`` with unit
    roundoff ``unit`` and no error (a constant the pass computes, e.g. ``1 / sqrt(var + eps)``, gets ``roundings``
    units of error)."""

    def __init__(self, unit):
        self.unit = unit
        self._arrays = {}

    def number(self, x, roundings=0):
        value = x if isinstance(x, mpmath.mpf) else mpmath.mpf(float(x))
        if self.unit is None:
            return value
        return Bounded(value, roundings * self.unit * abs(value), self.unit)

    def constant(self, array):
        """A frozen array's numbers, an object array of its shape (made once per array: it lives in the network)."""
        key = id(array)
        if key not in self._arrays:
            numbers_of = np.empty(np.shape(array), dtype=object)
            for index in np.ndindex(numbers_of.shape):
                numbers_of[index] = self.number(array[index])
            self._arrays[key] = (array, numbers_of)  # the array itself is kept so that its id is not reused
        return self._arrays[key][1]


class Problem:
    """One call's data in high precision: ``net``, ``arguments`` (``{name: value}`` of the contract's arguments,
    checked), the inputs as object arrays per sample, the targets as flat lists, and the values computed so far:
    ``shared`` (a dict that may outlive the call) for the quantities of ``X`` and ``Y`` alone, ``values`` for the
    others."""

    def __init__(self, net, arguments, unit, shared=None):
        self.net, self.arguments, self.make = net, arguments, Numbers(unit)
        self.shared = {} if shared is None else shared
        X = arguments["X"]
        self.n = X.shape[0]
        self.inputs = [self.make.constant(X[n]) for n in range(self.n)]
        Y = arguments.get("Y")
        self.targets = None if Y is None else [list(self.make.constant(Y[n]).reshape(-1)) for n in range(self.n)]
        self.zero, self.one = self.make.number(0), self.make.number(1)
        self.theta = [self.make.number(t) for t in net.to_vector()]
        self.values = {}

    def reduce(self, total):
        """``c * total``: the reduction's weight, ``1/N`` (mean) or 1 (sum), applied exactly."""
        return total / self.n if self.net.reduction == "mean" else total

    def sample(self, n, theta, order, loss=True, keep=()):
        """``(pass, outputs (flat list), loss_n or None)`` for sample ``n`` with parameters ``theta``."""
        run = Pass(self.net, theta, self.make, n, order, keep)
        outputs = list(run.outputs(self.inputs[n]).reshape(-1))
        objective = formulas.LOSSES[self.net.loss](outputs, self.targets[n]) if loss else None
        return run, outputs, objective

    def row(self, run, node):
        """``d node / dtheta`` ``(P,)`` (zeros where ``node`` does not depend on the parameters)."""
        if not isinstance(node, Var):
            return np.array([self.zero] * len(run.leaves), dtype=object)
        adjoints = run.tape.backward(node)
        return np.array([_or(adjoints[leaf.index], self.zero) for leaf in run.leaves], dtype=object)

    def call(self, quantity):
        """The ``contract.Call`` of ``quantity`` on this problem (what ``contract.derive`` reads)."""
        args = {name: self.arguments.get(name) for name in quantity.parameters}
        shape = quantity.shape(self.net, self.n, args)
        return contract.Call(quantity, quantity.name, self.net, tuple(args.values()), shape)


def _or(value, zero):
    return zero if value is None else value


def _tangents(number, count, zero):
    """The tangent array ``(count,)`` of a ``Dual`` adjoint (zeros where it is not one: no dependence)."""
    if isinstance(number, Dual):
        tangent = number.tangent
        return tangent if isinstance(tangent, np.ndarray) else np.array([tangent], dtype=object)
    return np.array([zero] * count, dtype=object)


def _dual_theta(problem, columns):
    """The parameters as ``Dual`` numbers whose tangents are the unit vectors of ``columns`` (a slice)."""
    k = columns.stop - columns.start
    zeros = np.array([problem.zero] * k, dtype=object)
    theta = []
    for j, t in enumerate(problem.theta):
        tangent = zeros
        if columns.start <= j < columns.stop:
            tangent = zeros.copy()
            tangent[j - columns.start] = problem.one
        theta.append(Dual(t, tangent))
    return theta


def _add(total, term):
    return term if total is None else total + term


def _sum(terms):
    """The running sum of ``terms`` (an iterable: one sample's term is made, added and dropped at a time)."""
    total = None
    for term in terms:
        total = _add(total, term)
    return total


# ---- the primitives --------------------------------------------------------------------------------------
def _forward(problem, quantity):
    rows = []
    for n in range(problem.n):
        run = Pass(problem.net, problem.theta, problem.make, n, 0)
        rows.append(np.vectorize(value_of, otypes=[object])(run.outputs(problem.inputs[n])))
    result = np.empty((problem.n,) + problem.net.output_shape, dtype=object)
    for n, row in enumerate(rows):
        result[n] = row
    return result


def _loss(problem, quantity):
    losses = [value_of(problem.sample(n, problem.theta, 0)[2]) for n in range(problem.n)]
    return np.array(problem.reduce(_sum(losses)), dtype=object)


def _per_sample_gradients(problem, quantity):
    rows = []
    for n in range(problem.n):
        run, _, objective = problem.sample(n, problem.theta, 1)
        rows.append(problem.row(run, objective))
    return np.array(rows, dtype=object)


def _gradient(problem, quantity):
    return problem.reduce(_per_sample_gradients(problem, quantity).sum(axis=0))


def _hvp(problem, quantity):
    v = problem.make.constant(problem.arguments["v"])
    theta = [Dual(t, vj) for t, vj in zip(problem.theta, v)]

    def products():
        for n in range(problem.n):
            run, _, objective = problem.sample(n, theta, 2)
            yield np.array([_tangents(a, 1, problem.zero)[0] for a in problem.row(run, objective)], dtype=object)

    return problem.reduce(_sum(products()))


def _hessian_columns(problem, rows, columns):
    """Rows ``rows`` and columns ``columns`` (slices) of the Hessian: one backward pass per sample over parameters
    whose tangents are the columns' unit vectors."""
    theta, k = _dual_theta(problem, columns), columns.stop - columns.start

    def blocks():
        for n in range(problem.n):
            run, _, objective = problem.sample(n, theta, 2)
            adjoints = problem.row(run, objective)[rows]
            yield np.array([_tangents(a, k, problem.zero) for a in adjoints], dtype=object).reshape(-1, k)

    return problem.reduce(_sum(blocks()))


def _hessian(problem, quantity):
    everything = slice(0, problem.net.n_params)
    return _hessian_columns(problem, everything, everything)


def _hessian_block(problem, quantity):
    slices = problem.net.param_slices
    return _hessian_columns(problem, slices[problem.arguments["l"]], slices[problem.arguments["m"]])


def _loss_hessian(problem, n, outputs):
    """``Lambda_n`` ``(K, K)``: the loss of sample ``n`` on output leaves with the K unit tangents."""
    k = len(outputs)
    tape = Tape()
    leaves = []
    for i, f in enumerate(outputs):
        tangent = np.array([problem.zero] * k, dtype=object)
        tangent[i] = problem.one
        leaves.append(tape.leaf(Dual(value_of(f), tangent)))
    objective = formulas.LOSSES[problem.net.loss](leaves, problem.targets[n])
    if not isinstance(objective, Var):
        return np.array([[problem.zero] * k] * k, dtype=object)
    adjoints = tape.backward(objective)
    return np.array([_tangents(adjoints[leaf.index], k, problem.zero) for leaf in leaves], dtype=object)


def _jacobians(problem):
    """``(J_n, Lambda_n)`` per sample (``Lambda_n`` ``None`` without a loss): ``J_n`` ``(K, P)``."""
    for n in range(problem.n):
        run, outputs, _ = problem.sample(n, problem.theta, 1, loss=False)
        jacobian = np.array([problem.row(run, f) for f in outputs], dtype=object)
        yield jacobian, (None if problem.targets is None else _loss_hessian(problem, n, outputs))


def _output_jacobian(problem, quantity):
    return np.array([jacobian for jacobian, _ in _jacobians(problem)], dtype=object)


def _ggn(problem, quantity):
    return problem.reduce(_sum(J.T @ (curvature @ J) for J, curvature in _jacobians(problem)))


def _ggnvp(problem, quantity):
    v = problem.make.constant(problem.arguments["v"])
    return problem.reduce(_sum(J.T @ (curvature @ (J @ v)) for J, curvature in _jacobians(problem)))


def _empirical_fisher(problem, quantity):
    rows = _per_sample_gradients(problem, quantity)
    return problem.reduce(_sum(np.outer(g, g) for g in rows))


def kfac_layer(net, l):
    """The position in ``net.layers`` of contract layer ``l``'s Dense record, after checking that Kronecker factors
    are defined for it: a Dense layer (``net.layer_fan``) with its own weight and bias, used once, on ``(D,)``
    samples."""
    fan = net.layer_fan(l)
    owner = net.owner(l)
    position = next(i for i, layer in enumerate(net.layers) if layer is owner)  # records with arrays: no ==, only is
    uses = sum(1 for layer in net.layers if set(parameter_indices(layer)) & set(net.groups[l]))
    if len(net.shapes[position]) != 1 or not isinstance(owner.bias, int) or uses > 1 or len(net.groups[l]) != 2:
        raise UnsupportedNetworkError(
            f"kfac_factors(l={l}): layer {l} is {describe(owner, net)} on samples of shape {net.shapes[position]}; "
            "Kronecker factors are defined for a Dense layer with its own trainable weight and bias, used once, on "
            f"(N, D) inputs (A over [z; 1], {fan[0] + 1} entries)"
        )
    return position


def _kfac_factors(problem, quantity):
    """``A = (1/N) sum a a^T`` over ``a = [z; 1]`` (the layer's kept input), ``G = c sum B^T Lambda B`` with ``B``
    the adjoints of every output at the layer's output ``s``."""
    position = kfac_layer(problem.net, problem.arguments["l"])
    A = G = None
    for n in range(problem.n):
        run, outputs, _ = problem.sample(n, problem.theta, 1, loss=False, keep=(position,))
        z, s = run.kept[position]
        a = np.array([value_of(entry) for entry in z] + [problem.one], dtype=object)
        A = _add(A, np.outer(a, a))
        B = []
        for f in outputs:
            adjoints = run.tape.backward(f) if isinstance(f, Var) else [None] * len(run.tape.parents)
            B.append([_or(adjoints[node.index], problem.zero) if isinstance(node, Var) else problem.zero for node in s])
        B = np.array(B, dtype=object)
        G = _add(G, B.T @ (_loss_hessian(problem, n, outputs) @ B))
    return A / problem.n, problem.reduce(G)


def _trace(problem, quantity):
    """The sum, in high precision, of the diagonal the contract derives the trace from."""
    return np.array(np.sum(value(problem, contract.quantity(quantity.derived_from[0].source))), dtype=object)


def _top_eigenvalues(problem, quantity):
    """The ``k`` largest eigenvalues of the contract's source (the Hessian) in high precision (``eigen``),
    descending. For the rounding floor each gets ``||bound||_F + P u ||H||_F``: Weyl's bound for the entries' errors
    plus a backward-stable eigensolver's."""
    matrix = value(problem, contract.quantity(quantity.derived_from[0].source))
    values = np.vectorize(numbers.value_part, otypes=[object])(matrix)
    eigenvalues = eigen.top_eigenvalues(values, problem.arguments["k"])
    if problem.make.unit is None:
        return np.array(eigenvalues, dtype=object)
    errors = np.vectorize(numbers.error_part, otypes=[object])(matrix)
    unit = problem.make.unit
    bound = mpmath.sqrt(np.sum(errors * errors)) + len(values) * unit * mpmath.sqrt(np.sum(values * values))
    return np.array([Bounded(e, bound, unit) for e in eigenvalues], dtype=object)


# ---- the cost of each method: what LIMITS and the memory guard read -------------------------------------------
def _outputs(net, args):
    return net.output_size


def _none(net, args):
    return 0


def _one(net, args):
    return 1


def _all_columns(net, args):
    return net.n_params


def _block_columns(net, args):
    return net.layer_param_counts[args["m"]]


@dataclass(frozen=True)
class Method:
    """How the arbiter computes a quantity, and what that costs per sample: ``tangents`` carried by every number
    of the tape, ``passes`` backward passes (0: values only), and ``cells(net, N, args)`` the high-precision numbers
    it holds beside the tape (results, accumulators, Jacobians), ``dense(net, args)`` the number operations per
    sample outside the tape (matrix products), ``once(net, args)`` those after the samples (an eigensolver)."""

    compute: Callable
    tangents: Callable = _none
    passes: Callable = _none
    cells: Callable = lambda net, n, args: 0
    dense: Callable = lambda net, args: 0
    once: Callable = lambda net, args: 0
    source: bool = False  # computed from its contract source's value (whose cost comes first)


def _result(net, n, args):
    return n * net.output_size


def _np(net, n, args):
    return 2 * n * net.n_params


def _pp(net, n, args):  # a P x P sum: the running total, the sample's term, their sum and the reduced result
    return 4 * net.n_params**2


def _block(net, n, args):
    return 4 * net.layer_param_counts[args["l"]] * net.layer_param_counts[args["m"]]


def _three_p(net, n, args):
    return 3 * net.n_params


def _jacobian_cells(net, n, args):  # one sample's J_n (K x P) and Lambda_n J_n
    return 2 * (net.output_size + 1) * net.n_params


def _jacobians_cells(net, n, args):  # every sample's J_n and the array of them
    return (n + 2) * net.output_size * net.n_params


def _ggn_cells(net, n, args):
    return _pp(net, n, args) + _jacobian_cells(net, n, args)


def _fisher_cells(net, n, args):
    return _np(net, n, args) + _pp(net, n, args)


def _outer_products(net, args):
    return net.n_params**2


def _ggn_dense(net, args):
    return (net.output_size + 1) * net.n_params**2


def _eigen_once(net, args):  # two Rayleigh-Ritz steps on 2 (k + 2) columns; all of them: a full eigensolver
    p, k = net.n_params, args["k"]
    return 10 * p**3 if k >= p - 1 else 8 * p * p * (k + 2)


def _kfac_cells(net, n, args):
    n_in, n_out = net.layer_fan(args["l"])
    return 2 * ((n_in + 1) ** 2 + n_out**2 + net.output_size * n_out) + 2 * net.output_size * net.n_params


# One home per quantity inside the arbiter: its own way to compute; a quantity without an entry is its contract
# derivation's (``Quantity.derived_from``) applied to its source's high-precision value.
METHODS = {
    "forward": Method(_forward, cells=_result),
    "loss": Method(_loss),
    "gradient": Method(_gradient, passes=_one, cells=_np),
    "per_sample_gradients": Method(_per_sample_gradients, passes=_one, cells=_np),
    "hvp": Method(_hvp, tangents=_one, passes=_one, cells=_three_p),
    "hessian": Method(_hessian, tangents=_all_columns, passes=_one, cells=_pp),
    "hessian_block": Method(_hessian_block, tangents=_block_columns, passes=_one, cells=_block),
    "output_jacobian": Method(_output_jacobian, passes=_outputs, cells=_jacobians_cells),
    "ggn": Method(_ggn, passes=_outputs, cells=_ggn_cells, dense=_ggn_dense),
    "ggnvp": Method(_ggnvp, passes=_outputs, cells=_jacobian_cells),
    "empirical_fisher": Method(_empirical_fisher, passes=_one, cells=_fisher_cells, dense=_outer_products),
    "kfac_factors": Method(_kfac_factors, passes=_outputs, cells=_kfac_cells),
    "hessian_trace": Method(_trace, source=True),
    "top_eigenvalues": Method(_top_eigenvalues, source=True, cells=_pp, once=_eigen_once),
}


def plan(quantity):
    """The ``Method``s a quantity runs, in order: its own, after its source's when it reads one; a quantity without a
    method is its contract derivation's source's plan."""
    method = METHODS.get(quantity.name)
    if method is None and not quantity.derived_from:
        raise ValueError(f"the arbiter has no method for {quantity.name} and the contract derives it from nothing")
    if method is None:
        return plan(contract.quantity(quantity.derived_from[0].source))
    if method.source:
        return plan(contract.quantity(quantity.derived_from[0].source)) + [method]
    return [method]


def value(problem, quantity):
    """``quantity``'s high-precision value on ``problem`` (cached: a trace and a diagonal share one Hessian)."""
    store = problem.shared if set(quantity.parameters) <= {"X", "Y"} else problem.values
    if quantity.name not in store:
        method = METHODS.get(quantity.name)
        if method is not None:
            result = method.compute(problem, quantity)
        else:  # the contract's first derivation, on high-precision values (every argument is at hand here)
            derivation = quantity.derived_from[0]
            result = derivation.derive(value(problem, contract.quantity(derivation.source)), problem.call(quantity))
        store[quantity.name] = result
    return store[quantity.name]
