"""Every input check of the suite that knows the network, shared by all engines: the network's type, a batch ``X``
``(N, *input shape)`` and targets ``Y`` (what the loss takes), a direction ``v``, layer indices, ``k``, the memory
guard of a whole call, and results that overflowed (reported naming the layer). Value checks (dtypes, real arrays,
finiteness) are ``xval.values``. Each raises an error of ``xval.errors`` whose message says what was given and the fix.
"""

import functools
import operator

import numpy as np

from . import definitions, memory
from .errors import ArgumentError, LayerIndexError, OverflowResultError, ShapeError, UnsupportedNetworkError, describe
from .layers import parameter_indices
from .network import Network
from .values import DTYPES, all_finite, cast_finite, check_dtype, check_finite, real_array  # noqa: F401 (re-exported)


def check_network(net, name="net"):
    """``net`` after checking that it is an ``xval.Network`` (engines read nothing else)."""
    if not isinstance(net, Network):
        raise ArgumentError(
            f"{name} is {describe(net)}, but it must be an xval.Network; build one with Network.from_arrays(weights, "
            "biases, activations, loss) or Network.random(sizes)"
        )
    return net


def _sample_shape(shape):
    return f"(N, {', '.join(map(str, shape))})"


def check_inputs(net, X):
    """``X`` as an array of ``net.dtype``, after checking its shape and values."""
    check_network(net)
    shape = net.input_shape
    expected = _sample_shape(shape)
    X = real_array("X", X, f"a float array of shape {expected}")
    if X.ndim != len(shape) + 1 or X.shape[1:] != shape or X.shape[0] == 0:
        if X.shape == shape:
            hint = f"; for one sample use X.reshape(1, {', '.join(map(str, shape))})"
        elif X.shape[1:] == shape:
            hint = "; X holds no samples, pass at least one row"
        else:
            hint = ""
        what = f"input width n_0 = {shape[0]}" if len(shape) == 1 else f"samples of shape {shape}"
        raise ShapeError(f"X has shape {X.shape}, expected {expected} with N >= 1 for {what}{hint}")
    return cast_finite("X", X, net.dtype)


def check_has_loss(net, what):
    """Raise when ``net`` has no loss: ``what`` (a function name) differentiates it."""
    if net.loss is None:
        raise ArgumentError(
            f"{what} needs a loss, and this network has none; build it with a loss "
            "(Network.from_torch(model, loss=nn.MSELoss()), net.with_loss('mse')), or use forward and "
            "output_jacobian, which need none"
        )


def check_data(net, X, Y):
    """``(X, Y)`` as arrays of ``net.dtype`` after checking shapes, values and (for the loss) targets. Targets of
    the class losses may be class indices ``(N,)``: they become one-hot rows."""
    X = check_inputs(net, X)
    check_has_loss(net, "this call")
    spec = definitions.loss(net.loss)
    shape = net.output_shape
    Y = real_array("Y", Y, f"a float array of shape {_sample_shape(shape)}")
    if spec.class_targets and Y.ndim == 1 and Y.dtype.kind in "iu" and len(shape) == 1:
        Y = _one_hot(Y, shape[0])
    if Y.shape[1:] != shape or Y.ndim != len(shape) + 1:
        hint = " (or class indices of shape (N,))" if spec.class_targets else ""
        what = f"output width n_L = {shape[0]}" if len(shape) == 1 else f"outputs of shape {shape}"
        raise ShapeError(f"Y has shape {Y.shape}, expected {_sample_shape(shape)}{hint} for {what}")
    if Y.shape[0] != X.shape[0]:
        raise ShapeError(
            f"X has {X.shape[0]} samples (shape {X.shape}) but Y has {Y.shape[0]} (shape {Y.shape}); "
            "pass one target row per sample"
        )
    Y = cast_finite("Y", Y, net.dtype)
    if spec.check_targets is not None:
        spec.check_targets(Y)
    return X, Y


def _one_hot(classes, n_classes):
    bad = np.flatnonzero((classes < 0) | (classes >= n_classes))
    if bad.size:
        raise ShapeError(
            f"Y holds class indices, but Y[{bad[0]}] = {int(classes[bad[0]])} is not one of the "
            f"{n_classes} classes 0..{n_classes - 1}"
        )
    return np.eye(n_classes)[classes]


def check_direction(net, v):
    """``v`` as a ``(P,)`` array of ``net.dtype`` after checking its shape and that it holds finite real numbers."""
    check_network(net)
    v = real_array("v", v, f"a real vector of shape ({net.n_params},), laid out like net.to_vector()")
    if v.shape != (net.n_params,):
        raise ShapeError(
            f"v has shape {v.shape}, but this network has P = {net.n_params} parameters, so v must have shape "
            f"({net.n_params},), laid out like net.to_vector()"
        )
    return cast_finite("v", v, net.dtype)


def check_layer(net, index, name):
    """``index`` as an int after checking that it numbers a layer of ``net``."""
    check_network(net)
    last = net.n_layers - 1
    try:
        if isinstance(index, bool):
            raise TypeError
        value = operator.index(index)
    except TypeError:
        raise LayerIndexError(
            f"{name} = {index!r} is not a layer index; pass an integer in 0..{last} (layers are numbered from 0)"
        ) from None
    if not 0 <= value <= last:
        raise LayerIndexError(
            f"{name} = {value} is out of range: this network has {net.n_layers} layers, valid {name} are 0..{last}"
        )
    return value


def check_count(net, k):
    """``k`` (how many eigenvalues) as an int after checking that it is in ``1..P``."""
    check_network(net)
    try:
        if isinstance(k, bool):
            raise TypeError
        value = operator.index(k)
    except TypeError:
        raise ArgumentError(
            f"k = {k!r} is not a whole number; pass how many eigenvalues you want, 1..{net.n_params}"
        ) from None
    if not 1 <= value <= net.n_params:
        raise ArgumentError(
            f"k = {value} is out of range: this network has P = {net.n_params} parameters, so k must "
            f"be in 1..{net.n_params}"
        )
    return value


def check_memory(
    net, quantity, n_samples, args=None, factor=1.0, first_call=0, what=None, engine="engine", in_flight=None
):
    """The memory guard for ``quantity`` (a ``contract.Quantity``) of an engine whose peak model is ``factor``,
    ``first_call`` and ``in_flight`` (``memory.peak_parts``), before any work; ``engine`` names it in the message."""
    result, working = memory.peak_parts(quantity, net, n_samples, args, factor, first_call, in_flight)
    if what is None:
        layers = ", ".join(f"{key}={value}" for key, value in (args or {}).items() if key in ("l", "m"))
        shape = quantity.shape(net, n_samples, args or {})
        array = "" if not shape or isinstance(shape[0], tuple) else f" (a {' x '.join(map(str, shape))} array)"
        what = f"{quantity.name}({layers}){array}" if layers else f"{quantity.name}{array}"
    memory.check(
        result + working,
        f"{engine}.{what}",
        f"{result} bytes for the result and {working} bytes of working memory (memory.peak_parts)",
    )


def kfac_position(net, l):
    """The position in ``net.layers`` of the Dense layer of contract layer ``l``, after checking that KFAC is defined
    for it: its own trainable weight and bias, used by no other layer, on ``(N, n_in)`` inputs."""
    net.layer_fan(l)  # refuses a layer that is not Dense
    dense = net.owner(l)
    position = next(i for i, layer in enumerate(net.layers) if layer is dense)
    users = [i for i, layer in enumerate(net.layers) if set(parameter_indices(layer)) & set(net.groups[l])]
    if not (
        isinstance(dense.weight, int)
        and isinstance(dense.bias, int)
        and tuple(net.groups[l]) == (dense.weight, dense.bias)
    ):
        raise UnsupportedNetworkError(
            f"kfac_factors(l={l}): the Kronecker factors need a Dense layer with its own "
            f"trainable weight and bias; layer {l} has a frozen or absent bias, or a frozen "
            "weight"
        )
    if users != [position]:
        raise UnsupportedNetworkError(
            f"kfac_factors(l={l}): layer {l}'s tensors are used by the layers at positions "
            f"{users} (tied); Kronecker factors are defined for a Dense layer used once"
        )
    if len(net.shapes[position]) != 1:
        raise UnsupportedNetworkError(
            f"kfac_factors(l={l}): layer {l} takes samples of shape {net.shapes[position]}; "
            "Kronecker factors are defined for Dense layers on (N, n_in) inputs"
        )
    return position


def measured(factor):
    """Decorate an autodiff engine's staged function with the peak factor measured for it (``AutodiffMemory``)."""

    def mark(stage):
        stage.peak_factor = factor
        return stage

    return mark


def pushes(tangents):
    """Decorate an autodiff engine's staged function that pushes at most ``tangents`` tangents at a time."""

    def mark(stage):
        stage.in_flight = tangents
        return stage

    return mark


class AutodiffMemory:
    """The memory model of an autodiff engine (``memory.peak_parts``): ``default_factor`` over (tangents x tape +
    result) plus ``first_call`` bytes, unless its ``stage_<quantity>`` states its own factor (``measured``) or how
    many tangents it pushes at a time (``pushes``). ``package``: the engine's package, where those functions live."""

    def __init__(self, package, engine, default_factor, first_call):
        self.package, self.engine = package, engine
        self.default_factor, self.first_call = default_factor, first_call

    def _stage(self, quantity):
        import importlib

        return getattr(importlib.import_module(self.package), f"stage_{quantity}", None)

    def peak_factor(self, quantity):
        """The factor of the engine's ``stage_<quantity>``: its measured one, else the default."""
        return getattr(self._stage(quantity), "peak_factor", self.default_factor)

    def in_flight(self, quantity):
        """How many tangents the engine's ``stage_<quantity>`` pushes at a time (``None``: all of the contract's)."""
        return getattr(self._stage(quantity), "in_flight", None)

    def _parts(self, quantity, net, n_samples, args):
        from . import contract

        return dict(
            quantity=contract.quantity(quantity),
            net=net,
            n_samples=n_samples,
            args=args,
            factor=self.peak_factor(quantity),
            first_call=self.first_call,
            in_flight=self.in_flight(quantity),
        )

    def estimate(self, quantity, net, n_samples, **args):
        """Bytes the engine's call of ``quantity`` (a contract name) needs at its peak: result and working memory."""
        return sum(memory.peak_parts(**self._parts(quantity, net, n_samples, args)))

    def guard(self, net, quantity, n_samples, **args):
        """The memory guard of the engine's call of ``quantity`` (a contract name), before any work."""
        check_memory(**self._parts(quantity, net, n_samples, args), engine=self.engine)


# ---- results: finite inputs whose result overflowed -----------------------------------------------------------
def _overflow_site(net, X, result):
    """Where a non-finite ``result`` of finite inputs came from: the first layer of an MLP whose pre-activations
    overflow, or else the layer of the first non-finite parameter entry, or else the loss."""
    if net.is_mlp:
        z = np.asarray(X, dtype=net.dtype)
        with np.errstate(all="ignore"):
            for layer, (w, b, name) in enumerate(zip(net.weights, net.biases, net.activations)):
                a = z @ w.T + b
                if not np.all(np.isfinite(a)):
                    largest = float(np.max(np.abs(z)))
                    return (
                        f"the pre-activations of layer {layer} (a_{layer} = W_{layer} z_{layer} + b_{layer}) "
                        f"overflow, with inputs to that layer as large as {largest:.3g}"
                    )
                z = definitions.activation(name).value(a)
    parts = result if isinstance(result, tuple) else (result,)
    array = np.asarray(parts[0] if all_finite(parts[-1]) else parts[-1])
    if array.ndim and array.shape[-1] == net.n_params:
        column = int(np.argwhere(~np.isfinite(array))[0][-1])
        layer = next(l for l, sl in enumerate(net.param_slices) if sl.start <= column < sl.stop)
        return f"the derivatives with respect to the parameters of layer {layer} overflow (entry {column})"
    return "the outputs, the loss or their derivatives overflow"


def overflow_error(net, X, what, result):
    """The ``OverflowResultError`` for ``what`` (a function name) whose result on finite ``X`` is not finite."""
    largest = np.finfo(net.dtype).max
    return OverflowResultError(
        f"{what} overflowed {net.dtype.name} on finite inputs: {_overflow_site(net, X, result)}; values are too "
        f"large for {net.dtype.name} (largest {largest:.3g}): standardise X, scale the weights down"
        + (", or use float64 (net.astype('float64'))" if net.dtype.itemsize < 8 else "")
    )


def _overflowed(function, args, kwargs, result):
    """The ``OverflowResultError`` for ``function(*args, **kwargs)``, a contract function ``f(net, X, ...)`` whose
    ``result`` on checked (finite) inputs is not finite, naming the layer where it overflowed."""
    net = args[0] if args else kwargs["net"]
    X = args[1] if len(args) > 1 else kwargs["X"]
    return overflow_error(net, check_inputs(net, X), function.__name__, result)


def finite(result):
    """Whether a result (a float, an array, or a tuple of arrays) holds no NaN/Inf: a read of the result, which does
    not depend on the floating-point flags of any thread (BLAS's workers raise theirs on their own threads)."""
    if isinstance(result, tuple):
        return all(all_finite(part) for part in result)
    return all_finite(result)


def finite_result(function):
    """Decorate a contract function ``f(net, X, ...)``: a result holding NaN/Inf raises ``OverflowResultError``
    naming the layer (inputs were checked finite, so the computation overflowed) instead of being returned."""

    @functools.wraps(function)
    def checked(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported below, naming the layer
            result = function(*args, **kwargs)
        if not finite(result):
            raise _overflowed(function, args, kwargs, result)
        return result

    return checked
