"""The measured quantities, read from the contract (``xval.contract``): how each is called on an engine (or a
peer), what it writes, how it is checked.

Every quantity is timed on one sample except those the contract times on a batch (``Quantity.batch``), which run on
``PER_SAMPLE_BATCH`` samples and report the time per sample. A layer quantity is measured on the same-layer block
of the second layer (the first when there is one only): ``contract.same_layer_block``.
"""

from typing import Any, Callable, NamedTuple

import numpy as np

from xval import compare, contract

from . import peers

PER_SAMPLE_BATCH = 16
ITEM_BYTES = {"float64": 8, "float32": 4}


class MissingFunctionError(RuntimeError):
    """An engine that does not (yet) provide a quantity of the contract."""


def batch_size(quantity, quick=False):
    """Samples per call: ``PER_SAMPLE_BATCH`` (4 with ``--quick``) for a quantity timed on a batch, else 1."""
    return (4 if quick else PER_SAMPLE_BATCH) if contract.quantity(quantity).batch else 1


def block_layer(net):
    """The layer whose same-layer block is measured: the second (layer 1), or layer 0 of a one-layer net."""
    return contract.same_layer_block(net)[0]


def provides(module, quantity):
    """Whether the engine ``module`` has the function of ``quantity``."""
    return contract.quantity(quantity).implemented_by(module)


def call_of(quantity, net, batch, X=None, Y=None, v=None):
    """The contract's call of ``quantity`` on ``net`` (data of ``batch`` samples; zeros when not given)."""
    X = np.zeros((batch, *net.input_shape), net.dtype) if X is None else X
    Y = np.zeros((batch, net.output_size), net.dtype) if Y is None else Y
    v = np.zeros(net.n_params, net.dtype) if v is None else v
    return contract.quantity(quantity).calls(contract.Problem(quantity, net, X, Y, v))[0]


def output_shape(quantity, net, batch):
    """The shape of the array the quantity returns (a tuple of shapes for a quantity of several arrays)."""
    return call_of(quantity, net, batch).shape


def output_cells(shape):
    """Entries of a result of ``shape``, or of every part when it is a tuple of shapes."""
    if shape and isinstance(shape[0], tuple):
        return sum(int(np.prod(part)) for part in shape)
    return int(np.prod(shape))


def output_bytes(quantity, net, batch):
    return output_cells(output_shape(quantity, net, batch)) * ITEM_BYTES[net.dtype.name]


def data(net, batch, seed=0):
    """``(X, Y, v)``: standard-normal inputs and targets, and a direction ``v`` for the products."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, *net.input_shape)).astype(net.dtype)
    Y = rng.standard_normal((batch, net.output_size)).astype(net.dtype)
    v = rng.standard_normal(net.n_params).astype(net.dtype)
    return X, Y, v


class Staged(NamedTuple):
    """A quantity set up for timing: ``compute()`` does the engine's work on parameters and data already on its
    device, waits for it and returns the engine's own arrays; ``fetch(value)`` brings them back as numpy (not
    timed); ``covered`` is the boolean mask of the entries a peer computes (``None``: all)."""

    compute: Callable[[], Any]
    fetch: Callable[[Any], np.ndarray]
    covered: np.ndarray | None = None


def flat(value):
    """A result as one float64 array: the parts of a result of several arrays (``kfac_factors``' ``(A, G)``) raveled
    and joined in order."""
    if isinstance(value, (tuple, list)):
        return np.concatenate([np.asarray(part, dtype=np.float64).ravel() for part in value])
    return np.asarray(value, dtype=np.float64)


def prepare(quantity, engine, module, net, X, Y, v, device="cpu"):
    """``quantity`` with ``engine``, staged (a ``Staged``); the set-up (checks, placing arrays on the device) is
    done here, outside any timing.

    ``module`` is the engine module (``None`` for a peer). Engines with ``stage_<quantity>`` functions are timed on
    their device without host-device copies; others compute with numpy arrays in and out. Raises
    ``MissingFunctionError`` when the engine does not provide the function, ``peers.PeerUnavailableError`` for a peer
    that cannot run.
    """
    call = call_of(quantity, net, X.shape[0], X, Y, v)
    if engine in peers.PEERS:
        return Staged(*peers.prepare(engine, call, device))
    if call.function(module) is None:
        raise MissingFunctionError(f"engine {engine!r} has no function {quantity!r}")
    staged = call.function(module, staged=True) is not None
    to_numpy = module.to_numpy if staged else (lambda value: value)
    return Staged(call.stage(module), lambda value: flat(to_numpy(value)))


def tolerance(quantity, dtype):
    return contract.quantity(quantity).tolerance(dtype)


def check(actual, covered, expected, quantity, dtype):
    """``(ok, relative error, tolerance)`` of an output against the reference, on the covered entries."""
    actual, expected = flat(actual), flat(expected)
    if actual.shape != expected.shape:
        return False, float("inf"), tolerance(quantity, dtype)
    if covered is not None:
        actual, expected = actual[covered], expected[covered]
    error = compare.relative_error(actual, expected)
    rtol = tolerance(quantity, dtype)
    return bool(error <= rtol), error, rtol
