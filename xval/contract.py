"""The engine contract as data: one ``Quantity`` per function, the one home of every fact about it.

A ``Quantity`` says how the function is called (its arguments after ``net``, taken from a ``Problem``), the shape of
what it returns, which tolerance table judges it, its derivative order, whether its result is dense (the write of
the result dominates its cost), the slope its time per sample is expected to have against |W| in each benchmark
sweep, how many tangents an autodiff engine pushes for it (what the memory guard sizes), and how its value can be
derived from another quantity when an engine lacks it (a diagonal from a dense matrix, a block from the full matrix).
The tests, ``python -m xval check``, the arbiter, the memory guard, the benchmarks and the malformed-input catalogue
read these facts; nothing else keys a table by quantity name.

An engine writes ``stage_<name>`` (set up once, returns a zero-argument function whose result stays in the engine's
own arrays) or only the plain function; ``complete(namespace, to_numpy)`` makes each missing plain twin once, here:
``to_numpy`` of the staged result, checked finite. Adding a quantity is one entry in ``QUANTITIES`` plus each
engine's function.
"""

import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import checks, compare
from .errors import UnsupportedError

# Arguments after ``net`` and what they are (signatures, docs and the malformed-input catalogue read this).
ARGUMENTS = {
    "X": "inputs (N, *input shape)",
    "Y": "targets (N, n_L)",
    "v": "a direction (P,), laid out like net.to_vector()",
    "l": "a layer index 0..L-1",
    "m": "a layer index 0..L-1",
    "k": "how many eigenvalues, 1..P",
}


@dataclass(frozen=True)
class Problem:
    """One input of the contract: a network, a batch ``X``, targets ``Y``, a direction ``v`` ``(P,)``, the layer
    pair ``block`` of the block quantities (when only one pair is wanted) and ``k`` for ``top_eigenvalues``."""

    name: str
    net: object
    X: np.ndarray
    Y: np.ndarray
    v: np.ndarray
    block: Optional[tuple] = None
    k: int = 3

    def astype(self, dtype):
        """The same problem in ``dtype`` (every array and the network)."""
        return Problem(
            self.name,
            self.net.astype(dtype),
            self.X.astype(dtype),
            self.Y.astype(dtype),
            self.v.astype(dtype),
            self.block,
            self.k,
        )


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
        """Run the call on ``engine`` on read-only copies of its inputs; the result checked to be a real floating
        array of the contract's shape, as float64 numpy (``xval.isolation.evaluate``). ``AttributeError`` when the
        engine does not implement it."""
        from .isolation import evaluate

        return evaluate(engine, self)

    def stage(self, engine):
        """``stage_<name>(net, *arguments)`` when the engine has it, else a call of the plain function (numpy in and
        out): a zero-argument function for timing."""
        staged = self.function(engine, staged=True)
        if staged is not None:
            return staged(self.net, *self.arguments)
        function = self.function(engine)
        net, arguments = self.net, self.arguments
        return lambda: function(net, *arguments)

    def argument(self, name):
        """The value of the argument ``name`` (``"l"``, ``"v"``, ...) of this call."""
        return self.arguments[self.quantity.parameters.index(name)]


# ---- derivations: a quantity's value from another's --------------------------------------------------------
@dataclass(frozen=True)
class Derivation:
    """``derive(value, call)`` turns the value of ``source`` (called with the same problem) into this quantity's
    value for ``call``: how a reference that lacks a quantity still answers it, and how the arbiter computes it."""

    source: str
    derive: Callable


def _block_of(value, call):
    rows, cols = call.net.param_slices[call.argument("l")], call.net.param_slices[call.argument("m")]
    return value[rows, cols]


def _same_layer_block_of(value, call):
    sl = call.net.param_slices[call.argument("l")]
    return value[sl, sl]


def _diagonal_of(value, call):
    return np.diagonal(value).copy()


def _product_with_v(value, call):
    return value @ np.asarray(call.argument("v"), dtype=np.float64)


def _trace_of(value, call):
    """The trace: the sum of a diagonal, or of a square matrix's diagonal."""
    value = np.asarray(value)
    return float(np.trace(value) if value.ndim == 2 else np.sum(value))


def _top_eigenvalues_of(value, call):
    return np.linalg.eigvalsh(value)[::-1][: call.argument("k")].copy()


def _kfac_block_of(value, call):
    A, G = value
    return kfac_block_from_factors(A, G)


def kfac_block_from_factors(A, G):
    """``kron(G, A)`` reordered into a layer's parameter order (``W`` row-major, then ``b``): ``A`` is over the
    layer's input with a trailing 1 ``(n_in + 1, n_in + 1)``, ``G`` over its outputs ``(n_out, n_out)``; in the
    Kronecker product the entry ``(p, q)`` of ``[W | b]`` is index ``p (n_in + 1) + q``, so the bias entries
    (``q = n_in``) move behind all the weights."""
    n_out, n_in = G.shape[0], A.shape[0] - 1
    full = np.kron(G, A)
    order = np.concatenate(
        [(np.arange(n_out)[:, None] * (n_in + 1) + np.arange(n_in)).reshape(-1), np.arange(n_out) * (n_in + 1) + n_in]
    )
    return full[np.ix_(order, order)]


# ---- shapes ---------------------------------------------------------------------------------------------------
def _p(net, n, args):
    return (net.n_params,)


def _pp(net, n, args):
    return (net.n_params, net.n_params)


def _block_shape(net, n, args):
    return (net.layer_param_counts[args["l"]], net.layer_param_counts[args["m"]])


def _layer_square(net, n, args):
    count = net.layer_param_counts[args["l"]]
    return (count, count)


# ---- the memory model: tangents pushed by an autodiff engine ---------------------------------------------------
def _no_tangents(net, n, args):
    return 0


def _one_tangent(net, n, args):
    return 1


def _columns_of_m(net, n, args):
    return net.layer_param_counts[args["m"]]


def _columns_of_l(net, n, args):
    return net.layer_param_counts[args["l"]]


def _all_columns(net, n, args):
    return net.n_params


def _outputs_per_sample(net, n, args):
    return n * net.output_size


# The benchmark sweeps: "width" and "depth" grow an MLP of equal widths (its output n_L is the width), "channels" grows
# the channels of a small convolutional network (its output fixed).
LINEAR = {"width": (1, 1), "depth": (1, 1), "channels": (1, 1)}
QUADRATIC = {"width": (2, 2), "depth": (2, 2), "channels": (2, 2)}
# A block is P_l^2 entries: |W|^2 in the width sweep; fixed in the depth sweep, where only the backward pass to
# the layer grows (like |W|), so between 0 (write-bound) and 1.
BLOCK = {"width": (2, 2), "depth": (0, 1), "channels": (2, 2)}
# Work that carries one row per network output (n_L rows of |W| or of a layer's width): n_L is the width in the
# width sweep, so n_L |W| grows like |W|^1.5 there, like |W| elsewhere.
OUTPUT_ROWS = {"width": (1.5, 1.5), "depth": (1, 1), "channels": (1, 1)}
# A (P, P) matrix from n_L rows per sample (J^T Lambda J): the write is P^2, the product n_L P^2 (|W|^2.5 by width).
OUTPUT_ROWS_SQUARED = {"width": (2, 2.5), "depth": (2, 2), "channels": (2, 2)}
OUTPUT_ROWS_BLOCK = {"width": (2, 2.5), "depth": (0, 1), "channels": (2, 2)}


@dataclass(frozen=True)
class Quantity:
    """A function of the contract and every fact about it.

    ``parameters``: its arguments after ``net`` (``ARGUMENTS``). ``returns``: what it gives, in words.
    ``shape(net, N, args)``: its shape (``args``: the layer indices and ``k`` of the call). ``order``: the highest
    derivative it needs (0, 1, 2). ``dense``: its result is large beside |W| and its write dominates the cost
    (benchmarks budget it and check it on a stride). ``slopes``: the expected exponent range of time per sample
    against |W| per sweep. ``tangents(net, N, args)``: how many forward-mode tangents an autodiff engine pushes
    through a reverse pass for it (the memory guard's model). ``derived_from``: ``Derivation``s, tried in order, that
    give its value from another quantity's. ``needs_loss``: it differentiates the loss (``forward`` and
    ``output_jacobian`` do not). ``batch``: the benchmarks time it on a batch (per sample) rather than one sample.
    """

    name: str
    parameters: tuple
    returns: str
    shape: Callable
    order: int
    dense: bool = False
    slopes: dict = field(default_factory=lambda: LINEAR)
    tangents: Callable = _no_tangents
    derived_from: tuple = ()
    needs_loss: bool = True
    batch: bool = False
    tolerances: dict = field(default_factory=lambda: compare.TOLERANCES)
    below_because: str = ""
    in_contract: bool = True
    # What each axis of the result indexes: "sample", "output", "parameter" (of the whole vector), "parameter of l"
    # / "parameter of m" (of the call's layer), "eigenvalue"; ``None`` where the result is not one array.
    axes: Optional[tuple] = ()

    @property
    def signature(self):
        return f"{self.name}(net, {', '.join(self.parameters)})"

    @property
    def layers(self):
        """The layer arguments it takes: ``()``, ``("l",)`` or ``("l", "m")``."""
        return tuple(name for name in ("l", "m") if name in self.parameters)

    def implemented_by(self, engine):
        return callable(getattr(engine, self.name, None))

    def tolerance(self, dtype):
        return self.tolerances[np.dtype(dtype).name]

    def result_cells(self, net, n, args=None):
        """Entries of its result."""
        shape = self.shape(net, n, args or {})
        if shape and isinstance(shape[0], tuple):  # several arrays (kfac_factors' pair)
            return sum(int(np.prod(part)) for part in shape)
        return int(np.prod(shape))

    def calls(self, problem, every_block=False):
        """The calls of this quantity on ``problem``: one, or one per layer (pair) for the layer quantities
        (every layer or pair when ``every_block``, else the problem's ``block``, by default the same-layer block of
        layer 1)."""
        n = problem.X.shape[0]
        values = {"X": problem.X, "Y": problem.Y, "v": problem.v, "k": min(problem.k, problem.net.n_params)}
        if not self.layers:
            arguments = tuple(values[name] for name in self.parameters)
            shape = self.shape(problem.net, n, {"k": values["k"]})
            return [Call(self, self.name, problem.net, arguments, shape)]
        layers = range(problem.net.n_layers)
        if self.layers == ("l",):
            every = [(l,) for l in layers]
            chosen = every if every_block else [(problem.block or same_layer_block(problem.net))[0:1]]
        else:
            every = [(l, m) for l in layers for m in layers]
            chosen = every if every_block else [problem.block or same_layer_block(problem.net)]
        # a layer the quantity is not defined for (KFAC of a convolution) has no call; without every_block, the
        # first layer it is defined for stands in for a chosen one it is not; none at all: the refusal is raised
        candidates = chosen if every_block else chosen + [indices for indices in every if indices not in chosen]
        calls, refusal = [], None
        for indices in candidates:
            args = dict(zip(self.layers, indices), k=values["k"])
            try:
                shape = self.shape(problem.net, n, args)
            except UnsupportedError as exc:
                refusal = refusal or exc
                continue
            arguments = tuple(args[name] if name in args else values[name] for name in self.parameters)
            label = f"{self.name}({', '.join(map(str, indices))})"
            calls.append(Call(self, label, problem.net, arguments, shape))
            if not every_block:
                break
        if not calls and refusal is not None:
            raise refusal
        return calls


def _kfac_shape(net, n, args):
    n_in, n_out = net.layer_fan(args["l"])  # UnsupportedNetworkError unless layer l is a Dense layer
    return ((n_in + 1, n_in + 1), (n_out, n_out))


def _kfac_block_shape(net, n, args):
    _kfac_shape(net, n, args)  # defined where its factors are
    return _layer_square(net, n, args)


_ALL = {
    q.name: q
    for q in [
        Quantity(
            "forward",
            ("X",),
            "(N, n_L) outputs",
            lambda net, n, args: (n, *net.output_shape),
            order=0,
            needs_loss=False,
            axes=("sample", "output"),
        ),
        Quantity(
            "loss",
            ("X", "Y"),
            "float, the objective E (the batch mean E = (1/N) sum_n loss_n)",
            lambda net, n, args: (),
            order=0,
        ),
        Quantity("gradient", ("X", "Y"), "(P,), dE/dtheta", _p, order=1, axes=("parameter",)),
        Quantity(
            "per_sample_gradients",
            ("X", "Y"),
            "(N, P), row n = d loss_n / dtheta (not divided by N)",
            lambda net, n, args: (n, net.n_params),
            order=1,
            dense=True,
            batch=True,
            axes=("sample", "parameter"),
        ),
        Quantity(
            "hvp",
            ("X", "Y", "v"),
            "(P,), the exact Hessian-vector product H v of E",
            _p,
            order=2,
            tangents=_one_tangent,
            derived_from=(Derivation("hessian", _product_with_v),),
            axes=("parameter",),
        ),
        Quantity(
            "hessian_block",
            ("X", "Y", "l", "m"),
            "(P_l, P_m), rows of layer l, columns of layer m",
            _block_shape,
            order=2,
            dense=True,
            slopes=BLOCK,
            tangents=_columns_of_m,
            derived_from=(Derivation("hessian", _block_of),),
            axes=("parameter of l", "parameter of m"),
        ),
        Quantity(
            "hessian",
            ("X", "Y"),
            "(P, P), d2E/dtheta2",
            _pp,
            order=2,
            dense=True,
            slopes=QUADRATIC,
            tangents=_all_columns,
            axes=("parameter", "parameter"),
        ),
        Quantity(
            "ggn",
            ("X", "Y"),
            "(P, P), the generalized Gauss-Newton G = (1/N) sum_n J_n^T Lambda_n J_n",
            _pp,
            order=2,
            dense=True,
            slopes=OUTPUT_ROWS_SQUARED,
            tangents=_all_columns,
            axes=("parameter", "parameter"),
        ),
        Quantity(
            "ggnvp",
            ("X", "Y", "v"),
            "(P,), G v, never forming G",
            _p,
            order=2,
            tangents=_one_tangent,
            derived_from=(Derivation("ggn", _product_with_v),),
            axes=("parameter",),
        ),
        Quantity(
            "ggn_block",
            ("X", "Y", "l", "m"),
            "(P_l, P_m), the block of G: rows of layer l, columns of layer m",
            _block_shape,
            order=2,
            dense=True,
            slopes=OUTPUT_ROWS_BLOCK,
            tangents=_columns_of_m,
            derived_from=(Derivation("ggn", _block_of),),
            axes=("parameter of l", "parameter of m"),
        ),
        Quantity(
            "hessian_diagonal",
            ("X", "Y"),
            "(P,), the diagonal of the Hessian, exact",
            _p,
            order=2,
            slopes=OUTPUT_ROWS,
            tangents=_all_columns,
            derived_from=(Derivation("hessian", _diagonal_of),),
            axes=("parameter",),
        ),
        Quantity(
            "ggn_diagonal",
            ("X", "Y"),
            "(P,), the diagonal of the GGN, exact",
            _p,
            order=2,
            slopes=OUTPUT_ROWS,
            tangents=_outputs_per_sample,
            derived_from=(Derivation("ggn", _diagonal_of),),
            axes=("parameter",),
        ),
        Quantity(
            "empirical_fisher",
            ("X", "Y"),
            "(P, P), (1/N) sum_n g_n g_n^T, g_n the per-sample gradient",
            _pp,
            order=1,
            dense=True,
            slopes=QUADRATIC,
            tangents=_no_tangents,
            axes=("parameter", "parameter"),
        ),
        Quantity(
            "output_jacobian",
            ("X",),
            "(N, n_L, P), d f(x_n) / dtheta",
            lambda net, n, args: (n, net.output_size, net.n_params),
            order=1,
            dense=True,
            needs_loss=False,
            batch=True,
            slopes=OUTPUT_ROWS,
            tangents=_outputs_per_sample,
            axes=("sample", "output", "parameter"),
        ),
        Quantity(
            "kfac_factors",
            ("X", "Y", "l"),
            "(A_l, G_l): A_l = (1/N) sum_n a_n a_n^T over a_n = [z_l; 1], "
            "G_l = (1/N) sum_n B_n^T Lambda_n B_n, B_n = df/ds_l",
            _kfac_shape,
            order=2,
            slopes=OUTPUT_ROWS,
            tangents=_outputs_per_sample,
            axes=None,
        ),
        Quantity(
            "kfac_block",
            ("X", "Y", "l"),
            "(P_l, P_l), kron(G_l, A_l) in the contract's order of layer l",
            _kfac_block_shape,
            order=2,
            dense=True,
            slopes=BLOCK,
            tangents=_outputs_per_sample,
            derived_from=(Derivation("kfac_factors", _kfac_block_of),),
            axes=("parameter of l", "parameter of l"),
        ),
        Quantity(
            "hessian_trace",
            ("X", "Y"),
            "float, the trace of the Hessian, exact",
            lambda net, n, args: (),
            order=2,
            slopes=OUTPUT_ROWS,
            tangents=_all_columns,
            derived_from=(Derivation("hessian_diagonal", _trace_of), Derivation("hessian", _trace_of)),
        ),
        Quantity(
            "top_eigenvalues",
            ("X", "Y", "k"),
            "(k,), the k largest eigenvalues of the Hessian, descending",
            lambda net, n, args: (args["k"],),
            order=2,
            tangents=_all_columns,
            derived_from=(Derivation("hessian", _top_eigenvalues_of),),
            axes=("eigenvalue",),
        ),
    ]
}

# The quantities every engine is checked on: all of them, now that every built-in engine (manual, torch_ref, jax_ref,
# the arbiter) computes each. A quantity added later stays in ``PENDING`` until they do (``quantity`` and
# ``complete`` know it, check runs it for an engine that has it, the comparison tests do not iterate it).
RELEASED = tuple(_ALL)
QUANTITIES = {name: q for name, q in _ALL.items() if name in RELEASED}
PENDING = {name: q for name, q in _ALL.items() if name not in RELEASED}

# Not part of the contract: the central-difference oracle, which the benchmarks measure for ``manual``.
FINITE_DIFFERENCE_GRADIENT = Quantity(
    "finite_difference_gradient",
    ("X", "Y"),
    "(P,), central differences of E",
    _p,
    order=1,
    slopes=QUADRATIC,
    tolerances=compare.FINITE_DIFFERENCE_TOLERANCES,
    in_contract=False,
    derived_from=(Derivation("gradient", lambda value, call: value),),  # the exact value it approximates
    below_because="overhead per evaluation: 2|W| loss evaluations, each a small forward pass whose fixed cost "
    "outweighs its O(|W|) work at these sizes, so the time grows like |W|",
    axes=("parameter",),
)


def quantity(name):
    """The contract's ``Quantity`` called ``name`` (or the finite-difference oracle); an error listing the valid
    names."""
    from .errors import unknown_name

    if name == FINITE_DIFFERENCE_GRADIENT.name:
        return FINITE_DIFFERENCE_GRADIENT
    try:
        return _ALL[name]
    except (KeyError, TypeError):
        raise unknown_name("quantity", name, QUANTITIES, plural="quantities") from None


def derive(call, value_of):
    """The value of ``call`` from another quantity: the first of its ``derived_from`` whose source ``value_of(source
    call)`` gives (``value_of`` returns ``None`` when it cannot); ``None`` when none does."""
    for derivation in call.quantity.derived_from:
        source = _ALL[derivation.source]
        arguments = {name: call.argument(name) for name in call.quantity.parameters}
        source_arguments = tuple(arguments[name] if name in arguments else None for name in source.parameters)
        if any(argument is None for argument in source_arguments):  # not ``None in``: that compares arrays
            continue
        shape = source.shape(call.net, np.shape(arguments.get("X"))[0], dict(arguments))
        # the label names the layers: callers cache by it (kfac_factors(0) and kfac_factors(1) are two values)
        layers = ", ".join(str(arguments[name]) for name in source.layers)
        label = f"{source.name}({layers})" if layers else source.name
        value = value_of(Call(source, label, call.net, source_arguments, shape))
        if value is not None:
            return derivation.derive(value, call)
    return None


# ---- an engine's plain functions from its staged ones ---------------------------------------------------------
def complete(namespace, to_numpy):
    """Give the engine module whose globals are ``namespace`` a plain contract function for every ``stage_<name>``
    it defines without one: ``name(net, *arguments)`` returns ``to_numpy(stage_<name>(net, *arguments)())`` as
    numpy in the network's dtype (a float for a scalar quantity), after checking that it is finite
    (``checks.finite_result``: an ``OverflowResultError`` naming the layer otherwise). Returns the names it added."""
    added = []
    for spec in list(_ALL.values()) + [FINITE_DIFFERENCE_GRADIENT]:
        staged = namespace.get(f"stage_{spec.name}")
        if staged is None or spec.name in namespace:
            continue
        namespace[spec.name] = _plain(spec, staged, to_numpy)
        added.append(spec.name)
    return added


def _plain(spec, staged, to_numpy):
    def plain(net, *arguments):
        value = to_numpy(staged(net, *arguments)())
        if isinstance(value, tuple):
            return tuple(np.asarray(part, dtype=net.dtype) for part in value)
        if spec.axes == ():  # a scalar
            return float(value)
        return np.asarray(value, dtype=net.dtype)  # the network's dtype (a float32 network's results are float32)

    plain.__name__ = plain.__qualname__ = spec.name
    plain.__doc__ = f"``{spec.signature}``: {spec.returns}. (``to_numpy`` of ``stage_{spec.name}``, checked finite.)"
    plain.__signature__ = signature(spec)
    plain.__wrapped__ = staged
    return checks.finite_result(plain)


# The type of each argument of the contract, by argument name.
ARGUMENT_TYPES = {"X": np.ndarray, "Y": np.ndarray, "v": np.ndarray, "l": int, "m": int, "k": int}


def signature(spec):
    """The typed ``inspect.Signature`` of the contract function ``spec`` (a ``Quantity``): ``net`` a ``Network``,
    the arrays ``np.ndarray``, layer indices and ``k`` ``int``; a scalar result ``float``, a pair a tuple."""
    from .network import Network

    parameters = [inspect.Parameter("net", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Network)]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ARGUMENT_TYPES[name])
        for name in spec.parameters
    ]
    result = float if spec.axes == () else tuple[np.ndarray, np.ndarray] if spec.axes is None else np.ndarray
    return inspect.Signature(parameters, return_annotation=result)
