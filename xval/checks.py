"""Every input check of the suite, shared by all engines: the network's type, dtypes, real arrays (no None,
strings, ragged lists, complex, booleans or objects; integers are exact values), finiteness after the cast to the
network's dtype, a batch ``X`` ``(N, n_0)`` and targets ``Y`` ``(N, n_L)``, a direction ``v``, layer indices, the
memory guard of a reference's whole call, and results that overflowed (reported naming the layer). Each raises an
error of ``xval.errors`` whose message says what was given and the fix.
"""
import functools
import operator

import numpy as np

from . import definitions, memory
from .errors import ArgumentError, LayerIndexError, NonFiniteError, OverflowResultError, ShapeError, describe

DTYPES = ("float64", "float32")


def check_dtype(dtype):
    """``dtype`` as a numpy dtype, after checking that it is one of ``DTYPES`` (``None`` is refused, not float64)."""
    try:
        name = None if dtype is None else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        given = repr(dtype) if name in (None, dtype) else f"{dtype!r} ({name})"
        raise ArgumentError(f"dtype {given} is not supported; use one of: {', '.join(DTYPES)} (e.g. dtype='float64')")
    return np.dtype(name)


_NETWORK_CLASS = []


def _network_class():
    if not _NETWORK_CLASS:
        from .network import Network  # network.py imports this module: import it at first use

        _NETWORK_CLASS.append(Network)
    return _NETWORK_CLASS[0]


def check_network(net, name="net"):
    """``net`` after checking that it is an ``xval.Network`` (engines read nothing else)."""
    if not isinstance(net, _network_class()):
        raise ArgumentError(
            f"{name} is {describe(net)}, but it must be an xval.Network; build one with Network.from_arrays(weights, "
            "biases, activations, loss) or Network.random(sizes)"
        )
    return net


def real_array(name, value, expected):
    """``value`` as a numpy array of real numbers (float or integer), without casting; ``expected`` describes it.

    Refused, each with its own message: ``None``, strings and bytes, ragged nested lists, complex arrays (even with
    every imaginary part zero: the suite differentiates real functions), booleans (``True`` is not a number here)
    and objects. Integer arrays are accepted as the exact values they hold.
    """
    if value is None or isinstance(value, (str, bytes)):
        raise ArgumentError(f"{name} is {describe(value)}, but it must be {expected}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ShapeError(f"{name} is a ragged nested sequence (rows of different lengths); it must be {expected}") from None
    kind = array.dtype.kind
    if kind == "c":
        zero = " even though every imaginary part is zero" if not np.any(array.imag) else ""
        raise ArgumentError(f"{name} is complex ({array.dtype}){zero}; it must be {expected}: pass {name}.real if the "
                            "imaginary part is meant to be zero")
    if kind == "b":
        raise ArgumentError(f"{name} is a boolean array; it must be {expected}: pass {name}.astype(float) if 0/1 is meant")
    if kind not in "fiu":
        raise ArgumentError(f"{name} has dtype {array.dtype}, not a real number type; it must be {expected}")
    return array


def cast_finite(name, array, dtype):
    """``array`` cast to ``dtype`` after checking that every entry is finite there (1e300 is Inf in float32)."""
    check_finite(name, array)
    if array.dtype == dtype:
        return array
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(dtype)
    if not all_finite(cast):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(cast))[0])
        raise NonFiniteError(
            f"{name}{list(index)} = {float(array[index])!r} is finite but overflows {np.dtype(dtype).name} (largest "
            f"{np.finfo(dtype).max:.4g}); scale {name} down or use a float64 network (net.astype('float64'))"
        )
    return cast


def check_finite(name, array):
    """Raise ``NonFiniteError`` naming ``name`` and the first bad entry if ``array`` holds NaN or Inf."""
    if array.dtype.kind in "iu" or all_finite(array):
        return
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise NonFiniteError(
            f"{name} holds {np.count_nonzero(~np.isfinite(array))} non-finite value(s), "
            f"the first at index {index}: {float(array[index])!r}; replace NaN/Inf before passing it in"
        )


def check_inputs(net, X):
    """``X`` as an array of ``net.dtype``, after checking its shape and values."""
    check_network(net)
    n_in = net.sizes[0]
    X = real_array("X", X, f"a float array of shape (N, {n_in})")
    if X.ndim != 2 or X.shape[1] != n_in or X.shape[0] == 0:
        if X.shape == (n_in,):
            hint = f"; for one sample use X.reshape(1, {n_in})"
        elif X.ndim == 2 and X.shape[1] == n_in:
            hint = "; X holds no samples, pass at least one row"
        else:
            hint = ""
        raise ShapeError(f"X has shape {X.shape}, expected (N, {n_in}) with N >= 1 for input width n_0 = {n_in}{hint}")
    return cast_finite("X", X, net.dtype)


def check_data(net, X, Y):
    """``(X, Y)`` as arrays of ``net.dtype`` after checking shapes, values and (for the loss) targets."""
    X = check_inputs(net, X)
    n_out = net.sizes[-1]
    Y = real_array("Y", Y, f"a float array of shape (N, {n_out})")
    if Y.ndim != 2 or Y.shape[1] != n_out:
        raise ShapeError(f"Y has shape {Y.shape}, expected (N, {n_out}) for output width n_L = {n_out}")
    if Y.shape[0] != X.shape[0]:
        raise ShapeError(f"X has {X.shape[0]} samples (shape {X.shape}) but Y has {Y.shape[0]} (shape {Y.shape}); pass one target row per sample")
    Y = cast_finite("Y", Y, net.dtype)
    check_targets = definitions.loss(net.loss).check_targets
    if check_targets is not None:
        check_targets(Y)
    return X, Y


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
        raise LayerIndexError(f"{name} = {index!r} is not a layer index; pass an integer in 0..{last} (layers are numbered from 0)") from None
    if not 0 <= value <= last:
        raise LayerIndexError(f"{name} = {value} is out of range: this network has {net.n_layers} layers, valid {name} are 0..{last}")
    return value


def check_reference_block(net, l, m, engine, n_samples):
    """``(l, m)`` checked as layer indices, after the memory guard has passed the whole call of the reference
    ``engine`` (``"torch_ref"``, ``"jax_ref"``) on ``n_samples`` samples (``memory.peak_bytes``): the
    references call it before any work."""
    l, m = check_layer(net, l, "l"), check_layer(net, m, "m")
    rows, cols = net.layer_param_counts[l], net.layer_param_counts[m]
    check_memory(net, engine, "hessian_block", n_samples, l, m, what=f"hessian_block(l={l}, m={m}) (a {rows} x {cols} array)")
    return l, m


def check_memory(net, engine, quantity, n_samples, l=None, m=None, what=None):
    """The memory guard for ``engine``'s ``quantity`` (``memory.peak_bytes``), before any work."""
    result, working = memory.peak_parts(engine, quantity, net, n_samples, l, m)
    memory.check(result + working, f"{engine}.{what or quantity}",
                 f"{result} bytes for the result and {working} bytes of working memory (memory.peak_parts)")


# ---- results: finite inputs whose result overflowed -----------------------------------------------------------
def all_finite(value):
    """Whether a float or array holds no NaN/Inf, without a full boolean temporary when the sum is finite."""
    array = np.asarray(value)
    if array.dtype.kind not in "fc":
        return True
    if array.size <= 1 << 16:  # small: the boolean temporary is cheaper than entering errstate
        return bool(np.isfinite(array).all())
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(array)):
            return True
    # The sum also overflows for large finite entries: check exactly, a few rows at a time (2-D views, even
    # transposed ones, reshape without a copy).
    rows = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(1, -1)
    step = max(1, (1 << 20) // rows.shape[1])
    return all(np.all(np.isfinite(rows[start:start + step])) for start in range(0, len(rows), step))


def _overflow_site(net, X, result):
    """Where a non-finite ``result`` of finite inputs came from: the first layer whose pre-activations overflow, or
    else the layer of the first non-finite parameter entry, or else the loss."""
    z = np.asarray(X, dtype=net.dtype)
    with np.errstate(all="ignore"):
        for layer, (w, b, name) in enumerate(zip(net.weights, net.biases, net.activations)):
            a = z @ w.T + b
            if not np.all(np.isfinite(a)):
                largest = float(np.max(np.abs(z)))
                return (f"the pre-activations of layer {layer} (a_{layer} = W_{layer} z_{layer} + b_{layer}) overflow, "
                        f"with inputs to that layer as large as {largest:.3g}")
            z = definitions.activation(name).value(a)
    array = np.asarray(result)
    if array.ndim and array.shape[-1] == net.n_params:
        column = int(np.argwhere(~np.isfinite(array))[0][-1])
        layer = next(l for l, sl in enumerate(net.param_slices) if sl.start <= column < sl.stop)
        return f"the derivatives with respect to the parameters of layer {layer} overflow (entry {column})"
    return "the loss (or its derivatives) overflows at the network's outputs"


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


def finite_result(function):
    """Decorate a contract function ``f(net, X, ...)``: a result holding NaN/Inf raises ``OverflowResultError``
    naming the layer (inputs were checked finite, so the computation overflowed) instead of being returned."""

    @functools.wraps(function)
    def checked(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, naming the layer
            result = function(*args, **kwargs)
        if not all_finite(result):
            raise _overflowed(function, args, kwargs, result)
        return result

    return checked


class _FloatingPointEvents:
    """An ``np.errstate(call=...)`` handler that only notes that numpy saw an overflow, invalid or divide."""

    def __init__(self):
        self.seen = False

    def __call__(self, kind, flag):
        self.seen = True


def numpy_finite_result(computes_with_numpy):
    """``finite_result`` for an engine that computes with numpy whenever ``computes_with_numpy()`` (the engine knows
    which array library it uses): numpy reports every overflow, invalid operation and division by zero (matmul
    included), and finite inputs give a finite result without one, so the full check (a read of the whole result,
    as long as writing a Hessian block) runs only after such an event, or always on another library."""

    def decorate(function):
        @functools.wraps(function)
        def checked(*args, **kwargs):
            events = _FloatingPointEvents()
            with np.errstate(over="call", invalid="call", divide="call", call=events):
                result = function(*args, **kwargs)
            if (events.seen or not computes_with_numpy()) and not all_finite(result):
                raise _overflowed(function, args, kwargs, result)
            return result

        return checked

    return decorate
