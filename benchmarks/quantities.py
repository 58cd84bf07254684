"""The measured quantities: how each is called on an engine (or a peer), what it writes, how it is checked.

Every quantity is timed on one sample except ``per_sample_gradients``, which runs on a batch and reports the
time per sample. ``hessian_block`` is the same-layer block of the second layer (the first when there is one).
"""
import numpy as np

from xval import compare

from . import peers

QUANTITIES = ("forward", "gradient", "finite_difference_gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian")
MANUAL_ONLY = ("finite_difference_gradient",)
PEER_QUANTITIES = ("hessian_block",)
PER_SAMPLE_BATCH = 16
ITEM_BYTES = {"float64": 8, "float32": 4}


class MissingFunctionError(RuntimeError):
    """An engine that does not (yet) provide a quantity of the contract."""


def batch_size(quantity, quick=False):
    return (4 if quick else PER_SAMPLE_BATCH) if quantity == "per_sample_gradients" else 1


def block_layer(net):
    """The layer whose same-layer block is measured: the second (layer 1), or layer 0 of a one-layer net."""
    return 1 if net.n_layers > 1 else 0


def output_shape(quantity, net, batch):
    """The shape of the dense array the quantity returns."""
    P = net.n_params
    if quantity == "forward":
        return (batch, net.sizes[-1])
    if quantity == "per_sample_gradients":
        return (batch, P)
    if quantity == "hessian_block":
        P_l = net.layer_param_counts[block_layer(net)]
        return (P_l, P_l)
    if quantity == "hessian":
        return (P, P)
    return (P,)


def output_bytes(quantity, net, batch):
    return int(np.prod(output_shape(quantity, net, batch))) * ITEM_BYTES[net.dtype.name]


def data(net, batch, seed=0):
    """``(X, Y, v)``: standard-normal inputs and targets, and a direction ``v`` for the Hessian-vector product."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, net.sizes[0])).astype(net.dtype)
    Y = rng.standard_normal((batch, net.sizes[-1])).astype(net.dtype)
    v = rng.standard_normal(net.n_params).astype(net.dtype)
    return X, Y, v


def prepare(quantity, engine, module, net, X, Y, v, device="cpu"):
    """A zero-argument function computing ``quantity`` with ``engine``; returns ``(array, covered mask or None)``.

    ``module`` is the engine module (``None`` for a peer). Raises ``MissingFunctionError`` when the engine does
    not provide the function, ``peers.PeerUnavailableError`` for a peer that cannot run.
    """
    if engine in peers.PEERS:
        return peers.prepare(engine, net, X, Y, block_layer(net), device)
    name = quantity
    if quantity == "finite_difference_gradient":
        if engine != "manual":
            raise MissingFunctionError("finite_difference_gradient is measured for the manual engine only")
    function = getattr(module, name, None)
    if function is None:
        raise MissingFunctionError(f"engine {engine!r} has no function {name!r} yet (the Hessian functions come with issue 3)")
    if quantity == "forward":
        return lambda: (function(net, X), None)
    if quantity == "hvp":
        return lambda: (function(net, X, Y, v), None)
    if quantity == "hessian_block":
        layer = block_layer(net)
        return lambda: (function(net, X, Y, layer, layer), None)
    return lambda: (function(net, X, Y), None)


def reference_call(quantity, module, net, X, Y, v):
    """For ``finite_difference_gradient`` the exact gradient it is checked against; else the quantity itself."""
    if quantity == "finite_difference_gradient":
        return lambda: (module.gradient(net, X, Y), None)
    return prepare(quantity, None, module, net, X, Y, v)


def tolerance(quantity, dtype):
    table = compare.FINITE_DIFFERENCE_TOLERANCES if quantity == "finite_difference_gradient" else compare.TOLERANCES
    return table[dtype]


def check(actual, covered, expected, quantity, dtype):
    """``(ok, relative error, tolerance)`` of an output against the reference, on the covered entries."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return False, float("inf"), tolerance(quantity, dtype)
    if covered is not None:
        actual, expected = actual[covered], expected[covered]
    error = compare.relative_error(actual, expected)
    rtol = tolerance(quantity, dtype)
    return bool(error <= rtol), error, rtol
