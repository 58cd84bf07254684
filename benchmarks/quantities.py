"""The measured quantities, read from the contract (``xval.contract``): how each is called on an engine (or a
peer), what it writes, how it is checked.

Every quantity is timed on one sample except ``per_sample_gradients``, which runs on a batch and reports the
time per sample. ``hessian_block`` is the same-layer block of the second layer (the first when there is one).
"""
from typing import Any, Callable, NamedTuple

import numpy as np

from xval import compare, contract

from . import peers

# The contract's quantities that the sweep measures (``loss`` is the forward pass again), with the central-difference
# oracle, which only ``manual`` provides, after the gradient.
QUANTITIES = ("forward", "gradient", "finite_difference_gradient", "per_sample_gradients", "hvp", "hessian_block", "hessian")
MANUAL_ONLY = (contract.FINITE_DIFFERENCE_GRADIENT.name,)
PEER_QUANTITIES = ("hessian_block",)
DENSE = ("per_sample_gradients", "hessian_block", "hessian")  # outputs that grow faster than |W|
PER_SAMPLE_BATCH = 16
ITEM_BYTES = {"float64": 8, "float32": 4}


class MissingFunctionError(RuntimeError):
    """An engine that does not (yet) provide a quantity of the contract."""


def batch_size(quantity, quick=False):
    return (4 if quick else PER_SAMPLE_BATCH) if quantity == "per_sample_gradients" else 1


def block_layer(net):
    """The layer whose same-layer block is measured: the second (layer 1), or layer 0 of a one-layer net."""
    return contract.same_layer_block(net)[0]


def _call(quantity, net, batch, X=None, Y=None, v=None):
    """The contract's call of ``quantity`` on ``net`` (data of ``batch`` samples; zeros when not given)."""
    X = np.zeros((batch, net.sizes[0]), net.dtype) if X is None else X
    Y = np.zeros((batch, net.sizes[-1]), net.dtype) if Y is None else Y
    v = np.zeros(net.n_params, net.dtype) if v is None else v
    return contract.quantity(quantity).calls(contract.Problem(quantity, net, X, Y, v))[0]


def output_shape(quantity, net, batch):
    """The shape of the dense array the quantity returns."""
    return _call(quantity, net, batch).shape


def output_bytes(quantity, net, batch):
    return int(np.prod(output_shape(quantity, net, batch))) * ITEM_BYTES[net.dtype.name]


def data(net, batch, seed=0):
    """``(X, Y, v)``: standard-normal inputs and targets, and a direction ``v`` for the Hessian-vector product."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, net.sizes[0])).astype(net.dtype)
    Y = rng.standard_normal((batch, net.sizes[-1])).astype(net.dtype)
    v = rng.standard_normal(net.n_params).astype(net.dtype)
    return X, Y, v


class Staged(NamedTuple):
    """A quantity set up for timing: ``compute()`` does the engine's work on parameters and data already on its
    device, waits for it and returns the engine's own arrays; ``fetch(value)`` brings them back as numpy (not
    timed); ``covered`` is the boolean mask of the entries a peer computes (``None``: all)."""

    compute: Callable[[], Any]
    fetch: Callable[[Any], np.ndarray]
    covered: np.ndarray | None = None


def prepare(quantity, engine, module, net, X, Y, v, device="cpu"):
    """``quantity`` with ``engine``, staged (a ``Staged``); the set-up (checks, placing arrays on the device) is
    done here, outside any timing.

    ``module`` is the engine module (``None`` for a peer). Engines with ``stage_<quantity>`` functions (the torch
    and jax references) are timed on their device without host-device copies; others compute with numpy arrays
    in and out. Raises ``MissingFunctionError`` when the engine does not provide the function,
    ``peers.PeerUnavailableError`` for a peer that cannot run.
    """
    if engine in peers.PEERS:
        compute, fetch, covered = peers.prepare(engine, net, X, Y, block_layer(net), device)
        return Staged(compute, fetch, covered)
    if quantity in MANUAL_ONLY and engine != "manual":
        raise MissingFunctionError(f"{quantity} is measured for the manual engine only")
    call = _call(quantity, net, X.shape[0], X, Y, v)
    if call.function(module) is None:
        raise MissingFunctionError(f"engine {engine!r} has no function {quantity!r}")
    staged = call.function(module, staged=True) is not None
    return Staged(call.stage(module), module.to_numpy if staged else np.asarray)


def tolerance(quantity, dtype):
    return contract.quantity(quantity).tolerance(dtype)


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
