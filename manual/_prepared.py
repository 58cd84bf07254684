"""A network prepared once for an array library: its arrays there, its activation and loss records resolved, and
its layout (offsets in the flat parameter vector) computed, so that a call does only the math.

``prepare(net)`` caches the ``Model`` on the network (networks are immutable) per library, so repeated calls on
small networks cost what numpy costs. ``Model.data`` places validated numpy data in the library and
``Model.staged`` wraps a computation for timing (waiting for the device when it runs asynchronously).
"""

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from xval import contract
from xval.checks import check_memory, check_network

from . import arrays
from .activations import get_activation
from .losses import get_loss

# Network -> {Library: Model}; a Model holds no reference to its network, so the entry goes with the network.
_MODELS = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class Model:
    """A network in the library ``lib`` (namespace ``xp``): ``weights[l]`` ``(n_{l+1}, n_l)``, ``weights_t[l]`` its
    transpose, ``shapes[l]`` its shape, ``biases[l]`` ``(1, n_{l+1})`` (a row: adding it to one sample's ``(1, n)``
    array is a same-shape add, 0.3 us, where broadcasting an ``(n,)`` vector costs 0.85), ``acts[l]``
    (``Activation``), ``loss`` (``Loss``), ``sizes`` ``[n_0, ..., n_L]``, ``counts[l] = P_l`` and
    ``bounds[l] = (start, split, end)``: layer ``l``'s weights are entries ``start:split`` of the parameter vector, its
    biases ``split:end``. ``dot(a, b)`` is the product of two 2-D arrays (on numpy ``ndarray.dot``: 0.4 us for a
    (1, 8) by (8, 8) product against matmul's 0.95, whose ufunc machinery dominates small products; the same BLAS
    call for large ones); ``slopes[l]`` computes ``(f_l(x), f_l'(x))``; ``linear[l]``: whether ``f_l`` is the
    identity (``f' = 1``: nothing to multiply)."""

    lib: arrays.Library
    xp: Any
    dtype: Any
    shapes: tuple
    weights: tuple
    weights_t: tuple
    biases: tuple
    acts: tuple
    loss: Any
    sizes: tuple
    counts: tuple
    bounds: tuple
    n_params: int
    n_layers: int
    dot: Any
    slopes: tuple
    linear: tuple

    def asarray(self, array):
        """A validated numpy array in this model's library and dtype."""
        return self.lib.asarray(array, self.dtype)

    def data(self, X, Y):
        """``(self, X, Y)`` with validated ``X``, ``Y`` placed in the library."""
        return self, self.asarray(X), self.asarray(Y)

    def staged(self, compute):
        """``compute`` followed by a wait for the device (on the CPU, ``compute`` itself)."""
        if not self.lib.on_gpu:
            return compute
        lib = self.lib

        def run():
            value = compute()
            lib.synchronize()
            return value

        return run


def build(net, lib):
    """A new ``Model`` of ``net`` in ``lib`` (copies the parameters to the device once)."""
    weights = tuple(lib.asarray(w, net.dtype) for w in net.weights)
    acts = tuple(get_activation(name) for name in net.activations)
    counts = tuple(net.layer_param_counts)
    bounds, start = [], 0
    for w, count in zip(net.weights, counts):
        bounds.append((start, start + w.size, start + count))
        start += count
    return Model(
        lib=lib,
        xp=lib.xp,
        dtype=net.dtype,
        shapes=tuple(w.shape for w in net.weights),
        weights=weights,
        weights_t=tuple(w.T for w in weights),
        biases=tuple(lib.xp.reshape(lib.asarray(b, net.dtype), (1, -1)) for b in net.biases),
        acts=acts,
        loss=get_loss(net.loss),
        sizes=tuple(net.sizes),
        counts=counts,
        bounds=tuple(bounds),
        n_params=start,
        n_layers=len(weights),
        dot=np.ndarray.dot if lib.name == "numpy" else lib.xp.matmul,
        slopes=tuple(act.f_df or act.value_and_slope for act in acts),
        linear=tuple(act.name == "identity" for act in acts),
    )


def prepare(net, lib=None):
    """The cached ``Model`` of ``net`` in ``lib`` (by default the library that ``XVAL_ARRAY`` selects), after checking
    that ``net`` is a ``Network``."""
    check_network(net)
    lib = arrays.library() if lib is None else lib
    models = _MODELS.get(net)
    if models is None:
        models = _MODELS[net] = {}
    model = models.get(lib)
    if model is None:
        model = models[lib] = build(net, lib)
    return model


_SEQUENCES = weakref.WeakKeyDictionary()


def prepare_sequence(net, lib=None):
    """The cached ``manual._sequence.Sequence`` of ``net`` in ``lib`` (every layer kind; see ``prepare`` for MLPs)."""
    from ._sequence import Sequence

    check_network(net)
    lib = arrays.library() if lib is None else lib
    sequences = _SEQUENCES.setdefault(net, {})
    sequence = sequences.get(lib)
    if sequence is None:
        sequence = sequences[lib] = Sequence(net, lib)
    return sequence


def guard(net, name, n_samples, **args):
    """The memory guard of manual's call of ``name`` (a contract name) on ``n_samples`` samples, before any work:
    ``memory_estimate`` against the available memory and ``XVAL_MAX_BYTES``."""
    from . import memory_estimate

    quantity = contract.quantity(name)
    result = quantity.result_cells(net, n_samples, args) * net.dtype.itemsize
    total = memory_estimate(name, net, n_samples, **args)
    check_memory(net, quantity, n_samples, args, factor=0.0, first_call=max(total - result, 0), engine="manual")
